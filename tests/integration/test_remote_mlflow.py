"""A real `mlflow server` (SQLite backend, 127.0.0.1) followed through the MLflow mirror.

One server per module (its start-up is slow); each test logs into its own experiment, from a
small numpy training loop with the mlflow client, while the mirror polls the server's REST API
and the ordinary engine follows the mirror. The server's access log counts the requests the
mirror made, apart from the mirror's own counter.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from watchrun.engine import Engine
from watchrun.model import RunStatus
from watchrun.remote import OPEN, RemoteError, mlflow_server, open_mirror, scheme_of
from watchrun.remote.mlflow_server import MlflowMirror, parse_url

mlflow = pytest.importorskip("mlflow", reason="the mlflow package runs the tracking server")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402

pytestmark = pytest.mark.timeout(240)

POLL = 0.4  # the mirror's poll interval in these tests (?poll=)
PARAMS = {"lr": "0.05", "batch": "64"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`mlflow server` as a process group of its own, restartable on the same port and db."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.url = f"mlflow+http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{self.workdir / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(self.workdir / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],  # fmt: skip
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.http + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"mlflow server did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def client(self) -> MlflowClient:
        return MlflowClient(self.http)

    def requests(self, endpoint: str) -> list[str]:
        """The access-log request lines (method, path and query) for one endpoint."""
        text = self.log.read_text(errors="replace")
        return re.findall(rf'"((?:GET|POST) [^" ]*{re.escape(endpoint)}[^" ]*)', text)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
def mirrors() -> Iterator[Callable[[str, Path], MlflowMirror]]:
    """Makes mirrors that are closed (their cache lock released) when the test ends."""
    made: list[MlflowMirror] = []

    def make(url: str, cache: Path) -> MlflowMirror:
        made.append(MlflowMirror(url, str(cache)))
        return made[-1]

    yield make
    for mirror in made:
        mirror.close()


class Follow:
    """The engine following a mirror's local root in its own thread, as `watchrun` does."""

    def __init__(self, root: str) -> None:
        self.engine = Engine([root], poll_seconds=0.1)
        self.engine.load()
        self.alerts: list[tuple[object, float]] = []  # (alert, monotonic time it came)
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self.engine.run_forever,
            args=(self.stop, self._on_alerts, self.errors.append),
            daemon=True,
        )
        self.thread.start()

    def _on_alerts(self, alerts: list) -> None:
        now = time.monotonic()
        self.alerts.extend((a, now) for a in alerts)

    def run(self, name: str):  # type: ignore[no-untyped-def]
        with self.engine.store.lock:
            for run in self.engine.store.runs.values():
                if run.display_name == name:
                    return run
        return None

    def points(self, name: str) -> dict[str, list[tuple[int, float]]]:
        run = self.run(name)
        if run is None:
            return {}
        with self.engine.store.lock:
            return {
                k: list(zip(s.steps.tolist(), s.values.tolist(), strict=True))
                for k, s in run.series.items()
            }

    def close(self) -> None:
        self.stop.set()
        self.engine.wake.set()
        self.thread.join(10)


def wait_for(what: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return bool(what())


def fit_steps(
    lr: float, steps: int, seed: int = 0, empty_batch_at: int | None = None
) -> Iterator[tuple[int, float, float]]:
    """A masked least-squares fit by gradient descent: (step, loss, grad norm) per step. A
    batch whose mask is empty makes the loss 0/0 = NaN, its gradient NaN, and every weight NaN
    from then on, as a token-averaged loss does on a batch of padding only."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=64)
    w = np.zeros(4)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for step in range(steps):
            mask = np.full(len(y), step != empty_batch_at)
            err = x[mask] @ w - y[mask]
            loss = float(np.sum(err**2) / mask.sum())
            grad = 2 * x[mask].T @ err / mask.sum()
            yield step, loss, float(np.linalg.norm(grad))
            w = w - lr * grad


class Trainer:
    """Logs a fit to a run with the mlflow client, one log_batch per step, and keeps what it
    logged (key -> [(step, value)])."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.logged: dict[str, list[tuple[int, float]]] = {"loss": [], "grad_norm": []}

    def log(self, step: int, loss: float, grad_norm: float) -> None:
        self.log_many([(step, loss, grad_norm)])

    def log_many(self, points: list[tuple[int, float, float]]) -> None:
        """Several steps in one log_batch (as a logger that buffers does)."""
        ts = int(time.time() * 1000)
        metrics = []
        for step, loss, grad_norm in points:
            metrics += [Metric("loss", loss, ts, step), Metric("grad_norm", grad_norm, ts, step)]
            self.logged["loss"].append((step, loss))
            self.logged["grad_norm"].append((step, grad_norm))
        self.client.log_batch(self.run_id, metrics=metrics)


def same(a: dict[str, list[tuple[int, float]]], b: dict[str, list[tuple[int, float]]]) -> bool:
    """Equal, NaN equal to NaN."""
    if a.keys() != b.keys():
        return False
    for k in a:
        if len(a[k]) != len(b[k]):
            return False
        for (s1, v1), (s2, v2) in zip(a[k], b[k], strict=True):
            if s1 != s2 or not (v1 == v2 or (math.isnan(v1) and math.isnan(v2))):
                return False
    return True


def test_the_url_and_its_options(tmp_path, mirrors) -> None:
    assert scheme_of("mlflow+http://h:5000") == "mlflow+http"
    assert scheme_of("MLflow+HTTPS://h") == "mlflow+https"
    t = parse_url("mlflow+https://h:5000/pre/?experiment=a&experiment=b%20c&run=r1&poll=0.5")
    assert (t.base, t.experiments, t.run_name, t.poll) == (
        "https://h:5000/pre",
        ("a", "b c"),
        "r1",
        0.5,
    )
    assert parse_url("mlflow+http://h?run=it's").run_filter() == "attributes.run_name = 'it\\'s'"
    for bad in ("mlflow+http://h?poll=0", "mlflow+http://h?color=red", "mlflow+ftp://h", "x"):
        with pytest.raises(RemoteError):
            parse_url(bad)
    mirror = mirrors("mlflow+http://127.0.0.1:9?poll=1", tmp_path)
    assert mirror.next_delay() == 1 * mlflow_server.IDLE_FACTOR  # nothing RUNNING: slower
    mirror.poll_seconds = 3.0  # what `--poll 3` sets
    assert mirror.next_delay() == 3.0


def test_unreachable_and_wrong_servers_say_so(tmp_path, mirrors) -> None:
    nothing = open_mirror(f"mlflow+http://127.0.0.1:{_free_port()}", str(tmp_path))
    nothing.start()
    try:
        assert OPEN[nothing.local_root] is nothing  # where control finds it for a stop
        # a second watchrun on the same URL gets a mirror of its own, never writes this one
        twin = MlflowMirror(nothing.url, str(tmp_path))
        assert twin.local_root != nothing.local_root
        twin.close()
        assert not os.path.exists(twin.cache_dir)
        assert "not reachable" in (nothing.problem() or "")
        assert "retrying in" in (nothing.problem() or "")
        info = json.loads(Path(nothing.local_root, ".watchrun-mirror.json").read_text())
        assert info == {"url": nothing.url, "label": nothing.label, "kind": "mlflow"}
        with pytest.raises(OSError, match="MLflow has no way to ask a run to stop"):
            nothing.request_stop(nothing.local_root)  # and nothing is written anywhere
        assert sorted(os.listdir(nothing.local_root)) == [".watchrun-mirror.json"]
    finally:
        nothing.close()
    assert nothing.local_root not in OPEN

    # a web server that is not MLflow's
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        other = mirrors(f"mlflow+http://127.0.0.1:{httpd.server_address[1]}", tmp_path)
        other.prepare()
        assert not other.poll_safely()
        problem = other.problem() or ""
        assert "HTTP 501" in problem or "MLflow" in problem, problem
    finally:
        httpd.shutdown()


def test_live_run_values_status_and_params_through_the_engine(server, tmp_path) -> None:
    client = server.client()
    exp = client.create_experiment("live")
    mirror = open_mirror(f"{server.url}?experiment=live&poll={POLL}", str(tmp_path))
    mirror.start()
    follow = Follow(mirror.local_root)
    try:
        run = client.create_run(exp, run_name="fit")
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in PARAMS.items()])
        trainer = Trainer(client, run.info.run_id)
        for step, loss, gn in fit_steps(0.05, 60):
            trainer.log(step, loss, gn)
            if step == 20:  # mid-run: the engine shows it running, params as hparams
                assert wait_for(lambda: _status(follow, "fit") is RunStatus.RUNNING, 10)
                assert wait_for(lambda: follow.run("fit").hparams == PARAMS, 5)
            time.sleep(0.01)
        client.set_terminated(run.info.run_id, "FINISHED")
        ended = {}
        for name, status in (("crashed", "FAILED"), ("cancelled", "KILLED")):
            other = client.create_run(exp, run_name=name)
            ended[name] = Trainer(client, other.info.run_id)
            ended[name].log(0, 1.0, 1.0)
            ended[name].log(1, math.inf, -math.inf)  # the SQL store keeps them as +-max float
            client.set_terminated(other.info.run_id, status)
        done = {"fit": RunStatus.FINISHED, "crashed": RunStatus.FAILED}
        done["cancelled"] = RunStatus.STOPPED
        assert wait_for(lambda: all(_status(follow, n) is s for n, s in done.items()), 15)
        assert wait_for(lambda: same(follow.points("fit"), trainer.logged), 5)
        assert same(follow.points("fit"), trainer.logged)  # nothing lost, nothing twice
        assert all(same(follow.points(n), t.logged) for n, t in ended.items())
        assert not follow.errors
    finally:
        follow.close()
        mirror.close()


def test_nan_arrives_as_an_alert_within_the_poll_interval(server, tmp_path) -> None:
    client = server.client()
    exp = client.create_experiment("diverge")
    mirror = open_mirror(f"{server.url}?experiment=diverge&poll={POLL}", str(tmp_path))
    mirror.start()
    follow = Follow(mirror.local_root)
    try:
        run = client.create_run(exp, run_name="empty-batch")
        trainer = Trainer(client, run.info.run_id)
        nan_in_a_row, broken_at = 0, None
        for step, loss, gn in fit_steps(0.05, 400, empty_batch_at=40):
            trainer.log(step, loss, gn)
            nan_in_a_row = nan_in_a_row + 1 if math.isnan(loss) else 0
            if nan_in_a_row == 2:  # the second NaN loss in a row: the weights are gone
                broken_at = time.monotonic()
                break
            time.sleep(0.02)
        assert broken_at is not None and step == 41

        def nan_alert() -> float | None:
            came = [t for a, t in follow.alerts if a.detector == "nan_loss" and a.open]
            return min(came) if came else None

        assert wait_for(lambda: nan_alert() is not None, POLL + 10)
        assert nan_alert() <= broken_at + POLL + 1.0
        assert wait_for(lambda: same(follow.points("empty-batch"), trainer.logged), 5)
    finally:
        follow.close()
        mirror.close()


def test_requests_are_incremental(server, tmp_path, mirrors) -> None:
    """First load: one listing, one search, one history read per metric key for all the runs;
    an idle poll: two searches; new points: one ranged history read per key from the last step
    seen."""
    client = server.client()
    exp = client.create_experiment("counts")
    ended = []
    for i in range(12):
        run = client.create_run(exp, run_name=f"done-{i}")
        t = Trainer(client, run.info.run_id)
        t.log_many(list(fit_steps(0.02 * (i + 1), 30, seed=i)))
        client.set_terminated(run.info.run_id, "FINISHED")
        ended.append(t)
    live = client.create_run(exp, run_name="live")
    trainer = Trainer(client, live.info.run_id)
    steps = fit_steps(0.05, 40)
    trainer.log_many([next(steps) for _ in range(25)])

    mirror = mirrors(f"{server.url}?experiment=counts", tmp_path)
    mirror.prepare()
    log_before = {e: len(server.requests(e)) for e in ("runs/search", "get-history")}
    mirror.poll_once()  # the first load
    assert mirror.problem() is None
    assert mirror.api.requests == {
        "experiments/search": 1,
        "runs/search": 1,
        "metrics/get-history-bulk-interval": 2,  # loss and grad_norm, 13 runs each
    }

    def delta(before: dict[str, int]) -> dict[str, int]:
        now = mirror.api.requests
        return {k: now[k] - before.get(k, 0) for k in now if now[k] != before.get(k, 0)}

    before = dict(mirror.api.requests)
    for _ in range(3):
        mirror.poll_once()  # idle: nothing moved
    assert delta(before) == {"runs/search": 6}  # the RUNNING runs, the runs just ended

    trainer.log_many([next(steps) for _ in range(5)])  # steps 25..29
    before = dict(mirror.api.requests)
    mirror.poll_once()
    assert delta(before) == {"runs/search": 2, "metrics/get-history-bulk-interval": 2}
    ranged = server.requests("get-history-bulk-interval")[-2:]
    assert all("start_step=24" in r and "end_step=29" in r for r in ranged), ranged

    client.set_terminated(live.info.run_id, "FINISHED")
    before = dict(mirror.api.requests)
    mirror.poll_once()  # its end: the search for runs just ended shows it, nothing to read
    assert delta(before) == {"runs/search": 2}
    mirror.poll_once()
    assert delta(before) == {"runs/search": 4}

    # the server saw what the mirror counted (the trainer never searches nor reads history)
    assert len(server.requests("runs/search")) - log_before["runs/search"] == 13
    assert len(server.requests("get-history")) - log_before["get-history"] == 4
    assert not mirror.runs[live.info.run_id].active
    engine = Engine([mirror.local_root], use_watchdog=False)
    engine.load()
    got = {r.display_name: r for r in engine.store.runs.values()}
    assert len(got) == 13
    for name, t in [("live", trainer)] + [(f"done-{i}", e) for i, e in enumerate(ended)]:
        series = got[name].series
        assert same(
            {
                k: list(zip(s.steps.tolist(), s.values.tolist(), strict=True))
                for k, s in series.items()
            },
            t.logged,
        )


def test_server_killed_mid_run_then_back_loses_nothing(server, tmp_path) -> None:
    client = server.client()
    exp = client.create_experiment("outage")
    mirror = open_mirror(f"{server.url}?experiment=outage&poll={POLL}", str(tmp_path))
    mirror.start()
    follow = Follow(mirror.local_root)
    try:
        run = client.create_run(exp, run_name="through-outage")
        trainer = Trainer(client, run.info.run_id)
        steps = fit_steps(0.05, 60)
        for _ in range(30):
            trainer.log(*next(steps))
        assert wait_for(lambda: len(follow.points("through-outage").get("loss", [])) == 30, 10)
        for _ in range(10):  # logged just before the crash: the mirror may not have seen them
            trainer.log(*next(steps))
        server.kill()
        assert wait_for(lambda: "not reachable" in (mirror.problem() or ""), POLL * 4 + 10)
        server.start()
        for _ in range(20):
            trainer.log(*next(steps))
        client.set_terminated(run.info.run_id, "FINISHED")
        assert wait_for(lambda: _status(follow, "through-outage") is RunStatus.FINISHED, 90)
        assert mirror.problem() is None
        assert wait_for(lambda: same(follow.points("through-outage"), trainer.logged), 5)
        assert [s for s, _ in follow.points("through-outage")["loss"]] == list(range(60))
    finally:
        follow.close()
        mirror.close()
        if server.proc is None:
            server.start()


def _status(follow: Follow, name: str) -> RunStatus | None:
    run = follow.run(name)
    return None if run is None else run.status


def test_long_histories_unstepped_metrics_deleted_runs_new_experiments(
    server, tmp_path, monkeypatch, mirrors
) -> None:
    """A range past the bulk endpoint's 2,500 points per run (which it would sample) is read
    whole instead; values logged without step= (all at step 0) come once each, in order; a
    metric whose name collides with another's folder is skipped, the rest goes on; a deleted
    run leaves the mirror; an experiment asked for before it exists is said missing, then
    followed with its ended runs once it is there."""
    client = server.client()
    exp = client.create_experiment("edges")
    run = client.create_run(exp, run_name="long").info.run_id
    ts = int(time.time() * 1000)
    values = [math.sin(i / 50) for i in range(3000)]
    for lo in range(0, 3000, 1000):
        client.log_batch(run, [Metric("loss", values[i], ts + i, i) for i in range(lo, lo + 1000)])
    for v in (0.5, 0.25):
        client.log_metric(run, "lr", v)  # no step: MLflow keeps step 0
    client.log_batch(run, [Metric("a", 1.0, ts, 0), Metric("a/b", 2.0, ts, 0)])
    doomed = client.create_run(exp, run_name="doomed").info.run_id
    client.log_metric(doomed, "loss", 1.0, step=0)
    twins = [client.create_run(exp, run_name="twin").info.run_id for _ in range(2)]
    for i, twin in enumerate(twins):
        client.log_metric(twin, "loss", float(i), step=0)

    mirror = mirrors(f"{server.url}?experiment=edges&experiment=later", tmp_path)
    mirror.prepare()
    mirror.poll_once()
    assert mirror.api.requests["metrics/get-history"] == 1  # "loss" of "long": sampled in bulk
    assert "no experiment named 'later'" in (mirror.problem() or "")
    client.log_metric(run, "lr", 0.125)
    client.delete_run(doomed)
    later = client.create_experiment("later")
    quick = client.create_run(later, run_name="quick").info.run_id
    client.log_metric(quick, "loss", 0.5, step=3)
    client.set_terminated(quick, "FINISHED", end_time=int(time.time() * 1000) - 3_600_000)
    monkeypatch.setattr(mlflow_server, "LISTING_SECONDS", 0.0)
    mirror.poll_once()
    assert mirror.problem() is None
    assert doomed not in mirror.runs
    assert mirror.runs[quick].meta["status"] == "FINISHED"

    engine = Engine([mirror.local_root], use_watchdog=False)
    engine.load()
    folders = sorted(os.path.basename(k) for k in engine.store.runs)  # as the MLflow UI names
    assert folders in (sorted(["long", "quick", "twin", f"twin-{t[:8]}"]) for t in twins)
    runs = {r.display_name: r for r in engine.store.runs.values()}
    assert set(runs) == {"long", "quick", "twin"}
    quick_loss = runs["quick"].series["loss"]
    assert (quick_loss.steps.tolist(), quick_loss.values.tolist()) == ([3], [0.5])
    only = runs["long"]
    twin_losses = [r.series["loss"].values.tolist() for r in engine.store.runs.values()]
    assert sorted(v for v in twin_losses if len(v) == 1 and v[0] in (0.0, 1.0)) == [[0.0], [1.0]]
    series = {k: (s.steps.tolist(), s.values.tolist()) for k, s in only.series.items()}
    assert series["loss"] == (list(range(3000)), values)
    assert series["lr"] == ([0, 1, 2], [0.5, 0.25, 0.125])
    assert set(series) == {"loss", "lr", "a"} or set(series) == {"loss", "lr", "a/b"}


def test_a_restarted_watchrun_reads_only_what_changed(server, tmp_path, mirrors) -> None:
    client = server.client()
    exp = client.create_experiment("resume")
    run = client.create_run(exp, run_name="r").info.run_id
    trainer = Trainer(client, run)
    steps = fit_steps(0.05, 40)
    trainer.log_many([next(steps) for _ in range(20)])
    client.log_batch(run, params=[Param("lr", "0.05")])
    url = f"{server.url}?experiment=resume"
    first = mirrors(url, tmp_path)
    first.prepare()
    first.poll_once()
    loss = Path(first.runs[run].directory, "metrics", "loss")
    with open(loss, "a") as fh:
        fh.write("1700000000000 0.")  # the last line was cut short when watchrun ended
    first.close()  # watchrun ends
    trainer.log_many([next(steps) for _ in range(10)])  # steps 20..29 while it was away

    again = mirrors(url, tmp_path)
    again.prepare()
    assert again.runs[run].metrics["loss"].last_step == 19
    again.poll_once()
    assert again.api.requests["metrics/get-history-bulk-interval"] == 2
    assert all("start_step=19" in r for r in server.requests("get-history-bulk-interval")[-2:])
    engine = Engine([again.local_root], use_watchdog=False)
    engine.load()
    (got,) = engine.store.runs.values()
    series = {
        k: list(zip(s.steps.tolist(), s.values.tolist(), strict=True))
        for k, s in got.series.items()
    }
    assert same(series, trainer.logged)
    assert got.hparams == {"lr": "0.05"}

"""Requests and bytes the MLflow mirror costs a tracking server, for a first load, an idle hour
and new points, with a real `mlflow server` (SQLite backend) on 127.0.0.1.

    python benchmarks/remote_mlflow.py [RUNS]     (100 runs by default)

RUNS runs of 3 metrics x 200 steps, 5 of them still RUNNING. Printed: requests and response
bytes per phase, against the obvious way of reading a server (every metric history of every run
at each poll: RUNS x 3 `get-history` requests, measured once as "naive poll"). An idle hour is
extrapolated from one idle poll and one full sweep at the default intervals (a poll every 2 s
while runs are RUNNING, 5x slower when none is; a sweep every 60 s). `measure()` returns the
figures for benchmarks/remote.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from tests.integration.test_remote_mlflow import Server, Trainer, fit_steps  # noqa: E402

from watchrun.remote import mlflow_server  # noqa: E402

STEPS = 200
RUNNING = 5
EXTRA = "accuracy"  # a third metric, besides the Trainer's loss and grad_norm


def _log_runs(server: Server, runs: int) -> list[Trainer]:
    from mlflow.entities import Metric

    client = server.client()
    exp = client.create_experiment("bench")
    trainers = []
    hour_ago = int(time.time() * 1000) - 3_600_000  # the ended runs ended long ago, as when idle
    for i in range(runs):
        run_id = client.create_run(exp, hour_ago - 3_600_000, run_name=f"run-{i:03d}").info.run_id
        trainer = Trainer(client, run_id)
        trainer.log_many(list(fit_steps(0.01 + 0.001 * i, STEPS if i >= RUNNING else 100, i)))
        ts = int(time.time() * 1000)
        accuracy = [Metric(EXTRA, 1 - 1 / (s + 2), ts, s) for s in range(0, STEPS, 10)]
        client.log_batch(run_id, metrics=accuracy)
        if i >= RUNNING:
            client.set_terminated(run_id, "FINISHED", end_time=hour_ago)
        trainers.append(trainer)
    return trainers


def _phase(mirror: mlflow_server.MlflowMirror, polls: int = 1) -> tuple[int, int, float]:
    requests, size = sum(mirror.api.requests.values()), mirror.api.bytes_in
    t0 = time.perf_counter()
    for _ in range(polls):
        mirror.poll_once()
    return (
        sum(mirror.api.requests.values()) - requests,
        mirror.api.bytes_in - size,
        (time.perf_counter() - t0) / polls,
    )


def _forced(mirror: mlflow_server.MlflowMirror, constant: str) -> tuple[int, int, float]:
    """One poll with the listing that `constant` spaces out made due now."""
    every = getattr(mlflow_server, constant)
    setattr(mlflow_server, constant, 0.0)
    try:
        return _phase(mirror)
    finally:
        setattr(mlflow_server, constant, every)


def measure(runs: int = 100) -> dict[str, tuple[int, int, float]]:
    """(requests, bytes, seconds) per phase: first load, idle poll, experiments listing (every
    LISTING_SECONDS), runs sweep (every SWEEP_SECONDS), one poll after the running runs logged
    10 steps each, the extrapolated idle hour, and one naive poll for comparison."""
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        server.start()
        try:
            trainers = _log_runs(server, runs)
            mirror = mlflow_server.MlflowMirror(f"{server.url}?experiment=bench", tmp + "/cache")
            mirror.prepare()
            out = {"first load": _phase(mirror)}
            requests, size, _ = _phase(mirror, 10)
            out["idle poll"] = (requests // 10, size // 10, 0.0)
            out["idle poll + listing"] = _forced(mirror, "LISTING_SECONDS")
            out["sweep"] = _forced(mirror, "SWEEP_SECONDS")
            for trainer in trainers[:RUNNING]:
                trainer.log_many(list(fit_steps(0.01, 110))[100:])
            out["10 new steps x 5 runs"] = _phase(mirror)
            out["idle hour"] = _idle_hour(out, mlflow_server.DEFAULT_POLL)
            out["naive poll"] = _naive_poll(mirror)
            client, long_ago = server.client(), int(time.time() * 1000) - 3_600_000
            for trainer in trainers[:RUNNING]:
                client.set_terminated(trainer.run_id, "FINISHED", end_time=long_ago)
            mirror.poll_once()  # sees them end (through the search by id)
            requests, size, _ = _phase(mirror, 10)
            out["idle poll, none running"] = (requests // 10, size // 10, 0.0)
            out["idle hour, none running"] = _idle_hour(
                {**out, "idle poll": out["idle poll, none running"]},
                mlflow_server.DEFAULT_POLL * mlflow_server.IDLE_FACTOR,
            )
            logged = sum(len(v) for t in trainers for v in t.logged.values()) + runs * STEPS // 10
            print(f"mirrored points: {_lines(mirror.local_root)} of {logged} logged")
            return out
        finally:
            server.kill()


def _idle_hour(out: dict[str, tuple[int, int, float]], every: float) -> tuple[int, int, float]:
    """An hour of idle polls, one every `every` seconds, with its listings and sweeps."""
    polls = int(3600 / every)
    sweeps = int(3600 / mlflow_server.SWEEP_SECONDS)
    listings = int(3600 / mlflow_server.LISTING_SECONDS) - sweeps
    plain = polls - sweeps - listings
    return (
        plain * out["idle poll"][0]
        + listings * out["idle poll + listing"][0]
        + sweeps * out["sweep"][0],
        plain * out["idle poll"][1]
        + listings * out["idle poll + listing"][1]
        + sweeps * out["sweep"][1],
        0.0,
    )


def _lines(root: str) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        if os.sep + "metrics" in folder:
            for name in files:
                with open(os.path.join(folder, name), "rb") as fh:
                    total += fh.read().count(b"\n")
    return total


def _naive_poll(mirror: mlflow_server.MlflowMirror) -> tuple[int, int, float]:
    """What a poller without cursors costs: every history of every run, each poll."""
    requests, size = sum(mirror.api.requests.values()), mirror.api.bytes_in
    t0 = time.perf_counter()
    for run_id, state in mirror.runs.items():
        for key in state.metrics:
            mirror.api.call(
                "GET",
                "/api/2.0/mlflow/metrics/get-history",
                {"run_id": run_id, "metric_key": key, "max_results": 25000},
            )
    return (
        sum(mirror.api.requests.values()) - requests,
        mirror.api.bytes_in - size,
        time.perf_counter() - t0,
    )


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    figures = measure(runs)
    print(f"MLflow tracking server mirror, {runs} runs x 3 metrics ({RUNNING} running)")
    print(f"{'phase':<24}{'requests':>10}{'bytes':>12}{'seconds':>9}")
    for phase, (requests, size, seconds) in figures.items():
        shown = f"{seconds:9.2f}" if seconds else f"{'':>9}"
        print(f"{phase:<24}{requests:>10}{size:>12}{shown}")
    print(
        f"(naive poll: {runs} runs x 3 get-history, each the whole history, at every poll; "
        f"idle hour: {RUNNING} runs RUNNING but silent, a poll every "
        f"{mlflow_server.DEFAULT_POLL:.0f} s; none running: every "
        f"{mlflow_server.DEFAULT_POLL * mlflow_server.IDLE_FACTOR:.0f} s; "
        f"experiments listed every {mlflow_server.LISTING_SECONDS:.0f} s, "
        f"all runs every {mlflow_server.SWEEP_SECONDS:.0f} s)"
    )


if __name__ == "__main__":
    main()

"""Remote roots through fsspec against real servers on 127.0.0.1: moto's S3 server (s3fs on
watchrun's side) and asyncssh's SFTP server (sshfs). The logs are written by the real writers
(tensorboard's SummaryWriter, a CSV as CSVLogger writes it, trainer_state.json as HF Trainer
rewrites it) into a local folder and uploaded as the libraries do (whole objects again and
again, multipart included); the mirrored runs must equal a local read of the same files, and
the requests counted by the server must stay incremental."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

from tests.integration.s3server import CountingS3  # noqa: E402

from watchrun.control import STOP_FILE, find_process, request_stop, writer_alive  # noqa: E402
from watchrun.engine import Engine  # noqa: E402
from watchrun.remote import MARKER  # noqa: E402
from watchrun.remote.fsmirror import FAST_POLL, SLOW_POLL, WINDOW, FsMirror  # noqa: E402

BUCKET = "logs"


@pytest.fixture(scope="module")
def s3():
    server = CountingS3()
    server.start()
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV, AWS_ENDPOINT_URL=server.endpoint)
    client = boto3.client("s3", endpoint_url=server.endpoint)
    client.create_bucket(Bucket=BUCKET)
    client.create_bucket(Bucket="empty")
    yield server, client
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": "",
}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


# -- the writers -----------------------------------------------------------------------------
class Training:
    """One run written locally by the real writers: TensorBoard events, a CSV history and an
    HF-style trainer_state.json (rewritten whole at every log, as the Trainer does)."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = folder
        folder.mkdir(parents=True)
        self.tb = SummaryWriter(str(folder / "tb"))
        self.csv = folder / "metrics.csv"
        self.csv.write_text("epoch,loss,val_loss\n")
        self.state: dict[str, Any] = {"global_step": 0, "log_history": []}
        self.step = 0

    def log(self) -> None:
        self.step += 1
        loss = 1.0 / self.step
        self.tb.add_scalar("train/grad_norm", 2.0 + self.step, self.step)
        self.tb.flush()
        with self.csv.open("a") as fh:
            fh.write(f"{self.step},{loss:.6f},{loss * 1.1:.6f}\n")
        self.state["global_step"] = self.step
        self.state["log_history"].append({"loss": loss, "step": self.step, "epoch": self.step})
        (self.folder / "trainer_state.json").write_text(json.dumps(self.state, indent=2))

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())


def upload(client: Any, local: Path, top: Path, prefix: str, multipart: bool = False) -> str:
    """Put the whole file again, as object stores' writers do (no append in S3)."""
    key = f"{prefix}/{local.relative_to(top).as_posix()}"
    data = local.read_bytes()
    if not multipart:
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
        return key
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    part = client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1, Body=data)
    client.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    return key


def upload_all(client: Any, training: Training, top: Path, prefix: str) -> dict[str, int]:
    """Every file of the run; TensorBoard's events as a multipart upload. key -> size."""
    sizes = {}
    for f in training.files():
        key = upload(client, f, top, prefix, multipart="tfevents" in f.name)
        sizes[key] = f.stat().st_size
    return sizes


def points(engine: Engine, strip: str = "") -> dict[str, dict[str, list[tuple[int, float]]]]:
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for key, run in engine.store.runs.items():
        name = key.removeprefix(strip)
        out[name] = {
            metric: list(zip(s.steps.tolist(), s.values.tolist(), strict=True))
            for metric, s in run.series.items()
            if not metric.startswith(("proc/", "gpu/"))
        }
    return {k: v for k, v in out.items() if v}


def follow(engine: Engine) -> None:
    """One round: the mirror polls its backend, then the engine reads what changed locally."""
    for mirror in engine.mirrors.values():
        mirror.poll_safely()
    engine.scan()
    engine.poll()


def remote_engine(*roots: str) -> tuple[Engine, FsMirror]:
    engine = Engine(list(roots), use_watchdog=False)
    mirror = next(iter(engine.mirrors.values()))
    mirror.poll_seconds = 3600  # the test drives the polls: no background poll in between
    assert isinstance(mirror, FsMirror)
    return engine, mirror


# -- S3 --------------------------------------------------------------------------------------
def test_s3_live_run_equals_local_read_with_incremental_requests(s3, tmp_path, cache):
    server, client = s3
    top = tmp_path / "written"
    done = Training(top / "done")  # a finished run, there before watchrun starts
    for _ in range(5):
        done.log()
    first_sizes = upload_all(client, done, top, "live")

    mark = len(server.hits)
    engine, mirror = remote_engine(f"s3://{BUCKET}/live")
    engine.load()
    first = server.reads_since(mark)
    object_bytes = sum(h.nbytes for h in first if h.is_object_read)
    assert sum(1 for h in first if h.is_listing) == 1
    assert object_bytes == sum(first_sizes.values())  # the first load reads each byte once

    live = Training(top / "live")
    sizes: dict[str, int] = {}
    for round_ in range(6):
        live.log()
        new_sizes = upload_all(client, live, top, "live")
        mark = len(server.hits)
        follow(engine)
        hits = server.reads_since(mark)
        assert sum(1 for h in hits if h.is_listing) == 1
        for key, size in new_sizes.items():
            reads = [h for h in hits if h.is_object_read and h.path == f"/{BUCKET}/{key}"]
            old = sizes.get(key)
            if old is None or key.endswith("trainer_state.json"):
                continue  # new: sniffed and read once; trainer_state.json: rewritten whole
            # grown (put again whole, or multipart): one ranged GET of the new bytes and the
            # overlap that proves they follow what was read
            assert len(reads) == 1, (round_, key, reads)
            assert reads[0].nbytes == size - old + min(old, WINDOW)
        sizes = new_sizes

    mark = len(server.hits)
    follow(engine)  # nothing changed: one listing, nothing else
    assert [h.is_listing for h in server.reads_since(mark)] == [True]

    local = Engine([str(top)], use_watchdog=False)
    local.load()
    mirrored = points(engine, strip=f"s3:{BUCKET}/live/")
    assert mirrored == points(local)
    assert mirrored["live"]["grad_norm"] == [(i, 2.0 + i) for i in range(1, 7)]
    assert [s for s, _ in mirrored["live"]["loss"]] == list(range(1, 7))
    assert all(run.remote == f"s3://{BUCKET}/live" for run in engine.store.runs.values())
    engine.close()


def test_s3_object_replaced_by_other_content_is_read_again(s3, tmp_path, cache):
    _, client = s3
    client.put_object(Bucket=BUCKET, Key="replaced/run/history.csv", Body=b"step,loss\n1,0.9\n")
    engine, mirror = remote_engine(f"s3://{BUCKET}/replaced")
    engine.load()
    # the object is replaced: same length and then more, but other bytes (another run's file)
    client.put_object(
        Bucket=BUCKET, Key="replaced/run/history.csv", Body=b"step,loss\n1,0.5\n2,0.4\n"
    )
    follow(engine)
    copy = Path(mirror.local("run/history.csv")).read_bytes()
    assert copy == b"step,loss\n1,0.5\n2,0.4\n"
    # and shrunk
    client.put_object(Bucket=BUCKET, Key="replaced/run/history.csv", Body=b"step,loss\n1,0.7\n")
    follow(engine)
    assert Path(mirror.local("run/history.csv")).read_bytes() == b"step,loss\n1,0.7\n"
    engine.close()


def test_s3_deleted_object_and_hostile_names(s3, tmp_path, cache):
    _, client = s3
    client.put_object(Bucket=BUCKET, Key="hostile/a/metrics.csv", Body=b"step,loss\n1,0.5\n")
    client.put_object(Bucket=BUCKET, Key="hostile/../../escape.csv", Body=b"step,loss\n1,0.5\n")
    engine, mirror = remote_engine(f"s3://{BUCKET}/hostile")
    engine.load()
    assert any(".." in o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert list(tmp_path.rglob("escape.csv")) == []  # never written outside the mirror
    assert list(points(engine)) == [f"s3:{BUCKET}/hostile/a"]
    client.delete_object(Bucket=BUCKET, Key="hostile/a/metrics.csv")
    follow(engine)
    engine.update_statuses()
    assert not os.path.exists(mirror.local("a/metrics.csv"))
    assert engine.store.runs[f"s3:{BUCKET}/hostile/a"].status.value == "gone"
    engine.close()


def test_s3_object_moved_is_renamed_in_the_mirror_not_read_again(s3, tmp_path, cache):
    server, client = s3
    rows = b"step,loss\n" + b"".join(b"%d,0.5\n" % i for i in range(1, 200))
    client.put_object(Bucket=BUCKET, Key="moved/a/train.csv", Body=rows)
    engine, mirror = remote_engine(f"s3://{BUCKET}/moved")
    engine.load()
    before = points(engine)
    client.copy_object(
        Bucket=BUCKET,
        Key="moved/b/train.csv",
        CopySource={"Bucket": BUCKET, "Key": "moved/a/train.csv"},
    )
    client.delete_object(Bucket=BUCKET, Key="moved/a/train.csv")
    mark = len(server.hits)
    follow(engine)
    assert [h.is_listing for h in server.reads_since(mark)] == [True]  # nothing read again
    assert not os.path.exists(mirror.local("a/train.csv"))
    assert Path(mirror.local("b/train.csv")).read_bytes() == rows
    engine.update_statuses()
    now = points(engine)
    assert now[f"s3:{BUCKET}/moved/b/train.csv"] == before[f"s3:{BUCKET}/moved/a/train.csv"]
    assert engine.store.runs[f"s3:{BUCKET}/moved/a/train.csv"].status.value == "gone"
    engine.close()


def test_s3_server_away_then_back_nothing_lost_local_root_unaffected(s3, tmp_path, cache):
    server, client = s3
    local_root = tmp_path / "here"
    (local_root / "run").mkdir(parents=True)
    (local_root / "run" / "metrics.csv").write_text("step,loss\n1,0.5\n")
    key = "away/run/metrics.csv"
    rows = "step,loss\n" + "".join(f"{i},{1 / i:.4f}\n" for i in range(1, 4))
    client.put_object(Bucket=BUCKET, Key=key, Body=rows.encode())
    engine, mirror = remote_engine(str(local_root), f"s3://{BUCKET}/away")
    engine.load()
    server.stop()
    try:
        follow(engine)
        follow(engine)
        assert mirror.interval > FAST_POLL  # retried with backoff
        assert "connection refused" in (mirror.problem() or "")
        assert any("connection refused" in p for p in engine.mirror_problems())
        assert "connection refused" in (engine.publish().notice or "")
        remote_run = engine.store.runs[f"s3:{BUCKET}/away/run"]
        with pytest.raises(OSError, match="cannot write s3://logs/away/run/.watchrun-stop: conn"):
            request_stop(remote_run)
        # the local root goes on
        with (local_root / "run" / "metrics.csv").open("a") as fh:
            fh.write("2,0.4\n")
        engine.poll()
        assert points(engine)["here/run"]["loss"] == [(1, 0.5), (2, 0.4)]
    finally:
        server.start()
    rows += "".join(f"{i},{1 / i:.4f}\n" for i in range(4, 7))
    client.put_object(Bucket=BUCKET, Key=key, Body=rows.encode())
    follow(engine)
    assert mirror.problem() is None
    remote = points(engine)[f"s3:{BUCKET}/away/run"]["loss"]
    assert remote == [(i, pytest.approx(round(1 / i, 4))) for i in range(1, 7)]
    engine.close()


def test_s3_server_that_never_answers_is_a_timeout(tmp_path, cache, monkeypatch):
    import socket

    import s3fs
    from fsspec.config import conf

    silent = socket.socket()  # accepts connections (the kernel does), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
    quick = {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}}
    monkeypatch.setitem(conf, "s3", {"config_kwargs": quick})  # FSSPEC_S3='{...}' does this
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    try:
        mirror = FsMirror("s3://b/p", str(cache / "silent"))
        mirror.poll_seconds = 3600
        mirror.start()
        assert "s3://b/p: timed out" in (mirror.problem() or "")
        mirror.close()
    finally:
        silent.close()


def test_s3_wrong_credentials_and_empty_bucket_are_said(s3, tmp_path, cache, capsys):
    from watchrun.cli import main

    server, client = s3
    empty = Engine(["s3://empty/prefix"], use_watchdog=False)
    empty.load()
    assert empty.mirror_problems() == ["s3://empty/prefix: no files there (yet)"]
    empty.close()
    missing = Engine(["s3://no-such-bucket/x"], use_watchdog=False)
    missing.load()
    assert "no such bucket" in missing.mirror_problems()[0]
    missing.close()
    server.require_credentials(True)
    try:
        engine = Engine(["s3://logs/live"], use_watchdog=False)
        engine.load()
        assert "access denied: check the credentials" in engine.mirror_problems()[0]
        engine.close()
        capsys.readouterr()
        assert main(["check", "s3://logs/live"]) == 2  # nothing could be read: not "no alerts"
        assert "s3://logs/live: access denied" in capsys.readouterr().err
    finally:
        server.require_credentials(False)


def test_s3_poll_interval_adapts_and_a_restart_reads_only_what_changed(s3, tmp_path, cache):
    server, client = s3
    key = "adapt/run/metrics.csv"
    client.put_object(Bucket=BUCKET, Key=key, Body=b"step,loss\n1,0.5\n")
    mirror = FsMirror(f"s3://{BUCKET}/adapt", str(cache / "adapt"))
    mirror.poll_seconds = 3600
    mirror.start()
    assert mirror.interval == FAST_POLL  # the first load brought files
    quiet = []
    for _ in range(12):
        mirror.poll_safely()
        quiet.append(mirror.interval)
    assert quiet == sorted(quiet) and quiet[0] > FAST_POLL and quiet[-1] == SLOW_POLL
    client.put_object(Bucket=BUCKET, Key=key, Body=b"step,loss\n1,0.5\n2,0.4\n")
    mirror.poll_safely()
    assert mirror.interval == FAST_POLL  # a file grew: fast again
    mirror.close()
    # watchrun started again over the same cache: the copies are kept, nothing is read again
    mark = len(server.hits)
    again = FsMirror(f"s3://{BUCKET}/adapt", str(cache / "adapt"))
    again.poll_seconds = 3600
    again.start()
    assert [h.is_listing for h in server.reads_since(mark)] == [True]
    copy = Path(again.local("run/metrics.csv")).read_bytes()
    assert copy == b"step,loss\n1,0.5\n2,0.4\n"
    again.close()


def test_s3_stop_writes_the_request_file_remotely_and_signals_nothing(s3, tmp_path, cache):
    _, client = s3
    top = tmp_path / "w"
    training = Training(top / "run")
    training.log()
    upload_all(client, training, top, "stop")
    engine, mirror = remote_engine(f"s3://{BUCKET}/stop")
    engine.load()
    run = engine.store.runs[f"s3:{BUCKET}/stop/run"]
    # the TensorBoard file name names this host and this (live) process: still not signalled
    assert writer_alive(run) is None
    # written moments ago, by a process that cannot be seen from here: not judged as ended
    assert run.key not in engine.runs_just_ended()
    target = find_process(run)
    assert target.process is None and target.to_signal is None
    assert f"s3://{BUCKET}/stop" in target.reason
    said = request_stop(run, "test")
    assert f"s3://{BUCKET}/stop/run/{STOP_FILE}" in said and "no process" in said
    body = client.get_object(Bucket=BUCKET, Key=f"stop/run/{STOP_FILE}")["Body"].read()
    assert json.loads(body)["by"] == "watchrun"
    assert not os.path.exists(os.path.join(run.root, STOP_FILE))  # not into the mirror
    marker = json.loads((Path(mirror.local_root) / MARKER).read_text())
    assert marker == {"url": f"s3://{BUCKET}/stop", "label": f"s3:{BUCKET}/stop", "kind": "s3"}
    engine.close()


def test_s3_cli_ls_mixes_urls_and_local_paths(s3, tmp_path, cache, capsys):
    from watchrun.cli import main

    _, client = s3
    local = tmp_path / "mine" / "run"
    local.mkdir(parents=True)
    (local / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.4\n")
    client.put_object(Bucket=BUCKET, Key="cli/version_0/metrics.csv", Body=b"step,loss\n1,0.5\n")
    paths = [str(tmp_path / "mine"), f"s3://{BUCKET}/cli", "s3://empty/p"]
    assert main(["ls", "--json", *paths]) == 0
    out, err = capsys.readouterr()
    rows = {json.loads(line)["run"]: json.loads(line) for line in out.splitlines()}
    assert set(rows) == {"mine/run", f"s3:{BUCKET}/cli/version_0"}
    assert rows[f"s3:{BUCKET}/cli/version_0"]["remote"] == f"s3://{BUCKET}/cli"
    assert rows["mine/run"]["remote"] is None
    assert "s3://empty/p: no files there (yet)" in err
    assert main(["export", "--format", "jsonl", f"s3://{BUCKET}/cli"]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["run"], p["metric"], p["step"], p["value"]) for p in exported] == [
        (f"s3:{BUCKET}/cli/version_0", "loss", 1, 0.5)
    ]


# -- SSH -------------------------------------------------------------------------------------
class SftpServer:
    """asyncssh's SFTP server on 127.0.0.1, in a thread of its own, with a throwaway key."""

    def __init__(self, tmp: Path) -> None:
        import asyncssh

        self.asyncssh = asyncssh
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = tmp / "id_test"
        self.client_key.write_bytes(key.export_private_key())
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.authorized = asyncssh.import_authorized_keys(key.export_public_key().decode())
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _listen(self) -> Any:
        return await self.asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=self.authorized,
            sftp_factory=True,
            allow_scp=False,
        )

    def options(self) -> dict[str, Any]:
        return {"client_keys": [str(self.client_key)], "known_hosts": None}

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _shutdown(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


@pytest.fixture
def sftp(tmp_path):
    pytest.importorskip("sshfs")
    server = SftpServer(tmp_path)
    yield server
    server.close()


def test_ssh_live_run_rotation_and_deleted_run(sftp, tmp_path, cache, monkeypatch):
    from fsspec.config import conf

    monkeypatch.setitem(conf, "ssh", sftp.options())  # as FSSPEC_SSH='{...}' would set it
    logs = tmp_path / "node"
    (logs / "a").mkdir(parents=True)
    (logs / "b").mkdir(parents=True)
    log_a = logs / "a" / "train.log"

    def say(fh: Any, step: int) -> None:
        fh.write(f"epoch {step} step {step} loss={1 / step:.4f} acc={step / 100:.2f}\n")

    with log_a.open("w") as fh:
        for i in range(1, 4):
            say(fh, i)
    (logs / "b" / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.4\n")
    engine, mirror = remote_engine(f"ssh://tester@127.0.0.1:{sftp.port}{logs}")
    engine.load()
    local = Engine([str(logs)], use_watchdog=False)  # watchrun on that host, for comparison
    local.load()
    assert mirror.problem() is None, mirror.problem()
    assert mirror.label == "127.0.0.1"

    def both() -> None:
        follow(engine)
        follow(local)

    # live: appended lines arrive as appended bytes, one read
    reads = mirror.counters.reads
    with log_a.open("a") as fh:
        for i in range(4, 6):
            say(fh, i)
    both()
    assert mirror.counters.reads == reads + 1
    # rotation: train.log -> train.log.1, a new train.log goes on: the rotated file is renamed
    # in the mirror too (not read again), the new one read once
    os.rename(log_a, logs / "a" / "train.log.1")
    with log_a.open("w") as fh:
        for i in range(6, 9):
            say(fh, i)
    reads = mirror.counters.reads
    both()
    assert mirror.counters.reads == reads + 1
    # a deleted run
    (logs / "b" / "metrics.csv").unlink()
    (logs / "b").rmdir()
    both()
    engine.update_statuses()
    local.update_statuses()
    mirrored = points(engine, strip="127.0.0.1/")
    assert mirrored == points(local)
    steps = [s for s, _ in mirrored["a/train.log"]["loss"]]
    assert steps == list(range(1, 9))  # none lost or doubled
    assert engine.store.runs["127.0.0.1/b"].status.value == "gone"
    engine.close()


def test_ssh_no_server_is_said(tmp_path, cache):
    pytest.importorskip("sshfs")
    from tests.integration.s3server import free_port

    mirror = FsMirror(f"ssh://t@127.0.0.1:{free_port()}/logs", str(cache / "m2"))
    mirror.poll_seconds = 3600
    mirror.start()
    assert "connection refused" in (mirror.problem() or "")
    assert os.listdir(mirror.local_root) == [MARKER]
    mirror.close()


# -- the command line ------------------------------------------------------------------------
def test_cli_says_which_extra_a_scheme_needs(tmp_path, capsys):
    from watchrun.cli import main

    try:
        import gcsfs  # noqa: F401

        pytest.skip("gcsfs is installed here: nothing is missing")
    except ImportError:
        pass
    assert main(["ls", "gs://bucket/logs"]) == 2
    assert "pip install 'watchrun[gcs]'" in capsys.readouterr().err


def test_check_follow_says_a_server_away_and_keeps_watching(tmp_path):
    import signal
    import subprocess
    import sys

    from tests.integration.s3server import free_port

    local = tmp_path / "here" / "run"
    local.mkdir(parents=True)
    (local / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.4\n")
    env = {**os.environ, **ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchrun", "check", "--follow", str(local.parent), "s3://b/p"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        seen = []
        for line in proc.stderr:  # type: ignore[union-attr]
            seen.append(line)
            if "s3://b/p: connection refused" in line:
                break
        assert any("connection refused" in line for line in seen), seen
        assert proc.poll() is None  # still watching the local root
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0

"""A run's status from its writer's life: real writer processes that exit normally, or live on
in silence. A run whose writer has exited is finished, never "stalled"; a stall is called only
while the writer lives, against an interval measured from several writes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

from watchrun.config import Config
from watchrun.detectors.runner import stale_limit
from watchrun.engine import Engine
from watchrun.model import RunStatus

CONFIG = Config(stale_seconds=1.0, settle_seconds=0.2)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

# watchrun's own integration: a run card with this pid, then one JSONL line per log()
RUNLOGGER = textwrap.dedent("""\
    import sys, time
    from watchrun.integrations import RunLogger
    log = RunLogger(sys.argv[1])
    for step in range(int(sys.argv[2])):
        flat = 2.3 + 0.05 * ((step * 7) % 5 - 2)  # no learning at all
        log.log(step, {"loss": flat if sys.argv[4:] == ["flat"] else 1.0 / (step + 1)})
        time.sleep(float(sys.argv[3]))
    print("done", flush=True)
    sys.stdin.readline()  # live on, silent, until told
""")


def _writer(run_dir, lines: int, every: float, *how: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUNLOGGER, str(run_dir), str(lines), str(every), *how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _engine_on_started_writer(
    tmp_path, lines: int, every: float, *how: str, config: Config = CONFIG
) -> tuple[Engine, subprocess.Popen]:
    """The writer has made its run card when the engine first reads, so the engine sees every
    log line arrive."""
    writer = _writer(tmp_path / "run", lines, every, *how)
    assert _until(lambda: (tmp_path / "run" / "watchrun-run.json").exists())
    engine = Engine([str(tmp_path)], config, poll_seconds=0.1, use_watchdog=False)
    engine.load()
    return engine, writer


@contextlib.contextmanager
def _following(engine: Engine):
    """The engine's follow loop in a thread; yields the alerts it raises."""
    stop, fired = threading.Event(), []
    loop = threading.Thread(target=engine.run_forever, args=(stop, fired.extend), daemon=True)
    loop.start()
    try:
        yield fired
    finally:
        stop.set()
        engine.wake.set()
        loop.join(timeout=10)


def _until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _quiet_past_limit(engine: Engine, key: str) -> bool:
    """Silent for longer than the stall limit, with the follow loop ticking meanwhile."""
    run = engine.store.runs[key]
    return _until(lambda: time.time() - run.last_write > stale_limit(run, CONFIG) + 1.0)


def test_a_run_whose_writer_exits_normally_is_finished_never_stalled(tmp_path):
    engine, writer = _engine_on_started_writer(tmp_path, 6, 0.3)
    with _following(engine) as fired:
        assert writer.stdout.readline() == "done\n"
        writer.stdin.close()
        assert writer.wait(timeout=10) == 0
        assert _until(
            lambda: (
                "run" in engine.store.runs and engine.store.runs["run"].status is RunStatus.FINISHED
            )
        )
        assert _quiet_past_limit(engine, "run")
        assert engine.store.runs["run"].status is RunStatus.FINISHED
    assert [a.message for a in fired if a.detector == "stalled"] == []


def test_a_run_that_finishes_while_followed_gets_its_end_of_run_checks(tmp_path):
    """The data had settled while the run was live; its writer's exit makes it finished, and the
    checks that need a whole run (a loss that never fell) run then, not minutes later."""
    patient = Config(stale_seconds=600.0, settle_seconds=0.2)
    engine, writer = _engine_on_started_writer(tmp_path, 25, 0.05, "flat", config=patient)
    with _following(engine) as fired:
        assert writer.stdout.readline() == "done\n"
        assert _until(lambda: engine.store.runs["run"].points() == 25 and engine._settled)
        assert engine.store.runs["run"].status is RunStatus.RUNNING
        assert "not_learning" not in {a.detector for a in fired}
        writer.stdin.close()
        assert writer.wait(timeout=10) == 0
        assert _until(lambda: "not_learning" in {a.detector for a in fired})
        assert engine.store.runs["run"].status is RunStatus.FINISHED


def test_a_silent_live_writer_is_stalled_against_its_measured_interval(tmp_path):
    engine, writer = _engine_on_started_writer(tmp_path, 5, 0.6)
    try:
        with _following(engine) as fired:
            assert writer.stdout.readline() == "done\n"
            assert _until(lambda: any(a.detector == "stalled" for a in fired))
            stalled = next(a for a in fired if a.detector == "stalled")
            assert engine.store.runs["run"].status is RunStatus.STALE
            assert stalled.evidence["pid"] == writer.pid and stalled.evidence["pid_alive"] is True
            assert stalled.evidence["typical_interval"] > 0
            # the process sampler saw the writer alive and idle (it waits on stdin): said so
            assert stalled.evidence.get("verdict") == "cpu_idle", stalled.evidence
            assert "likely" in stalled.message or "idle" in stalled.message
            assert (
                "usually every 0s" not in stalled.message
                and "usually every 0.0s" not in stalled.message
            )
            writer.stdin.close()  # now it ends normally: the run is finished
            assert writer.wait(timeout=10) == 0
            assert _until(lambda: engine.store.runs["run"].status is RunStatus.FINISHED)
    finally:
        writer.kill()


def test_no_stall_is_called_without_a_measured_interval(tmp_path):
    """A run that appears while watching and writes once has no usual interval yet."""
    engine = Engine([str(tmp_path)], CONFIG, poll_seconds=0.1, use_watchdog=False)
    engine.load()
    writer = _writer(tmp_path / "run", 1, 0.0)
    try:
        with _following(engine) as fired:
            assert writer.stdout.readline() == "done\n"
            assert _until(lambda: "run" in engine.store.runs and engine.store.runs["run"].series)
            assert _quiet_past_limit(engine, "run")
            assert _until(lambda: engine.store.runs["run"].status is RunStatus.STALE)
        assert [a.message for a in fired if a.detector == "stalled"] == []
    finally:
        writer.kill()


def test_ls_calls_a_tensorboard_run_finished_once_its_writer_has_exited(tmp_path):
    """The tensorboard package's writer names its pid in the file name; the files were written
    seconds ago, so by their age alone the run would still be 'running'."""
    script = textwrap.dedent("""\
        import sys, time
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        w = EventFileWriter(sys.argv[1])
        for s in range(20):
            v = summary_pb2.Summary.Value(tag="train/loss", simple_value=1.0 / (s + 1))
            summary = summary_pb2.Summary(value=[v])
            w.add_event(event_pb2.Event(wall_time=time.time(), step=s, summary=summary))
        w.close()
    """)
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "tb")], check=True, env=ENV, timeout=60
    )
    out = subprocess.run(
        [sys.executable, "-m", "watchrun", "ls", "--json", str(tmp_path)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["pid"] is not None and row["status"] == "finished", row


def test_writes_after_the_named_writer_exited_make_the_run_live_again(tmp_path):
    """Another process (naming no pid) goes on writing the run: not finished any more."""
    engine, writer = _engine_on_started_writer(tmp_path, 3, 0.2)
    with _following(engine):
        assert writer.stdout.readline() == "done\n"
        writer.stdin.close()
        assert writer.wait(timeout=10) == 0
        assert _until(lambda: engine.store.runs["run"].status is RunStatus.FINISHED)
        time.sleep(1.1)  # a later mtime than the writer's last write, whatever the clock's grain
        with open(tmp_path / "run" / "watchrun.jsonl", "a") as fh:
            fh.write(json.dumps({"step": 3, "loss": 0.2}) + "\n")
        # live again by the age of its files (running, or stale once quiet): no longer finished
        assert _until(
            lambda: engine.store.runs["run"].status in (RunStatus.RUNNING, RunStatus.STALE)
        )

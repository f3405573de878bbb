"""One detector that raises, or one follow tick that raises, is reported and the rest goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from watchrun.detectors import runner
from watchrun.detectors.base import Detector
from watchrun.engine import Engine


class Exploding(Detector):
    """Raises once it sees a point past step 3, on update or at the end of the run."""

    id = "exploding"

    def update(self, view):  # type: ignore[no-untyped-def]
        for sv in view.series.values():
            if len(sv.steps) and sv.steps[-1] > 3:
                raise ZeroDivisionError("division by zero")

    def finalize(self, view):  # type: ignore[no-untyped-def]
        raise ValueError("no end")


@pytest.fixture
def exploding(monkeypatch):
    """The failing detector first in the runner's registry, before nan_loss."""
    monkeypatch.setattr(runner, "ALL_DETECTORS", [Exploding, *runner.ALL_DETECTORS])


def _csv(path, rows: list[tuple[int, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        if fh.tell() == 0:
            fh.write("step,train_loss\n")
        fh.writelines(f"{s},{v}\n" for s, v in rows)


def test_a_raising_detector_is_reported_once_and_the_others_still_alert(tmp_path, exploding):
    _csv(tmp_path / "r" / "metrics.csv", [(s, 1 / (s + 1)) for s in range(8)])
    e = Engine([str(tmp_path)], use_watchdog=False)
    e.load()
    e.detect(final=False)
    failures = e.detectors.take_failures()
    assert failures == ["detector exploding failed on run r: ZeroDivisionError: division by zero"]
    _csv(tmp_path / "r" / "metrics.csv", [(8, float("nan")), (9, float("nan"))])
    e.poll()
    alerts = e.detect(final=True)
    assert [a.detector for a in alerts if a.severity.value == "critical"] == ["nan_loss"]
    assert e.detectors.take_failures() == []  # once per detector and run
    assert e.store.runs["r"].warnings == [failures[0]]


def test_each_run_gets_its_own_report(tmp_path, exploding):
    for name in ("a", "b"):
        _csv(tmp_path / name / "metrics.csv", [(s, 1 / (s + 1)) for s in range(8)])
    e = Engine([str(tmp_path)], use_watchdog=False)
    e.check()
    got = sorted(e.detectors.take_failures())
    assert got == [
        f"detector exploding failed on run {k}: ZeroDivisionError: division by zero" for k in "ab"
    ]


def test_a_raising_finalize_leaves_the_end_of_run_checks_of_the_others(tmp_path, monkeypatch):
    class EndOnly(Exploding):
        id = "end_only"

        def update(self, view):  # type: ignore[no-untyped-def]
            pass

    monkeypatch.setattr(runner, "ALL_DETECTORS", [EndOnly, *runner.ALL_DETECTORS])
    flat = [(s, 2.3 + 0.05 * ((s * 7) % 5 - 2)) for s in range(60)]  # no learning at all
    _csv(tmp_path / "r" / "metrics.csv", flat)
    e = Engine([str(tmp_path)], use_watchdog=False)
    alerts = e.check()
    assert "not_learning" in {a.detector for a in alerts}
    assert e.detectors.take_failures() == ["detector end_only failed on run r: ValueError: no end"]


def test_run_forever_survives_a_tick_that_raises(tmp_path):
    f = tmp_path / "r" / "metrics.csv"
    _csv(f, [(s, 1 / (s + 1)) for s in range(8)])
    e = Engine([str(tmp_path)], poll_seconds=0.05)
    e.load()
    e.detect(final=True)
    real_tick, calls = e.tick, []

    def tick_that_breaks_once():  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk went away for a moment")
        return real_tick()

    e.tick = tick_that_breaks_once  # type: ignore[method-assign]
    stop, errors, fired = threading.Event(), [], []

    def on_alerts(alerts):  # type: ignore[no-untyped-def]
        fired.extend(alerts)
        if any(a.detector == "nan_loss" for a in alerts):
            stop.set()

    loop = threading.Thread(
        target=e.run_forever, args=(stop, on_alerts, errors.append), daemon=True
    )
    loop.start()
    deadline = time.time() + 30
    while not errors and time.time() < deadline:
        time.sleep(0.02)
    _csv(f, [(8, float("nan")), (9, float("nan"))])
    loop.join(timeout=30)
    stop.set()
    assert errors == ["OSError while following: disk went away for a moment"]
    assert [a.step for a in fired if a.detector == "nan_loss"] == [8]


def test_check_follow_goes_on_after_a_detector_raises(tmp_path):
    """A real `check --follow` with a failing detector registered: the warning once on stderr,
    and the NaN written later still alerts (before, the exception ended the command)."""
    f = tmp_path / "r" / "metrics.csv"
    _csv(f, [(s, 1 / (s + 1)) for s in range(8)])
    script = textwrap.dedent("""\
        import sys
        from watchrun import detectors
        from watchrun.detectors.base import Detector
        class Exploding(Detector):
            id = "exploding"
            def update(self, view):
                raise RuntimeError("boom")
        detectors.ALL_DETECTORS.insert(0, Exploding)
        from watchrun.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            "check",
            "--follow",
            "--json",
            "--poll",
            "0.1",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        warning = proc.stderr.readline()
        assert warning == "watchrun: detector exploding failed on run r: RuntimeError: boom\n"
        _csv(f, [(8, float("nan")), (9, float("nan"))])
        alert = json.loads(proc.stdout.readline())
        assert alert["detector"] == "nan_loss" and alert["step"] == 8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 1
        rest = proc.stderr.read()
        assert "failed on run" not in rest  # once per detector and run
        # anything else said is a one-time notice (the GPU sampler's "no NVIDIA GPU found")
        assert all(line.startswith("watchrun: no NVIDIA GPU") for line in rest.splitlines())
    finally:
        if proc.poll() is None:
            proc.kill()

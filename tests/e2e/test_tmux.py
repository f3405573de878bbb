"""End to end in a real terminal: tmux runs watchrun on a directory a writer is filling."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from watchrun.demo import CsvWriter, ctc_blank

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def test_tmux_shows_runs_curve_and_banner(tmp_path):
    session = f"watchrun-e2e-{int(time.time() * 1000) % 100000}"
    run = tmp_path / "asr" / "lightning_logs" / "version_0" / "metrics.csv"
    writer = CsvWriter(
        str(run), ["train_loss", "val_loss", "val_wer", "val_cer", "val_blank_ratio"]
    )
    rows = list(
        ctc_blank(epochs=30)
    )  # the loss flattens: the all-blank phase has become a collapse
    for step, row in rows[:1]:
        writer.write(step, row)
    cmd = f"{sys.executable} -m watchrun.cli {tmp_path} --poll 0.2"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "36", cmd], check=True
    )
    try:
        deadline = time.time() + 20
        while time.time() < deadline and "asr/lightning_logs" not in capture(session):
            time.sleep(0.2)
        assert "asr/lightning_logs" in capture(session)
        for step, row in rows[1:]:  # the failure is written while watchrun watches
            writer.write(step, row)
            time.sleep(0.1)
        writer.close()
        deadline = time.time() + 20
        screen = ""
        while time.time() < deadline:
            screen = capture(session)
            if "blank tokens at" in screen and "stop training" in screen:
                break
            time.sleep(0.3)
        assert "blank tokens at" in screen and "stop training" in screen, screen
        assert "train_loss" in screen and "┤" in screen  # a curve with its axis
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


WRITER = """
import math, sys, time
from watchrun.demo import TensorBoardWriter, nan_divergence
writer = TensorBoardWriter(sys.argv[1])
for step, row in nan_divergence():
    writer.write(step, row)
    print(f"step {step} | loss {row['train/loss']:.4f}", flush=True)
    if math.isnan(row["train/loss"]):
        print(f"RuntimeError: loss is nan at step {step}", flush=True)
        writer.close()
        sys.exit(1)
    time.sleep(0.05)
"""


def test_tmux_nan_writer_shows_the_critical_banner_and_the_console_line(tmp_path):
    """A real process writes TensorBoard events and prints to its console log until its loss
    turns NaN; watchrun, started before, shows the critical banner, and `5` the console."""
    run = tmp_path / "lm"
    run.mkdir()
    script = tmp_path / "train.py"
    script.write_text(WRITER)
    session = f"watchrun-nan-{int(time.time() * 1000) % 100000}"
    with open(run / "train.log", "w") as log:
        writer = subprocess.Popen(
            [sys.executable, str(script), str(run)], stdout=log, stderr=subprocess.STDOUT
        )
    cmd = f"{sys.executable} -m watchrun.cli {tmp_path} --poll 0.2"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "36", cmd], check=True
    )
    try:
        assert writer.wait(timeout=60) == 1
        deadline = time.time() + 30
        screen = ""
        while time.time() < deadline:
            screen = capture(session)
            if "CRITICAL" in screen and "nan at step 79" in screen:
                break
            time.sleep(0.3)
        # the banner's message (its action line is cut at 120 columns once the run has ended)
        assert "CRITICAL" in screen and "train/loss is nan at step 79" in screen, screen
        assert "└" in screen and "┤" in screen  # the plot's axes
        subprocess.run(["tmux", "send-keys", "-t", session, "5"], check=True)
        deadline = time.time() + 10
        while time.time() < deadline and "RuntimeError: loss is nan" not in screen:
            time.sleep(0.3)
            screen = capture(session)
        assert "RuntimeError: loss is nan at step 79" in screen, screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        if writer.poll() is None:
            writer.kill()


def test_sighup_ends_the_app_within_two_seconds(tmp_path):
    import psutil

    from watchrun.demo import write_all

    write_all(str(tmp_path / "runs"))
    session = f"watchrun-hup-{int(time.time() * 1000) % 100000}"
    marker = tmp_path / "exit-code"
    cmd = f"{sys.executable} -m watchrun.cli {tmp_path / 'runs'}; echo $? > {marker}; sleep 30"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd], check=True
    )
    try:
        deadline = time.time() + 20
        proc = None
        while time.time() < deadline and proc is None:
            for p in psutil.process_iter(["cmdline"]):
                cmd = p.info["cmdline"] or []
                if cmd[1:3] == ["-m", "watchrun.cli"] and str(tmp_path) in " ".join(cmd):
                    proc = p  # the Python process itself, not the shell that tmux runs
            time.sleep(0.2)
        assert proc is not None
        time.sleep(2)  # let it draw
        t0 = time.time()
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=5)
        elapsed = time.time() - t0
        assert elapsed < 2.0, f"exit took {elapsed:.2f}s"
        deadline = time.time() + 10
        while time.time() < deadline and not (marker.exists() and marker.read_text().strip()):
            time.sleep(0.1)
        assert marker.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _privileges_can_be_dropped() -> bool:
    import os

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "true"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _privileges_can_be_dropped(), reason="needs root and setpriv to drop CAP_DAC_OVERRIDE"
)
def test_tmux_says_which_paths_cannot_be_read(tmp_path):
    """A folder of mode 0 beside a readable run: the run is shown, and the status line names
    the folder (as root, setpriv drops the capabilities that override file modes)."""
    import os

    from watchrun.demo import write_all

    write_all(str(tmp_path / "runs"))
    locked = tmp_path / "runs" / "locked"
    locked.mkdir()
    os.chmod(locked, 0)
    session = f"watchrun-eacces-{int(time.time() * 1000) % 100000}"
    cmd = (
        "setpriv --bounding-set=-dac_override,-dac_read_search "
        f"{sys.executable} -m watchrun.cli {tmp_path / 'runs'} --follow-symlinks"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "36", cmd], check=True
    )
    try:
        deadline = time.time() + 30
        screen = ""
        while time.time() < deadline:
            screen = capture(session)
            if "cannot be read" in screen and "lm-nan" in screen:
                break
            time.sleep(0.3)
        assert "1 path cannot be read: permission denied:" in screen, screen
        assert "lm-nan" in screen  # the readable runs are listed all the same
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        os.chmod(locked, 0o755)

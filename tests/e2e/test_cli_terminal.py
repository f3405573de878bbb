"""The command line against a hostile terminal side: names made of escape sequences, readers that
go away, signals during the first load, no terminal at all. Real `python -m watchrun` processes,
real pipes, real signals."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
WATCHRUN = [sys.executable, "-m", "watchrun"]
# OSC 52 (write "evil" to the clipboard), CSI 2J (clear the screen), a right-to-left override
HOSTILE = "run\x1b]52;c;ZXZpbA==\x07\x1b[2J\u202egnp.exe"


def _nan_run(folder, name: str = "r") -> None:
    """A run whose loss turns NaN: `check` names it in a critical alert."""
    d = os.path.join(os.fsencode(folder), os.fsencode(name))
    os.makedirs(d)
    rows = "".join(f"{s},{'nan' if s > 5 else 1 / (s + 1)}\n" for s in range(10))
    with open(os.path.join(d, b"metrics.csv"), "w") as fh:
        fh.write("step,train_loss\n" + rows)


def _watchrun(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*WATCHRUN, *args], capture_output=True, env=ENV, timeout=60, **kw)


# -- names ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["ls"], ["check"]])
def test_escape_sequences_in_a_run_name_never_reach_the_terminal(tmp_path, command):
    _nan_run(tmp_path, HOSTILE)
    got = _watchrun(*command, str(tmp_path))
    out = got.stdout + got.stderr
    assert b"Traceback" not in out
    assert b"\x1b" not in out and b"\x07" not in out and "\u202e".encode() not in out
    assert b"run\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\\u202egnp.exe" in got.stdout


def test_undecodable_bytes_in_a_name_are_shown_not_crashed_on(tmp_path):
    _nan_run(tmp_path, b"bad\xffname".decode("utf-8", "surrogateescape"))
    for command in ("ls", "check"):
        got = _watchrun(command, str(tmp_path))
        assert b"Traceback" not in got.stderr, got.stderr.decode()
        assert b"bad\\xffname" in got.stdout


def test_a_hostile_path_argument_is_escaped_in_the_error(tmp_path):
    got = _watchrun("ls", str(tmp_path / "gone\x1b[2J"))
    assert got.returncode == 2 and b"\x1b" not in got.stderr and b"gone\\x1b[2J" in got.stderr


# -- readers that go away -------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["ls", "--json"], ["check", "--json"], ["check"]])
def test_a_closed_reader_ends_the_command_quietly(tmp_path, command):
    """`watchrun ... | head -1` where head has already gone: every write meets EPIPE."""
    _nan_run(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [*WATCHRUN, *command, str(tmp_path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=ENV,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == b"", proc.stderr.decode()
    assert proc.returncode in (0, 141)


def test_ls_json_into_head_gives_one_line_and_no_traceback(tmp_path):
    """More output than a pipe holds, so the writer is still writing when head exits."""
    for i in range(40):
        d = tmp_path / f"run{i:02d}"
        d.mkdir()
        names = [f"a_rather_long_metric_name_{j:03d}" for j in range(100)]
        (d / "metrics.csv").write_text(
            "step," + ",".join(names) + "\n0," + ",".join("1" for _ in names) + "\n"
        )
    script = (
        f'{" ".join(WATCHRUN)} ls --json {tmp_path} | head -1; echo "rc=${{PIPESTATUS[0]}}" >&2'
    )
    got = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=ENV, timeout=60
    )
    assert len(got.stdout.splitlines()) == 1 and json.loads(got.stdout)["run"].startswith("run")
    assert "Traceback" not in got.stderr and "Error" not in got.stderr, got.stderr
    assert got.stderr.strip() in ("rc=0", "rc=141")


# -- signals during the first load ----------------------------------------------------------------
@pytest.fixture(scope="module")
def many_runs(tmp_path_factory):
    """Enough runs that the first read lasts seconds; each would raise a NaN alert."""
    root = tmp_path_factory.mktemp("many")
    for i in range(3000):
        _nan_run(root, f"run{i:04d}")
    return root


def _catches(pid: int, sig: int) -> bool:
    """The process has installed a handler for `sig` (SigCgt in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as fh:
        caught = next(int(line.split()[1], 16) for line in fh if line.startswith("SigCgt:"))
    return bool(caught & (1 << (sig - 1)))


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_check_follow_leaves_during_its_first_load_on_a_signal(many_runs, sig):
    proc = subprocess.Popen(
        [*WATCHRUN, "check", "--follow", "--json", "--poll", "0.5", str(many_runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        deadline = time.time() + 60
        while (
            proc.poll() is None and not _catches(proc.pid, signal.SIGHUP) and time.time() < deadline
        ):
            time.sleep(0.01)
        assert proc.poll() is None
        proc.send_signal(sig)  # SIGHUP's handler is set last, just before the first load starts
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"Traceback" not in err, err.decode()
    # the load was cut short: no run got as far as its NaN alert
    assert out == b"" and proc.returncode == 0


# -- no terminal ----------------------------------------------------------------------------------
@pytest.mark.parametrize("stdin", ["devnull", "closed"])
def test_the_ui_without_a_terminal_refuses_and_points_to_check_follow(tmp_path, stdin):
    _nan_run(tmp_path)
    got = subprocess.run(
        [*WATCHRUN, str(tmp_path)],
        stdin=subprocess.DEVNULL,
        preexec_fn=(lambda: os.close(0)) if stdin == "closed" else None,
        capture_output=True,
        env=ENV,
        timeout=30,
    )
    assert got.returncode == 2
    assert b"check --follow" in got.stderr and got.stdout == b""


def test_the_ui_on_a_dumb_terminal_refuses_and_points_to_check_follow(tmp_path):
    _nan_run(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*WATCHRUN, str(tmp_path)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**ENV, "TERM": "dumb"},
    )
    os.close(slave)
    try:
        code = proc.wait(timeout=30)
        text = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            text += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert code == 2
    assert b"TERM=dumb" in text and b"check --follow" in text and b"\x1b[" not in text

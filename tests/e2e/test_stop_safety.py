"""Stop safety with real processes: a pid named by a run file is signalled only when it is the
run's writer (or that writer's launcher), never because a file says so.

Every process here is started by the test (`sleep`, python writers using watchrun's own
RunLogger); the `-1` case also runs inside a PID namespace so that a bug could not reach
anything else on the machine."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from watchrun import control
from watchrun.config import Config
from watchrun.engine import Engine

pytestmark = pytest.mark.e2e

WRITER = """\
import signal, sys, time
from watchrun.integrations import RunLogger

run_dir, marker = sys.argv[1], sys.argv[2]

def bye(*_):
    open(marker, "w").write("sigint")
    sys.exit(0)

signal.signal(signal.SIGINT, bye)
if len(sys.argv) > 3 and sys.argv[3] == "--ignore-sigterm":  # a training that hangs on SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
log = RunLogger(run_dir, max_steps=100000)
for i in range(100000):
    log.log(i, {"loss": 1.0 / (i + 1)})
    time.sleep(0.05)
"""

LAUNCHER = """\
import signal, subprocess, sys

writer, run_dir, marker = sys.argv[1], sys.argv[2], sys.argv[3]
child = subprocess.Popen([sys.executable, writer, run_dir, marker + ".rank0"])

def forward(*_):  # as torchrun does: pass the signal on, exit when the rank has
    open(marker, "w").write("sigint")
    child.send_signal(signal.SIGINT)

signal.signal(signal.SIGINT, forward)
sys.exit(child.wait())
"""


@pytest.fixture
def procs():
    """Processes the test starts; all killed at the end."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def _default_sigint() -> None:
    # a shell without job control starts background jobs with SIGINT ignored, and an ignored
    # signal stays ignored across exec: the stand-in writer must react as a training would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sleeper(procs: list, *prefix: str) -> subprocess.Popen:
    p = subprocess.Popen([*prefix, "sleep", "300"], preexec_fn=_default_sigint)
    procs.append(p)
    return p


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def write_run(run_dir: Path, card: dict | None, age: float = 0.0) -> Path:
    """A run of a metrics file and a run card, their mtimes `age` seconds in the past."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = run_dir / "watchrun.jsonl"
    metrics.write_text(
        "".join(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\n" for i in range(20))
    )
    paths = [metrics]
    if card is not None:
        (run_dir / control.CARD_FILE).write_text(json.dumps(card))
        paths.append(run_dir / control.CARD_FILE)
    if age:
        then = time.time() - age
        for p in paths:
            os.utime(p, (then, then))
    return run_dir


def load(run_dir: Path):
    engine = Engine([str(run_dir)], Config(), use_watchdog=False)
    engine.load()
    keys = engine.store.keys()
    assert len(keys) == 1, keys
    return engine, engine.store.snapshot(keys[0])


def card_for(pid, **extra) -> dict:
    return {"pid": pid, "host": socket.gethostname(), "started": time.time(), **extra}


def start_writer(
    tmp_path: Path, procs: list, run_dir: Path, *args: str
) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "train_writer.py"
    script.write_text(WRITER)
    marker = tmp_path / "writer-got-sigint"
    child = subprocess.Popen([sys.executable, str(script), str(run_dir), str(marker), *args])
    procs.append(child)
    assert wait_until(
        lambda: (run_dir / control.CARD_FILE).exists() and (run_dir / "watchrun.jsonl").exists()
    )
    return child, marker


# -- pids that are not process ids ----------------------------------------------------------------
BAD_PIDS = {
    "abc": "not a process id",
    "minus-one": "not a process id",
    "zero": "not a process id",
    "one": "pid 1 is init",
    "float": "not a process id",
    "huge": "above the largest",
    "bool": "not a process id",
    "list": "not a process id",
    "negative-group": "not a process id",
}
BAD_VALUES = {
    "abc": "abc",
    "minus-one": -1,
    "zero": 0,
    "one": 1,
    "float": 1.5,
    "huge": 2**70,
    "bool": True,
    "list": [1234],
    "negative-group": -2,
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_pid_that_is_no_process_id_is_refused_with_its_reason(tmp_path, name):
    value = BAD_VALUES[name]
    run_dir = write_run(tmp_path / "run", card_for(value, launcher_pid=value, cmdline=["train.py"]))
    engine, run = load(run_dir)
    assert run.pid is None  # never stored as the run's pid
    target = control.find_process(run)
    assert target.process is None and target.to_signal is None
    assert "the run card" in target.reason and BAD_PIDS[name] in target.reason
    assert run.key not in control.runs_with_live_writer([run])
    assert any("run card: pid" in w for w in run.warnings)


def test_check_reports_runs_with_bad_pids_without_a_traceback(tmp_path):
    for name, value in BAD_VALUES.items():
        write_run(tmp_path / name, card_for(value, launcher_pid=value))
    out = subprocess.run(
        [sys.executable, "-m", "watchrun", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode in (0, 1), out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("who", ["itself", "parent"])
def test_watchrun_itself_and_its_parent_are_never_signalled(tmp_path, who):
    pid = os.getpid() if who == "itself" else os.getppid()
    cmdline = psutil.Process(pid).cmdline()  # even a card that copies the command line
    run_dir = write_run(tmp_path / "run", card_for(pid, cmdline=cmdline[1:] or cmdline))
    _, run = load(run_dir)
    target = control.find_process(run)
    assert target.process is None
    expected = {"itself": "watchrun itself", "parent": "watchrun's parent"}[who]
    assert f"pid {pid} is {expected}" in target.reason


def test_stop_takes_only_a_verified_process():
    with pytest.raises(TypeError):
        control.stop(os.getpid())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        control.VerifiedProcess(os.getpid(), 0.0, os.getuid(), "me", "x", "forged")


# -- forced pid reuse -----------------------------------------------------------------------------
def test_a_pid_that_started_after_the_run_was_written_is_a_reused_pid(tmp_path, procs):
    run_dir = tmp_path / "run"
    victim = sleeper(procs)
    # the run was written a minute ago by a process that has gone; its pid now names `sleep`
    card = card_for(victim.pid, started=time.time() - 70, cmdline=["sleep", "300"])
    write_run(run_dir, card, age=60)
    engine, run = load(run_dir)
    target = control.find_process(run)
    assert target.process is None
    assert f"pid {victim.pid}" in target.reason and "the pid was reused" in target.reason
    assert run.key not in control.runs_with_live_writer([run])
    assert run.key in engine.runs_just_ended()  # check judges the run finished
    assert victim.poll() is None


@pytest.mark.parametrize("cmdline", [["train.py", "--lr", "0.1"], None])
def test_a_process_without_the_runs_files_or_command_line_is_not_the_writer(
    tmp_path, procs, cmdline
):
    victim = sleeper(procs)  # started before the run: only the identity evidence can tell
    extra = {"cmdline": cmdline} if cmdline else {}
    run_dir = write_run(tmp_path / "run", card_for(victim.pid, **extra))
    engine, run = load(run_dir)
    target = control.find_process(run)
    assert target.process is None
    assert f"pid {victim.pid} holds none of the run's files open for writing" in target.reason
    if cmdline:  # a recorded command line that does not match: not live either
        assert "not the one recorded" in target.reason
        assert run.key not in control.runs_with_live_writer([run])
        assert run.key in engine.runs_just_ended()
    else:
        assert "no command line was recorded" in target.reason


def test_a_tensorboard_file_name_naming_a_reused_pid(tmp_path, procs):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    run_dir = tmp_path / "tb"
    writer = EventFileWriter(str(run_dir))  # the real writer, in this process
    writer.add_event(_scalar_event(1, 0.5))
    writer.close()
    victim = sleeper(procs)
    created = int(time.time()) - 60
    real = Path(writer.get_logdir()) / next(iter(os.listdir(run_dir)))
    renamed = run_dir / f"events.out.tfevents.{created}.{socket.gethostname()}.{victim.pid}.0"
    real.rename(renamed)
    os.utime(renamed, (created + 1, created + 1))
    engine, run = load(run_dir)
    assert run.pid == victim.pid
    target = control.find_process(run)
    assert target.process is None and "the pid was reused" in target.reason
    assert run.key not in control.runs_with_live_writer([run])
    assert run.key in engine.runs_just_ended()


def _scalar_event(step: int, value: float):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=value)])
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary)


def test_a_pid_reused_between_the_dialog_and_the_click_is_not_signalled(tmp_path, procs):
    run_dir = tmp_path / "run"
    child, _ = start_writer(tmp_path, procs, run_dir)
    _, run = load(run_dir)
    target = control.find_process(run)
    assert target.process is not None and target.process.pid == child.pid
    other = sleeper(procs)
    # what a reused pid looks like at the click: the pid names a process with another start time
    reused = dataclasses.replace(target.process, pid=other.pid)
    with pytest.raises(control.StaleTarget):
        control.stop(reused)
    assert other.poll() is None
    child.kill()
    child.wait()
    with pytest.raises(ProcessLookupError):
        control.stop(target.process)


# -- the real writer and its launcher -------------------------------------------------------------
def test_the_real_writer_is_verified_and_gets_sigint(tmp_path, procs):
    run_dir = tmp_path / "run"
    child, marker = start_writer(tmp_path, procs, run_dir)
    _, run = load(run_dir)
    assert run.key in control.runs_with_live_writer([run])
    target = control.find_process(run)
    assert target.process is not None, target.reason
    assert target.process.pid == child.pid and target.launcher is None
    assert "command line is the one the run card recorded" in target.process.evidence
    assert control.stop(target.to_signal, "graceful") == f"sent SIGINT to {child.pid}"
    assert child.wait(timeout=20) == 0
    assert marker.read_text() == "sigint"
    assert run.key not in control.runs_with_live_writer([run])


def test_a_launcher_that_is_not_an_ancestor_is_not_signalled(tmp_path, procs):
    run_dir = tmp_path / "run"
    stranger = sleeper(procs)
    child, _ = start_writer(tmp_path, procs, run_dir)
    card = json.loads((run_dir / control.CARD_FILE).read_text())
    card["launcher_pid"] = stranger.pid
    (run_dir / control.CARD_FILE).write_text(json.dumps(card))
    _, run = load(run_dir)
    target = control.find_process(run)
    assert target.process is not None and target.process.pid == child.pid
    assert target.launcher is None and target.to_signal is target.process
    assert any(f"{stranger.pid} is not an ancestor of the writer" in n for n in target.notes)
    control.stop(target.to_signal)
    assert child.wait(timeout=20) == 0
    assert stranger.poll() is None


def test_the_true_launcher_is_signalled_instead_of_the_rank(tmp_path, procs):
    run_dir = tmp_path / "run"
    (tmp_path / "train_writer.py").write_text(WRITER)
    launcher_script = (
        tmp_path / "torchrun_stub.py"
    )  # RunLogger records a parent named like a launcher
    launcher_script.write_text(LAUNCHER)
    marker = tmp_path / "launcher-got-sigint"
    launcher = subprocess.Popen(
        [
            sys.executable,
            str(launcher_script),
            str(tmp_path / "train_writer.py"),
            str(run_dir),
            str(marker),
        ]
    )
    procs.append(launcher)
    assert wait_until(
        lambda: (run_dir / control.CARD_FILE).exists() and (run_dir / "watchrun.jsonl").exists()
    )
    _, run = load(run_dir)
    assert run.meta["launcher_pid"] == launcher.pid
    target = control.find_process(run)
    assert target.process is not None and target.process.pid != launcher.pid
    assert target.launcher is not None and target.launcher.pid == launcher.pid
    assert control.stop(target.to_signal) == f"sent SIGINT to {launcher.pid}"
    assert launcher.wait(timeout=20) == 0
    assert marker.read_text() == "sigint"
    assert Path(str(marker) + ".rank0").read_text() == "sigint"  # forwarded to the rank


# -- other users' processes, as root --------------------------------------------------------------
def _nobody() -> tuple[int, int] | None:
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return user.pw_uid, user.pw_gid


@pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: only root can start another user's process here"
)
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
@pytest.mark.skipif(_nobody() is None, reason="no user 'nobody' on this machine")
def test_as_root_another_users_process_needs_allow_other_users(tmp_path, procs):
    uid, gid = _nobody()  # type: ignore[misc]
    other = sleeper(procs, "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups")
    assert wait_until(lambda: psutil.Process(other.pid).uids().real == uid)
    run_dir = write_run(tmp_path / "run", card_for(other.pid, cmdline=["sleep", "300"]))
    for path in run_dir.iterdir():  # the run is that user's: its files are theirs too
        os.chown(path, uid, gid)
    _, run = load(run_dir)
    refused = control.find_process(run)
    assert refused.process is None
    assert "belongs to user nobody" in refused.reason and "--allow-other-users" in refused.reason
    allowed = control.find_process(run, allow_other_users=True)
    assert allowed.process is not None and allowed.process.pid == other.pid
    assert allowed.process.user == "nobody"
    control.stop(allowed.to_signal)
    assert other.wait(timeout=20) == -signal.SIGINT


@pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: only root can start another user's process here"
)
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
@pytest.mark.skipif(_nobody() is None, reason="no user 'nobody' on this machine")
def test_a_card_written_by_another_user_does_not_make_root_signal_its_own_process(tmp_path, procs):
    uid, gid = _nobody()  # type: ignore[misc]
    mine = sleeper(procs)
    run_dir = write_run(tmp_path / "run", card_for(mine.pid, cmdline=["sleep", "300"]))
    os.chown(run_dir / control.CARD_FILE, uid, gid)
    _, run = load(run_dir)
    target = control.find_process(run, allow_other_users=True)
    assert target.process is None and "another user wrote it" in target.reason


# -- -1 inside a PID namespace --------------------------------------------------------------------
NAMESPACED = """\
import json, os, socket, subprocess, sys, time
from watchrun import control
from watchrun.config import Config
from watchrun.engine import Engine

root = sys.argv[1]
victims = [subprocess.Popen(["sleep", "300"]) for _ in range(3)]
report = {"me": os.getpid(), "cases": {}}
for value in (-1, -victims[0].pid, 0, 1):
    run_dir = os.path.join(root, f"run{value}")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "watchrun.jsonl"), "w") as fh:
        fh.write(json.dumps({"step": 1, "loss": 0.5}) + "\\n")
    with open(os.path.join(run_dir, control.CARD_FILE), "w") as fh:
        json.dump({"pid": value, "launcher_pid": value, "host": socket.gethostname(),
                   "started": time.time(), "cmdline": ["sleep", "300"]}, fh)
    engine = Engine([run_dir], Config(), use_watchdog=False)
    engine.load()
    run = engine.store.snapshot(engine.store.keys()[0])
    target = control.find_process(run)
    if target.to_signal is not None:  # a bug: what it would do, it does, here only
        control.stop(target.to_signal)
    live = control.runs_with_live_writer([run])
    report["cases"][str(value)] = {"refused": target.process is None, "reason": target.reason,
                                   "live": sorted(live)}
time.sleep(0.5)
report["victims_alive"] = [v.poll() is None for v in victims]
for v in victims:
    v.kill()
print(json.dumps(report))
"""


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--user", "--pid", "--fork", "--map-root-user", "--mount-proc", "true"],
        capture_output=True,
        text=True,
    )
    return (
        None
        if probe.returncode == 0
        else f"unshare cannot make a user+PID namespace here: {probe.stderr.strip()}"
    )


def test_minus_one_and_group_pids_are_refused_inside_a_pid_namespace(tmp_path):
    why = _unshare_works()
    if why:
        pytest.skip(why)
    script = tmp_path / "namespaced.py"
    script.write_text(NAMESPACED)
    (tmp_path / "runs").mkdir()
    out = subprocess.run(
        [
            "unshare",
            "--user",
            "--pid",
            "--fork",
            "--map-root-user",
            "--mount-proc",
            sys.executable,
            str(script),
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["me"] == 1  # really inside a fresh PID namespace
    assert len(report["cases"]) == 4
    for value, case in report["cases"].items():
        assert case["refused"], (value, case)
        assert "not a process id" in case["reason"] or "pid 1 is init" in case["reason"], case
        assert case["live"] == []
    assert report["victims_alive"] == [True, True, True]


# -- a process holding the run's files ------------------------------------------------------------
@pytest.mark.skipif(shutil.which("tail") is None, reason="tail is not installed")
def test_a_reader_of_the_runs_files_is_neither_the_writer_nor_keeps_it_live(tmp_path, procs):
    run_dir = write_run(tmp_path / "run", None)
    reader = subprocess.Popen(
        ["tail", "-f", str(run_dir / "watchrun.jsonl")], stdout=subprocess.DEVNULL
    )
    procs.append(reader)
    metrics = os.path.realpath(run_dir / "watchrun.jsonl")
    assert wait_until(lambda: metrics in {f.path for f in psutil.Process(reader.pid).open_files()})
    _, run = load(run_dir)
    target = control.find_process(run)
    assert target.process is None and "holds the run's files open for writing" in target.reason
    assert run.key not in control.runs_with_live_writer([run])
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; f = open({metrics!r}, 'a'); print('open', flush=True); time.sleep(300)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(writer)
    assert writer.stdout.readline().strip() == "open"
    target = control.find_process(run)
    assert target.process is not None and target.process.pid == writer.pid
    assert target.process.evidence == "it holds watchrun.jsonl open for writing"
    assert run.key in control.runs_with_live_writer([run])


def test_a_hard_stop_kills_the_verified_writer_that_ignores_sigterm(tmp_path, procs):
    run_dir = tmp_path / "run"
    child, _ = start_writer(tmp_path, procs, run_dir, "--ignore-sigterm")
    _, run = load(run_dir)
    target = control.find_process(run)
    assert target.process is not None and target.process.pid == child.pid
    assert "SIGKILL" in control.stop(target.to_signal, "kill", timeout=0.5)
    assert child.wait(timeout=30) == -signal.SIGKILL


# -- the recorded command line --------------------------------------------------------------------
ARGV_PRINTER = "import json, sys, time\nprint(json.dumps(sys.argv), flush=True)\ntime.sleep(300)\n"


@pytest.mark.parametrize("form", ["script", "module", "command"])
def test_the_recorded_argv_matches_the_real_command_line_of_each_way_to_start_python(
    tmp_path, procs, form
):
    """sys.argv as the run card records it, against psutil's command line of the same process,
    for `python train.py`, `python -m pkg.train` and `python -c CODE`."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "train.py").write_text(ARGV_PRINTER)
    start = {
        "script": [str(tmp_path / "pkg" / "train.py")],
        "module": ["-m", "pkg.train"],
        "command": ["-c", ARGV_PRINTER],
    }[form]
    child = subprocess.Popen(
        [sys.executable, *start, "--lr", "0.1"], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    procs.append(child)
    argv = json.loads(child.stdout.readline())
    actual = psutil.Process(child.pid).cmdline()
    assert control.cmdline_matches(argv, actual)
    assert not control.cmdline_matches(argv[:1] + ["--lr", "0.2"], actual)
    assert not control.cmdline_matches(argv, ["sleep", "300"])
    assert not control.cmdline_matches(["other.py", "--lr", "0.1"], actual)

"""Find the process that writes a run, and stop it: gracefully (SIGINT, so the library can save),
or hard (SIGTERM, then SIGKILL after a timeout). Only processes of this user on this host.

A stop request file (`.watchrun-stop` in the run directory) is also written on "save and stop":
a training-side callback that polls it can save a checkpoint and stop cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

import psutil

from watchrun.model import Run

STOP_FILE = ".watchrun-stop"


@dataclass
class ProcessInfo:
    pid: int
    cmdline: str
    user: str
    started: float
    launcher: int | None = None  # torchrun / deepspeed / accelerate parent to signal instead


@dataclass
class Target:
    process: ProcessInfo | None
    reason: str  # why none was found, or how it was found
    command: str  # what to run by hand instead
    library_note: str


def library_note(run: Run) -> str:
    formats = run.formats
    if formats & {"lightning-csv", "hparams-yaml"} or "lightning_logs" in run.root:
        return "Lightning stops gracefully on SIGINT (it finishes the step and runs teardown)."
    if "hf-trainer" in formats:
        return "HF Trainer stops on SIGINT without saving a checkpoint (use save-and-stop with the callback)."
    if "keras-csv" in formats:
        return "Keras raises KeyboardInterrupt on SIGINT; the last CSVLogger row is kept."
    return "SIGINT raises KeyboardInterrupt in a Python training loop."


def find_process(run: Run) -> Target:
    note = library_note(run)
    here = socket.gethostname().split(".")[0]
    if run.host and run.pid and run.host.split(".")[0] != here:
        return Target(None, f"the run is written by pid {run.pid} on host {run.host}, not {here}",
                      f"ssh {run.host} kill -INT {run.pid}", note)
    candidates = [run.pid] if run.pid else []
    info = None
    for pid in candidates:
        info = _verify(pid, run)
    if info is None:
        info = _by_open_files(run)
    if info is None:
        hint = f"kill -INT {run.pid}" if run.pid else f"pgrep -af python  # then kill -INT <pid> of {run.key}"
        why = (f"pid {run.pid} (from the file names) is not running as this user"
               if run.pid else "no process of this user has the run's files open")
        return Target(None, why, hint, note)
    launcher = run.meta.get("launcher_pid")
    if launcher and info.launcher is None:
        info.launcher = int(launcher)
    return Target(info, "found", f"kill -INT {info.launcher or info.pid}", note)


def _verify(pid: int, run: Run) -> ProcessInfo | None:
    try:
        p = psutil.Process(pid)
        if p.username() != psutil.Process().username():
            return None
        return _info(p)
    except (psutil.Error, OSError):
        return None


def _by_open_files(run: Run) -> ProcessInfo | None:
    files = set(run.files)
    me = psutil.Process().username()
    for p in psutil.process_iter(["pid", "username"]):
        if p.info["username"] != me or p.pid == os.getpid():
            continue
        try:
            if any(f.path in files for f in p.open_files()):
                return _info(p)
        except (psutil.Error, OSError):
            continue
    return None


def runs_with_live_writer(runs: list[Run]) -> set[str]:
    """Keys of the runs that a process on this host still writes: the pid the files name is
    alive (TensorBoard file names and watchrun's run card carry it; the tensorboard package's
    writer reopens the file at each flush, so an open file alone would miss it), or a process
    has one of the run's files open (Keras CSVLogger, tensorboardX). One pass over the
    processes for all runs. Used by batch `check` to tell a run that has just ended from one
    still in progress."""
    here = socket.gethostname().split(".")[0]
    live: set[str] = set()
    owners: dict[str, str] = {}
    for run in runs:
        same_host = not run.host or run.host.split(".")[0] == here
        if run.pid and same_host and psutil.pid_exists(run.pid) and run.pid != os.getpid():
            live.add(run.key)
            continue
        for f in run.files:
            owners[os.path.realpath(f)] = run.key
    if not owners:
        return live
    for p in psutil.process_iter(["pid"]):
        if p.pid == os.getpid():
            continue
        try:
            for f in p.open_files():
                key = owners.get(f.path)
                if key is not None:
                    live.add(key)
        except (psutil.Error, OSError):
            continue
    return live


def writer_alive(run: Run) -> bool | None:
    """Whether the process that the run's files name as their writer (run card, TensorBoard file
    name) still runs: None when no pid is known, it is on another host, or it is this process.
    A zombie, or a process started after the run's last write (the pid was reused), is not the
    writer. Cheap (one read of /proc/PID/stat): follow mode asks it for live runs at each tick."""
    pid = run.pid
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or pid == os.getpid():
        return None
    if run.host and run.host.split(".")[0] != socket.gethostname().split(".")[0]:
        return None
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            if p.status() == psutil.STATUS_ZOMBIE:
                return False
            return not (run.last_write and p.create_time() > run.last_write + 1.0)
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, OSError):
        return True  # it exists, another user's, say: it may well be writing


def _info(p: psutil.Process) -> ProcessInfo:
    launcher = None
    try:
        parent = p.parent()
        if parent is not None and any(x in " ".join(parent.cmdline()) for x in ("torchrun", "torch.distributed", "deepspeed", "accelerate")):
            launcher = parent.pid
    except (psutil.Error, OSError):
        pass
    return ProcessInfo(p.pid, " ".join(p.cmdline()) or p.name(), p.username(), p.create_time(), launcher)


def stop(pid: int, mode: str = "graceful", timeout: float = 10.0) -> str:
    """Send the stop; a hard stop escalates to SIGKILL in the background after `timeout`."""
    if mode == "graceful":
        os.kill(pid, signal.SIGINT)
        return f"sent SIGINT to {pid}"
    os.kill(pid, signal.SIGTERM)

    def escalate() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not psutil.pid_exists(pid):
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    threading.Thread(target=escalate, daemon=True).start()
    return f"sent SIGTERM to {pid} (SIGKILL in {timeout:g}s if it lingers)"


def request_stop(run: Run, reason: str = "") -> str:
    """Write the stop request that the training-side callback polls."""
    folder = run.root if os.path.isdir(run.root) else os.path.dirname(run.root)
    path = os.path.join(folder, STOP_FILE)
    with open(path, "w") as fh:
        json.dump({"requested_at": time.time(), "by": "watchrun", "reason": reason, "save": True}, fh)
    return path

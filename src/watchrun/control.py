"""Find the process that writes a run, verify it, and stop it: gracefully (SIGINT, so the
library can save), or hard (SIGTERM, then SIGKILL after a timeout).

Every pid watchrun reads comes from a file anyone who can write the run directory can write
(the run card, a TensorBoard file name), and a pid is reused once its process exits. So no pid
is signalled on a file's word. A claim becomes a `VerifiedProcess` (`_verify`) only when:

- it is a plain int in 2..4194304 (`model.pid_problem`): never 0, 1 or a negative value, which
  reach a process group, init or every process;
- the file that names it says this host, and the pid is neither watchrun nor one of its
  ancestors;
- the process belongs to this user (as root, another user's only with `--allow-other-users`),
  and so does the file that names it;
- it started before the run did: at most `START_SLACK` seconds after the start the file
  records (the run card's `started`, the creation time in a TensorBoard file name) and before
  that file's last write (a reused pid belongs to a process started later);
- it holds one of the run's files open for writing, or its command line is the one the run
  card recorded.

A process found holding the run's files open for writing (no pid recorded, or the recorded one
refused) is the writer by the kernel's word and passes the same user checks. A launcher pid is
used only when it is an ancestor of the verified writer. `stop()` accepts nothing but a
`VerifiedProcess` and signals through a pidfd after checking that the pid still has the start
time it was verified with, so a pid reused between the dialog and the click is never reached.
Nothing here sends a process-group signal.

A stop request file (`.watchrun-stop` in the run directory) is also written on "save and stop":
a training-side callback that polls it can save a checkpoint and stop cleanly. A run mirrored
from elsewhere (watchrun.remote) is never signalled: its stop request is written where it runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import select
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from watchrun.lazy import lazy
from watchrun.model import Run, pid_problem

if TYPE_CHECKING:
    import psutil
else:
    psutil = lazy("psutil")  # loaded when a process is first looked at

STOP_FILE = ".watchrun-stop"
CARD_FILE = "watchrun-run.json"
START_SLACK = 3.0  # psutil's start time rests on a boot time rounded to the second
LAUNCHERS = (
    "torchrun",
    "torch.distributed.run",
    "torch.distributed.launch",
    "deepspeed",
    "accelerate",
)
_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
_MADE_HERE = object()  # only this module's verifier makes a VerifiedProcess


@dataclass(frozen=True)
class Claim:
    """A pid that a file of the run names as its writer, with what that file records."""

    pid: object  # as written: untrusted
    origin: str  # "the run card", "the file name events.out.tfevents..."
    path: str  # the file that names it
    host: str | None = None
    started: float | None = None  # when the writer says the run started
    cmdline: list[str] | None = None  # the writer's sys.argv, when recorded


@dataclass(frozen=True)
class VerifiedProcess:
    """A process that passed every check; pid and start time together name it exactly."""

    pid: int
    started: float  # psutil create_time
    uid: int
    user: str
    cmdline: str
    evidence: str  # why it is the run's writer (or launcher)
    token: object = field(default=None, repr=False, compare=False)
    ignores_sigint: bool = False  # SIGINT set to SIG_IGN when verified: only a kill stops it

    def __post_init__(self) -> None:
        if self.token is not _MADE_HERE:
            raise TypeError("a VerifiedProcess is made only by watchrun.control's verifier")


@dataclass
class Target:
    process: VerifiedProcess | None  # None: nothing will be signalled, `reason` says why
    reason: str  # why none was verified, or how it was found
    command: str  # what to run by hand instead
    library_note: str
    launcher: VerifiedProcess | None = None  # torchrun / deepspeed / accelerate: signalled instead
    notes: list[str] = field(default_factory=list)  # claims refused on the way

    @property
    def to_signal(self) -> VerifiedProcess | None:
        return self.launcher or self.process


class StaleTarget(OSError):
    """The verified pid no longer names the verified process."""


def library_note(run: Run) -> str:
    formats = run.formats
    if formats & {"lightning-csv", "hparams-yaml"} or "lightning_logs" in run.root:
        return "Lightning stops gracefully on SIGINT (it finishes the step and runs teardown)."
    if "hf-trainer" in formats:
        return (
            "HF Trainer stops on SIGINT without saving a checkpoint "
            "(use save-and-stop with the callback)."
        )
    if "keras-csv" in formats:
        return "Keras raises KeyboardInterrupt on SIGINT; the last CSVLogger row is kept."
    return "SIGINT raises KeyboardInterrupt in a Python training loop."


# -- what the run's files claim -----------------------------------------------------------------
def claims(run: Run) -> list[Claim]:
    """The writer pids the run's files name: the run card's, then each TensorBoard file name's."""
    # here, not at the top: training processes import this module (STOP_FILE) and should not
    # load tensorboard's protobufs for it
    from watchrun.sources.tensorboard import parse_filename

    found: list[Claim] = []
    card = next((f for f in sorted(run.files) if os.path.basename(f) == CARD_FILE), None)
    if card is not None and "pid" in run.meta:
        meta = run.meta
        found.append(
            Claim(
                meta["pid"],
                "the run card",
                card,
                _text(meta.get("host")),
                _seconds(meta.get("started")),
                _argv(meta.get("cmdline")),
            )
        )
    for path in sorted(run.files):
        name = os.path.basename(path)
        if "tfevents" not in name:
            continue
        info = parse_filename(name)
        if "pid" in info:
            created = info.get("created")
            # the name holds whole seconds: the file was created before created + 1
            found.append(
                Claim(
                    info["pid"],
                    f"the file name {name}",
                    path,
                    info.get("host") or None,
                    None if created is None else created + 1.0,
                )
            )
    return found


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _seconds(value: object) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None  # type: ignore[arg-type]


def _argv(value: object) -> list[str] | None:
    if isinstance(value, list) and value and all(isinstance(x, str) for x in value):
        return value
    return None


# -- the checks -----------------------------------------------------------------------------------
def _short_host(host: str) -> str:
    return host.split(".")[0]


def _elsewhere(host: str | None) -> str | None:
    """The host a claim names when it is not this one."""
    if not host:
        return None
    here = _hostname()
    return None if _short_host(host) == _short_host(here) else host


def _watchrun_itself() -> dict[int, str]:
    """watchrun's pid and its ancestors: never signalled, whatever a file says."""
    me = psutil.Process()
    found = {me.pid: "watchrun itself"}
    with contextlib.suppress(psutil.Error, OSError):
        for i, parent in enumerate(me.parents()):
            found[parent.pid] = "watchrun's parent" if i == 0 else "an ancestor of watchrun"
    return found


def _owner_problem(p: psutil.Process, allow_other_users: bool) -> str | None:
    uid = p.uids().real
    mine = os.getuid()
    if uid == mine:
        return None
    user = _user(p)
    if mine == 0:
        if allow_other_users:
            return None
        return (
            f"it belongs to user {user}, not root "
            "(pass --allow-other-users to signal other users' processes as root)"
        )
    return f"it belongs to user {user}, not you"


def _user(p: psutil.Process) -> str:
    try:
        return p.username()
    except (psutil.Error, KeyError):  # a uid with no passwd entry
        return str(p.uids().real)


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _start_problem(claim: Claim, p: psutil.Process) -> str | None:
    """A writer started before the file naming it was last written to and no later than the
    start it records; a process that started after is another one with the same pid."""
    started = p.create_time()
    try:
        written = os.stat(claim.path).st_mtime
    except OSError:
        return f"{claim.origin} can no longer be read"
    if started > written + START_SLACK:
        return (
            f"it started at {_clock(started)}, after {claim.origin} was written "
            f"({_clock(written)}): the pid was reused"
        )
    if claim.started is not None and started > claim.started + START_SLACK:
        return (
            f"it started at {_clock(started)}, after the run's recorded start "
            f"({_clock(claim.started)}): the pid was reused"
        )
    return None


def _file_owner_problem(claim: Claim, p: psutil.Process) -> str | None:
    try:
        owner = os.stat(claim.path).st_uid
    except OSError:
        return f"{claim.origin} can no longer be read"
    if owner != p.uids().real:
        return (
            f"{claim.origin} belongs to uid {owner}, the process to uid {p.uids().real}: "
            "another user wrote it"
        )
    return None


def _written_files(p: psutil.Process) -> set[str]:
    """The paths `p` holds open for writing (a reader such as `tail -f` is not a writer)."""
    try:
        return {f.path for f in p.open_files() if getattr(f, "mode", "w") != "r"}
    except (psutil.Error, OSError):
        return set()


def _open_for_writing(p: psutil.Process, files: set[str]) -> str | None:
    """One of `files` (real paths) that `p` holds open for writing."""
    return min(_written_files(p) & files, default=None)


def cmdline_matches(recorded: list[str], actual: list[str]) -> bool:
    """Whether a process's command line is the interpreter running the recorded `sys.argv`:
    the arguments end it, and argv[0] is the script, `-c`, or the file `-m MODULE` ran."""
    rest = recorded[1:]
    cut = len(actual) - len(rest)
    if cut < 1 or actual[cut:] != rest:
        return False
    head, argv0 = actual[:cut], recorded[0]
    if head[-1] == argv0 or (argv0 == "-c" and "-c" in head):
        return True
    if len(head) >= 2 and head[-2] == "-m":
        module = head[-1].replace(".", "/")
        return any(
            argv0 == s or argv0.endswith("/" + s) for s in (module + ".py", module + "/__main__.py")
        )
    return False


def _evidence(claim: Claim, p: psutil.Process, files: set[str]) -> str | None:
    held = _open_for_writing(p, files)
    if held:
        return f"it holds {os.path.basename(held)} open for writing"
    if claim.cmdline is not None and cmdline_matches(claim.cmdline, p.cmdline()):
        return f"its command line is the one {claim.origin} recorded"
    return None


def _made(p: psutil.Process, evidence: str) -> VerifiedProcess:
    return VerifiedProcess(
        p.pid,
        p.create_time(),
        p.uids().real,
        _user(p),
        " ".join(p.cmdline()) or p.name(),
        evidence,
        _MADE_HERE,
        ignores_sigint=ignores_signal(p.pid, signal.SIGINT),
    )


def ignores_signal(pid: int, sig: int) -> bool:
    """Whether the process has `sig` set to SIG_IGN (Linux: the SigIgn mask in
    /proc/<pid>/status). A command started with `&` by a non-interactive shell ignores SIGINT
    (POSIX), so a graceful stop would do nothing; False where this cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _real_files(run: Run) -> set[str]:
    return {os.path.realpath(f) for f in run.files}


def _verify(
    claim: Claim, run: Run, allow_other_users: bool, protected: dict[int, str]
) -> VerifiedProcess | str:
    """The process the claim names, verified; or why it will not be signalled."""
    why = pid_problem(claim.pid)
    if why:
        return f"pid {why}"
    pid: int = claim.pid  # type: ignore[assignment]
    if pid in protected:
        return f"pid {pid} is {protected[pid]}"
    try:
        p = psutil.Process(pid)
        why = (
            _owner_problem(p, allow_other_users)
            or _file_owner_problem(claim, p)
            or _start_problem(claim, p)
        )
        if why:
            return f"pid {pid}: {why}"
        evidence = _evidence(claim, p, _real_files(run))
        if evidence is None:
            command = (
                "its command line is not the one recorded"
                if claim.cmdline
                else "no command line was recorded to compare"
            )
            return f"pid {pid} holds none of the run's files open for writing and {command}"
        return _made(p, f"named by {claim.origin}; {evidence}")
    except psutil.NoSuchProcess:
        return f"pid {pid} is not running"
    except (psutil.Error, OSError) as exc:
        return f"pid {pid} cannot be examined ({type(exc).__name__})"


def _by_open_files(
    run: Run, allow_other_users: bool, protected: dict[int, str]
) -> VerifiedProcess | None:
    """The process that holds one of the run's files open for writing."""
    files = _real_files(run)
    mine = os.getuid()
    for p in psutil.process_iter(["pid", "uids"]):
        uids = p.info.get("uids")
        if p.pid in protected or uids is None:
            continue
        if uids.real != mine and not (mine == 0 and allow_other_users):
            continue
        held = _open_for_writing(p, files)
        if held:
            with contextlib.suppress(psutil.Error, OSError):
                return _made(p, f"it holds {os.path.basename(held)} open for writing")
    return None


def _launcher(
    run: Run, writer: VerifiedProcess, allow_other_users: bool, protected: dict[int, str]
) -> tuple[VerifiedProcess | None, str | None]:
    """The distributed launcher to signal instead of one rank: the run card's `launcher_pid`, or
    a parent whose command line is a launcher's; used only when it is an ancestor of the
    writer. (launcher, why the card's launcher_pid was refused)."""
    try:
        ancestors = psutil.Process(writer.pid).parents()
    except (psutil.Error, OSError):
        return None, None
    raw = run.meta.get("launcher_pid")
    if raw is not None:
        why = pid_problem(raw)
        if why is None and raw in protected:
            why = f"{raw} is {protected[raw]}"
        elif why is None and raw not in {a.pid for a in ancestors}:
            why = f"{raw} is not an ancestor of the writer (pid {writer.pid})"
        if why is None:
            parent = next(a for a in ancestors if a.pid == raw)
            why = _owner_problem(parent, allow_other_users)
            if why is None:
                return _made(
                    parent, f"the run card's launcher, an ancestor of pid {writer.pid}"
                ), None
        return None, f"launcher pid from the run card not used: {why}"
    parent = ancestors[0] if ancestors else None
    if parent is None or parent.pid in protected or _owner_problem(parent, allow_other_users):
        return None, None
    with contextlib.suppress(psutil.Error, OSError):
        if any(x in " ".join(parent.cmdline()) for x in LAUNCHERS):
            return _made(parent, f"the parent of pid {writer.pid}, a distributed launcher"), None
    return None, None


def find_process(run: Run, allow_other_users: bool = False) -> Target:
    """The verified process to stop for `run`, or why there is none and what to do instead."""
    note = library_note(run)
    mirrored = remote_of(run)
    if mirrored is not None:  # written elsewhere: a pid in its files names no process here
        return Target(
            None,
            f"the run is read from {mirrored['url']}: no process here is signalled; "
            "'Save & stop' writes the stop request file there",
            f"stop it where it runs ({mirrored['label']})",
            note,
        )
    reasons: list[str] = []
    protected = _watchrun_itself()
    writer: VerifiedProcess | None = None
    remote: Target | None = None
    for claim in claims(run):
        host = _elsewhere(claim.host)
        if host and not _HOSTNAME.match(host):
            reasons.append(f"{claim.origin} names a host that is not a host name")
        elif host:
            pid = "<pid>" if pid_problem(claim.pid) else claim.pid
            remote = remote or Target(
                None,
                f"the run is written by pid {pid} on host {host}, not {_hostname()}",
                f"ssh {host} kill -INT {pid}",
                note,
            )
        else:
            outcome = _verify(claim, run, allow_other_users, protected)
            if isinstance(outcome, VerifiedProcess):
                writer = outcome
                break
            reasons.append(f"{claim.origin}: {outcome}")
    if writer is None:
        writer = _by_open_files(run, allow_other_users, protected)
    if writer is None and remote is not None:
        return remote
    if writer is None:
        reasons.append("no process of yours holds the run's files open for writing")
        return Target(
            None, "; ".join(reasons), f"pgrep -af python  # then kill -INT <pid> of {run.key}", note
        )
    launcher, refused = _launcher(run, writer, allow_other_users, protected)
    notes = reasons + ([refused] if refused else [])
    return Target(
        writer, writer.evidence, f"kill -INT {(launcher or writer).pid}", note, launcher, notes
    )


# -- liveness for batch check ---------------------------------------------------------------------
def _claim_alive(claim: Claim, files: set[str]) -> bool:
    """The claimed pid is the run's writer by start time and file owner (and by command line
    or open files when a command line was recorded). No open file is required otherwise: the
    tensorboard package's writer reopens its file at each flush."""
    if pid_problem(claim.pid) is not None or _elsewhere(claim.host) or claim.pid == os.getpid():
        return False
    try:
        p = psutil.Process(claim.pid)  # type: ignore[arg-type]
        if _file_owner_problem(claim, p) or _start_problem(claim, p):
            return False
        return claim.cmdline is None or _evidence(claim, p, files) is not None
    except (psutil.Error, OSError):
        return False


def runs_with_live_writer(runs: list[Run]) -> set[str]:
    """Keys of the runs that a process on this host still writes: a pid the run's files name
    (TensorBoard file names, watchrun's run card) that is still the same process, or a process
    that holds one of the run's files open for writing (Keras CSVLogger, tensorboardX). One pass
    over the processes for all runs. Used by batch `check` to tell a run that has just ended
    from one still in progress; a reused pid does not keep a finished run live."""
    live: set[str] = set()
    owners: dict[str, str] = {}
    for run in runs:
        if run.remote:  # written elsewhere: no process here is its writer
            continue
        files = _real_files(run)
        if any(_claim_alive(c, files) for c in claims(run)):
            live.add(run.key)
            continue
        for f in files:
            owners[f] = run.key
    if not owners:
        return live
    for p in psutil.process_iter(["pid"]):
        if p.pid != os.getpid():
            live.update(owners[f] for f in _written_files(p) & owners.keys())
    return live


def writer_alive(run: Run) -> bool | None:
    """Whether a process the run's files name as their writer (run card, TensorBoard file name)
    still runs as that writer (verified as for batch `check`: start time, file owner, command
    line; not a zombie): None when no pid names a process here (none recorded, another host,
    watchrun itself). Follow mode asks it at each tick for runs not yet seen ended."""
    if run.remote:
        return None
    here = [
        c
        for c in claims(run)
        if pid_problem(c.pid) is None and not _elsewhere(c.host) and c.pid != os.getpid()
    ]
    if not here:
        return None
    files = _real_files(run)
    return any(_claim_alive(c, files) and not _zombie(c.pid) for c in here)


def _zombie(pid: object) -> bool:
    """Exited, not yet reaped by its parent: the writer has ended."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # type: ignore[arg-type]
    except (psutil.Error, OSError):
        return False


# -- acting -------------------------------------------------------------------------------------
def _pidfd(target: VerifiedProcess) -> int | None:
    """A pidfd pinned to the pid, checked to be the verified process (None where the kernel has
    no pidfds). A pid reused after the pidfd was opened makes a later send fail, never land."""
    fd = None
    with contextlib.suppress(AttributeError, OSError):
        fd = os.pidfd_open(target.pid)
    try:
        p = psutil.Process(target.pid)
        same = p.create_time() == target.started and p.uids().real == target.uid
    except psutil.NoSuchProcess:
        same = None
    except psutil.Error:
        same = False
    if same:
        return fd
    if fd is not None:
        os.close(fd)
    if same is None:
        raise ProcessLookupError(f"pid {target.pid} has exited")
    raise StaleTarget(
        f"pid {target.pid} is no longer the process verified "
        f"(started {_clock(target.started)}): not signalled"
    )


def _send(fd: int | None, pid: int, sig: int) -> None:
    if fd is None:
        os.kill(pid, sig)
    else:
        signal.pidfd_send_signal(fd, sig)


def stop(target: VerifiedProcess, mode: str = "graceful", timeout: float = 10.0) -> str:
    """Signal a verified process, checking first that its pid still names it; a hard stop
    escalates to SIGKILL in the background after `timeout` if that same process lingers."""
    if not isinstance(target, VerifiedProcess):
        raise TypeError("stop() takes a VerifiedProcess from find_process(), not a pid")
    fd = _pidfd(target)
    if mode == "graceful":
        try:
            _send(fd, target.pid, signal.SIGINT)
        finally:
            if fd is not None:
                os.close(fd)
        return f"sent SIGINT to {target.pid}"
    try:
        _send(fd, target.pid, signal.SIGTERM)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    threading.Thread(target=_escalate, args=(target, fd, timeout), daemon=True).start()
    return f"sent SIGTERM to {target.pid} (SIGKILL in {timeout:g}s if it lingers)"


def _escalate(target: VerifiedProcess, fd: int | None, timeout: float) -> None:
    """SIGKILL the same process if it has not exited after `timeout`."""
    try:
        if fd is not None:
            poller = select.poll()
            poller.register(fd, select.POLLIN)  # a pidfd turns readable when its process exits
            if not poller.poll(timeout * 1000):
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            return
        with contextlib.suppress(psutil.Error, OSError):
            p = psutil.Process(target.pid)
            if p.create_time() == target.started:
                with contextlib.suppress(psutil.TimeoutExpired):
                    p.wait(timeout)
                    return
                if p.create_time() == target.started:
                    p.kill()
    finally:
        if fd is not None:
            os.close(fd)


def stop_request_body(reason: str) -> bytes:
    """What the stop request file holds (the training-side callback only checks it exists)."""
    doc = {"requested_at": time.time(), "by": "watchrun", "reason": reason, "save": True}
    return json.dumps(doc).encode()


def request_stop(run: Run, reason: str = "") -> str:
    """Write the stop request that the training-side callback polls. For a run mirrored from
    elsewhere it is written there, through the remote filesystem (never into the mirror)."""
    remote = remote_of(run)
    if remote is not None:
        from watchrun.remote import OPEN

        mirror = OPEN.get(remote["root"])
        if mirror is None:
            raise OSError(f"{run.key} is remote ({remote['url']}) and its mirror is not open")
        return mirror.request_stop(run.root)
    folder = run.root if os.path.isdir(run.root) else os.path.dirname(run.root)
    path = os.path.join(folder, STOP_FILE)
    with open(path, "wb") as fh:
        fh.write(stop_request_body(reason))
    return path


def remote_of(run: Run) -> dict[str, str] | None:
    """The mirror marker of a run read from elsewhere (object storage, another host, an MLflow
    server), or None for a local run: the engine marks it (`run.remote`); the marker file
    above the run's root is asked too, so that no mark forgotten can get a process signalled."""
    from watchrun.remote import mirror_root

    return mirror_root(run.root)


def _hostname() -> str:
    import socket  # loaded when a run names a host

    return socket.gethostname()

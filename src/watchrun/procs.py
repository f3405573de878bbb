"""The processes of a run: its verified writer, the launcher above it and the workers below it,
each with its CPU %, RSS, threads and age, sampled with psutil at most once per `min_interval`.

Which process writes a run is `watchrun.control`'s decision (a pid a file names is never taken
on its word): `find_process` verifies a writer and, for torchrun / accelerate / deepspeed, its
launcher. The tree shown is the launcher's (every rank) or else the writer's (its DataLoader
workers). A verified writer is kept while its pid still has the start time it was verified
with; a run without one is asked again at most every `find_every` seconds, because verifying
walks every process's open files.

The shape handed to the UI and to the GPU sampler is `RunProcesses` (one per run) holding
`ProcRow`s in tree order (parents before children, `depth` for indentation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from watchrun.control import VerifiedProcess, find_process, runs_with_live_writer
from watchrun.lazy import lazy
from watchrun.model import Run

if TYPE_CHECKING:
    import psutil
else:
    psutil = lazy("psutil")  # loaded when a process is first looked at

MIB = 1024 * 1024


@dataclass(frozen=True)
class ProcRow:
    """One process of a run's tree, as sampled."""

    pid: int
    ppid: int
    role: str  # "launcher", "writer", "rank" (another child of the launcher), "worker"
    name: str
    cmdline: str
    cpu: float  # % of one core since the previous sample (0.0 at the first)
    cpu_time: float  # user + system seconds since it started
    rss: int  # bytes
    threads: int
    started: float  # epoch seconds (psutil create_time)
    depth: int  # 0 for the tree's root

    def age(self, now: float | None = None) -> float:
        return max(0.0, (now or time.time()) - self.started)


@dataclass(frozen=True)
class RunProcesses:
    """A run's process tree at one sample."""

    run: str
    writer: int
    root: int  # the launcher's pid, or the writer's
    evidence: str  # why the writer is the run's (from control)
    rows: tuple[ProcRow, ...]
    at: float

    @property
    def pids(self) -> frozenset[int]:
        return frozenset(r.pid for r in self.rows)

    @property
    def rss(self) -> int:
        return sum(r.rss for r in self.rows)

    @property
    def cpu(self) -> float:
        return sum(r.cpu for r in self.rows)

    def writer_row(self) -> ProcRow | None:
        return next((r for r in self.rows if r.pid == self.writer), None)

    def series(self) -> dict[str, float]:
        """The values recorded as the run's `proc/...` series (MiB, % of one core, counts)."""
        out = {
            "proc/rss": self.rss / MIB,
            "proc/cpu": self.cpu,
            "proc/threads": float(sum(r.threads for r in self.rows)),
            "proc/count": float(len(self.rows)),
        }
        writer = self.writer_row()
        if writer is not None:
            out["proc/writer_rss"] = writer.rss / MIB
        return out

    def summary(self, now: float | None = None) -> str:
        """One line as a report reads it: "PID 25260, started 00:53:01 (2h05m ago), CPU time
        1186 s, CPU 97%, memory 1456 MB, 12 threads" (CPU and memory of the whole tree)."""
        w = self.writer_row()
        if w is None:
            return f"pid {self.writer}: gone"
        started = time.strftime("%H:%M:%S", time.localtime(w.started))
        more = f", {len(self.rows) - 1} more process(es)" if len(self.rows) > 1 else ""
        cpu_time = sum(r.cpu_time for r in self.rows)
        return (
            f"PID {w.pid}, started {started} ({_duration(w.age(now))} ago), CPU time "
            f"{cpu_time:.0f} s, CPU {self.cpu:.0f}%, memory {self.rss / MIB:.0f} MB, "
            f"{w.threads} threads{more}"
        )

    def to_json(self) -> dict[str, object]:
        """For `watchrun ls --json`: the writer and the tree's totals."""
        w = self.writer_row()
        return {
            "pid": self.writer,
            "started": None if w is None else w.started,
            "processes": len(self.rows),
            "rss_mb": round(self.rss / MIB, 1),
            "cpu_time_s": round(sum(r.cpu_time for r in self.rows), 1),
            "threads": sum(r.threads for r in self.rows),
        }


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@dataclass
class _Tracked:
    writer: VerifiedProcess
    launcher: VerifiedProcess | None


class ProcessView:
    """Keeps each run's verified writer and samples its tree; one instance per sampler, used
    from one thread (psutil's CPU % is measured between two calls on the same object)."""

    def __init__(
        self,
        allow_other_users: bool = False,
        find_every: float = 30.0,
        min_interval: float = 1.0,
    ) -> None:
        self.allow_other_users = allow_other_users
        self.find_every = find_every
        self.min_interval = min_interval
        self.tracked: dict[str, _Tracked] = {}
        self.exited: dict[str, float] = {}  # run -> when its tracked writer was found gone
        self._next_find: dict[str, float] = {}
        self._procs: dict[tuple[int, float], psutil.Process] = {}
        self._last: dict[str, RunProcesses] = {}
        self._last_at = float("-inf")

    def sample(self, runs: list[Run], looking: set[str] | None = None) -> dict[str, RunProcesses]:
        """The process trees of `runs` that have a verified writer. Writers are looked for only
        among `looking` (runs being written now; default: all of `runs`); a tracked writer is
        followed whatever its run's status, until it exits. Called sooner than `min_interval`
        after the last sample, returns the last sample."""
        mono = time.monotonic()
        if mono - self._last_at < self.min_interval:
            return dict(self._last)
        self._last_at = mono
        now = time.time()
        looking = {r.key for r in runs} if looking is None else looking
        self._find_writers([r for r in runs if r.key in looking], mono)
        out: dict[str, RunProcesses] = {}
        seen: set[tuple[int, float]] = set()
        for run in runs:
            tracked = self.tracked.get(run.key)
            if tracked is None:
                continue
            rows = self._tree(tracked, seen)
            if rows is None:
                del self.tracked[run.key]
                self.exited[run.key] = now
                continue
            out[run.key] = RunProcesses(
                run.key,
                tracked.writer.pid,
                (tracked.launcher or tracked.writer).pid,
                tracked.writer.evidence,
                rows,
                now,
            )
        self._procs = {k: p for k, p in self._procs.items() if k in seen}
        self._last = out
        return dict(out)

    def _find_writers(self, runs: list[Run], mono: float) -> None:
        """Verify a writer for the runs that have none yet, each at most every `find_every`
        seconds. One pass over the processes (`runs_with_live_writer`) first tells which runs
        something writes; only those get the full verification."""
        due = [
            r for r in runs if r.key not in self.tracked and self._next_find.get(r.key, 0.0) <= mono
        ]
        if not due:
            return
        for run in due:
            self._next_find[run.key] = mono + self.find_every
        live = runs_with_live_writer(due)
        for run in due:
            if run.key not in live:
                continue
            target = find_process(run, self.allow_other_users)
            if target.process is not None:
                self.tracked[run.key] = _Tracked(target.process, target.launcher)
                self.exited.pop(run.key, None)

    def _tree(self, tracked: _Tracked, seen: set[tuple[int, float]]) -> tuple[ProcRow, ...] | None:
        """The rows of the tree, root first; None when the writer has exited (or its pid now
        names another process)."""
        writer = self._process(tracked.writer.pid, tracked.writer.started)
        if writer is None:
            return None
        root = writer
        if tracked.launcher is not None:
            root = self._process(tracked.launcher.pid, tracked.launcher.started) or writer
        try:
            members = [root] + root.children(recursive=True)
        except (psutil.Error, OSError):
            members = [root]
        writer_family = {tracked.writer.pid}
        rows: list[ProcRow] = []
        depth: dict[int, int] = {}
        for p in members:
            row = self._row(p, root.pid, tracked, writer_family, depth, seen)
            if row is not None:
                rows.append(row)
        return tuple(rows)

    def _process(self, pid: int, started: float) -> psutil.Process | None:
        key = (pid, started)
        p = self._procs.get(key)
        if p is None:
            try:
                p = psutil.Process(pid)
            except (psutil.Error, OSError):
                return None
        try:
            if p.create_time() != started or not p.is_running():
                return None
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.Error, OSError):
            return None
        self._procs[key] = p
        return p

    def _row(
        self,
        p: psutil.Process,
        root: int,
        tracked: _Tracked,
        writer_family: set[int],
        depth: dict[int, int],
        seen: set[tuple[int, float]],
    ) -> ProcRow | None:
        try:
            started = p.create_time()
            key = (p.pid, started)
            p = self._procs.setdefault(key, p)  # the object that measured its CPU last time
            with p.oneshot():
                ppid = p.ppid()
                row = ProcRow(
                    pid=p.pid,
                    ppid=ppid,
                    role=_role(p.pid, ppid, root, tracked, writer_family),
                    name=p.name(),
                    cmdline=" ".join(p.cmdline()) or p.name(),
                    cpu=p.cpu_percent(None),
                    cpu_time=_cpu_seconds(p),
                    rss=p.memory_info().rss,
                    threads=p.num_threads(),
                    started=started,
                    depth=0 if p.pid == root else depth.get(ppid, 0) + 1,
                )
        except (psutil.Error, OSError):
            return None  # exited between listing and reading, or not ours to read
        seen.add(key)
        depth[p.pid] = row.depth
        if ppid in writer_family:
            writer_family.add(p.pid)
        return row


def _cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def _role(pid: int, ppid: int, root: int, tracked: _Tracked, writer_family: set[int]) -> str:
    if pid == tracked.writer.pid:
        return "writer"
    if tracked.launcher is not None and pid == root:
        return "launcher"
    if ppid in writer_family:
        return "worker"
    return "rank" if tracked.launcher is not None and ppid == root else "worker"

"""Plain data: runs, their metric series, alerts.

A Series is columnar (numpy arrays that grow geometrically): 20 bytes a point, int64 step, float64
value, float32 wall-clock offset from the series' first point. A bounded series (`Series.bound`)
keeps its last RECENT points and the first HEAD points of its segment at full resolution and
reduces the history between them to min/max buckets, so its size does not grow with the run.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from watchrun.config import Config

_GROWTH = 1.25
_MIN_CAPACITY = 16
_SERIES_IDS = itertools.count(1)  # Series.uid: tells a series from the one it replaced

RECENT = 4096  # the last points of a bounded series, kept at full resolution
HEAD = 256  # the first points of the current segment, kept (detectors judge how a run started)
HISTORY = 1024  # about as many points stand for the history between them (min/max buckets)


def is_sampled(name: str) -> bool:
    """A series the sampler writes (`gpu/util`, `gpu0/mem_used`, `proc/rss`), not a log's."""
    if name.startswith("proc/"):
        return True
    head = name.split("/", 1)[0]
    return "/" in name and head.startswith("gpu") and (head == "gpu" or head[3:].isdigit())


class RunStatus(str, Enum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STALE = "stale"
    STOPPED = "stopped"
    GONE = "gone"
    UNKNOWN = "unknown"


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


class Series:
    """Append-only columnar history of one metric, in arrival order.

    `segments` holds the index where each segment starts: a new segment begins whenever the step
    goes backwards (a resumed run, a Keras CSVLogger appending a second fit()).
    """

    __slots__ = (
        "name",
        "_steps",
        "_values",
        "_walls",
        "n",
        "wall0",
        "segments",
        "last_step",
        "dropped",
        "uid",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.uid = next(_SERIES_IDS)
        self._steps = np.empty(_MIN_CAPACITY, dtype=np.int64)
        self._values = np.empty(_MIN_CAPACITY, dtype=np.float64)
        self._walls = np.empty(_MIN_CAPACITY, dtype=np.float32)
        self.n = 0
        self.wall0 = math.nan
        self.segments: list[int] = [0]
        self.last_step: int | None = None
        self.dropped = 0  # points removed by `bound` so far: index + dropped is stable over time

    def __len__(self) -> int:
        return self.n

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        cap = len(self._steps)
        if need <= cap:
            return
        new_cap = max(need, int(cap * _GROWTH) + 1)
        for attr in ("_steps", "_values", "_walls"):
            old = getattr(self, attr)
            new = np.empty(new_cap, dtype=old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, attr, new)

    def extend(
        self,
        steps: Sequence[int] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        walls: Sequence[float] | np.ndarray,
    ) -> list[int]:
        """Append points (a few as lists, more as arrays); return the indices (relative to the
        series) where a new segment starts."""
        k = len(steps)
        if k == 0:
            return []
        if k <= 4:  # live tailing: a few points; numpy's per-call costs would dominate
            start = self.n
            return [
                start + i
                for i in range(k)
                if self._append_one(int(steps[i]), float(values[i]), float(walls[i]))
            ]
        steps = np.asarray(steps, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        walls = np.asarray(walls, dtype=np.float64)
        if math.isnan(self.wall0):
            first = float(walls[0])
            if not math.isfinite(first):  # the first finite one (rare: a NaN wall time)
                finite = walls[np.isfinite(walls)]
                first = float(finite[0]) if len(finite) else 0.0
            self.wall0 = first
        self._reserve(k)
        start = self.n
        self._steps[start : start + k] = steps
        self._values[start : start + k] = values
        self._walls[start : start + k] = walls - self.wall0  # cast to float32 on assignment
        # a step lower than the previous one starts a new segment
        new_segments = [start + 1 + int(i) for i in np.flatnonzero(steps[1:] < steps[:-1])]
        if self.last_step is not None and int(steps[0]) < self.last_step:
            new_segments.insert(0, start)
        self.segments.extend(new_segments)
        self.n += k
        self.last_step = int(steps[-1])
        return new_segments

    def _append_one(self, step: int, value: float, wall: float) -> bool:
        """Append one point; True when it starts a new segment."""
        if math.isnan(self.wall0):
            self.wall0 = wall if math.isfinite(wall) else 0.0
        self._reserve(1)
        n = self.n
        self._steps[n] = step
        self._values[n] = value
        self._walls[n] = wall - self.wall0
        restart = self.last_step is not None and step < self.last_step
        if restart:
            self.segments.append(n)
        self.n = n + 1
        self.last_step = step
        return restart

    def append(self, step: int, value: float, wall: float) -> list[int]:
        return self.extend(np.array([step]), np.array([value]), np.array([wall]))

    @property
    def steps(self) -> np.ndarray:
        return self._steps[: self.n]

    @property
    def values(self) -> np.ndarray:
        return self._values[: self.n]

    @property
    def walls(self) -> np.ndarray:
        """Absolute wall-clock seconds (float64)."""
        return self._walls[: self.n].astype(np.float64) + self.wall0

    def walls_between(self, start: int, stop: int) -> np.ndarray:
        """Absolute wall-clock seconds of points start..stop-1 (float64), without converting
        the whole series."""
        return self._walls[start:stop].astype(np.float64) + self.wall0

    def wall_offsets(self, start: int, stop: int) -> np.ndarray:
        """Points start..stop-1's wall-clock seconds after `wall0`, as kept (float32): a view."""
        return self._walls[start:stop]

    def wall_span(self) -> tuple[float, float]:
        """The earliest and latest absolute wall-clock time of the points (NaN if any is),
        without converting every point: adding wall0 keeps their order."""
        w = self._walls[: self.n]
        return float(np.float64(w.min()) + self.wall0), float(np.float64(w.max()) + self.wall0)

    def compact(self) -> None:
        """Release growth slack (after a bulk load)."""
        for attr in ("_steps", "_values", "_walls"):
            arr = getattr(self, attr)
            if len(arr) > self.n:
                setattr(self, attr, arr[: max(self.n, 1)].copy())

    def bound(self, upto: int | None = None) -> int:
        """Reduce the history of the current segment to min/max buckets; return how many points
        went. Only points older than the last RECENT, past the segment's first HEAD and before
        index `upto` (what the detectors have already seen) are reduced; each bucket keeps its
        lowest and highest finite point and its first and last NaN, +inf and -inf, so a plot of
        the history shows every extreme and every non-finite value where it was. Runs once that
        stretch is 3 x HISTORY long, reducing it to about HISTORY points: amortised O(1) a point.

        What is kept goes into new arrays: a point once written is never changed in place (only
        appended after), so a snapshot may share the arrays' points instead of copying them."""
        lo = self.segments[-1] + HEAD
        hi = self.n - RECENT if upto is None else min(self.n - RECENT, upto)
        if hi - lo < 3 * HISTORY:
            return 0
        keep = lo + representatives(self._values[lo:hi], HISTORY // 2)
        k, tail = len(keep), self.n - hi
        gone = hi - lo - k
        n = self.n - gone
        capacity = len(self._steps)
        if capacity > 2 * n + _MIN_CAPACITY:  # a bulk load grew the arrays: shrink
            capacity = int(n * _GROWTH) + _MIN_CAPACITY
        for attr in ("_steps", "_values", "_walls"):
            old = getattr(self, attr)
            new = np.empty(capacity, dtype=old.dtype)
            new[:lo] = old[:lo]
            new[lo : lo + k] = old[keep]
            new[lo + k : n] = old[hi : hi + tail]
            setattr(self, attr, new)
        self.n = n
        self.dropped += gone
        return gone

    def plot_slice(
        self, width: int, lo_step: int | None = None, hi_step: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of the current segment between two steps, reduced to about 2 x width
        points (min/max per bucket, non-finite values kept): copies, sized for a plot."""
        start = self.segments[-1]
        steps = self._steps[start : self.n]
        a = 0 if lo_step is None else int(np.searchsorted(steps, lo_step, side="left"))
        b = len(steps) if hi_step is None else int(np.searchsorted(steps, hi_step, side="right"))
        steps, values = steps[a:b], self._values[start + a : start + b]
        if len(steps) > 2 * width:
            keep = representatives(values, width)
            steps, values = steps[keep], values[keep]
        return steps.copy(), values.copy()

    def nbytes(self) -> int:
        return self._steps.nbytes + self._values.nbytes + self._walls.nbytes

    def copy(self) -> Series:
        other = Series(self.name)
        other._steps = self.steps.copy()
        other._values = self.values.copy()
        other._walls = self._walls[: self.n].copy()
        other.n = self.n
        other.wall0 = self.wall0
        other.segments = list(self.segments)
        other.last_step = self.last_step
        other.dropped = self.dropped
        return other


def representatives(values: np.ndarray, buckets: int) -> np.ndarray:
    """Sorted indices of the points that stand for `values` cut into `buckets` equal runs: in
    each, the lowest and the highest finite value; and every NaN, +inf and -inf, unless there
    are more than 2 x buckets of them (a series gone NaN for good): then each bucket's first and
    last of each kind."""
    n = len(values)
    size = -(-n // buckets)
    rows = -(-n // size)
    padded = np.full(rows * size, np.nan)
    padded[:n] = values
    grid = padded.reshape(rows, size)
    base = np.arange(rows) * size
    finite = np.isfinite(grid)
    finite_rows = finite.any(axis=1)
    picks = [
        (base + np.where(finite, grid, np.inf).argmin(axis=1))[finite_rows],
        (base + np.where(finite, grid, -np.inf).argmax(axis=1))[finite_rows],
    ]
    odd = np.flatnonzero(~np.isfinite(values))
    if len(odd) <= 2 * buckets:
        picks.append(odd)
    else:
        nan = np.isnan(grid)
        nan.reshape(-1)[n:] = False  # the padding is no NaN of the series
        for mask in (nan, grid == np.inf, grid == -np.inf):
            has = mask.any(axis=1)
            picks.append((base + mask.argmax(axis=1))[has])
            picks.append((base + size - 1 - mask[:, ::-1].argmax(axis=1))[has])
    return np.unique(np.concatenate(picks))


@dataclass
class TextSample:
    step: int
    tag: str
    text: str
    wall: float = 0.0


@dataclass
class Alert:
    run: str
    detector: str
    severity: Severity
    step: int
    metrics: list[str]
    message: str
    evidence: dict[str, Any]
    action: str
    wall: float = field(default_factory=time.time)
    open: bool = True
    # the step at which its detector ended the episode (None: open, or not said): from there on
    # the alert no longer speaks for its metrics (RunView.claims_at), in one pass as across reads
    until: int | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "detector": self.detector,
            "severity": self.severity.value,
            "step": self.step,
            "metrics": list(self.metrics),
            "message": self.message,
            "evidence": _jsonable(self.evidence),
            "action": self.action,
        }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return round(f, 6)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


PID_LIMIT = 4_194_304  # no Linux kernel hands out a larger pid (PID_MAX_LIMIT on 64-bit)


def pid_problem(value: object) -> str | None:
    """Why `value` cannot name a process to watch or signal, or None when it can.

    A pid comes from files anyone who can write the run directory can write (the run card, a
    TensorBoard file name), so only a plain int in 2..PID_LIMIT passes: kill(0), kill(-1) and
    kill(-N) reach a process group or every process, and pid 1 is init. The bound is the one
    every host shares, so a pid from another host's file is kept for display."""
    if isinstance(value, bool) or not isinstance(value, int):
        text = repr(value)
        return f"{text[:40] + '...' if len(text) > 40 else text} is not a process id (an integer)"
    if value <= 1:
        return (
            f"{value} is not a process id that may be signalled (pid 1 is init; 0 and negative "
            "values reach a process group or every process)"
        )
    if value > PID_LIMIT:
        return f"{value} is above the largest process id ({PID_LIMIT})"
    return None


ENDED = {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.STALE, RunStatus.GONE}


@dataclass
class Run:
    """Everything known about one training job."""

    key: str  # path relative to the watched root (or root-name for a single-root watch)
    root: str  # absolute path of the run directory (or file)
    formats: set[str] = field(default_factory=set)
    series: dict[str, Series] = field(default_factory=dict)
    origins: dict[str, list[tuple[int, str]]] = field(
        default_factory=dict
    )  # per series: (first index, stream)
    texts: list[TextSample] = field(default_factory=list)
    hparams: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # best checkpoint, max_steps, eval_steps...
    summary: dict[str, float] = field(default_factory=dict)  # final results (all_results.json...)
    events: list[tuple[int | None, str]] = field(
        default_factory=list
    )  # (step or None: the end, message)
    warnings: list[str] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    file_formats: dict[str, str] = field(
        default_factory=dict
    )  # path -> format id: what makes up the run
    joined: list[str] = field(
        default_factory=list
    )  # why runs found apart were made this one (merge.py)
    duplicate_of: dict[str, str] = field(
        default_factory=dict
    )  # a metric two writers log: dropped -> kept
    step_unit: str = "step"
    display_name: str = ""
    status: RunStatus = RunStatus.UNKNOWN
    explicit_status: RunStatus | None = None  # from an end marker the files carry
    pid: int | None = None  # always passed pid_problem()
    host: str | None = None
    remote: str | None = None  # the URL it is mirrored from (watchrun.remote): never signalled
    last_write: float = 0.0  # mtime of the newest file
    write_intervals: list[float] = field(default_factory=list)
    active_this_session: bool = False
    gone: bool = False
    stopped: bool = False
    version: int = 0
    updates: int = 0  # changes other than points (hparams, meta, status...: Store.update)

    def points(self) -> int:
        """Points the run's own logs gave, those a bounded series has folded into buckets too
        (process and GPU samples are not counted)."""
        return sum(len(s) + s.dropped for n, s in self.series.items() if not is_sampled(n))

    def last_step(self) -> int | None:
        steps = [s.last_step for s in self.series.values() if s.last_step is not None]
        return max(steps) if steps else None

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            if len(self.warnings) > 50:
                del self.warnings[0]


def typical_interval(run: Run) -> float:
    """The median gap between the run's writes seen while watching (0 when none yet)."""
    iv = sorted(run.write_intervals)
    return iv[len(iv) // 2] if iv else 0.0


def stale_limit(run: Run, config: Config) -> float:
    """Silence after which a run counts as stale: the configured limit, or ten usual gaps."""
    return max(config.stale_seconds, 10 * typical_interval(run))

"""Plain data: runs, their metric series, alerts.

A Series is columnar (numpy arrays that grow geometrically) so that a run of a million points costs
20 bytes a point: int64 step, float64 value, float32 wall-clock offset from the series' first point.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

_GROWTH = 1.25
_MIN_CAPACITY = 16


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

    `segments` holds the index where each segment starts: a new segment begins whenever the step goes
    backwards (a resumed run, a Keras CSVLogger appending a second fit()).
    """

    __slots__ = ("name", "_steps", "_values", "_walls", "n", "wall0", "segments", "last_step")

    def __init__(self, name: str) -> None:
        self.name = name
        self._steps = np.empty(_MIN_CAPACITY, dtype=np.int64)
        self._values = np.empty(_MIN_CAPACITY, dtype=np.float64)
        self._walls = np.empty(_MIN_CAPACITY, dtype=np.float32)
        self.n = 0
        self.wall0 = math.nan
        self.segments: list[int] = [0]
        self.last_step: int | None = None

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

    def extend(self, steps: np.ndarray, values: np.ndarray, walls: np.ndarray) -> list[int]:
        """Append points; return the indices (relative to the series) where a new segment starts."""
        k = len(steps)
        if k == 0:
            return []
        if k <= 4:  # live tailing: a few points; numpy's per-call costs would dominate
            start = self.n
            return [start + i for i in range(k) if self._append_one(int(steps[i]), float(values[i]), float(walls[i]))]
        steps = np.asarray(steps, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        walls = np.asarray(walls, dtype=np.float64)
        if math.isnan(self.wall0):
            finite = walls[np.isfinite(walls)]
            self.wall0 = float(finite[0]) if len(finite) else 0.0
        self._reserve(k)
        start = self.n
        self._steps[start : start + k] = steps
        self._values[start : start + k] = values
        self._walls[start : start + k] = (walls - self.wall0).astype(np.float32)
        # a step lower than the previous one starts a new segment
        prev = np.empty(k, dtype=np.int64)
        prev[0] = self.last_step if self.last_step is not None else np.iinfo(np.int64).min
        prev[1:] = steps[:-1]
        new_segments = [start + int(i) for i in np.flatnonzero(steps < prev)]
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

    def compact(self) -> None:
        """Release growth slack (after a bulk load)."""
        for attr in ("_steps", "_values", "_walls"):
            arr = getattr(self, attr)
            if len(arr) > self.n:
                setattr(self, attr, arr[: max(self.n, 1)].copy())

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
        return other



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


@dataclass
class Run:
    """Everything known about one training job."""

    key: str  # path relative to the watched root (or root-name for a single-root watch)
    root: str  # absolute path of the run directory (or file)
    formats: set[str] = field(default_factory=set)
    series: dict[str, Series] = field(default_factory=dict)
    texts: list[TextSample] = field(default_factory=list)
    hparams: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # best checkpoint, max_steps, eval_steps...
    summary: dict[str, float] = field(default_factory=dict)  # final results (all_results.json...)
    events: list[tuple[int, str]] = field(default_factory=list)  # (step, message): early stop...
    warnings: list[str] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    file_formats: dict[str, str] = field(default_factory=dict)  # path -> format id: what makes up the run
    joined: list[str] = field(default_factory=list)  # why runs found apart were made this one (merge.py)
    duplicate_of: dict[str, str] = field(default_factory=dict)  # a metric two writers log: dropped -> kept
    step_unit: str = "step"
    display_name: str = ""
    status: RunStatus = RunStatus.UNKNOWN
    explicit_status: RunStatus | None = None  # from an end marker the files carry
    pid: int | None = None
    host: str | None = None
    last_write: float = 0.0  # mtime of the newest file
    write_intervals: list[float] = field(default_factory=list)
    active_this_session: bool = False
    gone: bool = False
    stopped: bool = False
    version: int = 0

    def points(self) -> int:
        return sum(len(s) for s in self.series.values())

    def last_step(self) -> int | None:
        steps = [s.last_step for s in self.series.values() if s.last_step is not None]
        return max(steps) if steps else None

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            if len(self.warnings) > 50:
                del self.warnings[0]

"""The immutable picture of every run that the engine publishes once per tick.

The app, `check --follow` and anything else that only *reads* consume a `Snapshot`: plain frozen
values, series as read-only plot-sized slices (at most `PLOT_POINTS` points: full resolution when
the series is short, min/max per bucket otherwise, every NaN/inf kept so that markers stay true),
never a `Run` that the engine is writing. A run whose version has not changed since the last
snapshot is handed over as the very same object, so a consumer can skip it by identity and a quiet
tick costs almost nothing.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from watchrun.model import Alert, Run, RunStatus, Series, Severity
from watchrun.store import Store

if TYPE_CHECKING:
    from watchrun.gpu import MachineSnapshot

PLOT_POINTS = 2048  # per series: ~2 per column of the widest terminal, with room to zoom
MAX_NONFINITE = 512  # NaN/inf points kept on top of the buckets (later ones only mark columns)
ENDED = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.GONE)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class SeriesView:
    """One metric's last segment (after a resume, the newest), reduced to at most PLOT_POINTS.

    `best_low`/`best_high` and `last` are over the whole segment, not the slice."""

    name: str
    steps: np.ndarray  # float64, read-only; shared by the run's series logged at the same steps
    values: np.ndarray  # float64, read-only
    wall_offsets: np.ndarray  # seconds after wall0, float32 (as the store keeps them), read-only
    wall0: float
    series: int  # the Series' uid: another writer's series taking over the name is another
    length: int  # points in the segment before reduction
    dropped: int  # points the bounded store had folded away when this view was made
    segments: int
    last: float
    previous: float  # the point before the last (nan if none)
    best_low: tuple[float, float] | None  # (step, value) of the lowest finite value
    best_high: tuple[float, float] | None

    def __len__(self) -> int:
        return self.length

    @property
    def walls(self) -> np.ndarray:
        """Absolute wall-clock seconds of the slice's points (float64, made on each call)."""
        return self.wall_offsets.astype(np.float64) + self.wall0

    @property
    def first_wall(self) -> float:
        """The wall-clock time of the slice's first point (NaN if it has none)."""
        return float(self.wall_offsets[0]) + self.wall0 if len(self.wall_offsets) else math.nan


@dataclass(frozen=True, eq=False)
class RunView:
    """What a reader may know about one run at one tick."""

    key: str
    root: str
    display_name: str
    formats: frozenset[str]
    status: RunStatus
    step_unit: str
    last_step: int | None
    last_write: float
    pid: int | None
    host: str | None
    series: Mapping[str, SeriesView]
    meta: Mapping[str, Any]
    hparams: Mapping[str, Any]
    summary: Mapping[str, float]
    events: tuple[tuple[int | None, str], ...]  # (step or None: the end, message)
    warnings: tuple[str, ...]
    files: tuple[str, ...]
    console: tuple[str, ...]  # the last lines of its console log(s)
    alerts: tuple[Alert, ...]
    version: int

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def worst(self) -> Alert | None:
        """The most severe open alert (latest first among equals); restarts do not count."""
        open_ = [a for a in self.alerts if a.open and a.detector != "restarted"]
        return max(open_, key=lambda a: (a.severity.rank, a.step), default=None)

    @property
    def problems(self) -> int:
        return sum(1 for a in self.alerts if a.severity is not Severity.INFO)


@dataclass(frozen=True, eq=False)
class Snapshot:
    version: int
    runs: Mapping[str, RunView]  # visible runs, worst first, then most recently written
    ready: bool = False  # the first full read and detection are done
    taken: float = field(default_factory=time.time)
    notice: str | None = None  # e.g. file events unavailable, polling instead
    # the sampler's latest look at the machine (processes, GPUs), shared as it is: frozen;
    # None when no sampler runs (batch, tests without the follow loop)
    machine: MachineSnapshot | None = None
    # what the last scan could not read ("permission denied: P"), the first few, and how many
    scan_errors: tuple[str, ...] = ()
    scan_error_count: int = 0

    def run(self, key: str | None) -> RunView | None:
        return self.runs.get(key) if key is not None else None

    @property
    def keys(self) -> list[str]:
        return list(self.runs)


EMPTY = Snapshot(version=-1, runs=MappingProxyType({}))


def reduce_series(
    steps: np.ndarray, values: np.ndarray, walls: np.ndarray, limit: int = PLOT_POINTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most ~`limit` points that draw like all of them: the min and the max of each of
    limit/2 buckets in arrival order, plus the non-finite points (they become markers). Copies:
    steps and values as float64, walls in their own type."""
    n = len(values)
    if n <= limit:
        return steps.astype(np.float64), values.astype(np.float64), walls.copy()
    buckets = limit // 2
    size = -(-n // buckets)
    finite = np.isfinite(values)
    low = np.where(finite, values, np.inf)
    high = np.where(finite, values, -np.inf)
    starts = np.arange(0, n, size)
    pad = len(starts) * size - n
    low_b = np.concatenate([low, np.full(pad, np.inf)]).reshape(-1, size)
    high_b = np.concatenate([high, np.full(pad, -np.inf)]).reshape(-1, size)
    keep = np.concatenate(
        [
            starts + low_b.argmin(axis=1),
            starts + high_b.argmax(axis=1),
            np.flatnonzero(~finite)[:MAX_NONFINITE],
            [n - 1],
        ]
    )
    keep = np.unique(np.clip(keep, 0, n - 1))
    return steps[keep].astype(np.float64), values[keep].astype(np.float64), walls[keep]


def _best(
    steps: np.ndarray, values: np.ndarray
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    finite = np.isfinite(values)
    if len(values) and finite.all():  # the usual case: the extremes of the values themselves
        i, j = int(values.argmin()), int(values.argmax())
    elif not finite.any():
        return None, None
    else:
        i = int(np.where(finite, values, np.inf).argmin())
        j = int(np.where(finite, values, -np.inf).argmax())
    return (float(steps[i]), float(values[i])), (float(steps[j]), float(values[j]))


def _merge_best(
    a: tuple[float, float] | None, b: tuple[float, float] | None, low: bool
) -> tuple[float, float] | None:
    if a is None or b is None:
        return a or b
    return (b if b[1] < a[1] else a) if low else (b if b[1] > a[1] else a)


def series_view(
    series: Series,
    prev: SeriesView | None = None,
    same_steps: dict[tuple[int, float, float], np.ndarray] | None = None,
) -> SeriesView:
    """The plot-sized slice of a series' last segment, made under the store's lock.

    A segment of at most PLOT_POINTS points is shared, not copied: its values and wall times
    are read-only views of the store's arrays (a Series never changes a point once written:
    Series.bound writes what it keeps to new arrays), its steps are converted to float64.
    A longer one is a reduced copy; with the previous view of the same segment, only the new
    points are read: they are added to its slice, which is reduced again (from itself, never
    from the whole history) when it passes twice PLOT_POINTS. So a tick costs what arrived, not
    the run's length.

    `same_steps` holds the step arrays of the run's views made so far: a slice whose steps
    equal one of them shares it (a run's metrics are mostly logged at the same steps; a
    snapshot of 1,000 runs would otherwise copy the same steps ten times over)."""
    start = series.segments[-1]
    n = len(series) - start
    follows = (
        prev is not None
        and prev.series == series.uid
        and prev.segments == len(series.segments)
        and prev.dropped == series.dropped  # else the store reduced its history: read it anew
        and prev.wall0 == series.wall0
        and 0 < prev.length < n
    )
    if n <= PLOT_POINTS:
        steps, ys = series.steps[start:], series.values[start:]
        xs, ws = steps.astype(np.float64), series.wall_offsets(start, start + n)
        if follows and prev is not None:  # the best points so far, and those of the new ones
            tail = slice(prev.length, n)
            low, high = _best(steps[tail], ys[tail])
            best_low = _merge_best(prev.best_low, low, True)
            best_high = _merge_best(prev.best_high, high, False)
        else:
            best_low, best_high = _best(steps, ys)
    elif follows and prev is not None:
        tail = slice(start + prev.length, start + n)
        steps, values = series.steps[tail], series.values[tail]
        xs = np.concatenate([prev.steps, steps.astype(np.float64)])
        ys = np.concatenate([prev.values, values.astype(np.float64)])
        ws = np.concatenate([prev.wall_offsets, series.wall_offsets(tail.start, tail.stop)])
        if len(xs) > 2 * PLOT_POINTS:
            xs, ys, ws = reduce_series(xs, ys, ws)
        low, high = _best(steps, values)
        best_low = _merge_best(prev.best_low, low, True)
        best_high = _merge_best(prev.best_high, high, False)
    else:
        steps = series.steps[start:]
        values = series.values[start:]
        xs, ys, ws = reduce_series(steps, values, series.wall_offsets(start, len(series)))
        best_low, best_high = _best(steps, values)
    last_values = series.values[start + max(0, n - 2) : start + n]
    if same_steps is not None and len(xs):
        xs = _shared(xs, same_steps)
    return SeriesView(
        name=series.name,
        steps=_frozen(xs),
        values=_frozen(ys),
        wall_offsets=_frozen(ws),
        wall0=series.wall0,
        series=series.uid,
        length=n,
        dropped=series.dropped,
        segments=len(series.segments),
        last=float(last_values[-1]) if n else math.nan,
        previous=float(last_values[-2]) if n > 1 else math.nan,
        best_low=best_low,
        best_high=best_high,
    )


def _shared(xs: np.ndarray, seen: dict[tuple[int, float, float], np.ndarray]) -> np.ndarray:
    """`xs`, or an equal step array already in `seen` (kept there by length and ends)."""
    key = (len(xs), float(xs[0]), float(xs[-1]))
    same = seen.get(key)
    if same is not None and np.array_equal(same, xs):
        return same
    seen[key] = xs
    return xs


def run_view(
    run: Run, alerts: list[Alert], console: tuple[str, ...], old: RunView | None = None
) -> RunView:
    """A frozen view of `run`; series unchanged since `old` are shared with it."""
    series: dict[str, SeriesView] = {}
    same_steps: dict[tuple[int, float, float], np.ndarray] = {}
    for name, s in run.series.items():
        prev = old.series.get(name) if old is not None else None
        same = (
            prev is not None
            and prev.series == s.uid
            and prev.length == len(s) - s.segments[-1]
            and prev.segments == len(s.segments)
            and prev.dropped == s.dropped
        )
        if same and prev is not None:
            series[name] = prev
            if len(prev.steps):
                _shared(prev.steps, same_steps)
        else:
            series[name] = series_view(s, prev, same_steps)
    return RunView(
        key=run.key,
        root=run.root,
        display_name=run.display_name,
        formats=frozenset(run.formats),
        status=run.status,
        step_unit=run.step_unit,
        last_step=run.last_step(),
        last_write=run.last_write,
        pid=run.pid,
        host=run.host,
        series=MappingProxyType(series),
        meta=MappingProxyType(dict(run.meta)),
        hparams=MappingProxyType(dict(run.hparams)),
        summary=MappingProxyType(dict(run.summary)),
        events=tuple(run.events),
        warnings=tuple(run.warnings),
        files=tuple(sorted(run.files)),
        console=console,
        alerts=tuple(copy.copy(a) for a in alerts),
        version=run.version,
    )


def _rank(view: RunView) -> tuple[int, float, str]:
    worst = view.worst
    return (-(worst.severity.rank + 1) if worst else 0, -view.last_write, view.key)


class SnapshotBuilder:
    """Builds snapshots from the store, reusing the view of every run that did not change."""

    def __init__(self, store: Store, visible: Callable[[], list[str]]) -> None:
        self.store = store
        self.visible = visible
        self._views: dict[str, tuple[tuple[int, int, int, RunStatus, float], RunView]] = {}
        self._last: Snapshot = EMPTY

    def build(
        self,
        ready: bool,
        notice: str | None = None,
        machine: MachineSnapshot | None = None,
        scan_errors: tuple[str, ...] = (),
        scan_error_count: int = 0,
    ) -> Snapshot:
        store = self.store
        with store.lock:
            if (
                self._last.version == store.version
                and self._last.ready == ready
                and self._last.notice == notice
                and self._last.machine is machine
                and self._last.scan_errors == scan_errors
                and self._last.scan_error_count == scan_error_count
            ):
                return self._last
            keys = self.visible()
            views: list[RunView] = []
            for key in keys:
                run = store.runs[key]
                alerts = store.alerts.get(key, [])
                stamp = (
                    run.version,
                    len(alerts),
                    sum(a.open for a in alerts),
                    run.status,
                    run.last_write,
                )
                cached = self._views.get(key)
                if cached is not None and cached[0] == stamp:
                    views.append(cached[1])
                    continue
                view = run_view(
                    run, alerts, store.console_lines(key), cached[1] if cached else None
                )
                self._views[key] = (stamp, view)
                views.append(view)
            version = store.version
            if len(self._views) > len(keys):  # runs dropped, joined or hidden: their views go
                shown = set(keys)
                self._views = {k: v for k, v in self._views.items() if k in shown}
        views.sort(key=_rank)
        self._last = Snapshot(
            version=version,
            runs=MappingProxyType({v.key: v for v in views}),
            ready=ready,
            notice=notice,
            machine=machine,
            scan_errors=scan_errors,
            scan_error_count=scan_error_count,
        )
        return self._last

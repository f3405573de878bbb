"""The store: every run, its series and alerts, behind one lock.

Sources write into it (from the engine's thread); the app and `check` read copies. Several sources
can feed one run (an HF output dir has trainer_state.json, TensorBoard files and a console log),
and they log the same metrics. Each metric of a run is kept from one stream only, its owner: the
richest stream that delivered it (`Source.richness`: a text history at full precision before a
tracking store, TensorBoard's float32, a trainer_state.json rewritten only at saves, and a console's
printed numbers last; streams of equal richness by name). The owner depends on which streams
deliver the metric, never on the order they are read in, so a run read live and read at once
hold the same series; but a stream whose points start clearly later than another's misses the
history the other holds (a resumed run's CSV logger), and one that starts clearly earlier holds
it: the earlier one is kept. When a better stream shows up later, it takes the metric over: the
other stream's points are dropped and the run is listed in `retaken`, for its detectors to start
again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from watchrun.model import Alert, Run, Series, TextSample

MAX_TEXTS = 500
MAX_CONSOLE_LINES = 500  # the console pane's ring, per run
RICHNESS_UNKNOWN = 2  # a stream whose source did not say how rich it is
STEP_EXACT = 1  # richness from which a writer records the step of each point


class Store:
    """`bounded`: each series keeps a recent window at full resolution and its older history as
    min/max buckets (Series.bound), so memory does not grow with a run's length. While detectors
    are attached (`held`), history is reduced only behind what they have seen (the runner does
    it after each pass); without detectors (`ls`), as it arrives."""

    def __init__(self, bounded: bool = False) -> None:
        self.bounded = bounded
        self.held = False  # detectors will look at every point: the runner bounds the series
        self.lock = threading.RLock()
        self.runs: dict[str, Run] = {}
        self.alerts: dict[str, list[Alert]] = {}
        self.version = 0
        self._owner: dict[tuple[str, str], str] = {}  # (run, metric) -> the stream kept
        # (run, metric, stream) -> the first step that stream gave of that metric
        self._first: dict[tuple[str, str, str], int] = {}
        self.richness: dict[str, int] = {}  # stream -> how complete its points are
        self.retaken: set[str] = set()  # runs with a metric a richer stream took over
        self.console: dict[str, deque[str]] = {}

    # -- runs ---------------------------------------------------------------------------------
    def run(self, key: str, root: str = "") -> Run:
        with self.lock:
            run = self.runs.get(key)
            if run is None:
                run = Run(key=key, root=root or key)
                self.runs[key] = run
                self.alerts[key] = []
                self.version += 1
            return run

    def touch(self, key: str) -> None:
        run = self.runs.get(key)
        if run is not None:
            run.version += 1
        self.version += 1

    # -- points -------------------------------------------------------------------------------
    def add_points(
        self,
        key: str,
        stream: str,
        name: str,
        steps: Sequence[int] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        walls: Sequence[float] | np.ndarray | None = None,
    ) -> int:
        """Add points of one metric from one stream; return how many were kept. A few points as
        Python lists (live tailing) stay lists: numpy's per-call cost would dominate."""
        if walls is None or type(steps) is not list or len(steps) > 4:
            steps = np.asarray(steps, dtype=np.int64)
            values = np.asarray(values, dtype=np.float64)
            walls = (
                np.full(len(steps), time.time()) if walls is None else np.asarray(walls, np.float64)
            )
        if len(steps) == 0:
            return 0
        with self.lock:
            run = self.run(key)
            if name in run.duplicate_of:  # the same metric as another writer's series: kept there
                return 0
            owner = self._owner.get((key, name))
            if owner != stream:
                first = self._first.get((key, name, stream))
                if first is None:  # numpy's min: Python's would walk the array point by point
                    first = self._first[(key, name, stream)] = int(
                        steps.min() if isinstance(steps, np.ndarray) else min(steps)
                    )
                if owner is not None and not self._better(key, name, stream, first, owner):
                    return 0
                self._owner[(key, name)] = stream
                if owner is not None:
                    self._take_over(run, name)
            series = run.series.get(name)
            if series is None:
                series = run.series[name] = Series(name)
            origins = run.origins.setdefault(name, [])
            if not origins or origins[-1][1] != stream:
                origins.append((len(series), stream))
            series.extend(steps, values, walls)  # type: ignore[arg-type]  # lists: a few points
            if self.bounded and not self.held:
                series.bound()
            run.version += 1
            self.version += 1
        return len(steps)

    def rank_stream(self, stream: str, richness: int) -> None:
        """How complete `stream`'s points are (its source's `richness`): of two streams giving
        one metric of a run, the store keeps the richer one's."""
        with self.lock:
            self.richness[stream] = richness

    def _better(self, key: str, name: str, stream: str, first: int, owner: str) -> bool:
        """Does `stream`, whose points of `name` start at `first`, give the metric better than
        its `owner`? One that starts clearly earlier holds history the owner lacks (a resumed
        run's CSV holds only the resumed part, its TensorBoard file both): it does. One that
        starts clearly later misses that history: it does not. Otherwise (the same start, or
        one step apart: epochs counted from 0 by one writer and from 1 by another) the richer.
        Starts are compared only between writers that record their steps: a console's steps are
        inferred (a progress bar's epoch), so it never wins by its start."""
        owner_first = self._first.get((key, name, owner), first)
        rank = self.richness.get
        if min(rank(stream, RICHNESS_UNKNOWN), rank(owner, RICHNESS_UNKNOWN)) >= STEP_EXACT:
            if first < owner_first - 1:
                return True
            if first > owner_first + 1:
                return False
        return self._richer(stream, owner)

    def _richer(self, stream: str, than: str) -> bool:
        rank = self.richness.get
        return (rank(stream, RICHNESS_UNKNOWN), stream) > (rank(than, RICHNESS_UNKNOWN), than)

    def _take_over(self, run: Run, name: str) -> None:
        """A richer stream now gives metric `name`: the poorer stream's points go, and the run's
        detectors must see the series again from its first point (`retaken`)."""
        run.series.pop(name, None)
        run.origins.pop(name, None)
        self.retaken.add(run.key)

    def take_retaken(self) -> set[str]:
        """The runs whose series a richer stream replaced since the last call."""
        with self.lock:
            out, self.retaken = self.retaken, set()
            return out

    def add_text(self, key: str, step: int, tag: str, text: str, wall: float = 0.0) -> None:
        with self.lock:
            run = self.run(key)
            run.texts.append(TextSample(step, tag, text, wall))
            if len(run.texts) > MAX_TEXTS:
                del run.texts[: len(run.texts) - MAX_TEXTS]
            self.touch(key)

    def add_console_lines(self, key: str, lines: list[str]) -> None:
        """Keep the last MAX_CONSOLE_LINES lines of a run's console output (for display only)."""
        if not lines:
            return
        with self.lock:
            ring = self.console.get(key)
            if ring is None:
                ring = self.console[key] = deque(maxlen=MAX_CONSOLE_LINES)
            ring.extend(lines)
            self.touch(key)

    def console_lines(self, key: str) -> tuple[str, ...]:
        with self.lock:
            return tuple(self.console.get(key, ()))

    def update(self, key: str, **fields: Any) -> None:
        """Merge hparams/meta/summary dicts or set plain attributes of a run."""
        with self.lock:
            run = self.run(key)
            for name, value in fields.items():
                current = getattr(run, name)
                if (
                    isinstance(current, dict)
                    and isinstance(value, dict)
                    or isinstance(current, set)
                    and isinstance(value, (set, list, tuple))
                ):
                    current.update(value)
                else:
                    setattr(run, name, value)
            run.updates += 1
            self.touch(key)

    def warn(self, key: str, message: str, topic: str = "") -> None:
        """Add a warning to a run; with `topic`, it replaces the run's earlier warnings that
        start with it (a running count: "x.csv: skipped 3 ..." replaces "x.csv: skipped 2 ...")."""
        with self.lock:
            run = self.run(key)
            if topic:
                run.warnings[:] = [w for w in run.warnings if not w.startswith(topic)]
            run.warn(message)
            self.touch(key)

    def add_alert(self, alert: Alert) -> None:
        with self.lock:
            self.alerts.setdefault(alert.run, []).append(alert)
            self.touch(alert.run)

    # -- reading ------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        with self.lock:
            return list(self.runs)

    def snapshot(self, key: str) -> Run | None:
        """A copy of one run that another thread may read freely."""
        with self.lock:
            run = self.runs.get(key)
            if run is None:
                return None
            copy = Run(
                key=run.key,
                root=run.root,
                formats=set(run.formats),
                series={k: s.copy() for k, s in run.series.items()},
                texts=list(run.texts[-50:]),
                hparams=dict(run.hparams),
                meta=dict(run.meta),
                summary=dict(run.summary),
                events=list(run.events),
                warnings=list(run.warnings),
                files=set(run.files),
                file_formats=dict(run.file_formats),
                joined=list(run.joined),
                duplicate_of=dict(run.duplicate_of),
                step_unit=run.step_unit,
                display_name=run.display_name,
                status=run.status,
                explicit_status=run.explicit_status,
                pid=run.pid,
                host=run.host,
                last_write=run.last_write,
                active_this_session=run.active_this_session,
                gone=run.gone,
                stopped=run.stopped,
                version=run.version,
            )
            return copy

    def plot_slice(
        self,
        key: str,
        name: str,
        width: int,
        lo_step: int | None = None,
        hi_step: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(steps, values) of one series' current segment between two steps, reduced to about
        2 x width points (min/max per bucket, every NaN/inf kept): what a plot of `width`
        columns needs, copied under the lock. None when there is no such series."""
        with self.lock:
            run = self.runs.get(key)
            series = run.series.get(name) if run is not None else None
            return None if series is None else series.plot_slice(width, lo_step, hi_step)

    def streams_of(self, key: str, name: str) -> set[str]:
        """The stream (writer) whose points of this metric are kept (empty: none yet)."""
        with self.lock:
            owner = self._owner.get((key, name))
            return {owner} if owner is not None else set()

    def richness_of(self, stream: str) -> int:
        return self.richness.get(stream, RICHNESS_UNKNOWN)

    def drop_run(self, key: str) -> None:
        """Forget a run (its files now feed another run: merge.py)."""
        with self.lock:
            self.runs.pop(key, None)
            self.alerts.pop(key, None)
            self.console.pop(key, None)
            for k in [k for k in self._owner if k[0] == key]:
                del self._owner[k]
            for f in [f for f in self._first if f[0] == key]:
                del self._first[f]
            self.retaken.discard(key)
            self.version += 1

    def alerts_for(self, key: str) -> list[Alert]:
        with self.lock:
            return list(self.alerts.get(key, []))

"""The store: every run, its series and alerts, behind one lock.

Sources write into it (from the engine's thread); the app and `check` read copies. Several sources
can feed one run (an HF output dir has trainer_state.json, TensorBoard files and a console log),
and they log the same metrics: for each metric the store remembers, per stream, the last step
that stream delivered, and takes a point from one stream only past the last step the *other*
streams have already delivered. So the TensorBoard copy of a loss and the trainer_state.json copy
of the same loss never count twice, whichever is read first.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from watchrun.model import Alert, Run, Series, TextSample

MAX_TEXTS = 500
MAX_CONSOLE_LINES = 500  # the console pane's ring, per run


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
        self._stream_last: dict[tuple[str, str], dict[str, int]] = {}
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
        steps: Iterable[int] | np.ndarray,
        values: Iterable[float] | np.ndarray,
        walls: Iterable[float] | np.ndarray | None = None,
    ) -> int:
        """Add points of one metric from one stream; return how many were kept. A few points as
        Python lists (live tailing) stay lists: numpy's per-call cost would dominate."""
        if not (type(steps) is list and len(steps) <= 4 and walls is not None):
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
            per_stream = self._stream_last.setdefault((key, name), {})
            others = [v for s, v in per_stream.items() if s != stream]
            per_stream[stream] = int(steps[-1])
            if others:
                steps, values, walls = _after(max(others), steps, values, walls)
                if len(steps) == 0:
                    return 0
            series = run.series.get(name)
            if series is None:
                series = run.series[name] = Series(name)
            origins = run.origins.setdefault(name, [])
            if not origins or origins[-1][1] != stream:
                origins.append((len(series), stream))
            series.extend(steps, values, walls)
            if self.bounded and not self.held:
                series.bound()
            run.version += 1
            self.version += 1
        return len(steps)

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
        """The streams (writers) that delivered points of this metric."""
        with self.lock:
            return set(self._stream_last.get((key, name), {}))

    def drop_run(self, key: str) -> None:
        """Forget a run (its files now feed another run: merge.py)."""
        with self.lock:
            self.runs.pop(key, None)
            self.alerts.pop(key, None)
            self.console.pop(key, None)
            for k in [k for k in self._stream_last if k[0] == key]:
                del self._stream_last[k]
            self.version += 1

    def alerts_for(self, key: str) -> list[Alert]:
        with self.lock:
            return list(self.alerts.get(key, []))


def _after(floor: int, steps: Any, values: Any, walls: Any) -> tuple[Any, Any, Any]:
    """The points whose step is past `floor` (what another stream of the run has not given)."""
    if isinstance(steps, np.ndarray):
        keep = steps > floor
        return (steps, values, walls) if keep.all() else (steps[keep], values[keep], walls[keep])
    kept = [i for i, s in enumerate(steps) if s > floor]
    return [steps[i] for i in kept], [values[i] for i in kept], [walls[i] for i in kept]

"""The sampler's output (`watchrun.gpu.Sampler`): JSON lines, one per run per sample, that
become the run's `gpu...` and `proc/...` series like any logged metric.

    {"t": 1764480000.5, "run": "exp/a", "step": 1200, "devices": [0],
     "values": {"gpu/util": 7.0, "gpu0/util": 7.0, "gpu0/mem_used": 20480.0, "proc/rss": 1456.2}}
    {"t": 1764480060.1, "run": "exp/a", "event": "exited", "pid": 4242}

`t` is the wall-clock time of the sample (the series' x); `step` is the run's last logged step
when it was taken, so sampled points line up with the curves and never move the run's step
or the detectors' settling. Memory is in MiB, power in W, temperature in C, utilisation and CPU
in percent. `devices` lists the GPUs the run's processes use (kept in `run.meta["gpu_devices"]`),
an `exited` event records when the run's writer was found gone (`run.meta["process_exited"]`).
After an hour of samples a run's records are thinned as they arrive (`_keep`), so the series
stay bounded like the rest.

The file is not one of the run's files: it does not make the run look written (stalled and the
run's status read the logs' mtimes), and a record naming a run the store does not hold is
skipped. A torn last line waits for the rest; a junk line is counted and skipped.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

from watchrun.model import Series, is_sampled
from watchrun.sources.base import Source, to_step
from watchrun.store import Store
from watchrun.tail import FileCursor, LineBuffer

FULL_RATE = 3600  # records per run kept at the sampler's full rate
MAX_NOTES = 20


def logged_step(run: Any) -> int | None:
    """The run's last step among its logged series (the sampled ones follow it)."""
    steps = [
        s.last_step for n, s in run.series.items() if s.last_step is not None and not is_sampled(n)
    ]
    return max(steps) if steps else None


class GpuSamplesSource(Source):
    format = "gpu-samples"
    stream = "sampler"

    def __init__(self, store: Store, key: str = "") -> None:
        super().__init__(store, key)
        self.lines: dict[str, LineBuffer] = defaultdict(LineBuffer)
        self.bad = 0
        self.unknown_runs: set[str] = set()
        self.notes: list[str] = []
        self.kept: dict[str, int] = {}
        self.last_kept: dict[str, float] = {}

    def add_file(self, path: str, **options: object) -> bool:
        """Tail `path`; unlike a log it joins no run's files."""
        if path in self.cursors:
            return False
        self.cursors[path] = FileCursor(path)
        self.options[path] = dict(options)
        return True

    def warn(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)
            del self.notes[:-MAX_NOTES]

    def on_reset(self, cursor: FileCursor) -> None:
        self.lines[cursor.key] = LineBuffer()

    def read(self, cursor: FileCursor) -> int:
        data = cursor.read()
        lines, consumed = self.lines[cursor.key].feed(data)
        cursor.advance(consumed)
        points: dict[tuple[str, str], tuple[list[int], list[float], list[float]]] = defaultdict(
            lambda: ([], [], [])
        )
        for line in lines:
            if line.strip():
                self._record(line, points)
        total = 0
        for (key, name), (steps, values, walls) in points.items():
            self._ensure_series(key, name)
            total += self.store.add_points(key, self.stream, name, steps, values, walls)
        return total

    def _ensure_series(self, key: str, name: str) -> None:
        """A sampled series that first appears in a run already resumed (its logs hold several
        segments) starts in the run's current segment: the detectors look at one segment at a
        time, and its points belong to the latest."""
        with self.store.lock:
            run = self.store.runs[key]
            if name in run.series:
                return
            rounds = max(
                (len(s.segments) for n, s in run.series.items() if not is_sampled(n)), default=1
            )
            series = run.series[name] = Series(name)
            series.segments = [0] * rounds

    def _keep(self, key: str, t: float) -> bool:
        """Bounded like the rest: every sample for the first FULL_RATE records of a run, then
        one every count / FULL_RATE seconds (a day at one a second keeps ~25k records)."""
        count = self.kept.get(key, 0)
        last = self.last_kept.get(key)
        if last is not None and count >= FULL_RATE and t - last < count / FULL_RATE:
            return False
        self.kept[key] = count + 1
        self.last_kept[key] = t
        return True

    def _record(self, line: bytes, points: dict) -> None:
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            rec = None
        t = _number(rec.get("t")) if isinstance(rec, dict) else None
        key = rec.get("run") if isinstance(rec, dict) else None
        if t is None or not isinstance(key, str):
            self.bad += 1
            self.warn(f"skipped {self.bad} unreadable sample line(s)")
            return
        if key not in self.store.runs:
            self.unknown_runs.add(key)
            return
        if rec.get("event") == "exited":
            self.store.update(key, meta={"process_exited": t})
            return
        step = to_step(rec.get("step", 0))
        values = rec.get("values")
        if step is None or step < 0 or not isinstance(values, dict):
            self.bad += 1
            self.warn(f"skipped {self.bad} unreadable sample line(s)")
            return
        if not self._keep(key, t):
            return
        devices = rec.get("devices")
        if isinstance(devices, list) and all(isinstance(d, int) for d in devices):
            run = self.store.runs[key]
            if run.meta.get("gpu_devices") != devices:
                self.store.update(key, meta={"gpu_devices": list(devices)})
        for name, value in values.items():
            number = _number(value)
            if isinstance(name, str) and is_sampled(name) and number is not None:
                steps, vals, walls = points[(key, name)]
                steps.append(step)
                vals.append(number)
                walls.append(t)


def _number(value: object) -> float | None:
    """A finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past 1e308
        return None
    return number if math.isfinite(number) else None

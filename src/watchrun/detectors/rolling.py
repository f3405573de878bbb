"""Statistics a detector keeps between calls, so that a live read's new point costs O(log n) or
O(window), not a pass over the run's history, with the very numbers that pass would give.

A detector's view of a series grows by appending, except when a bounded store reduces the history
behind what the detectors have seen (`Series.bound`), a richer source takes the metric over (a new
`Series`), or a final pass has settled points a later pass does not (fewer points). `Seen` tells
these apart: on a plain append the kept statistics take only the new points; otherwise they are
worked out again from the view, as a batch pass would.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort

import numpy as np

from watchrun.detectors.base import RunView, SeriesView


def fast_median(a: np.ndarray) -> float:
    """np.median of a non-empty NaN-free array (floats or ints) by the same arithmetic (the
    middle value, or the mean of the two middle ones, as float64), without its per-call cost."""
    m = len(a)
    h = m // 2
    if m % 2:
        return float(np.partition(a, h)[h])
    part = np.partition(a, (h - 1, h))
    return (float(part[h - 1]) + float(part[h])) / 2


class SortedValues:
    """A multiset of floats kept sorted: insert, remove and the median in O(log n) compares (the
    list's memmove is O(n), a few microseconds at the sizes a bounded store keeps)."""

    __slots__ = ("items",)

    def __init__(self, items: list[float] | None = None) -> None:
        self.items = items if items is not None else []

    @classmethod
    def of(cls, values: np.ndarray) -> SortedValues:
        return cls(np.sort(np.asarray(values, dtype=np.float64)).tolist())

    def __len__(self) -> int:
        return len(self.items)

    def add(self, x: float) -> None:
        insort(self.items, x)

    def remove(self, x: float) -> None:
        del self.items[bisect_left(self.items, x)]

    def median(self) -> float:
        """As np.median of the same values (NaN when empty)."""
        items, m = self.items, len(self.items)
        if not m:
            return math.nan
        h = m // 2
        return items[h] if m % 2 else (items[h - 1] + items[h]) / 2


class Seen:
    """How far kept statistics have taken a series in, and on what history: `new_from` says
    where the view's points are new to them, or None when the history they were built on changed
    (then they are built again from the view)."""

    __slots__ = ("series", "dropped", "start", "count", "last")

    def __init__(self) -> None:
        self.series: object = None
        self.dropped = -1
        self.start = -1
        self.count = 0
        self.last = math.nan

    def new_from(self, view: RunView, sv: SeriesView) -> int | None:
        s = view.run.series.get(sv.name)
        if (
            s is None
            or s is not self.series
            or s.dropped != self.dropped
            or sv.start != self.start
            or len(sv.values) < self.count
        ):
            return None
        if self.count:
            x = float(sv.values[self.count - 1])
            if not (x == self.last or (x != x and self.last != self.last)):
                return None
        return self.count

    def mark(self, view: RunView, sv: SeriesView) -> None:
        """The statistics now stand for all of `sv`'s points."""
        s = view.run.series.get(sv.name)
        self.series = s
        self.dropped = s.dropped if s is not None else -1
        self.start = sv.start
        self.count = len(sv.values)
        self.last = float(sv.values[-1]) if len(sv.values) else math.nan


class Growing:
    """A float64 array appended to in amortised O(1) a value."""

    __slots__ = ("buf", "n")

    def __init__(self, first: float | None = None) -> None:
        self.buf = np.empty(64)
        self.n = 0
        if first is not None:
            self.buf[0] = first
            self.n = 1

    def extend(self, values: np.ndarray) -> None:
        need = self.n + len(values)
        if need > len(self.buf):
            grown = np.empty(max(need, 2 * len(self.buf)))
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : need] = values
        self.n = need

    def append(self, x: float) -> None:
        if self.n == len(self.buf):
            self.extend(np.array([x]))
            return
        self.buf[self.n] = x
        self.n += 1

    @property
    def array(self) -> np.ndarray:
        return self.buf[: self.n]

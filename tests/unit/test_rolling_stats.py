"""Streaming statistics kept by detectors between calls give the very numbers the batch pass over
the whole view gives (issue 13): chunked like a live read, after a bounded store reduces the
history, after a metric is taken over by another stream."""

from __future__ import annotations

import math
import random

import numpy as np

from watchrun import model
from watchrun.config import Config
from watchrun.detectors.base import RunView, SeriesView
from watchrun.detectors.fitting import EvalTrack, Overfitting, Trend, TrendStats
from watchrun.detectors.rolling import SortedValues, fast_median
from watchrun.model import Run, Series
from watchrun.semantics import role_of


def _view(run: Run, name: str, new_from: int) -> RunView:
    s = run.series[name]
    sv = SeriesView(name, role_of(name, {}), s.steps.copy(), s.values.copy(), new_from, 0)
    return RunView(run, {name: sv}, Config())


def _same(a: Trend, b: Trend) -> bool:
    """Equal numbers; a Trend known to have `learned` without its medians matches one whose
    medians say so (the last third's below 0.9 x the start)."""
    if a.learned and b.learned:
        return a.n == b.n
    if a.learned or b.learned:
        full = b if a.learned else a
        return a.n == b.n and full.k >= 3 and full.last < 0.9 * full.start
    fields = ("resumed", "n", "k", "first", "last", "start", "noise")
    return all(
        getattr(a, f) == getattr(b, f) or (math.isnan(getattr(a, f)) and math.isnan(getattr(b, f)))
        for f in fields
    )


def _values(rng: random.Random, n: int) -> list[float]:
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.03:
            out.append(math.nan)
        elif r < 0.05:
            out.append(math.inf)
        elif r < 0.15:
            out.append(round(rng.random(), 1))  # ties
        else:
            out.append(2.0 * math.exp(-i / 300) + rng.gauss(0, 0.05))
    return out


def test_fast_median_is_np_median():
    rng = np.random.default_rng(0)
    for n in range(1, 40):
        a = np.round(rng.normal(size=n), 1)
        assert fast_median(a) == float(np.median(a))
        ints = rng.integers(0, 5, size=n)
        assert fast_median(ints) == float(np.median(ints))
        sv = SortedValues.of(a)
        assert sv.median() == float(np.median(a))


def test_trend_streamed_equals_batch_over_live_chunks_and_bounding(monkeypatch):
    monkeypatch.setattr(model, "RECENT", 200)  # bound() reduces a short series too
    monkeypatch.setattr(model, "HEAD", 50)
    monkeypatch.setattr(model, "HISTORY", 100)
    rng = random.Random(3)
    bounded = 0
    name = "train/loss"
    for trial in range(4):
        run = Run(key="r", root="/r")
        s = run.series[name] = Series(name)
        stats = TrendStats()
        step = 100 * trial  # trial 3 starts far in: a resumed series
        vals = _values(rng, 3000)
        i = 0
        while i < len(vals):
            chunk = rng.choice([1, 1, 1, 2, 3, 5]) if i > 40 else 40
            for v in vals[i : i + chunk]:
                step += rng.choice([1, 1, 2])
                s.append(step, v, 0.0)
            new_from = len(s) - min(chunk, len(vals) - i)
            i += chunk
            if i > 1000 and rng.random() < 0.02:
                gone = s.bound(upto=new_from)  # history reduced behind the detectors
                new_from -= gone
                bounded += gone > 0
            view = _view(run, name, new_from)
            got = stats.get(view, view.series[name])
            want = Trend.of(view.series[name], shortcut=False)
            assert _same(got, want), (trial, i)
        assert stats.windows is not None  # the streamed path was the one taken
    assert bounded


def test_trend_rebuilt_when_the_series_is_replaced():
    rng = random.Random(5)
    name = "train/loss"
    run = Run(key="r", root="/r")
    stats = TrendStats()
    for _ in range(2):
        s = run.series[name] = Series(name)  # a richer stream took the metric over
        for j, v in enumerate(_values(rng, 400)):
            s.append(j + 1, v, 0.0)
            if j > 50:
                view = _view(run, name, len(s) - 1)
                want = Trend.of(view.series[name], shortcut=False)
                assert _same(stats.get(view, view.series[name]), want)


def _eval_arrays_in_one_pass(run: Run, name: str) -> dict[str, np.ndarray]:
    track = EvalTrack()
    view = _view(run, name, 0)
    return track.take(view, view.series[name], Overfitting.DEFAULTS)


def test_overfitting_eval_arrays_streamed_equal_one_pass(monkeypatch):
    monkeypatch.setattr(model, "RECENT", 200)
    monkeypatch.setattr(model, "HEAD", 50)
    monkeypatch.setattr(model, "HISTORY", 100)
    rng = random.Random(11)
    name = "val/loss"
    run = Run(key="r", root="/r")
    s = run.series[name] = Series(name)
    track = EvalTrack()
    got: dict[str, list] = {}
    vals = [v * (1 + i / 500) for i, v in enumerate(_values(rng, 1500))]  # falls, then rises
    i = 0
    while i < len(vals):
        chunk = rng.choice([1, 1, 2, 7]) if i > 30 else 30
        new_from = len(s)
        for v in vals[i : i + chunk]:
            s.append(len(s) + 1, v, 0.0)
        i += chunk
        if i > 800 and rng.random() < 0.05:
            gone = s.bound(upto=new_from)
            new_from -= gone
            if gone:
                got = {}  # arrays start again from the first eval: compare from here
        view = _view(run, name, new_from)
        out = track.take(view, view.series[name], Overfitting.DEFAULTS)
        for key, arr in out.items():
            got.setdefault(key, []).extend(arr.tolist())
        whole = _eval_arrays_in_one_pass(run, name)
        for key, arr in whole.items():
            tail = arr[len(arr) - len(got[key]) :].tolist() if len(got[key]) else []
            assert tail == got[key], (key, i)
        assert track.n == len(whole["idx"])


def test_trend_of_a_grown_view_reusing_the_prefix_equals_batch():
    rng = random.Random(9)
    name = "train/loss"
    run = Run(key="r", root="/r")
    s = run.series[name] = Series(name)
    stats = TrendStats()
    vals = _values(rng, 4000)
    learned = 0
    for i in range(0, len(vals), 37):  # more new points than a live read: never kept windows
        for v in vals[i : i + 37]:
            s.append(len(s) + 1, v, 0.0)
        view = _view(run, name, max(0, len(s) - 37))
        got = stats.get(view, view.series[name])
        assert _same(got, Trend.of(view.series[name], shortcut=False))
        assert stats.windows is None
        learned += got.learned
    assert learned  # the shortcut was taken


def _overfitting_arrays_as_one_pass(fv: np.ndarray, p: dict) -> dict[str, np.ndarray]:
    """The per-eval arrays as Overfitting worked them out over all evals at once (before they
    were kept between calls): the reference the kept arrays must equal bit for bit."""
    k, idx = int(p["patience"]), np.arange(len(fv))
    w = np.minimum(np.maximum(k, (idx + 1) // 10), idx + 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        csum = np.concatenate([[0.0], np.cumsum(fv)])
        sq = np.concatenate([[0.0], np.cumsum(fv * fv)])
        smooth = (csum[idx + 1] - csum[idx + 1 - w]) / w
        level = np.minimum.accumulate(smooth)
        at_best = np.maximum.accumulate(np.where(smooth <= level, idx, 0))
        above = np.concatenate([[False], fv[1:] >= level[:-1] * (1 + p["noise"])])
        last_break = np.maximum.accumulate(np.where(~above, idx, -1))
        streak = np.where(above, idx - last_break, 0)
        rise_s = np.where(level > 0, smooth / level - 1, np.inf)
        rise_level = np.where(level > 0, fv / level - 1, np.inf)
        half = p["min_rise"] / 2
        cond = (streak >= k) & (rise_s >= half) & (rise_level >= half)
        after = np.maximum(idx - at_best, 0)
        total = csum[idx + 1] - csum[at_best + 1]
        mean_after = np.where(after > 0, total / np.maximum(after, 1), np.nan)
        var_after = (sq[idx + 1] - sq[at_best + 1]) / np.maximum(after, 1) - mean_after**2
        t_after = (mean_after - level) / np.sqrt(
            np.maximum(var_after, 1e-300) / np.maximum(after - 1, 1)
        )
        trend = (
            (after >= 2 * k)
            & (mean_after >= level * (1 + p["min_rise"]))
            & (t_after >= p["trend_t"])
        )
    return {
        "level": level,
        "at_best": at_best,
        "streak": streak,
        "rise_s": rise_s,
        "cond": cond | trend,
        "trend": trend,
    }


def test_overfitting_kept_arrays_equal_the_one_pass_formulas():
    rng = np.random.default_rng(5)
    for t in range(400):
        n = int(rng.integers(1, 200))
        x = np.arange(n)
        fv = [
            2 * np.exp(-x / 50) + 0.5 + 0.3 * x / 300 + rng.normal(0, 0.05, n),  # overfits
            np.round(rng.normal(0, 1, n), 1),  # ties, negatives
            np.abs(rng.normal(1, 0.3, n)) * (1 + x / 100),  # a noisy rise
            np.where(rng.random(n) < 0.5, 0.0, rng.random(n)),  # zeros
            np.where(rng.random(n) < 0.1, 1e308, rng.random(n)),  # sums overflow
        ][t % 5]
        p = dict(Overfitting.DEFAULTS, patience=[3, 0, 1, 5][t % 4])
        want = _overfitting_arrays_as_one_pass(fv, p)
        track, got = EvalTrack(), {key: [] for key in want}
        i = 0
        with np.errstate(over="ignore", invalid="ignore"):
            while i < n:  # a live read's few evals (one by one) and batch chunks
                c = int(rng.choice([1, 2, 3, 5, 9, 40]))
                out = track._extend(fv[i : i + c], p)
                i += c
                for key in got:
                    got[key] += out[key].tolist()
        for key, arr in want.items():
            assert np.array_equal(np.array(got[key], dtype=arr.dtype), arr, equal_nan=True), key

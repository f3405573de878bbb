"""A bounded store: each series keeps its recent points and the start of its segment at full
resolution and its older history as min/max buckets. Its size stays flat however long a run
grows, every NaN/inf and every extreme stays where it was, and the detectors, which see every
point as it arrives, raise the same alerts as with an unbounded store."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from tests.unit.helpers import follow_in_chunks

from watchrun.demo import CsvWriter
from watchrun.detectors.base import SeriesView
from watchrun.detectors.fitting import (
    START_LOGS,
    LossStart,
    smoothed_at,
    smoothed_many,
    untrained_level,
)
from watchrun.engine import Engine
from watchrun.model import HEAD, HISTORY, RECENT, Series
from watchrun.semantics import role_of
from watchrun.store import Store

# 20 bytes a point for everything a bounded series can hold at once (head, history before it is
# reduced, recent window), twice over for array growth: nothing that depends on the run's length
BOUND = 2 * 20 * (HEAD + 3 * HISTORY + 2 * HISTORY + RECENT + 64)


def feed(
    store: Store, total: int, chunk: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy falling loss of `total` points in chunks; NaN every 997_001 steps and one inf.
    Returns (steps of the non-finite values, the first 1000 values)."""
    odd, head = [], None
    for start in range(0, total, chunk):
        steps = np.arange(start, start + chunk)
        values = 1.0 / (1.0 + steps / 1e5) + rng.normal(0, 0.01, chunk)
        values[steps % 997_001 == 500] = np.nan
        if start == 0:
            values[777] = np.inf
            head = values[:1000].copy()
        odd.extend(steps[~np.isfinite(values)].tolist())
        store.add_points("run", "tb", "train/loss", steps, values, steps * 0.1)
    return np.array(odd), head


def test_a_ten_million_point_run_keeps_a_bounded_store() -> None:
    store = Store(bounded=True)
    rng = np.random.default_rng(0)
    odd, head = feed(store, 1_000_000, 100_000, rng)
    series = store.runs["run"].series["train/loss"]
    at_1m = series.nbytes()
    odd_more, _ = feed_more(store, rng)
    odd = np.concatenate([odd, odd_more])
    assert series.nbytes() < BOUND and at_1m < BOUND  # 10M points unbounded: 200 MB
    assert series.dropped + len(series) == 10_000_000 and series.last_step == 9_999_999
    assert store.runs["run"].points() == 10_000_000  # what `ls` shows
    # every NaN/inf kept at its step; the start and the last RECENT points exactly as logged
    kept_odd = series.steps[~np.isfinite(series.values)]
    assert kept_odd.tolist() == odd.tolist()
    assert np.array_equal(series.values[:HEAD], head[:HEAD], equal_nan=True)
    assert series.steps[-RECENT:].tolist() == list(range(10_000_000 - RECENT, 10_000_000))
    assert np.all(np.diff(series.steps) > 0)


def feed_more(store: Store, rng: np.random.Generator) -> tuple[np.ndarray, None]:
    """Points 1M..10M, in chunks as a live run delivers them."""
    odd = []
    for start in range(1_000_000, 10_000_000, 250_000):
        steps = np.arange(start, start + 250_000)
        values = 1.0 / (1.0 + steps / 1e5) + rng.normal(0, 0.01, len(steps))
        values[steps % 997_001 == 500] = np.nan
        if start == 5_000_000:
            values[10] = -1e9  # the lowest value of the run, deep in the history
        odd.extend(steps[~np.isfinite(values)].tolist())
        store.add_points("run", "tb", "train/loss", steps, values, steps * 0.1)
    series = store.runs["run"].series["train/loss"]
    assert float(np.nanmin(series.values)) == -1e9
    assert int(series.steps[np.nanargmin(series.values)]) == 5_000_010
    return np.array(odd), None


def test_extremes_survive_every_reduction() -> None:
    rng = np.random.default_rng(1)
    s = Series("x")
    values = rng.normal(0, 1, 200_000)
    for start in range(0, 200_000, 5_000):  # many small reductions, not one big one
        steps = np.arange(start, start + 5_000)
        s.extend(steps, values[start : start + 5_000], steps.astype(float))
        s.bound()
    assert len(s) < 200_000 / 10
    assert float(s.values.max()) == values.max() and float(s.values.min()) == values.min()


def test_plot_slices_are_sized_for_a_plot_and_keep_extremes_and_nans() -> None:
    store = Store()
    steps = np.arange(100_000)
    values = np.sin(steps / 1000.0)
    values[[10, 50_000, 99_999]] = [np.nan, np.inf, np.nan]
    values[60_000] = 5.0
    store.add_points("run", "tb", "m", steps, values, steps * 1.0)
    xs, ys = store.plot_slice("run", "m", width=100)
    assert len(xs) <= 2 * 100 + 3 and np.all(np.diff(xs) > 0)
    assert {10, 50_000, 60_000, 99_999} <= set(xs.tolist())
    xs, ys = store.plot_slice("run", "m", width=50, lo_step=40_000, hi_step=70_000)
    assert xs[0] >= 40_000 and xs[-1] <= 70_000 and 60_000 in xs.tolist() and 50_000 in xs.tolist()
    assert store.plot_slice("run", "nope", width=10) is None


# -- alerts with and without bounding, on long runs -----------------------------------------


def _csv(path: Path, rows: list[tuple[int, dict[str, float]]]) -> None:
    cols = sorted({k for _, r in rows for k in r})
    w = CsvWriter(str(path / "lightning_logs" / "version_0" / "metrics.csv"), cols)
    for step, row in rows:
        w.write(step, row)
    w.close()


def nan_at_the_end(n: int) -> list[tuple[int, dict[str, float]]]:
    rng = random.Random(0)
    return [
        (
            s,
            {
                "train_loss_step": 2.0 / (1 + s / 5000) + rng.gauss(0, 0.02)
                if s < n - 1
                else math.nan
            },
        )
        for s in range(n)
    ]


def overfitting(n: int) -> list[tuple[int, dict[str, float]]]:
    rng = random.Random(1)
    rows = []
    for s in range(n):
        row = {"train_loss_step": 2.0 * math.exp(-s / (n / 6)) + 0.05 + rng.gauss(0, 0.02)}
        if s % 2000 == 1999:  # the validation loss falls, then climbs for the second half
            x = s / n
            row["val_loss"] = (
                1.0 - x if x < 0.4 else 0.6 + 1.5 * (x - 0.4) ** 1.2 + rng.gauss(0, 0.005)
            )
        rows.append((s, row))
    return rows


def divergence(n: int) -> list[tuple[int, dict[str, float]]]:
    rng = random.Random(2)
    rows = []
    for s in range(n):
        level = 1.5 * math.exp(-s / (n / 8)) + 0.4
        if s > n - 3000:
            level *= math.exp((s - (n - 3000)) / 400)
        rows.append((s, {"train_loss_step": max(0.01, level + rng.gauss(0, 0.05)), "lr": 1e-3}))
    return rows


def back_at_chance(n: int) -> list[tuple[int, dict[str, float]]]:
    """A binary model's loss learns for a long history, then collapses back to ln 2 and sits
    there for the last 3000 logs: loss_at_chance quotes the lower quartile of that history."""
    rng = random.Random(4)
    return [
        (
            s,
            {
                "train_loss_step": 0.3 + 0.4 * math.exp(-s / 2000) + rng.gauss(0, 0.03)
                if s < n - 3000
                else math.log(2) + rng.gauss(0, 0.002)
            },
        )
        for s in range(n)
    ]


def alerts(path: Path, bounded: bool) -> tuple[list[tuple], int]:
    e = Engine([str(path)], use_watchdog=False, bounded=bounded)
    e.detectors  # noqa: B018 - attached before the load, as `check` and the app do
    e.check()
    out = [
        (a.run, a.detector, a.severity.value, a.step, tuple(a.metrics), a.message)
        for key in sorted(e.store.runs)
        for a in e.store.alerts_for(key)
    ]
    kept = max(len(s) for r in e.store.runs.values() for s in r.series.values())
    return out, kept


@pytest.mark.timeout(600)  # two checks of a 300k-point run each: slow on a loaded 2-core box
@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (nan_at_the_end, "nan_loss"),
        (overfitting, "overfitting"),
        (divergence, "divergence"),
    ],
)
def test_bounding_changes_no_alert_on_long_runs(tmp_path: Path, scenario, expected: str) -> None:
    n = 300_000
    _csv(tmp_path / scenario.__name__, scenario(n))
    full, kept_full = alerts(tmp_path, bounded=False)
    bounded, kept_bounded = alerts(tmp_path, bounded=True)
    assert kept_full == n and kept_bounded < n / 10  # the history was reduced
    assert bounded == full
    assert expected in {a[1] for a in full}


def live_alerts(path: Path, bounded: bool, chunks: int) -> tuple[list[tuple], int]:
    """`check --follow` on the run as its CSV grows in `chunks` reads: in a bounded store the
    runner reduces history between reads, behind what the detectors have seen."""
    root = path.parent / f"{path.name}-live-{bounded}"
    e = follow_in_chunks(next(path.rglob("metrics.csv")), root, chunks, bounded)
    e.verdict()  # the end: nothing writes the file any more
    out = sorted(
        (a.detector, a.severity.value, a.step, tuple(a.metrics), a.message)
        for key in e.store.runs
        for a in e.store.alerts_for(key)
    )
    return out, max(len(s) for r in e.store.runs.values() for s in r.series.values())


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("scenario", "expected"),
    [(nan_at_the_end, "nan_loss"), (overfitting, "overfitting"), (divergence, "divergence")],
)
def test_bounding_live_changes_no_alert_step(tmp_path: Path, scenario, expected: str) -> None:
    """Read live, the history is reduced between reads: the same alerts at the same steps."""
    n = 100_000
    _csv(tmp_path / scenario.__name__, scenario(n))
    full, kept_full = live_alerts(tmp_path / scenario.__name__, bounded=False, chunks=25)
    bounded, kept_bounded = live_alerts(tmp_path / scenario.__name__, bounded=True, chunks=25)
    assert kept_full == n and kept_bounded < n / 10
    assert [a[:4] for a in bounded] == [a[:4] for a in full]
    assert expected in {a[0] for a in full}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("chunks", [7, 25])
def test_bounding_live_changes_no_number_loss_at_chance_quotes(tmp_path: Path, chunks: int) -> None:
    """The earlier quartile loss_at_chance quotes ("after reaching ...") is kept as the logs
    pass: read live into a bounded store, the same alert, the same message, as unbounded and as
    the batch check."""
    n = 100_000
    _csv(tmp_path / "chance", back_at_chance(n))
    full, kept_full = live_alerts(tmp_path / "chance", bounded=False, chunks=chunks)
    bounded, kept_bounded = live_alerts(tmp_path / "chance", bounded=True, chunks=chunks)
    assert kept_full == n and kept_bounded < n / 10  # the history was reduced
    assert bounded == full
    said = [a for a in full if a[0] == "loss_at_chance"]
    assert len(said) == 1 and "after reaching" in said[0][4]
    batch, _ = alerts(tmp_path / "chance", bounded=False)
    assert [a[1:] for a in batch if a[1] == "loss_at_chance"] == said


def test_bounding_live_changes_no_number_quoted(tmp_path: Path) -> None:
    n = 100_000
    _csv(tmp_path / "overfitting", overfitting(n))
    full, _ = live_alerts(tmp_path / "overfitting", bounded=False, chunks=25)
    bounded, _ = live_alerts(tmp_path / "overfitting", bounded=True, chunks=25)
    assert bounded == full


def overfitting_epoch(n: int) -> list[tuple[int, dict[str, float]]]:
    """overfitting() with Lightning's epoch mean of the train loss logged at each eval: the alert
    quotes `train_loss_epoch` at the best eval (k=1), the loss blown up at the first logs (the
    untrained level is taken on the start)."""
    rng = random.Random(2)
    rows = overfitting(n)
    for s, row in rows:
        if s < 50:
            row["train_loss_step"] = 8.0 + rng.gauss(0, 1.0)
        if "val_loss" in row:
            row["train_loss_epoch"] = 2.0 * math.exp(-s / (n / 6)) + 0.05 + rng.gauss(0, 0.002)
    return rows


@pytest.mark.timeout(600)
def test_bounding_live_changes_no_epoch_mean_quoted(tmp_path: Path) -> None:
    n, chunks = 100_000, 40
    _csv(tmp_path / "overfitting", overfitting_epoch(n))
    full, _ = live_alerts(tmp_path / "overfitting", bounded=False, chunks=chunks)
    bounded, kept = live_alerts(tmp_path / "overfitting", bounded=True, chunks=chunks)
    assert kept < n / 10  # the history was reduced
    assert bounded == full
    said = [a for a in full if a[0] == "overfitting"]
    assert said and "train_loss_epoch fell" in said[0][4]


def blown_up_start(n: int) -> list[tuple[int, dict[str, float]]]:
    """overfitting()'s validation loss against a train loss blown up over its first 300 logs,
    at 0.25 up to log 10k, at 0.45 until the best eval, then falling to 0.30: falling back, never
    under where it started (the median of its first twentieth, 0.25), so no alert. A bounded
    store holds only the blown-up head of that twentieth: the level must be kept as it passes."""
    rng = random.Random(3)
    rows = overfitting(n)
    for s, row in rows:
        level = 5.0 if s < 300 else 0.25 if s < 10_000 else 0.45
        if s >= 40_000:
            level = max(0.30, 0.45 - 0.15 * (s - 40_000) / 10_000)
        row["train_loss_step"] = level + rng.gauss(0, 0.005)
    return rows


@pytest.mark.timeout(600)
@pytest.mark.parametrize("chunks", [7, 25])
def test_bounding_live_changes_no_untrained_level(tmp_path: Path, chunks: int) -> None:
    n = 100_000
    _csv(tmp_path / "blown", blown_up_start(n))
    full, _ = live_alerts(tmp_path / "blown", bounded=False, chunks=chunks)
    bounded, kept = live_alerts(tmp_path / "blown", bounded=True, chunks=chunks)
    assert kept < n / 10  # the history was reduced
    assert bounded == full
    assert "overfitting" not in {a[0] for a in full}


def test_loss_start_is_untrained_level_on_the_whole_history() -> None:
    """LossStart, fed in random chunks, gives untrained_level on all the logs up to a step."""
    rng = np.random.default_rng(5)
    n = 20 * START_LOGS + 300  # (300 NaN or inf: the median of at most START_LOGS)
    values = 1.0 / (1.0 + np.arange(n) / 3e3) + rng.normal(0, 0.05, n)
    values[rng.choice(n, 300, replace=False)] = np.nan
    values[:3] = [np.nan, 40.0, np.inf]  # blown up at the start
    steps = np.arange(n) * 2
    start, at = LossStart(0), 0
    while at < n:
        end = min(n, at + int(rng.integers(1, 5000)))
        start.feed(values[at:end])
        sv = SeriesView("train_loss", role_of("train_loss", {}), steps[:end], values[:end], at)
        for step in [*rng.integers(-1, 2 * end, 5).tolist(), 2 * end - 2]:
            whole = untrained_level(values[: sv.at_or_before(step) + 1])
            got = start.level(sv, step)
            assert got == whole or (math.isnan(got) and math.isnan(whole))
        at = end


@pytest.mark.parametrize("k", [1, 4, 5])
def test_smoothed_many_is_smoothed_at_bit_for_bit(k: int) -> None:
    """The smoothed train loss at many evals at once, as smoothed_at gives it at each: steps
    before the first log, windows cut by the start, NaN and inf in a window, repeated steps."""
    rng = np.random.default_rng(k)
    values = rng.normal(1.0, 0.3, 3000)
    values[rng.choice(3000, 60, replace=False)] = np.nan
    values[rng.choice(3000, 20, replace=False)] = np.inf
    steps = np.sort(rng.choice(np.arange(10, 20_000), 3000, replace=False))
    sv = SeriesView("train_loss", role_of("train_loss", {}), steps, values, 0)
    at = np.sort(rng.integers(0, 20_010, 2000))
    got = smoothed_many(sv, at, k)
    want = np.array([smoothed_at(sv, s, k) for s in at.tolist()])
    assert np.array_equal(got, want, equal_nan=True)


def _nan_across_a_bound(bounded: bool, episode: list[float]) -> list[tuple]:
    """A train loss read live in two passes: the first ends on a non-finite log (the lr is
    logged a step ahead, so it settles); between the passes a bounded store reduces the
    history before it. The second pass brings `episode`: what follows the non-finite log."""
    from watchrun.config import Config
    from watchrun.detectors.runner import DetectorRunner

    store = Store(bounded=bounded)
    runner = DetectorRunner(store, Config())
    n = 8000
    steps = np.arange(n)
    loss = 2.0 / (1 + steps / 500) + 0.3
    loss[-1] = np.nan
    store.add_points("run", "csv", "train_loss", steps, loss, steps * 1.0)
    store.add_points("run", "csv", "lr", np.arange(n + 1), np.full(n + 1, 1e-3), np.arange(n + 1.0))
    runner.process()
    more = np.arange(n, n + len(episode))
    store.add_points("run", "csv", "train_loss", more, np.array(episode), more * 1.0)
    store.add_points("run", "csv", "lr", more + 1, np.full(len(more), 1e-3), more + 1.0)
    runner.process()
    runner.process(final=True)
    return [
        (a.detector, a.severity.value, a.step, a.message)
        for a in store.alerts_for("run")
        if a.detector == "nan_loss"
    ]


@pytest.mark.parametrize(
    "episode",
    [[math.nan, 0.5, 0.5], [0.5, 0.5], [math.nan, math.nan]],
    ids=["persists", "one-overflow-recovered", "ends-on-nan"],
)
def test_a_nan_episode_across_a_bound_is_judged_as_unbounded(episode: list[float]) -> None:
    """nan_loss remembers where a non-finite episode began; the store reducing the history
    before it between two reads must not move that place (it counted the logs in a row from a
    stale index: a persistent NaN went uncalled)."""
    full = _nan_across_a_bound(False, episode)
    bounded = _nan_across_a_bound(True, episode)
    assert full and bounded == full

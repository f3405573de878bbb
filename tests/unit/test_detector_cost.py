"""The detectors' vectorised passes (issue 13: cost per point flat in the run's length) decide
exactly what their walk one point at a time decides: the same alerts, at the same steps, with
the same numbers, on runs where every rule has work to do (a warm-up, restarts of the LR, spikes,
a divergence with NaNs in its window, a loss that converges next to a chance level)."""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from tests.unit.helpers import follow_in_chunks

from watchrun.demo import CsvWriter
from watchrun.detectors.base import small_median
from watchrun.detectors.progress import LossAtChance
from watchrun.detectors.schedule import LrSchedule
from watchrun.detectors.stability import Divergence, GradSpike, window_medians

N = 20_000


def _write(path: Path, rows: list[tuple[int, dict[str, float]]]) -> None:
    cols = sorted({k for _, r in rows for k in r})
    w = CsvWriter(str(path / "lightning_logs" / "version_0" / "metrics.csv"), cols)
    for step, row in rows:
        w.write(step, row)
    w.close()


def troubled_run(seed: int) -> list[tuple[int, dict[str, float]]]:
    """A warm-up, a cosine LR that restarts, gradient spikes (one recovered NaN among them),
    a loss that converges to about 0.25 (MSE's chance level), blows up late (through ln 2:
    at chance after learning) and turns NaN."""
    rng = random.Random(seed)
    rows = []
    for s in range(N):
        period = N // 3
        warm = min(1.0, (s % period) / 300)  # a warm-up at each restart
        lr = 1e-3 * warm * 0.5 * (1 + math.cos(math.pi * (s % period) / period))
        loss = 2.0 * math.exp(-s / 2000) + 0.25 + rng.gauss(0, 0.002)
        if s > 0.8 * N:
            loss *= math.exp((s - 0.8 * N) / 300)
        if s in (int(0.85 * N), int(0.85 * N) + 3) or s > 0.97 * N:
            loss = math.nan
        grad = abs(rng.lognormvariate(0, 0.2)) * (60 if s % 2999 == 0 and s else 1)
        if s == N // 2:
            grad = math.nan
        rows.append((s, {"train_loss_step": loss, "lr-Adam": lr, "grad_norm": grad}))
    return rows


def alerts(root: Path, chunks: int, name: str) -> list[tuple]:
    """`check` on the run, fed in `chunks` reads as a follower would see the file grow."""
    e = follow_in_chunks(next(root.rglob("metrics.csv")), root.parent / name, chunks, False)
    e.detect(final=True)
    return sorted(
        (a.detector, a.severity.value, a.step, a.message, repr(sorted(a.evidence.items())))
        for key in sorted(e.store.runs)
        for a in e.store.alerts_for(key)
    )


def one_point_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn every vectorised pass off: each point is walked alone, as before issue 13."""
    monkeypatch.setattr(GradSpike, "_block", lambda self, *a: False)
    monkeypatch.setattr(Divergence, "_quiet_chunk", lambda self, *a: False)
    monkeypatch.setattr(LossAtChance, "_worth_judging", lambda self, v, sv, idx, med, k, n: idx)

    def track_each(self: LrSchedule, vals: np.ndarray, steps: np.ndarray) -> None:
        for v, step in zip(vals.tolist(), steps.tolist(), strict=True):
            self._track(v, step)

    monkeypatch.setattr(LrSchedule, "_track_many", track_each)


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_passes_decide_as_the_walk_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    _write(tmp_path / "run", troubled_run(seed))
    fast = {chunks: alerts(tmp_path / "run", chunks, f"fast{chunks}") for chunks in (1, 7, 800)}
    one_point_at_a_time(monkeypatch)
    slow = alerts(tmp_path / "run", 7, "slow")
    assert fast[1] == fast[7] == fast[800] == slow  # 800 reads: live-sized chunks
    fired = {a[0] for a in slow}
    assert {"nan_loss", "divergence", "grad_spike", "lr_schedule", "loss_at_chance"} <= fired


def test_window_medians_are_nanmedians_one_window_at_a_time() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(1.0, 0.3, 2000)
    values[rng.integers(0, 2000, 300)] = np.nan
    values[100:110] = np.nan  # windows with no value at all
    for w in (4, 5):  # an even window takes the mean of the two middle values
        many = window_medians(values, w - 1, len(values), w)  # numpy, at once
        for k in range(w - 1, len(values)):
            few = window_medians(values, k, k + 1, w)[0]  # one by one, as live reads come
            window = values[k - w + 1 : k + 1]
            want = float(np.nanmedian(window)) if not np.isnan(window).all() else math.nan
            assert np.array_equal([many[k - w + 1], few], [want, want], equal_nan=True)


def lr_shapes(rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """LR logs made of pieces: ramps up, decays, constant stretches at and below the peak, a
    step logged twice, jumps back up."""
    vals: list[float] = []
    steps: list[int] = []
    v, step = rng.choice([0.0, 1e-5, 1e-3]), 0
    for _ in range(rng.randint(1, 12)):
        kind, length = rng.choice(["up", "down", "flat", "jump", "twice"]), rng.randint(1, 30)
        for _ in range(length):
            if kind == "up":
                v += rng.choice([1e-5, 1e-4])
            elif kind == "down":
                v = max(0.0, v - rng.choice([1e-5, 1e-4]))
            elif kind == "jump":
                v = rng.choice([v * 2, v / 2, 1e-3, max(vals or [v])])
            step += 0 if kind == "twice" and rng.random() < 0.5 else 1
            vals.append(v)
            steps.append(step)
    return np.array(vals), np.array(steps)


def test_lr_tracked_in_bulk_as_point_by_point() -> None:
    from watchrun.config import Config

    rng = random.Random(5)
    for _ in range(300):
        vals, steps = lr_shapes(rng)
        bulk, each = LrSchedule("r", Config()), LrSchedule("r", Config())
        at = 0
        while at < len(vals):
            end = min(len(vals), at + rng.randint(1, 40))
            bulk._track_many(vals[at:end], steps[at:end])
            for v, s in zip(vals[at:end].tolist(), steps[at:end].tolist(), strict=True):
                each._track(v, s)
            assert vars(bulk) == vars(each)
            at = end


def test_perfect_validation_read_live_as_in_batch(tmp_path: Path) -> None:
    """A pass with no new eval (train logs in between) is no break in a streak of perfect
    evals: live (a read per logged row), the alert comes at the eval that batch gives it."""
    rows = []
    for s in range(200):
        row = {"train_loss_step": 1.0 / (1 + s / 50)}
        if s % 20 == 19:
            row["val_acc"] = 0.8 + 0.001 * s if s < 100 else 1.0
        rows.append((s, row))
    _write(tmp_path / "run", rows)

    def perfect(chunks: int) -> list[tuple]:
        got = alerts(tmp_path / "run", chunks, f"live{chunks}")
        return [a[:3] for a in got if a[0] == "perfect_validation"]

    assert perfect(len(rows) + 1) == perfect(1) == [("perfect_validation", "warning", 139)]


def test_small_median_is_numpys_median() -> None:
    rng = np.random.default_rng(4)
    pool = np.array([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, 1.0])
    for _ in range(3000):
        xs = rng.normal(0, 1, rng.integers(1, 12))
        odd = rng.random(len(xs)) < 0.2
        xs[odd] = rng.choice(pool, int(odd.sum()))
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
            want = [float(np.median(xs)), float(np.nanmedian(xs))]
        got = [small_median(xs.tolist()), small_median(xs.tolist(), skip_nan=True)]
        assert np.array_equal(got, want, equal_nan=True), xs

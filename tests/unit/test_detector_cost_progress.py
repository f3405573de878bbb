"""The cheap passes of loss_at_chance, stuck_metric and the eval-streak detectors
(minority_class_hidden, prediction_collapse) decide what judging every point or every eval one
at a time decides (issue 13): the same alerts, at the same steps, with the same numbers."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from tests.unit.helpers import follow_in_chunks

from watchrun.config import Config, Target
from watchrun.demo import CsvWriter
from watchrun.detectors import classes, progress
from watchrun.detectors.base import RunView, SeriesView, step_noise
from watchrun.detectors.classes import JUDGE, exact_at, steps_where
from watchrun.detectors.fitting import smoothed_at
from watchrun.detectors.progress import (
    SAMPLE,
    EarlierLogs,
    LossAtChance,
    StuckMetric,
    TargetMiss,
    TrainTrend,
    _degenerate,
    _flat_windows,
    _window_counts,
    row_medians,
)
from watchrun.model import Run, Severity
from watchrun.semantics import role_of


def _view(columns: dict[str, tuple[np.ndarray, np.ndarray]], **hparams: float) -> RunView:
    run = Run("r", "/r", hparams=dict(hparams))
    series = {
        name: SeriesView(name, role_of(name, {}), steps, values, 0)
        for name, (steps, values) in columns.items()
    }
    return RunView(run, series, Config())


def _loss(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    """A train loss with work for every test of loss_at_chance: at ln K or ln 2 or 0.25 with
    little or much noise, falling through a chance level, learning and coming back, NaNs."""
    level = [math.log(3), math.log(2), 0.25][kind % 3]
    t = np.arange(n)
    noise = rng.choice([1e-4, 1e-3, 5e-3, 2e-2]) * rng.standard_normal(n)
    shape = rng.integers(5)
    if shape == 0:  # sits at chance from the start
        loss = level + noise
    elif shape == 1:  # falls through it slowly
        loss = level * (1.4 - 0.8 * t / n) + noise
    elif shape == 2:  # learns (to well or just below 0.75 of it), then goes back to chance
        loss = np.where(t < n // 3, rng.choice([0.3, 0.7]) * level, level) + noise
    elif shape == 3:  # pinned exactly, with stretches off it
        loss = np.where((t // 97) % 3 == 0, 0.6 * level, level) + noise * (t % 2)
    else:  # about as close as pinning allows: the median 0.2%, every log 0.5% off chance
        off, spread = rng.uniform(-0.003, 0.003), rng.uniform(0.001, 0.005)
        loss = level * (1 + off + spread * rng.uniform(-1, 1, n))
    bad = rng.random(n) < rng.choice([0.0, 0.002, 0.02])
    loss[bad] = rng.choice([np.nan, np.inf])
    return loss


@pytest.mark.parametrize("seed", range(6))
def test_loss_at_chance_filters_keep_every_candidate_that_fires(seed: int) -> None:
    """Every candidate at which _at fires (on a detector of its own) survives the vectorised
    filters, and a pass gives what judging every candidate gives."""
    rng = np.random.default_rng(seed)
    for kind in range(6):
        n = int(rng.integers(60, 900))
        steps = np.arange(n, dtype=np.int64) * 5
        cols = {"train_loss_step": (steps, _loss(rng, kind, n))}
        if rng.random() < 0.5:
            at = steps[::10].copy()
            acc = np.clip(rng.choice([0.5, 0.95]) + 0.02 * rng.standard_normal(len(at)), 0, 1)
            cols["val_acc"] = (at, acc)
        hp = {"num_classes": 3.0} if kind % 3 == 0 else {}
        view = _view(cols, **hp)
        sv = view.series["train_loss_step"]
        det = LossAtChance("r", Config())
        k, m = view.num_classes(), int(det.p["points"])
        idx, med = det._candidates(sv, k, m)
        kept = set(det._worth_judging(view, sv, idx, med, k, m).tolist())
        for i in idx.tolist():
            one = LossAtChance("r", Config())
            one._follow(sv, m)  # the logs it has seen (update feeds them)
            one._at(view, sv, i, k, m)
            assert not one.findings or i in kept, (seed, kind, i)
        fast, slow = LossAtChance("r", Config()), LossAtChance("r", Config())
        fast.update(view)
        slow._follow(sv, m)
        for i in idx.tolist():
            if sv.name not in slow.open:
                slow._at(view, sv, i, k, m)
        assert _said(fast) == _said(slow)


def _said(det: LossAtChance) -> list[tuple]:
    return [
        (f.key, a.step, a.message, a.evidence)
        for f in det.take()
        for a in [f.alert]
        if a is not None
    ]


def test_window_counts_count_each_window() -> None:
    rng = np.random.default_rng(1)
    hits = rng.random((3, 300)) < 0.3
    for n in (1, 5, 10):
        windows = np.lib.stride_tricks.sliding_window_view(hits, n, axis=1)
        assert (_window_counts(hits, n) == windows.sum(axis=2)).all()


def test_flat_windows_are_windows_with_no_spread() -> None:
    """All finite and equal: max - min == 0 and finite, with NaNs, infinities and -0.0."""
    rng = np.random.default_rng(2)
    pool = np.array([0.5, 0.5, 0.5, 0.25, 0.0, -0.0, np.nan, np.inf, -np.inf, 1e308, -1e308])
    for n in (1, 2, 5):
        for _ in range(200):
            vals = rng.choice(pool, int(rng.integers(n, 40)), p=None)
            vals[rng.random(len(vals)) < 0.6] = 0.5  # long flat stretches
            windows = np.lib.stride_tricks.sliding_window_view(vals, n)
            with np.errstate(invalid="ignore", over="ignore"):
                spread = windows.max(axis=1) - windows.min(axis=1)
            want = np.isfinite(spread) & (spread == 0)
            assert (_flat_windows(vals, n) == want).all()


def test_steps_where_is_the_unique_union() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        base = np.unique(rng.integers(0, 60, int(rng.integers(0, 30)))).astype(np.int64)
        parts: list[tuple[np.ndarray, np.ndarray | None]] = []
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.7:
                steps = base.copy()
            else:
                steps = np.sort(rng.integers(0, 60, int(rng.integers(0, 30)))).astype(np.int64)
            mask = None if rng.random() < 0.3 else rng.random(len(steps)) < 0.5
            parts.append((steps, mask))
        want = np.unique(np.concatenate([s if m is None else s[m] for s, m in parts])).astype(
            np.int64
        )
        got = steps_where(parts)
        assert got.dtype == np.int64 and got.tolist() == want.tolist()


def test_exact_at_is_exact() -> None:
    steps = np.array([2, 4, 4, 7, 9], dtype=np.int64)
    sv = SeriesView("val_acc", role_of("val_acc", {}), steps, np.arange(5.0), 0)
    at = np.array([0, 2, 3, 4, 7, 8, 9, 12], dtype=np.int64)
    got = exact_at(sv, at)
    want = [sv.exact(int(s)) for s in at]
    assert np.array_equal(got, np.array(want), equal_nan=True)


# -- eval streaks ------------------------------------------------------------------------------
COLUMNS = [
    "train_loss_step",
    "lr-Adam",
    "val_loss",
    "val_acc",
    "val_f1",
    "val_precision",
    "val_recall",
    "val_f1_class_0",
    "val_f1_class_1",
    "val_recall_class_0",
    "val_recall_class_1",
    "val_f1_macro",
    "val_top_class_share",
    "val_auc",
    "test_acc",
    "test_f1",
]


def eval_rows(seed: int) -> list[tuple[int, dict[str, float]]]:
    """Evals that switch between healthy, a minority class left behind, a collapse onto one
    class and a pinned accuracy, with a warm-up, gaps, NaNs and metrics some evals lack."""
    rng = random.Random(seed)
    rows: list[tuple[int, dict[str, float]]] = []
    state, low = "healthy", 0.2
    for e in range(400):
        step = 10 * (e + 1)
        lr = 1e-3 * min(1.0, e / 15)
        rows.append((step - 5, {"train_loss_step": 1.0 / (1 + e / 50) + rng.gauss(0, 0.01)}))
        if rng.random() < 0.15:
            state = rng.choice(["healthy", "minority", "collapse", "pinned", "minority"])
            low = rng.choice([0.2, 0.53])  # 0.53: a gap under instant_gap, two evals needed
        g = rng.gauss
        if state == "healthy":
            row = {"val_acc": 0.85 + g(0, 0.02), "val_f1_class_0": 0.8 + g(0, 0.05)}
            row |= {"val_f1_class_1": 0.75 + g(0, 0.05), "val_f1": 0.78 + g(0, 0.03)}
        elif state == "minority":
            row = {"val_acc": 0.9 + g(0, 0.02), "val_f1_class_0": 0.93 + g(0, 0.02)}
            row |= {"val_f1_class_1": max(0.0, low + g(0, 0.02)), "val_f1": 0.85 + g(0, 0.02)}
        elif state == "collapse":
            row = {"val_acc": 0.7, "val_f1_class_0": 0.82, "val_f1_class_1": 0.0}
            row |= {"val_f1": 0.0, "val_top_class_share": 0.95 + g(0, 0.03)}
        else:
            row = {"val_acc": 0.7, "val_f1_class_0": 0.8, "val_f1_class_1": 0.1, "val_f1": 0.3}
        row["val_recall_class_0"] = min(1.0, row["val_f1_class_0"] + 0.05)
        row["val_recall_class_1"] = max(0.0, row["val_f1_class_1"] - 0.05)
        row["val_f1_macro"] = (row["val_f1_class_0"] + row["val_f1_class_1"]) / 2
        row["val_precision"] = row["val_recall"] = row["val_f1"]
        row["val_loss"] = 0.5 + g(0, 0.05)
        row["val_auc"] = 0.5 + 0.4 * min(1.0, e / 100) + g(0, 0.01)
        for name in list(row):
            if rng.random() < 0.03:
                row[name] = math.nan
            elif rng.random() < 0.03:
                del row[name]
        row["lr-Adam"] = lr
        rows.append((step, row))
        if rng.random() < 0.1:  # a test split scored now and then, at a step of its own
            rows.append((step + 1, {"test_acc": 0.9 + g(0, 0.02), "test_f1": 0.3 + g(0, 0.2)}))
        if rng.random() < 0.2:  # an eval of one metric alone (no headline: _at says nothing)
            rows.append((step + 2, {"val_f1_class_1": rng.random() * 0.6}))
    return rows


def _walk_each(self: classes._EvalStreak, view: RunView, split: str, views: list) -> None:
    """The walk before issue 13: every candidate judged by _at."""
    all_steps = classes._eval_steps(views)
    last_pos = -1
    for step in self._candidates(views):
        pos = int(np.searchsorted(all_steps, step))
        if pos > last_pos + 1:  # ended at the first eval that is no candidate
            self._reset(split, int(all_steps[last_pos + 1]))
        self._at(view, split, views, int(step))
        last_pos = pos
    if last_pos < len(all_steps) - 1:
        self._reset(split, int(all_steps[last_pos + 1]))


def _scan_each(self: StuckMetric, view: RunView, sv: SeriesView, n: int) -> None:
    """stuck_metric's scan before issue 13: every new window's spread, each judged in turn (the
    train loss judged since the frozen stretch began, as the fast scan does)."""
    moving, loss_moving = self._train_moving(view), self._loss_moving(view, sv)
    vals = sv.values
    lo = max(0, sv.new_from - n + 1)
    if len(vals) < n:
        return
    windows = np.lib.stride_tricks.sliding_window_view(vals[lo:], n)
    with np.errstate(invalid="ignore"):
        spread = windows.max(axis=1) - windows.min(axis=1)
    flat = np.isfinite(spread) & (spread == 0)
    for k in range(len(flat)):
        i = lo + n - 1 + k
        if i < sv.new_from:
            continue
        if not flat[k]:
            self.clear(sv.name)
            continue
        v = float(vals[i])
        if self._perfect(sv, v):
            continue
        first, last = int(sv.steps[i - n + 1]), int(sv.steps[i])
        began = self.flat_since.setdefault(sv.name, first)  # the frozen stretch's start
        if view.claims_at(sv.name, last, loud=True):
            self._fire(view, sv, i, n, v, explained=True)
            continue
        if view.claims_at(sv.name, last):
            continue
        if loss_moving is not None and loss_moving(first, last, v):
            continue
        if i - n + 1 > 0 and not moving(began, last) and not _degenerate(sv, v):
            continue
        self._fire(view, sv, i, n, v)


def _unique_union(parts: list) -> np.ndarray:
    taken = [s if m is None else s[m] for s, m in parts]
    return np.unique(np.concatenate(taken)).astype(np.int64) if taken else np.empty(0, np.int64)


def _alerts(root: Path, chunks: int, name: str, stuck: bool = False) -> list[tuple]:
    e = follow_in_chunks(next(root.rglob("metrics.csv")), root.parent / name, chunks, False)
    e.detect(final=True)
    return sorted(
        (a.detector, a.severity.value, a.step, a.message, repr(sorted(a.evidence.items())))
        for key in sorted(e.store.runs)
        for a in e.store.alerts_for(key)
        if a.detector in ("minority_class_hidden", "prediction_collapse")
        or (stuck and a.detector == "stuck_metric")
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eval_streaks_decide_as_judging_every_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    w = CsvWriter(str(tmp_path / "run" / "lightning_logs" / "version_0" / "metrics.csv"), COLUMNS)
    for step, row in eval_rows(seed):
        w.write(step, row)
    w.close()
    fast = {c: _alerts(tmp_path / "run", c, f"fast{c}") for c in (1, 9, 120)}
    fast_stuck = _alerts(tmp_path / "run", 9, "fast-stuck", stuck=True)
    monkeypatch.setattr(StuckMetric, "_scan", _scan_each)
    monkeypatch.setattr(classes._EvalStreak, "_walk", _walk_each)
    monkeypatch.setattr(classes, "steps_where", _unique_union)
    monkeypatch.setattr(
        classes._EvalStreak,
        "_acts",
        lambda self, view, split, views, cands: np.full(len(cands), JUDGE, np.int8),
    )
    slow = _alerts(tmp_path / "run", 9, "slow", stuck=True)
    assert fast_stuck == slow  # stuck_metric: info or warning depends on when claims are seen
    slow = [a for a in slow if a[0] != "stuck_metric"]
    assert fast[1] == fast[9] == fast[120] == slow
    assert {"minority_class_hidden", "prediction_collapse"} <= {a[0] for a in slow}
    assert any(a[0] == "stuck_metric" for a in fast_stuck)


class _Scripted(classes._EvalStreak):
    """An eval-streak detector whose evals say what to do: 0 no candidate, 1 a candidate that
    cannot be bad (ZERO), 2 one with nothing to judge (NONE), 3 bad, 4 judged and fine."""

    id = "scripted"

    def _candidates(self, views: list) -> np.ndarray:
        sv = views[0]
        return sv.steps[sv.new_from :][sv.values[sv.new_from :] > 0]

    def _acts(self, view, split, views, cands):  # type: ignore[no-untyped-def]
        code = exact_at(views[0], cands)
        return np.select([code == 1, code == 2], [classes.ZERO, classes.NONE], JUDGE)

    def _at(self, view: RunView, split: str, views: list, step: int) -> None:
        code = views[0].exact(step)
        if code == 2:
            return
        if code in (1, 4):
            self.streak[split] = 0
            self.clear(split, step)
            return
        self.streak[split] = self.streak.get(split, 0) + 1
        if self.streak[split] >= 2:
            self.fire(split, Severity.WARNING, step, [], "bad", {}, "")


def test_the_walk_skips_only_what_judging_would_not_change() -> None:
    """The walk's jumps (ZERO and NONE candidates while nothing is open, gaps) against judging
    every candidate, on random scripts read in random chunks."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        codes = rng.choice(5, n, p=rng.dirichlet(np.ones(5))).astype(float)
        steps = np.arange(n, dtype=np.int64) * 10
        cuts = sorted({0, n, *rng.integers(0, n + 1, int(rng.integers(0, 5))).tolist()})
        said = []
        for walk in (classes._EvalStreak._walk, _walk_each):
            det = _Scripted("r", Config())
            for a, b in zip(cuts, cuts[1:], strict=False):
                sv = SeriesView("val_x", role_of("val_x", {}), steps[:b], codes[:b], a)
                view = RunView(Run("r", "/r"), {"val_x": sv}, Config())
                walk(det, view, "val", [sv])
            # an episode's end at the same step too (where a claim on its metrics ends)
            said.append([(f.key, f.alert.step if f.alert else f.until) for f in det.take()])
        assert said[0] == said[1], (codes.tolist(), cuts)


@pytest.mark.parametrize("seed", [0, 1])
def test_minority_acts_say_what_at_does_with_nothing_open(seed: int) -> None:
    """At a ZERO candidate, _at (nothing open) only ends the streak; at a NONE one, nothing."""
    cols: dict[str, tuple[list, list]] = {}
    for step, row in eval_rows(seed):
        for name, v in row.items():
            cols.setdefault(name, ([], []))
            cols[name][0].append(step)
            cols[name][1].append(v)
    view = _view({k: (np.array(s, np.int64), np.array(v)) for k, (s, v) in cols.items()})
    det = classes.MinorityClassHidden("r", Config())
    views = [sv for sv in view.series.values() if sv.role.split == "val"]
    views = [sv for sv in views if sv.role.kind in ("f1", "accuracy", "recall", "precision")]
    cands = det._candidates(views)
    acts = det._acts(view, "val", views, cands)
    assert {classes.ZERO, classes.NONE, JUDGE} <= set(acts.tolist())
    for step, act in zip(cands.tolist(), acts.tolist(), strict=True):
        if act == JUDGE:
            continue
        one = classes.MinorityClassHidden("r", Config())
        one.streak["val"] = 3
        one._at(view, "val", views, step)
        assert not one.findings and not one.open
        assert one.streak["val"] == (0 if act == classes.ZERO else 3)


def test_row_medians_are_numpys_medians_bit_for_bit() -> None:
    """NaNs, infinities, signed zeros and subnormals included (a median of -0.0s is +0.0)."""
    rng = np.random.default_rng(7)
    pool = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324, -5e-324])
    for m in range(1, 14):
        for _ in range(100):
            rows = rng.normal(size=(20, m)) * rng.choice([1e-3, 1.0, 1e300])
            odd = rng.random((20, m)) < rng.choice([0.1, 0.6, 1.0])
            rows[odd] = rng.choice(pool, int(odd.sum()))
            with np.errstate(invalid="ignore", over="ignore"):
                want, got = np.median(rows, axis=1), row_medians(rows)
            assert np.array_equal(want, got, equal_nan=True)
            assert (np.signbit(want) == np.signbit(got)).all()


def _train_moved_before(train: SeriesView, first: int, last: int) -> tuple[float, float] | None:
    """train_moved before issue 13: a copy of every finite loss up to `last`, each window."""
    a, b = smoothed_at(train, first), smoothed_at(train, last)
    upto = train.values[: train.at_or_before(last) + 1]
    upto = upto[np.isfinite(upto)]
    if len(upto) < 4 or not (math.isfinite(a) and math.isfinite(b)):
        return None
    span = float(upto.max() - upto.min())
    noise = 3.0 * 1.2533 * step_noise(upto[-64:]) * math.sqrt(2 / 5)
    moved = abs(b - a)
    return (a, b) if moved >= 0.05 * abs(a) and moved >= 0.05 * span and moved > noise else None


def test_train_trend_is_train_moved_window_by_window() -> None:
    rng = np.random.default_rng(11)
    for _ in range(40):
        n = int(rng.integers(1, 400))
        steps = np.sort(rng.choice(np.arange(5 * n), n, replace=False)).astype(np.int64)
        values = np.exp(-np.arange(n) / rng.uniform(5, 500)) + rng.normal(0, 0.01, n)
        odd = rng.random(n) < rng.choice([0.0, 0.05, 0.5])
        values[odd] = rng.choice([np.nan, np.inf, -np.inf], int(odd.sum()))
        train = SeriesView("train_loss", role_of("train_loss", {}), steps, values, 0)
        trend = TrainTrend(train)
        for _ in range(30):
            first, last = sorted(rng.integers(-10, 5 * n + 10, 2).tolist())
            assert trend.moved(first, last) == _train_moved_before(train, first, last)


def test_target_miss_in_bulk_as_point_by_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many new evals at once (a batch read) give what walking them one by one gives: plateaus,
    ties, signed zeros, NaNs, each operator, targets met late or never, in random chunks."""
    rng = np.random.default_rng(13)
    cases = []
    for _ in range(150):
        n = int(rng.integers(1, 300))
        pool = rng.choice([0.0, -0.0, 0.5, 0.25, 1.0, np.nan], n)
        trend = np.round(rng.uniform(0, 1, n) * rng.choice([1, 10]), 1) / rng.choice([1, 10])
        values = np.where(rng.random(n) < 0.3, pool, trend)
        op = str(rng.choice(["<=", "<", ">=", ">"]))
        target = Target("val_loss", op, float(rng.choice([0.0, 0.1, 0.5, 0.95, 2.0])))
        cuts = sorted({0, n, *rng.integers(0, n + 1, int(rng.integers(0, 4))).tolist()})
        cases.append((np.arange(n, dtype=np.int64) * 3, values, target, cuts))

    def run(case: tuple) -> list[tuple]:
        steps, values, target, cuts = case
        det = TargetMiss("r", Config())
        out = []
        for a, b in zip(cuts, cuts[1:], strict=False):
            sv = SeriesView("val_loss", role_of("val_loss", {}), steps[:b], values[:b], a)
            view = RunView(Run("r", "/r"), {"val_loss": sv}, Config(), [target])
            det.update(view)
            out += [(f.key, f.alert and (f.alert.step, f.alert.message)) for f in det.take()]
            out.append(repr(det.best))
        return out

    fast = [run(case) for case in cases]
    monkeypatch.setattr(progress, "FEW", 10**9)  # every point walked alone
    slow = [run(case) for case in cases]
    assert fast == slow
    assert any(f for case in fast for f in case if isinstance(f, tuple) and f[1])


def _sample_quartile(values: np.ndarray, end: int) -> float:
    """The quartile EarlierLogs keeps, computed on the whole history: the logs before `end` at
    the smallest power-of-two spacing that leaves at most SAMPLE of them."""
    stride = 1
    while -(-end // stride) > SAMPLE:
        stride *= 2
    before = values[:end:stride]
    before = before[np.isfinite(before)]
    return float(np.percentile(before, 25)) if len(before) >= 4 else math.inf


def _old_quartile(values: np.ndarray, end: int) -> float:
    """_quartile_before before the logs were kept as they pass (the whole history at hand)."""
    before = values[:end]
    if len(before) > 4096:
        before = before[:: len(before) // 4096 + 1]
    before = before[np.isfinite(before)]
    return float(np.percentile(before, 25)) if len(before) >= 4 else math.inf


def test_earlier_logs_quote_the_whole_history_s_quartile_whatever_the_chunks() -> None:
    """Fed in random chunks and asked at random points (never behind what a later candidate
    can ask), the quartile is the one computed on the whole history, bit for bit; below 8192
    logs it is the one quoted before the logs were kept (the same logs: every one, then every
    second)."""
    rng = np.random.default_rng(11)
    for _ in range(24):
        n = int(rng.choice([300, 5000, 9000, 40_000]))
        values = rng.normal(0.5, 0.2, n)
        values[rng.random(n) < 0.01] = np.nan
        keep = int(rng.integers(11, 80))
        logs, fed, asked = EarlierLogs("loss", keep), 0, 0
        most = int(rng.choice([8, n // 4 + 2])) if n < 10_000 else n // 4 + 2  # live: a few
        while fed < n:
            new = fed + int(rng.integers(1, most))
            logs.feed(values[fed:new])
            lo = max(asked, fed - keep + 1, 0)  # a candidate's window reaches back keep - 1 logs
            ends = rng.integers(lo, min(new, n) + 1, int(rng.integers(0, 4)))
            for end in np.sort(ends).tolist():
                asked = end
                got = logs.lower_quartile(end)
                assert got == _sample_quartile(values, end), (n, end)
                if end < 8192:
                    assert got == _old_quartile(values, end)
            logs.settle()
            fed = new
            assert logs.count <= SAMPLE and len(logs.pending) <= 2 * keep

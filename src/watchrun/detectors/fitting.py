"""How the losses move against each other: overfitting, underfitting, not learning at all."""

from __future__ import annotations

import math

import numpy as np

from watchrun.detectors.base import (
    FEW,
    Detector,
    RunView,
    SeriesView,
    fmt,
    pct,
    shown,
    small_median,
    step_noise,
    warming_up,
)
from watchrun.detectors.rolling import Growing, Seen, SortedValues, fast_median
from watchrun.model import Severity
from watchrun.semantics import LOSS_PARTS, SPLITS, token_split


def smoothed_at(sv: SeriesView, step: int, k: int = 5) -> float:
    """Median of the last k points at or before `step` (the first point when `step` comes
    before it: an eval logged before the first train loss)."""
    i = sv.at_or_before(step)
    if i < 0:
        return float(sv.values[0]) if len(sv.values) else math.nan
    window = [x for x in sv.values[max(0, i - k + 1) : i + 1].tolist() if math.isfinite(x)]
    return small_median(window) if window else math.nan  # np.median's arithmetic


def per_epoch_twin(view: RunView, train: SeriesView | None) -> SeriesView | None:
    """The train loss to hold against per-eval validation losses. Lightning logs a metric
    logged with on_step and on_epoch twice, `<name>_step` (one batch every few steps: noise of
    a single batch) and `<name>_epoch` (the mean over the epoch). Comparing a few batches at
    the best eval with a few batches now measures that noise, not learning; the epoch mean is
    what the val loss, also a mean over an epoch, is compared with."""
    if train is None or not train.name.endswith("_step"):
        return train
    twin = view.series.get(train.name[: -len("_step")] + "_epoch")
    return twin if twin is not None and len(twin.values) >= 2 else train


def is_loss_part(name: str) -> bool:
    """One part of a summed loss (`val/cls_loss`, `loss_box_reg`), not the total."""
    tokens = set(token_split(name.lower()))
    return bool(tokens & LOSS_PARTS) and "total" not in tokens


def loss_part_pairs(view: RunView, exclude: SeriesView) -> list[tuple[SeriesView, SeriesView]]:
    """(val part, its train twin) for every other validation loss part with a train series of
    the same name but for the split (`val/cls_loss` and `train/cls_loss`). None when a train part
    is exactly 0 throughout (a detector trained on images without boxes): that is a data
    problem for the collapse detectors, not a story of parts."""

    def rest(sv: SeriesView) -> tuple[str, ...]:
        return tuple(t for t in token_split(sv.name.lower()) if t and t not in SPLITS)

    trains = {rest(sv): sv for sv in view.where(split="train", kind="loss") if sv.role.cls is None}
    if any(len(sv.values) and not np.any(sv.values) for sv in trains.values()):
        return []  # a part exactly 0 at every log: no targets of that kind, a broken data set
    out = []
    for sv in view.where(split="val", kind="loss"):
        if sv is exclude or sv.role.cls is not None or not is_loss_part(sv.name):
            continue
        twin = trains.get(rest(sv))
        if twin is not None and len(twin.values) >= 2:
            out.append((sv, twin))
    return out


def task_metric_stalled(view: RunView, since_step: int, step: int) -> bool:
    """The run's validation task metric (mAP first, then F1, accuracy...) has learned something
    (its best so far is off its known floor: an mAP of 0.002 is a model that finds nothing)
    and gained no more than 1% of its value between `since_step` and `step`. False when the
    run logs none: a loss part alone is not enough evidence."""
    order = ("map", "f1", "accuracy", "auc", "mcc", "r2", "wer", "cer", "precision", "recall")
    cands = [
        sv
        for sv in view.where(split="val")
        if sv.role.cls is None and sv.role.kind in order and sv.role.higher_better is not None
    ]
    if not cands:
        return False
    sv = min(cands, key=lambda s: (order.index(s.role.kind), len(s.name), s.name))
    lo, hi = sv.at_or_before(since_step), sv.at_or_before(step)
    if lo < 0 or hi <= lo:
        return False
    upto = sv.values[: hi + 1]
    upto = upto[np.isfinite(upto)]
    then, later = sv.values[lo], sv.values[lo + 1 : hi + 1]
    later = later[np.isfinite(later)]
    if not (math.isfinite(then) and len(later) and len(upto)):
        return False
    floor = FLOORS.get(sv.role.kind)
    best = float(upto.max() if sv.role.higher_better else upto.min())
    if floor is not None and abs(best - floor) <= FLOOR_BAND:
        return False  # nothing learned: nothing to overfit (not_learning's and the collapses')
    if sv.role.higher_better:
        return bool(later.max() <= then + 0.01 * abs(then))
    return bool(later.min() >= then - 0.01 * abs(then))


def rising_trend_t(values: np.ndarray) -> float:
    """The t statistic of the slope of a least-squares line through `values` (one per eval):
    how clearly they rise against their scatter around the line. 0 for fewer than 3 points."""
    y = values[np.isfinite(values)]
    n = len(y)
    if n < 3:
        return 0.0
    x = np.arange(n, dtype=float) - (n - 1) / 2
    slope = float(x @ (y - y.mean()) / (x @ x))
    resid = y - y.mean() - slope * x
    se = math.sqrt(max(float(resid @ resid) / (n - 2), 1e-300) / float(x @ x))
    return slope / se


def untrained_level(values: np.ndarray) -> float:
    """Where a loss started: the lower of its first finite log and the median of its first few.
    A learning rate far too high blows the loss up in the first steps; the level before that
    (or, when even the first log is blown up, the first few) is what "learned" is judged against."""
    fin = values[np.isfinite(values)]
    if len(fin) == 0:
        return math.nan
    return min(float(fin[0]), float(np.median(fin[: max(3, len(fin) // 20)])))


def range_min(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """min(values[lo[i]:hi[i]+1]) for many ranges at once (a sparse table, O(n log n))."""
    table = [values]
    span = 1
    while 2 * span <= len(values):
        prev = table[-1]
        table.append(np.minimum(prev[:-span], prev[span:]))
        span *= 2
    length = hi - lo + 1
    level = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
    out = np.empty(len(lo))
    for lv in np.unique(level):
        sel = level == lv
        t = table[int(lv)]
        out[sel] = np.minimum(t[lo[sel]], t[hi[sel] - (1 << int(lv)) + 1])
    return out


def _window(m: np.ndarray, k: int) -> np.ndarray:
    """The smoothing windows ending at evals m (0-based): a tenth of the evals so far, at least
    k, partial at the start."""
    return np.minimum(np.maximum(k, (m + 1) // 10), m + 1)


class EvalTrack:
    """Overfitting's per-eval arrays over one validation loss's finite evals (the smoothed
    loss, its running best level and where it was, the streak of evals above it, the trend since
    it), kept between calls: each call works out only the evals it has not seen, carrying the
    running sums, minimum and argmax forward, so a live eval costs O(1), not O(evals). Sums are
    carried as np.cumsum runs them (one addition after another), so the arrays are bit for bit
    those of a pass over all the evals. When the history changes under them (a bounded store, a
    series taken over) they are worked out again from the first eval."""

    def __init__(self) -> None:
        self.seen = Seen()
        self.taken_steps = np.empty(0, dtype=np.int64)
        self._reset()

    def _reset(self) -> None:
        self.n = 0  # finite evals taken in
        self.first_new = 0  # the first of them new to this call
        self.csum, self.sq = Growing(0.0), Growing(0.0)  # running sums of fv and fv**2
        self.level, self.at_best, self.last_break = math.inf, 0, -1  # carried to the next eval
        self._full: tuple[np.ndarray, np.ndarray] | None = None

    def take(self, view: RunView, val: SeriesView, p: dict) -> dict[str, np.ndarray]:
        """Take in val's points not seen yet; the arrays over those evals (`idx`: their
        positions among the finite evals; first_new: the first one the runner calls new)."""
        self._full = None
        at = self.seen.new_from(view, val)
        if at is None or at > val.new_from:
            self._reset()
            at = 0
        rel = np.flatnonzero(np.isfinite(val.values[at:]))
        fv_new = val.values[at:][rel]
        self.taken_steps = val.steps[at:][rel]  # the steps of the evals taken by this call
        if at == 0:
            self._full = (rel, fv_new)
        self.first_new = self.n + int(np.searchsorted(rel, val.new_from - at))
        out = self._extend(fv_new, p)
        self.seen.mark(view, val)
        return out

    def finite(self, val: SeriesView) -> np.ndarray:
        return self._whole(val)[0]

    def fv(self, val: SeriesView) -> np.ndarray:
        return self._whole(val)[1]

    def _whole(self, val: SeriesView) -> tuple[np.ndarray, np.ndarray]:
        if self._full is None:
            finite = np.flatnonzero(np.isfinite(val.values))
            self._full = (finite, val.values[finite])
        return self._full

    def _extend(self, fv: np.ndarray, p: dict) -> dict[str, np.ndarray]:
        n0, m = self.n, len(fv)
        idx = np.arange(n0, n0 + m)
        if m == 0:
            empty = np.empty(0)
            return dict.fromkeys(("level", "at_best", "streak", "rise_s"), empty) | {
                "idx": idx,
                "cond": np.zeros(0, dtype=bool),
                "trend": np.zeros(0, dtype=bool),
            }
        if n0 and m <= FEW_EVALS:
            return self._extend_each(fv, p)
        k = int(p["patience"])
        first = n0 == 0
        w = _window(idx, k)
        if first:
            self.csum.extend(np.cumsum(fv))
            self.sq.extend(np.cumsum(fv * fv))
        else:
            self.csum.extend(np.cumsum(np.concatenate([[self.csum.array[-1]], fv]))[1:])
            self.sq.extend(np.cumsum(np.concatenate([[self.sq.array[-1]], fv * fv]))[1:])
        csum, sq = self.csum.array, self.sq.array
        smooth = (csum[n0 + 1 :] - csum[idx + 1 - w]) / w  # csum[idx + 1]: the new sums
        level = _carried(np.minimum, self.level, smooth, first)
        at_best = _carried(np.maximum, self.at_best, np.where(smooth <= level, idx, 0), first)
        if first:
            above = np.concatenate([[False], fv[1:] >= level[:-1] * (1 + p["noise"])])
        else:
            prev = np.concatenate([[self.level], level[:-1]])
            above = fv >= prev * (1 + p["noise"])
        last_break = _carried(np.maximum, self.last_break, np.where(~above, idx, -1), first)
        streak = np.where(above, idx - last_break, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rise_s = np.where(level > 0, smooth / level - 1, np.inf)
        cond = (streak >= k) & (rise_s >= p["min_rise"] / 2)
        # the rise of the eval itself, worked out only where the rest of the rule holds (the
        # same elementwise arithmetic on those evals)
        sel = np.flatnonzero(cond)
        with np.errstate(divide="ignore", invalid="ignore"):
            lv = level[sel]
            rise_level = np.where(lv > 0, fv[sel] / lv - 1, np.inf)
        cond[sel] = rise_level >= p["min_rise"] / 2
        # a noisy curve that trends up: the mean of all evals after the best window is clearly
        # above the best level (t >= trend_t); needs a strong train-loss drop to count. Only
        # evals 2 x patience or more after the best can: the rest is worked out for them alone
        after = np.maximum(idx - at_best, 0)
        sel = np.flatnonzero(after >= 2 * k)
        i, b, a, lv = idx[sel], at_best[sel], after[sel], level[sel]
        with np.errstate(divide="ignore", invalid="ignore"):
            total = csum[i + 1] - csum[b + 1]
            mean_after = np.where(a > 0, total / np.maximum(a, 1), np.nan)
            var_after = (sq[i + 1] - sq[b + 1]) / np.maximum(a, 1) - mean_after**2
            t_after = (mean_after - lv) / np.sqrt(
                np.maximum(var_after, 1e-300) / np.maximum(a - 1, 1)
            )
        trend = np.zeros(m, dtype=bool)
        trend[sel] = (mean_after >= lv * (1 + p["min_rise"])) & (t_after >= p["trend_t"])
        cond |= trend
        self.n = n0 + m
        self.level, self.at_best = float(level[-1]), int(at_best[-1])
        self.last_break = int(last_break[-1])
        return {
            "idx": idx,
            "level": level,
            "at_best": at_best,
            "streak": streak,
            "rise_s": rise_s,
            "cond": cond,
            "trend": trend,
        }

    def _extend_each(self, fv: np.ndarray, p: dict) -> dict[str, np.ndarray]:
        """_extend for a few evals after the first: the same operations on each eval's floats
        (numpy's per-call cost would dominate), in the same order, with np.minimum's and
        np.maximum's NaN rule."""
        k, noise, rise, trend_t = int(p["patience"]), p["noise"], p["min_rise"], p["trend_t"]
        csum, sq = self.csum, self.sq
        level, at_best, last_break = self.level, self.at_best, self.last_break
        cols: dict[str, list] = {key: [] for key in _EVAL_ARRAYS}
        for i, x in enumerate(fv.tolist(), start=self.n):
            c_i = float(csum.buf[i]) + x
            csum.append(c_i)
            sq.append(float(sq.buf[i]) + x * x)
            w = min(max(k, (i + 1) // 10), i + 1)
            # w is 0 only for a patience of 0 at the first evals: x - x over 0, NaN as numpy gives
            smooth = (c_i - float(csum.buf[i + 1 - w])) / w if w else math.nan
            prev = level
            level = math.nan if prev != prev or smooth != smooth else min(prev, smooth)
            at_best = max(at_best, i if smooth <= level else 0)
            above = x >= prev * (1 + noise)
            last_break = max(last_break, -1 if above else i)
            streak = i - last_break if above else 0
            rise_s = smooth / level - 1 if level > 0 else math.inf
            rise_level = x / level - 1 if level > 0 else math.inf
            after = max(i - at_best, 0)
            total = c_i - float(csum.buf[at_best + 1])
            mean_after = total / max(after, 1) if after > 0 else math.nan
            var_after = (float(sq.buf[i + 1]) - float(sq.buf[at_best + 1])) / max(
                after, 1
            ) - mean_after * mean_after
            floored = var_after if var_after != var_after or var_after >= 1e-300 else 1e-300
            t_after = (mean_after - level) / math.sqrt(floored / max(after - 1, 1))
            trend = after >= 2 * k and mean_after >= level * (1 + rise) and t_after >= trend_t
            cond = streak >= k and rise_s >= rise / 2 and rise_level >= rise / 2
            for key, v in zip(
                _EVAL_ARRAYS,
                (i, level, at_best, streak, rise_s, cond or trend, trend),
                strict=True,
            ):
                cols[key].append(v)
        self.n += len(fv)
        self.level, self.at_best, self.last_break = level, at_best, last_break
        out = {key: np.array(v) for key, v in cols.items()}
        out["cond"], out["trend"] = out["cond"].astype(bool), out["trend"].astype(bool)
        return out


FEW_EVALS = 4  # new evals (a live read) judged one by one: numpy's per-call cost dominates
_EVAL_ARRAYS = ("idx", "level", "at_best", "streak", "rise_s", "cond", "trend")


def _carried(op: np.ufunc, carry: float, x: np.ndarray, first: bool) -> np.ndarray:
    """op.accumulate(x) continuing from `carry` (the value before x[0]); `first`: x starts the
    series, no carry."""
    if first:
        return op.accumulate(x)
    return op.accumulate(np.concatenate([[carry], x]))[1:]


def smoothed_many(sv: SeriesView, steps: np.ndarray, k: int) -> np.ndarray:
    """smoothed_at(sv, step, k) for each of `steps`, bit for bit: a full window of finite
    values of odd length has its middle value as median, taken from the sorted rows at once; the
    rest (a window cut by the start, a NaN or inf in it, an even k) one by one."""
    i = np.searchsorted(sv.steps, steps, side="right") - 1
    out = np.empty(len(steps))
    whole = i >= k - 1
    if k % 2 and len(sv.values) >= k:
        rows = sv.values[np.maximum(i, k - 1)[:, None] + np.arange(1 - k, 1)]
        whole &= np.isfinite(rows).all(axis=1)
        out[whole] = np.sort(rows[whole], axis=1)[:, k // 2]
    else:
        whole[:] = False
    for r in np.flatnonzero(~whole).tolist():
        out[r] = smoothed_at(sv, int(steps[r]), k)
    return out


class _Kept:
    """One smoothing's values at a run of evals (their positions among the finite evals and
    steps), oldest first, from `off` on."""

    __slots__ = ("pos", "steps", "values", "off")

    def __init__(self) -> None:
        self.pos, self.steps, self.values = Growing(), Growing(), Growing()
        self.off = 0

    def add(self, first: int, steps: np.ndarray, values: np.ndarray) -> None:
        self.pos.extend(np.arange(first, first + len(steps), dtype=float))
        self.steps.extend(steps)
        self.values.extend(values)

    def let_go(self, before: int) -> None:
        pos = self.pos.array
        self.off = max(self.off, int(np.searchsorted(pos, before)))
        if self.off > 64 and 2 * self.off > len(pos):  # compact: amortised O(1) an eval
            for g in (self.pos, self.steps, self.values):
                kept = g.array[self.off :].copy()
                g.n = 0
                g.extend(kept)
            self.off = 0

    def at(self, step: int) -> float | None:
        steps = self.steps.array[self.off :]
        j = int(np.searchsorted(steps, step))
        return (
            float(self.values.array[self.off + j]) if j < len(steps) and steps[j] == step else None
        )


class TrainAtEvals:
    """The smoothed train loss (smoothed_at) at each eval that may yet become the best one,
    worked out as the eval passes, when every train log up to its step has arrived and is still
    at full resolution (a bounded store later reduces that history to min/max buckets). What
    an alert quotes is then the same however much of the history the store still holds. Evals
    before the start of the current best level's window can no longer become the best and are
    let go (in a short run, any eval can: nothing is let go until it is long)."""

    def __init__(self) -> None:
        self.by: dict[tuple[str, int], _Kept] = {}  # (train, k) -> its values at the evals

    def reset(self) -> None:
        self.by.clear()

    def add(self, train: SeriesView, ks: tuple[int, ...], first: int, steps: np.ndarray) -> None:
        """The evals at positions first, first + 1... (among the finite evals) at `steps`."""
        for k in ks:
            if len(steps) <= FEW_EVALS:  # a live read: numpy's per-call cost would dominate
                values = np.array([smoothed_at(train, s, k) for s in steps.tolist()])
            else:
                values = smoothed_many(train, steps, k)
            kept = self.by.get((train.name, k))
            if kept is None:
                kept = self.by[(train.name, k)] = _Kept()
            kept.add(first, steps, values)

    def let_go(self, before: int) -> None:
        """Forget the evals at positions before `before`."""
        for kept in self.by.values():
            kept.let_go(before)

    def at(self, train: SeriesView, step: int, k: int) -> float:
        """smoothed_at(train, step, k) as it was when the eval at `step` passed."""
        kept = self.by.get((train.name, k))
        v = kept.at(step) if kept is not None else None
        return smoothed_at(train, step, k) if v is None else v


START_LOGS = 4096  # the first finite logs of a train loss kept for untrained_level


class LossStart:
    """What untrained_level takes from a train loss's history, kept as its logs pass: the
    first START_LOGS finite logs and how many finite logs there were. A bounded store reduces
    the history between the first ones and the recent ones to min/max buckets; the level is then
    the same however much it still holds. The same as untrained_level on the whole history while
    the first twentieth it takes a median of is within START_LOGS (up to 20 x START_LOGS finite
    logs); past that, the median of the first START_LOGS (where the loss started)."""

    __slots__ = ("start", "count", "head")

    def __init__(self, start: int) -> None:
        self.start = start  # the view's first index in the run's series: a new segment resets
        self.count = 0
        self.head = Growing()

    def feed(self, values: np.ndarray) -> None:
        fin = values[np.isfinite(values)]
        if self.head.n < START_LOGS:
            self.head.extend(fin[: START_LOGS - self.head.n])
        self.count += len(fin)

    def level(self, train: SeriesView, step: int) -> float:
        """untrained_level(train.values[: train.at_or_before(step) + 1]), on the logs kept
        (the logs after `step` are recent ones, at full resolution: counted off)."""
        after = train.values[train.at_or_before(step) + 1 :]
        n = self.count - int(np.count_nonzero(np.isfinite(after)))
        if n <= 0:
            return math.nan
        head = self.head.array
        return min(float(head[0]), float(np.median(head[: min(max(3, n // 20), n, START_LOGS)])))


def _train_k(view: RunView, train: SeriesView) -> int:
    """The train logs smoothed at an eval: an epoch mean is already smoothed over the eval
    interval (compared eval to eval, 1), a per-batch loss over 5 logs."""
    return 1 if train.name.endswith("_epoch") and train is not view.pick("train", "loss") else 5


class Overfitting(Detector):
    """Validation loss above its best level for `patience` evals in a row, the latest `min_rise`
    above the best eval and the smoothed loss half that, by more than `noise_sigmas` times the
    eval-to-eval scatter, while the train loss fell at least `min_train_drop`. Or, for a noisy
    curve: the mean of every eval after the best window is `min_rise` above the best level with
    a t statistic >= `trend_t`, while the train loss fell at least `trend_train_drop`.

    The smoothed loss is the mean of the last w evals, w growing with the run (a tenth of the
    evals so far, at least `patience`): on a long noisy plateau no lucky low eval becomes the
    "best". The best level is the lowest smoothed value; the best eval, the lowest eval inside
    that window. Without a train loss, a larger and steady rise. The episode ends when the
    smoothed loss comes back within half of `min_rise`. The per-eval arrays are kept between calls
    (EvalTrack) bit for bit as a pass over the history gives them, so any chunking of the data
    gives the same alerts.

    Short runs (under 2 x `min_evals` evals): the rise since the lowest eval at each of
    `short_rises` evals in a row is enough (see `_short_rise`). Nothing while the LR warms up.
    Severity: warning; info when a speech model's decoded WER/CER is no worse (over 3 evals) than
    when the loss was at its best (its token loss rises as it grows confident on a few hard
    utterances while the transcripts hold; choose checkpoints by WER)."""

    id = "overfitting"
    DEFAULTS = {
        "patience": 3,
        "min_rise": 0.10,
        "noise": 0.02,
        "min_train_drop": 0.05,
        "min_rise_without_train": 0.5,
        "noise_sigmas": 3.0,
        "window_sigmas": 2.0,
        "trend_t": 2.5,
        "min_evals": 6,
        "early_min_rise": 0.3,
        "short_rises": 3,
        "trend_train_drop": 0.3,
    }

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.best = math.inf  # best smoothed level at the point being judged
        self.best_raw = math.inf  # lowest eval inside the best window
        self.best_step = 0
        self._tracks: dict[str, EvalTrack] = {}  # validation loss -> its running arrays
        self._quoted: dict[str, TrainAtEvals] = {}  # validation loss -> train at its evals
        self._starts: dict[str, LossStart] = {}  # train loss -> its first logs

    def update(self, view: RunView) -> None:
        if view.is_rl:
            return
        self._follow_starts(view)
        val = view.pick("val", "loss")
        if val is None:
            return
        self._judge(view, val, per_epoch_twin(view, view.pick("train", "loss")))
        if is_loss_part(val.name):  # no total logged: each part against its own train twin
            for part, train in loss_part_pairs(view, exclude=val):
                self._judge(view, part, train, gate=True)

    def _judge(
        self, view: RunView, val: SeriesView, train: SeriesView | None, gate: bool = False
    ) -> None:
        """Judge one validation loss against its train loss. `gate`: one part of a summed loss
        (the classification loss of a detector, whose box loss still falls) speaks only when
        the task metric has stopped improving since that part's best: a part that rises while
        mAP still climbs is a trade between the parts, not a model that memorises."""
        if val.new_from >= len(val.values):
            return
        track = self._tracks.get(val.name)
        if track is None:
            track = self._tracks[val.name] = EvalTrack()
        a = track.take(view, val, self.p)
        first_new, n = track.first_new, track.n
        self._carry_train(view, val, train, track)
        if n == 0 or first_new >= n:
            return
        k = int(self.p["patience"])
        idx = a["idx"]
        new = idx >= first_new
        level, at_best, streak, rise_s = a["level"], a["at_best"], a["streak"], a["rise_s"]
        cond, trend = a["cond"], a["trend"]
        short = np.zeros(len(idx), dtype=bool)
        if first_new < 2 * int(self.p["min_evals"]):
            short = self._short_rise(track.fv(val), first_new)[idx[0] :]
        cond |= short
        cond &= new
        cands = np.flatnonzero(cond)  # positions in the arrays: eval idx[0] + c
        calm = idx[(rise_s < self.p["min_rise"] / 2) & new]
        if not len(cands):  # nothing to fire: an open episode ends at a calm new eval
            if val.name in self.open and len(calm):
                self.clear(val.name)
            return
        fv, finite = track.fv(val), track.finite(val)
        base = int(idx[0])
        bests = at_best[cands]
        widths = _window(bests, k)
        if len(cands) > 8:
            raw = range_min(fv, bests + 1 - widths, bests)
        else:  # a few (a live read): each window's min directly, the same values
            raw = np.array(
                [fv[b + 1 - wb : b + 1].min() for b, wb in zip(bests, widths, strict=True)]
            )
        done = first_new - 1
        for c, q in enumerate(cands.tolist()):
            j = base + q
            if val.name in self.open:
                if not len(calm[(calm > done) & (calm < j)]):
                    continue  # still the same episode
                self.clear(val.name)
            if short[q] and not (
                trend[q] or (streak[q] >= k and rise_s[q] >= self.p["min_rise"] / 2)
            ):
                jj = int(np.argmin(fv[: j + 1]))  # a short run: its lowest eval is the best
                self.best, self.best_raw, self.best_step = (
                    float(fv[jj]),
                    float(fv[jj]),
                    int(val.steps[finite[jj]]),
                )
                self._maybe_fire(
                    view, val, train, int(finite[j]), float(fv[j]), short=True, gate=gate
                )
                done = j
                continue
            m = int(at_best[q])
            lo = m + 1 - min(max(k, (m + 1) // 10), m + 1)
            jj = lo + int(np.argmin(fv[lo : m + 1]))
            self.best, self.best_raw, self.best_step = (
                float(level[q]),
                float(raw[c]),
                int(val.steps[finite[jj]]),
            )
            if fv[j] >= self.best_raw * (1 + self.p["min_rise"]) or trend[q]:
                self._maybe_fire(
                    view, val, train, int(finite[j]), float(fv[j]), bool(trend[q]), gate=gate
                )
            done = j
        if val.name in self.open and len(calm) and calm[-1] >= first_new and calm[-1] > done:
            self.clear(val.name)

    def _follow_starts(self, view: RunView) -> None:
        """Feed every train loss's new logs to its LossStart (all of them, from a train loss
        first seen or a new segment)."""
        for sv in view.series.values():
            if sv.role.split != "train" or sv.role.kind != "loss":
                continue
            start = self._starts.get(sv.name)
            if start is None or start.start != sv.start:
                start = self._starts[sv.name] = LossStart(sv.start)
                start.feed(sv.values)
            elif sv.new_from < len(sv.values):
                start.feed(sv.values[sv.new_from :])

    def _untrained(self, train: SeriesView, step: int) -> float:
        start = self._starts.get(train.name)
        if start is None:  # not a train loss by its role (picked by an alias): its history
            return untrained_level(train.values[: train.at_or_before(step) + 1])
        return start.level(train, step)

    def _carry_train(
        self, view: RunView, val: SeriesView, train: SeriesView | None, track: EvalTrack
    ) -> None:
        """Keep the smoothed train loss (both smoothings the alert and a loss part's gate quote)
        at the evals that may yet become the best: those from the start of the best level's
        window on (all of them while the run is short: its rule takes the lowest of all evals).
        The best level only moves later, and its window's start with it; an eval before it may
        still be quoted in this call, from this call's view, as it is kept."""
        quoted = self._quoted.get(val.name)
        if quoted is None:
            quoted = self._quoted[val.name] = TrainAtEvals()
        steps = track.taken_steps
        first = track.n - len(steps)
        if first == 0:  # taken again from the first eval: the history changed under the track
            quoted.reset()
        lo = 0
        if track.n > 2 * int(self.p["min_evals"]):
            m, k = track.at_best, int(self.p["patience"])
            lo = m + 1 - min(max(k, (m + 1) // 10), m + 1)
            quoted.let_go(lo)
        if train is not None and len(train.values) and len(steps) and first + len(steps) > lo:
            k = _train_k(view, train)
            skip = max(0, lo - first)
            quoted.add(train, (k,) if k == 5 else (k, 5), first + skip, steps[skip:])

    def _train_at(self, val: SeriesView, train: SeriesView, step: int, k: int) -> float:
        quoted = self._quoted.get(val.name)
        return quoted.at(train, step, k) if quoted else smoothed_at(train, step, k)

    def _short_rise(self, fv: np.ndarray, first_new: int) -> np.ndarray:
        """Short runs (fewer than 2 x `min_evals` evals so far), where a smoothing window would
        be most of the run: the validation loss came down to its lowest eval, then rose at each
        of the `short_rises` or more evals since, to `min_rise` above that lowest eval and above
        the eval before it (not a return from one lucky low), no single eval making two thirds of
        the rise (a spike comes back). One clear rise is the whole signal such a run gives; the
        train loss must still be falling (checked when it fires)."""
        out = np.zeros(len(fv), dtype=bool)
        limit = min(len(fv), 2 * int(self.p["min_evals"]))
        head = fv[:limit].tolist()  # a dozen evals at most: plain floats, the same arithmetic
        for j in range(max(first_new, 1), limit):
            m = head.index(min(head[: j + 1]))  # np.argmin: the first of the lowest (finite)
            if m < 1 or j - m < self.p["short_rises"]:
                continue
            steps_up = [b - a for a, b in zip(head[m:j], head[m + 1 : j + 1], strict=True)]
            rising = all(d > 0 for d in steps_up)
            # one jump that makes most of the rise is a spike (it comes back), not a trend
            spike = max(steps_up) > 2 / 3 * (head[j] - head[m]) if rising else True
            out[j] = (
                rising
                and not spike
                and head[j] >= head[m] * (1 + self.p["min_rise"])
                and head[j] > head[m - 1]
            )
        return out

    def _beyond_scatter(
        self, val: SeriesView, i: int, v: float, trend: bool, train_drop: float
    ) -> bool:
        """The rise stands out of the eval-to-eval scatter around the best level. The latest
        eval must, always. When the train loss fell only a little, the mean of the latest
        window must too, by a bar raised for the way the best level was chosen: it is the
        lowest of ~n/w window means, so on a flat noisy curve it sits below the truth by about
        the expected extreme of m normals (Blom's approximation). A train loss that keeps
        falling steeply is evidence enough to act on a smaller rise (the trend rule)."""
        if trend:
            return True
        if v - max(self.best, self.best_raw) < self.p["noise_sigmas"] * self._noise(val, i):
            return False
        if train_drop >= self.p["trend_train_drop"]:
            return True
        sigma = self._noise(val, i, at_least=32)  # more evals: a steadier scale for a mean
        upto = val.values[: i + 1]
        upto = upto[np.isfinite(upto)]
        w = min(len(upto), max(int(self.p["patience"]), len(upto) // 10))
        m = max(2, len(upto) // w)
        from statistics import NormalDist  # 10 ms to import: only when a rise is judged

        bias = NormalDist().inv_cdf((m - 0.375) / (m + 0.25))
        now = float(upto[-w:].mean())
        return now - self.best >= (self.p["window_sigmas"] + bias) * sigma * math.sqrt(2 / w)

    def _too_early(self, view: RunView, val: SeriesView, i: int, step: int, rise: float) -> bool:
        """Early evals bounce: while the LR still rises (the warm-up) a rise is the warm-up bump;
        with fewer than `min_evals` evals the scatter is unknown, so only a rise of
        `early_min_rise` at every eval since the best counts."""
        if warming_up(view, step):
            return True  # the LR is still rising: we are inside the warm-up
        upto = val.values[: i + 1]
        upto = upto[np.isfinite(upto)]
        if len(upto) >= self.p["min_evals"]:
            return False
        since = val.values[val.at_or_before(self.best_step) : i + 1]
        return rise < self.p["early_min_rise"] or not bool(np.all(np.diff(since) > 0))

    def _noise(self, val: SeriesView, i: int, at_least: int = 16) -> float:
        """Eval-to-eval scatter since the best (at least the last 16 evals), with the trend
        removed (MAD of the differences around their median): a rise must stand out of it."""
        j = max(val.at_or_before(self.best_step), i - 64)  # bounded: O(window) per eval
        if i - j < at_least // 2:  # too few evals since the best to measure their scatter:
            # add the evals before it, back to where the curve was still coming down steeply
            # (above the best by 3x min_rise): the descent's curvature is not scatter
            band = self.best * (1 + 3 * self.p["min_rise"])
            lo = max(i - at_least, 0)
            while j > lo and math.isfinite(val.values[j - 1]) and val.values[j - 1] <= band:
                j -= 1
        since = val.values[max(j, 0) : i + 1]
        since = since[np.isfinite(since)]
        if len(since) < 4:
            return 0.0
        return step_noise(since, centred=True)

    def _maybe_fire(
        self,
        view: RunView,
        val: SeriesView,
        train: SeriesView | None,
        i: int,
        v: float,
        trend: bool = False,
        short: bool = False,
        gate: bool = False,
    ) -> None:
        step = int(val.steps[i])
        if gate and not self._part_rise_holds(view, val, train, i, step):
            return
        rise = v / self.best_raw - 1 if self.best_raw > 0 else math.inf
        evidence: dict = {
            "best": self.best_raw,
            "best_step": self.best_step,
            "now": v,
            "rise": rise,
            "smoothed_best": self.best,
        }
        if train is not None and len(train.values):
            k = _train_k(view, train)
            t_best = self._train_at(val, train, self.best_step, k)
            t_now = smoothed_at(train, step, k)
            if not (math.isfinite(t_best) and math.isfinite(t_now) and t_best > 0):
                return
            drop = 1 - t_now / t_best
            if drop < self.p["min_train_drop"] or (trend and drop < self.p["trend_train_drop"]):
                return
            if t_now >= self._untrained(train, step):
                # falling back from a blow-up, not fitting the training set: nothing memorised
                return
            evidence.update(train_at_best=t_best, train_now=t_now, train_drop=drop)
            why = f"while {train.name} fell {pct(drop)} ({fmt(t_best)} -> {fmt(t_now)})"
        else:
            recent = val.values[max(0, i - int(self.p["patience"])) : i + 1]
            if trend or rise < self.p["min_rise_without_train"] or not np.all(np.diff(recent) > 0):
                return
            why = "rising at every eval (no train loss logged)"
        if short or gate:  # a short run's rise has no scatter to stand out of; a part's was
            too_early = warming_up(view, step)  # tested against its own (_part_rise_holds)
        else:
            too_early = not self._beyond_scatter(
                val, i, v, trend, evidence.get("train_drop", 0.0)
            ) or self._too_early(view, val, i, step, rise)
        if too_early:
            return
        primary = self._primary_metric_note(view, step)
        if primary:
            evidence["primary_metric"] = primary
        ckpt = view.best_checkpoint(self.best_step)
        keep = f"keep the checkpoint from step {self.best_step}" + (f" ({ckpt})" if ckpt else "")
        note = (
            f"; {primary['name']} still improving ({shown(view, primary['name'], primary['best'])})"
            if primary and primary["improving"]
            else ""
        )
        key, severity = val.name, Severity.WARNING
        if primary and primary["kind"] in ("wer", "cer") and not note and primary["not_worse"]:
            name = primary["name"]
            note = (
                f"; {name} no worse than then ({shown(view, name, primary['now'])} vs "
                f"{shown(view, name, primary['then'])}, 3-eval means)"
            )
        if primary and primary["kind"] in ("wer", "cer") and note:
            # a speech model's decoded error rate still falls while its token loss rises: the
            # model grows confident on a few hard utterances, the transcripts still improve
            key, severity = "decoded:" + val.name, Severity.INFO
        elif "decoded:" + val.name in self.open:
            self.clear("decoded:" + val.name)
        train_loss = view.pick("train", "loss")
        self.fire(
            key,
            severity,
            step,
            [val.name] + ([train_loss.name] if train_loss else []),
            f"overfitting: {val.name} up {pct(rise)} from its best {fmt(self.best_raw)} "
            f"(step {self.best_step}) {why}{note}",
            evidence | ({"best_checkpoint": ckpt} if ckpt else {}),
            (
                f"loss and {primary['name']} disagree: choose the checkpoint by {primary['name']}"
                + (f" ({view.best_checkpoint()})" if view.best_checkpoint() else "")
                if primary and note
                else f"stop training and {keep}; add early stopping or regularisation "
                "(weight decay, dropout, augmentation, more data)"
            ),
        )

    def _part_rise_holds(
        self, view: RunView, val: SeriesView, train: SeriesView | None, i: int, step: int
    ) -> bool:
        """One part of a summed loss is weaker evidence than the total, so it needs more: at
        least 2 x `patience` evals since its best, rising as a trend (the slope of a line through
        them, t >= `trend_t`: on a flat noisy curve every eval after the lowest one is above it
        too, but shows no slope), its own train twin down by twice `min_train_drop`, and the task
        metric stalled since its best (task_metric_stalled)."""
        if train is None or not task_metric_stalled(view, self.best_step, step):
            return False
        since = val.values[val.at_or_before(self.best_step) + 1 : i + 1]
        if len(since) < 2 * int(self.p["patience"]) or rising_trend_t(since) < self.p["trend_t"]:
            return False  # above the lowest eval, as any eval after a minimum is, but not rising
        t_best, t_now = self._train_at(val, train, self.best_step, 5), smoothed_at(train, step)
        return bool(t_best > 0 and 1 - t_now / t_best >= 2 * self.p["min_train_drop"])

    def _primary_metric_note(self, view: RunView, step: int) -> dict | None:
        """A task metric (WER first, then accuracy, F1...) whose latest eval is its best (within
        1%) and better than at the loss's best: it tempers the verdict."""
        ranked = sorted(view.series.values(), key=lambda sv: sv.role.kind not in ("wer", "cer"))
        for sv in ranked:
            r = sv.role
            if r.split != "val" or r.kind in ("loss", "runtime", "other", "support") or r.cls:
                continue
            if r.higher_better is None or len(sv.values) < 3:
                continue
            upto = sv.values[: sv.at_or_before(step) + 1]
            upto = upto[np.isfinite(upto)]
            if len(upto) < 3:
                continue
            best = upto.max() if r.higher_better else upto.min()
            at_best_loss = sv.value_at(self.best_step)
            near_best = upto[-1] >= best * 0.99 if r.higher_better else upto[-1] <= best * 1.01
            improving = (
                math.isfinite(at_best_loss)
                and (best > at_best_loss if r.higher_better else best < at_best_loss)
                and near_best
            )
            # smoothed over 3 evals: no worse now than when the loss was at its best
            then = sv.values[
                max(0, sv.at_or_before(self.best_step) - 2) : sv.at_or_before(self.best_step) + 1
            ]
            then = then[np.isfinite(then)]
            now = float(upto[-3:].mean())
            not_worse = bool(len(then)) and (
                now >= then.mean() * 0.99 if r.higher_better else now <= then.mean() * 1.01
            )
            return {
                "name": sv.name,
                "best": float(best),
                "improving": bool(improving),
                "kind": r.kind,
                "not_worse": bool(not_worse),
                "now": now,
                "then": float(then.mean()) if len(then) else math.nan,
            }
        return None


class Underfitting(Detector):
    """At the end: the train loss was still clearly falling (5% over the last fifth of the run),
    or stayed above the val loss while both fell; or the run stopped well before its planned
    length (the writer's own record) while its train loss still fell as a trend over its last
    half (slope t <= -`trend_t`, `min_tail_drop` along the line): a model cut off mid-descent.
    Info only (train longer or give the model more capacity: advice, not an alarm); silent
    when another verdict explains the run."""

    id = "underfitting"
    DEFAULTS = {"min_tail_drop": 0.05, "tail": 0.2, "min_points": 8, "trend_t": 2.5}

    def _cut_short_while_falling(self, view: RunView, train: SeriesView, vals: np.ndarray) -> bool:
        planned = view.planned_steps
        step = int(train.steps[-1])
        if not planned or step >= 0.9 * planned:
            return False
        run = view.run
        if run.step_unit != "epoch" and not (
            run.summary.get("train_runtime") is not None or run.meta.get("died_of")
        ):
            return False  # a checkpoint's state is a snapshot: no proof that the run ended there
        half = vals[len(vals) // 2 :]
        t = rising_trend_t(half)
        fit_drop = -float(np.polyfit(np.arange(len(half)), half, 1)[0]) * (len(half) - 1)
        if t > -self.p["trend_t"] or fit_drop < self.p["min_tail_drop"] * float(half[0]):
            return False
        if run.step_unit == "epoch":  # Keras counts from 0, Ultralytics >= 8.1 from 1
            firsts = [int(sv.steps[0]) for sv in view.series.values() if len(sv.steps)]
            where = f"after epoch {step if firsts and min(firsts) == 1 else step + 1}"
        else:
            where = f"at step {step}"
        self.fire(
            train.name,
            Severity.INFO,
            step,
            [train.name],
            f"the run stopped {where} of {planned} with {train.name} still falling "
            f"({fmt(float(half[0]))} -> {fmt(float(half[-1]))} over its last half): the model "
            "had not converged",
            {"planned": planned, "trend_t": t, "tail_drop": fit_drop},
            "resume from the last checkpoint or train to the planned length; if it was stopped "
            "on purpose, expect a better model with more training",
        )
        return True

    def finalize(self, view: RunView) -> None:
        if view.is_rl:
            return
        train = view.pick("train", "loss")
        if train is None or len(train.values) < self.p["min_points"]:
            return
        vals = train.values[np.isfinite(train.values)]
        n = len(vals)
        k = max(2, int(n * self.p["tail"]))
        if n < 2 * k:
            return
        if view.fired & {
            "overfitting",
            "perfect_validation",
            "not_learning",
            "loss_at_chance",
            "nan_loss",
            "divergence",
        }:
            return  # another verdict explains the end of this run better
        last, before = fast_median(vals[-k:]), fast_median(vals[-2 * k : -k])
        step = int(train.steps[-1])
        val = view.pick("val", "loss")
        if last < 0.05 * fast_median(vals[:k]):  # converged to near zero: nothing to gain
            return
        if val is not None and not _still_improving(val):
            return
        if self._cut_short_while_falling(view, train, vals):
            return
        if before > 0 and 1 - last / before >= self.p["min_tail_drop"]:
            self.fire(
                train.name,
                Severity.INFO,
                step,
                [train.name],
                f"training ended with {train.name} still falling: {fmt(before)} -> {fmt(last)} "
                f"({pct(1 - last / before)}) over the last {pct(self.p['tail'])} of the run",
                {"tail_median": last, "previous_median": before},
                "train longer (more epochs) or raise the learning rate; "
                "the model has not converged",
            )
        elif val is not None and len(val.values) >= 2:
            v_last = float(val.values[-1])
            if math.isfinite(v_last) and last > v_last * 1.1 and val.values[-1] < val.values[0]:
                self.fire(
                    train.name,
                    Severity.INFO,
                    step,
                    [train.name, val.name],
                    f"{train.name} {fmt(last)} stays above {val.name} {fmt(v_last)} at the end",
                    {"train": last, "val": v_last},
                    "the model underfits (or regularisation/dropout inflates the train loss): "
                    "train longer or use a larger model",
                )


# task metrics whose value for a model that has learned nothing is known: a fraction of words
# wrong (1: every word), detection mAP, F1 of the positive class or of the entities, a success rate
FLOORS = {"wer": 1.0, "cer": 1.0, "map": 0.0, "f1": 0.0, "success": 0.0}
FLOOR_BAND = 0.01  # within this of its floor, a task metric says the model learned nothing


def _resumed(sv: SeriesView) -> bool:
    """The series starts far into training (its first step > 3 logging intervals, at least 3
    logs): a run resumed from a checkpoint, in a new log or one the library rewrote. Its
    model may have converged before the first log here, so a flat loss proves nothing."""
    if len(sv.steps) < 3:
        return False
    steps = sv.steps
    gaps = steps[1:] - steps[:-1]  # np.diff, without its per-call cost
    if sv.steps[0] <= 3 * gaps.min():
        return False  # within 3 of the smallest gap, so of the median one: no median needed
    gap = fast_median(gaps)
    return gap > 0 and sv.steps[0] > 3 * gap


def _still_improving(val: SeriesView) -> bool:
    """The last eval is the best (or within 1% of it): more training may still help."""
    v = val.values[np.isfinite(val.values)]
    return len(v) >= 2 and v[-1] <= v.min() * 1.01


class Trend:
    """The numbers NotLearning's trend rule reads from a train loss's finite values `vals`:
    n = len(vals), k = n // 3, the medians of the first and the last k, where it started
    (the higher of vals[0] and the median of the first max(3, n // 20)), the logs' scatter
    (step_noise of vals), and whether the series starts far into training (_resumed)."""

    __slots__ = ("resumed", "n", "k", "first", "last", "start", "noise", "learned")

    def __init__(
        self,
        resumed: bool,
        n: int,
        first: float = math.nan,
        last: float = math.nan,
        start: float = math.nan,
        noise: float = math.nan,
        learned: bool = False,
    ) -> None:
        self.resumed, self.n, self.k = resumed, n, n // 3
        self.first, self.last, self.start, self.noise = first, last, start, noise
        # known without the medians: every log of the last third is below 0.9 x the first log,
        # so the last third's median is below 0.9 x the start (the rule's "it did learn")
        self.learned = learned

    @classmethod
    def of(cls, sv: SeriesView, before: Trend | None = None, shortcut: bool = True) -> Trend:
        """Worked out from the whole view (a batch pass). `before`: the Trend of a prefix of the
        same values, whose first-third and start medians are reused where their windows have
        not moved. `shortcut`: a loss whose last third is all below 0.9 x its first log has
        learned (`learned`), and its medians are not worked out."""
        resumed = _resumed(sv)
        vals = sv.values[np.isfinite(sv.values)]
        n = len(vals)
        k = n // 3
        if resumed or k < 3:
            return cls(resumed, n)
        if shortcut:
            top = float(vals[-k:].max())
            # a median is at most the largest value (sums of two below 1e307 cannot overflow)
            if top < 0.9 * float(vals[0]) and top <= 1e307:
                return cls(resumed, n, learned=True)
        m = max(3, n // 20)
        reuse = before if before is not None and not before.resumed and before.k >= 3 else None
        reuse = reuse if reuse is not None and not reuse.learned else None
        first = reuse.first if reuse is not None and reuse.k == k else fast_median(vals[:k])
        # where it started: the first log (an untrained model's loss, when the model learns
        # within the first logs) or the first few (a noisy first log), whichever is higher
        if reuse is not None and max(3, reuse.n // 20) == m:
            start = reuse.start
        else:
            start = max(float(vals[0]), fast_median(vals[:m]))
        return cls(
            resumed,
            n,
            first,
            fast_median(vals[-k:]),
            start,
            # the logs' scatter from successive differences, so that a downward trend is not
            # mistaken for noise (step_noise)
            1.4826 * fast_median(np.abs(vals[1:] - vals[:-1])) / math.sqrt(2),
        )


class TrendStats:
    """A train loss's Trend, kept between calls. A batch pass (many new points) works it out from
    the view; a live read (a few new points a call, twice in a row) keeps sorted windows instead
    (the first third, the last third, the first twentieth, the successive differences and the
    step gaps) that each new point enters and leaves in O(log n): the same medians, of the same
    values, at any length of run."""

    def __init__(self) -> None:
        self.seen = Seen()
        self.trend: Trend | None = None  # for the points `seen` has taken in
        self.live = False  # the last call had a few new points
        self.fin: list[float] = []  # the finite values, in order
        self.windows: dict[str, SortedValues] | None = None  # None: not kept (a batch pass)
        self.tail_lo = 0  # the last third is fin[tail_lo:]
        self.first_step = 0
        self.last_step: int | None = None  # the step of the last point taken in

    def get(self, view: RunView, sv: SeriesView) -> Trend:
        at = self.seen.new_from(view, sv)
        count = len(sv.values)
        if at == count and self.trend is not None:
            return self.trend  # nothing new (the finalize after a batch pass)
        live = count - sv.new_from <= FEW
        if at is not None and self.windows is not None and count - at <= max(FEW, count // 8):
            self._extend(sv, at)
        elif live and self.live:
            self._build(sv)
        else:
            self.windows = None
        self.live = live
        if self.windows is None:  # the kept Trend holds for a prefix when `at` is known
            self.trend = Trend.of(sv, self.trend if at is not None else None)
        else:
            self.trend = self._trend(sv)
        self.seen.mark(view, sv)
        return self.trend

    def _build(self, sv: SeriesView) -> None:
        vals = sv.values[np.isfinite(sv.values)]
        n, k = len(vals), len(vals) // 3
        self.fin = vals.tolist()
        self.tail_lo = n - k
        self.windows = {
            "head": SortedValues.of(vals[:k]),
            "tail": SortedValues.of(vals[n - k :]),
            "start": SortedValues.of(vals[: min(n, max(3, n // 20))]),
            "diffs": SortedValues.of(np.abs(np.diff(vals))),
            "gaps": SortedValues.of(np.diff(sv.steps)),
        }
        self.first_step = int(sv.steps[0]) if len(sv.steps) else 0
        self.last_step = int(sv.steps[-1]) if len(sv.steps) else None

    def _extend(self, sv: SeriesView, at: int) -> None:
        w = self.windows
        assert w is not None
        fin = self.fin
        n0 = len(fin)
        for step, x in zip(sv.steps[at:].tolist(), sv.values[at:].tolist(), strict=True):
            if self.last_step is None:
                self.first_step = step
            else:
                w["gaps"].add(float(step - self.last_step))
            self.last_step = step
            if math.isfinite(x):
                if fin:
                    w["diffs"].add(abs(x - fin[-1]))
                fin.append(x)
        n = len(fin)
        k = n // 3
        head, start, tail = w["head"], w["start"], w["tail"]
        while len(head) < k:
            head.add(fin[len(head)])
        while len(start) < min(n, max(3, n // 20)):
            start.add(fin[len(start)])
        lo = n - k
        for i in range(max(n0, lo), n):
            tail.add(fin[i])
        for i in range(self.tail_lo, min(lo, n0)):
            tail.remove(fin[i])
        self.tail_lo = lo

    def _trend(self, sv: SeriesView) -> Trend:
        w = self.windows
        assert w is not None
        gap = w["gaps"].median()
        resumed = len(w["gaps"]) >= 2 and gap > 0 and self.first_step > 3 * gap
        n = len(self.fin)
        if resumed or n // 3 < 3:
            return Trend(resumed, n)
        return Trend(
            resumed,
            n,
            w["head"].median(),
            w["tail"].median(),
            max(self.fin[0], w["start"].median()),
            1.4826 * w["diffs"].median() / math.sqrt(2),
        )


class NotLearning(Detector):
    """A model that does not learn. All warnings (the run may be stopped, but a person decides):
    - the train loss shows no downward trend over a long stretch: the median of the last third
      of the run is not lower than the median of the first third by `min_drop` and by more than
      the medians' own noise (judged once the run has ended, or live after `live_min_points`
      logs and 30% of the planned steps); a run resumed into this log is not judged by its start;
    - the train loss repeats exactly for `frozen_logs` logs (frozen weights);
    - a task metric with a known floor stayed within `floor_band` of it at every one of at least
      `floor_evals` evals: WER/CER ~1 (empty or garbage transcripts), mAP, F1 or a success
      rate ~0. Every metric of that kind must sit there (one mAP that rose means the model
      learned something). Judged when the run has ended (live too: when its writer exits or
      it goes quiet); left to blank_collapse and prediction_collapse when they have spoken."""

    id = "not_learning"
    DEFAULTS = {
        "min_points": 20,
        "live_min_points": 200,
        "min_drop": 0.02,
        "frozen_logs": 5,
        "floor_evals": 5,
        "floor_band": FLOOR_BAND,
    }

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self._trends: dict[str, TrendStats] = {}  # train loss -> its trend numbers, kept

    def update(self, view: RunView) -> None:
        train = view.pick("train", "loss")
        if train is None:
            return
        self._frozen(view, train)
        if len(train.values) < self.p["live_min_points"]:
            return
        planned = view.planned_steps
        if planned and train.steps[-1] < 0.3 * planned:
            return
        self._judge(view, train)

    def finalize(self, view: RunView) -> None:
        self._at_floor(view)
        train = view.pick("train", "loss")
        if train is not None and len(train.values) >= self.p["min_points"]:
            self._judge(view, train)

    def _at_floor(self, view: RunView) -> None:
        if (
            view.fired & {"blank_collapse", "prediction_collapse", "nan_loss"}
            or "floor" in self.open
        ):
            return
        by_kind: dict[str, list[SeriesView]] = {}  # view.where(kind=kind, cls=None), at once
        for sv in view.series.values():
            if sv.role.kind in FLOORS and sv.role.cls is None:
                by_kind.setdefault(sv.role.kind, []).append(sv)
        for kind, floor in FLOORS.items():
            family = [
                sv
                for sv in by_kind.get(kind, [])
                if len(sv.values) and sv.role.split in ("val", "")
            ]
            if not family or any(sv.name in view.claimed for sv in family):
                continue
            if not all(self._pinned_at(sv, floor) for sv in family):
                continue
            sv = max(family, key=lambda f: len(f.values))
            fin = sv.values[np.isfinite(sv.values)]
            step = int(sv.steps[-1])
            self.fire(
                "floor",
                Severity.WARNING,
                step,
                [f.name for f in family],
                f"not learning: {', '.join(f.name for f in family)} stayed at "
                f"{shown(view, sv.name, float(fin.min()))}-"
                f"{shown(view, sv.name, float(fin.max()))} over all {len(fin)} evals "
                f"({kind} of an untrained model: {shown(view, sv.name, floor)})",
                {
                    "kind": kind,
                    "floor": floor,
                    "evals": len(fin),
                    "low": float(fin.min()),
                    "high": float(fin.max()),
                },
                "check the labels reach the loss (empty annotation files, a wrong class list or "
                "vocabulary), that the evaluation decodes the model's outputs, "
                "and the learning rate",
            )
            return

    def _pinned_at(self, sv: SeriesView, floor: float) -> bool:
        fin = sv.values[np.isfinite(sv.values)]
        return len(fin) >= self.p["floor_evals"] and bool(
            np.all(np.abs(fin - floor) <= self.p["floor_band"])
        )

    def _frozen(self, view: RunView, train: SeriesView) -> None:
        """The train loss (>= 0.05, so that a converged loss rounded to 4 decimals does not count)
        repeats exactly (to 1e-6) for `frozen_logs` logs in a row: the same outputs for the same
        data every epoch (frozen weights, or outputs saturated after a blow-up)."""
        n = int(self.p["frozen_logs"])
        if view.is_rl or train.name in self.open or train.new_from >= len(train.values):
            return
        base = max(0, train.new_from - n + 1)  # only windows that end on a new point
        v = train.values[base:]
        if len(v) < n:
            return
        if len(v) <= FEW + n:  # a live read: plain floats, the same comparisons
            vl = v.tolist()
            pairs = zip(vl, vl[1:], strict=False)
            flags = [abs(b - a) <= 1e-6 * abs(a) and abs(a) >= 0.05 for a, b in pairs]
            same = np.array(flags, dtype=bool)
        else:
            with np.errstate(invalid="ignore"):
                same = np.abs(v[1:] - v[:-1]) <= 1e-6 * np.abs(v[:-1])
                same &= np.abs(v[:-1]) >= 0.05
        if np.count_nonzero(same) < n - 1:
            return  # fewer repeats than one frozen window needs
        runs = np.concatenate([[0], np.cumsum(same)])
        # window ending at k (in v) is frozen when its n-1 successive pairs are all the same
        ends = np.arange(n - 1, len(v))
        frozen = ends[(runs[ends] - runs[ends - n + 1]) == n - 1]
        frozen = frozen[base + frozen >= train.new_from]
        if len(frozen):
            i = base + int(frozen[0])
            ref = float(train.values[i])
            self.fire(
                train.name,
                Severity.WARNING,
                int(train.steps[i]),
                [train.name],
                f"not learning: {train.name} is exactly {fmt(ref)} at each of the last {n} logs: "
                "the model's outputs do not change",
                {"value": ref, "logs": n},
                "check that the optimizer steps (learning rate 0? parameters frozen or not passed "
                "to the optimizer? zero_grad/step order?) or, after a blow-up, that the outputs "
                "are not saturated (lower the learning rate)",
            )

    def _judge(self, view: RunView, train: SeriesView) -> None:
        if view.is_rl or train.name in self.open or train.name in view.claimed:
            return
        stats = self._trends.get(train.name)
        if stats is None:
            stats = self._trends[train.name] = TrendStats()
        t = stats.get(view, train)
        if t.resumed or t.k < 3 or t.learned:
            return  # learned: last < start * 0.9 below, without its medians
        k, n, first, last, start, noise = t.k, t.n, t.first, t.last, t.start, t.noise
        # a drop counts when it is >= min_drop of the start and clear of the medians' own
        # uncertainty (per-batch losses are noisy; a median of k of them is not)
        uncertainty = 2.0 * math.sqrt(2) * 1.2533 * noise / math.sqrt(k)
        if first <= 0 or first - last > max(self.p["min_drop"] * first, uncertainty):
            return
        if last < start * 0.9:  # it did learn, early, and has converged since
            return
        acc = view.pick("train", "accuracy")
        acc_txt = ""
        if acc is not None and len(acc.values):
            acc_txt = f"; {acc.name} {fmt(float(np.median(acc.values[-k:])))}"
        self.fire(
            train.name,
            Severity.WARNING,
            int(train.steps[-1]),
            [train.name],
            f"not learning: {train.name} has no downward trend over {n} logs "
            f"(first third {fmt(first)}, last third {fmt(last)}){acc_txt}",
            {"first_third_median": first, "last_third_median": last, "points": n},
            "check the learning rate (too high or too low), that labels match inputs, and that "
            "the optimizer steps (zero_grad/step order, frozen weights)",
        )

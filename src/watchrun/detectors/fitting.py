"""How the losses move against each other: overfitting, underfitting, not learning at all."""

from __future__ import annotations

import math

import numpy as np

from watchrun.detectors.base import Detector, RunView, SeriesView, fmt, pct
from watchrun.model import Severity


def smoothed_at(sv: SeriesView, step: int, k: int = 5) -> float:
    """Median of the last k points at or before `step`."""
    i = sv.at_or_before(step)
    if i < 0:
        return math.nan
    window = sv.values[max(0, i - k + 1) : i + 1]
    window = window[np.isfinite(window)]
    return float(np.median(window)) if len(window) else math.nan


class Overfitting(Detector):
    """The validation loss has risen clearly above its running minimum for `patience` evals in a
    row while the train loss kept falling. Without a train loss, a steadier and larger rise."""

    id = "overfitting"
    DEFAULTS = {"patience": 3, "min_rise": 0.10, "noise": 0.02, "min_train_drop": 0.05,
                "min_rise_without_train": 0.5, "noise_sigmas": 3.0}

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.best = math.inf
        self.best_step = 0
        self.above = 0
        self.count = 0
        self.recent: list[float] = []
        self.best_smooth = math.inf  # lowest mean of `patience` consecutive evals

    def update(self, view: RunView) -> None:
        val = view.pick("val", "loss")
        if val is None or view.is_rl:
            return
        train = view.pick("train", "loss")
        if self._quiet_chunk(val):
            return
        for i in val.new:
            v = float(val.values[i])
            if not math.isfinite(v):
                continue
            self.count += 1
            k = int(self.p["patience"])
            self.recent = (self.recent + [v])[-k:]
            smooth = sum(self.recent) / len(self.recent)
            if len(self.recent) == k:
                self.best_smooth = min(self.best_smooth, smooth)
            if v < self.best * (1 + self.p["noise"]) or not math.isfinite(self.best):
                if v < self.best:
                    self.best, self.best_step = v, int(val.steps[i])
                self.above = 0
                self.clear(val.name)
                continue
            self.above += 1
            rise = v / self.best - 1 if self.best > 0 else math.inf
            # judged on means of `patience` evals too, so that one lucky low eval is no "best"
            smooth_rise = smooth / self.best_smooth - 1 if 0 < self.best_smooth < math.inf else rise
            if self.above >= self.p["patience"] and rise >= self.p["min_rise"] and smooth_rise >= self.p["min_rise"] / 2:
                self._maybe_fire(view, val, train, i, v, rise)

    def _quiet_chunk(self, val: SeriesView) -> bool:
        """Vectorised walk for a chunk where no streak of evals above the best can reach
        `patience`: carry best, streak and smoothed best forward; False = walk it point by point."""
        new = val.values[val.new_from :]
        k = int(self.p["patience"])
        if self.open or len(new) < 2 * k or not np.isfinite(new).all() or not math.isfinite(self.best):
            return False
        run_min = np.minimum.accumulate(np.concatenate([[self.best], new]))
        above = new >= run_min[:-1] * (1 + self.p["noise"])
        # longest streak of "above", counting the streak carried in
        streak, longest = self.above, 0
        edges = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(np.int8), [0]])))
        starts, ends = edges[::2], edges[1::2]
        if len(starts):
            lengths = ends - starts
            if starts[0] == 0:
                lengths = lengths.copy()
                lengths[0] += streak
            longest = int(lengths.max())
            streak = int(lengths[-1]) if ends[-1] == len(new) else 0
        else:
            streak = 0
        if longest >= k:
            return False
        j = int(np.argmin(new))
        if new[j] < self.best:
            self.best, self.best_step = float(new[j]), int(val.steps[val.new_from + j])
        self.above = streak
        self.count += len(new)
        tail = np.concatenate([np.asarray(self.recent, dtype=np.float64), new])
        means = np.convolve(tail, np.ones(k) / k, mode="valid")
        if len(means):
            self.best_smooth = min(self.best_smooth, float(means.min()))
        self.recent = [float(x) for x in tail[-k:]]
        return True

    def _noise(self, val: SeriesView, i: int) -> float:
        """Eval-to-eval scatter since the best, with the trend removed (MAD of the differences
        around their median): a rise must stand out of it."""
        j = val.at_or_before(self.best_step)
        since = val.values[max(j, 0) : i + 1]
        since = since[np.isfinite(since)]
        if len(since) < 4:
            return 0.0
        d = np.diff(since)
        return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))

    def _maybe_fire(self, view: RunView, val: SeriesView, train: SeriesView | None, i: int,
                    v: float, rise: float) -> None:
        step = int(val.steps[i])
        if v - self.best < self.p["noise_sigmas"] * self._noise(val, i):
            return
        evidence: dict = {"best": self.best, "best_step": self.best_step, "now": v, "rise": rise}
        if train is not None and len(train.values):
            t_best, t_now = smoothed_at(train, self.best_step), smoothed_at(train, step)
            if not (math.isfinite(t_best) and math.isfinite(t_now) and t_best > 0):
                return
            drop = 1 - t_now / t_best
            if drop < self.p["min_train_drop"]:
                return
            evidence.update(train_at_best=t_best, train_now=t_now, train_drop=drop)
            why = f"while {train.name} fell {pct(drop)} ({fmt(t_best)} -> {fmt(t_now)})"
        else:
            recent = val.values[max(0, i - int(self.p["patience"])) : i + 1]
            if rise < self.p["min_rise_without_train"] or not np.all(np.diff(recent) > 0):
                return
            why = "rising at every eval (no train loss logged)"
        primary = self._primary_metric_note(view, step)
        if primary:
            evidence["primary_metric"] = primary
        ckpt = view.best_checkpoint(self.best_step)
        keep = f"keep the checkpoint from step {self.best_step}" + (f" ({ckpt})" if ckpt else "")
        note = f"; {primary['name']} still improving ({fmt(primary['best'])})" if primary and primary["improving"] else ""
        self.fire(
            val.name, Severity.WARNING, step, [val.name] + ([view.pick("train", "loss").name] if view.pick("train", "loss") else []),
            f"overfitting: {val.name} up {pct(rise)} from its best {fmt(self.best)} "
            f"(step {self.best_step}) {why}{note}",
            evidence | ({"best_checkpoint": ckpt} if ckpt else {}),
            (f"loss and {primary['name']} disagree: choose the checkpoint by {primary['name']}"
             + (f" ({view.best_checkpoint()})" if view.best_checkpoint() else "")
             if note else f"stop training and {keep}; add early stopping or regularisation "
             "(weight decay, dropout, augmentation, more data)"),
        )

    def _primary_metric_note(self, view: RunView, step: int) -> dict | None:
        """A task metric (WER, accuracy, F1...) that is still improving tempers the verdict."""
        for sv in view.series.values():
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
            improving = math.isfinite(at_best_loss) and (
                best > at_best_loss if r.higher_better else best < at_best_loss
            ) and upto[-1] == best
            return {"name": sv.name, "best": float(best), "improving": bool(improving)}
        return None


class Underfitting(Detector):
    """At the end: the train loss was still clearly falling, or stayed above the val loss while
    both fell. Info: train longer or give the model more capacity."""

    id = "underfitting"
    DEFAULTS = {"min_tail_drop": 0.05, "tail": 0.2, "min_points": 8}

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
        last, before = float(np.median(vals[-k:])), float(np.median(vals[-2 * k : -k]))
        step = int(train.steps[-1])
        val = view.pick("val", "loss")
        if view.fired & {"overfitting", "perfect_validation", "not_learning", "loss_at_chance"}:
            return
        if last < 0.05 * float(np.median(vals[:k])):  # converged to near zero: nothing to gain
            return
        if val is not None and not _still_improving(val):
            return
        if before > 0 and 1 - last / before >= self.p["min_tail_drop"]:
            self.fire(
                train.name, Severity.INFO, step, [train.name],
                f"training ended with {train.name} still falling: {fmt(before)} -> {fmt(last)} "
                f"({pct(1 - last / before)}) over the last {pct(self.p['tail'])} of the run",
                {"tail_median": last, "previous_median": before},
                "train longer (more epochs) or raise the learning rate; the model has not converged",
            )
        elif val is not None and len(val.values) >= 2:
            v_last = float(val.values[-1])
            if math.isfinite(v_last) and last > v_last * 1.1 and val.values[-1] < val.values[0]:
                self.fire(
                    train.name, Severity.INFO, step, [train.name, val.name],
                    f"{train.name} {fmt(last)} stays above {val.name} {fmt(v_last)} at the end",
                    {"train": last, "val": v_last},
                    "the model underfits (or regularisation/dropout inflates the train loss): "
                    "train longer or use a larger model",
                )


def _still_improving(val: SeriesView) -> bool:
    """The last eval is the best (or within 1% of it): more training may still help."""
    v = val.values[np.isfinite(val.values)]
    return len(v) >= 2 and v[-1] <= v.min() * 1.01


class NotLearning(Detector):
    """The train loss shows no downward trend over a long stretch: the median of the last third
    of the run is no lower than the median of the first third. Judged once the run has ended, or
    live after `min_points` logs."""

    id = "not_learning"
    DEFAULTS = {"min_points": 20, "live_min_points": 200, "min_drop": 0.02}

    def update(self, view: RunView) -> None:
        train = view.pick("train", "loss")
        if train is None or len(train.values) < self.p["live_min_points"]:
            return
        planned = view.planned_steps
        if planned and train.steps[-1] < 0.3 * planned:
            return
        self._judge(view, train)

    def finalize(self, view: RunView) -> None:
        train = view.pick("train", "loss")
        if train is not None and len(train.values) >= self.p["min_points"]:
            self._judge(view, train)

    def _judge(self, view: RunView, train: SeriesView) -> None:
        if view.is_rl or train.name in self.open or train.name in view.claimed:
            return
        vals = train.values[np.isfinite(train.values)]
        k = len(vals) // 3
        if k < 3:
            return
        first, last = float(np.median(vals[:k])), float(np.median(vals[-k:]))
        start = float(np.median(vals[: max(3, len(vals) // 20)]))
        rest = vals[k:]
        noise = 1.4826 * float(np.median(np.abs(rest - np.median(rest))))
        if first <= 0 or first - last > max(self.p["min_drop"] * first, noise):
            return
        if last < start * 0.9:  # it did learn, early, and has converged since
            return
        acc = view.pick("train", "accuracy")
        acc_txt = ""
        if acc is not None and len(acc.values):
            acc_txt = f"; {acc.name} {fmt(float(np.median(acc.values[-k:])))}"
        self.fire(
            train.name, Severity.WARNING, int(train.steps[-1]), [train.name],
            f"not learning: {train.name} has no downward trend over {len(vals)} logs "
            f"(first third {fmt(first)}, last third {fmt(last)}){acc_txt}",
            {"first_third_median": first, "last_third_median": last, "points": len(vals)},
            "check the learning rate (too high or too low), that labels match inputs, and that "
            "the optimizer steps (zero_grad/step order, frozen weights)",
        )

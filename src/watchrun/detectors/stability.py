"""Numerical blow-ups: the first NaN/inf, a loss exploding before it, gradient-norm spikes."""

from __future__ import annotations

import math

import numpy as np

from watchrun.detectors.base import (
    FEW,
    Detector,
    RunView,
    SeriesView,
    fmt,
    median_finite,
    small_median,
    step_noise,
)
from watchrun.model import Severity


class NanLoss(Detector):
    """A loss that turns NaN/inf and stays so: the weights are NaN, nothing after it trains.

    - critical: a train loss non-finite at `persist` logs in a row, or non-finite at a step where
      a validation loss is non-finite too (evaluated with the same weights: both broken means
      the weights are), or non-finite at the last log of a run that has ended.
    - info: a train loss non-finite at one log and finite at the next (an fp16 overflow: the
      loss scaler skipped that batch, or one bad batch in an epoch mean); a validation loss
      non-finite while the train loss is finite (the evaluation overflowed, the weights are
      fine), unless it never recovers (warning at the run's end). Without a train loss the
      validation loss plays its role.
    - a gradient norm non-finite for `grad_norm_persist` logs in a row (one is what fp16 loss
      scaling does on healthy runs): critical.
    The alert's step is the first non-finite log of the episode."""

    id = "nan_loss"
    DEFAULTS = {"grad_norm_persist": 3, "persist": 2}

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.grad_bad_run: dict[str, int] = {}
        # loss -> [step where its current non-finite run began, logs in it so far]: a step, not
        # an index (a bounded store reduces the history between reads: indices move)
        self.bad_from: dict[str, list[int]] = {}

    def update(self, view: RunView) -> None:
        losses = [sv for sv in view.series.values() if sv.role.kind == "loss"]
        primary = {sv.name for sv in losses if not _judged_by_train(sv, losses)}
        for sv in losses:
            self._loss(view, sv, sv.name in primary, losses)
        for sv in view.series.values():
            if sv.role.kind == "grad_norm":
                self._grad(view, sv)

    def finalize(self, view: RunView) -> None:
        """The run ended on a non-finite loss: it never recovered."""
        losses = [sv for sv in view.series.values() if sv.role.kind == "loss"]
        for sv in losses:
            episode = self.bad_from.get(sv.name)
            if episode is None or sv.name in self.open or not len(sv.steps):
                continue
            start = _episode_start(sv, episode, len(sv.steps) - 1)
            if not _judged_by_train(sv, losses):
                self._fire(view, sv, start, " at the last log of the run", Severity.CRITICAL)
            elif not self._train_broken(losses, sv, int(sv.steps[-1])):
                self.clear("eval:" + sv.name)  # the info said it might pass; it did not
                self._fire(
                    view,
                    sv,
                    start,
                    " and never recovered; the train loss is finite",
                    Severity.WARNING,
                    key="never:" + sv.name,
                    action="the model cannot be judged on this validation set: evaluate in "
                    "fp32 or bf16 and check the validation data for empty or degenerate batches",
                )

    def _loss(self, view: RunView, sv: SeriesView, primary: bool, losses: list[SeriesView]) -> None:
        new = sv.values[sv.new_from :]
        if len(new) == 0:
            return
        if sv.name not in self.bad_from and _all_finite(new):
            return  # the vectorised equivalent of the walk below
        for i in sv.new:
            if math.isfinite(sv.values[i]):
                self._recovered(view, sv, i, primary)
                continue
            episode = self.bad_from.setdefault(sv.name, [int(sv.steps[i]), 0])
            episode[1] += 1
            if sv.name in self.open:
                continue
            start = _episode_start(sv, episode, i)
            step = int(sv.steps[i])
            if primary:
                evals = _broken_evals(losses, step)
                if episode[1] >= self.p["persist"]:
                    self._fire(
                        view, sv, start, f" for {episode[1]} logs in a row", Severity.CRITICAL
                    )
                elif evals:
                    self._fire(
                        view,
                        sv,
                        start,
                        f", and {evals[0]} too: the weights are broken",
                        Severity.CRITICAL,
                    )
            elif self._train_broken(losses, sv, step):
                continue  # the train loss's own alert says it
            else:
                self._fire(
                    view,
                    sv,
                    start,
                    " while the train loss is finite: the evaluation overflowed "
                    "(fp16 evaluation, an empty batch), the weights are fine",
                    Severity.INFO,
                    key="eval:" + sv.name,
                    action="nothing to stop for yet; if it persists, evaluate in fp32 or bf16 and "
                    "check the validation data for empty or degenerate batches",
                )

    def _recovered(self, view: RunView, sv: SeriesView, i: int, primary: bool) -> None:
        episode = self.bad_from.pop(sv.name, None)
        if episode is None:
            return
        called = sv.name in self.open
        ended = int(sv.steps[i])  # the NaN episode (and its claim on the metric) ends here
        self.clear(sv.name, ended)
        self.clear("eval:" + sv.name, ended)
        start = _episode_start(sv, episode, i - 1)
        if primary and episode[1] == 1 and not called:
            self._fire(
                view,
                sv,
                start,
                f", finite again at step {int(sv.steps[i])}: one overflowed batch "
                "(fp16 loss scaling skips it) and training went on",
                Severity.INFO,
                key="recovered:" + sv.name,
                action="nothing to do if it stays rare; frequent overflows: lower the learning "
                "rate or use bf16",
            )
            self.clear("recovered:" + sv.name, ended)

    @staticmethod
    def _train_broken(losses: list[SeriesView], sv: SeriesView, step: int) -> bool:
        for t in losses:
            if t.role.split in ("val", "test") or t is sv:
                continue
            j = t.at_or_before(step)
            if j >= 0 and not math.isfinite(t.values[j]):
                return True
        return False

    def _grad(self, view: RunView, sv: SeriesView) -> None:
        need = int(self.p["grad_norm_persist"])
        run = self.grad_bad_run.get(sv.name, 0)
        new = sv.values[sv.new_from :]
        if len(new) == 0:
            return
        if _all_finite(new):  # the vectorised equivalent of the walk below
            self.grad_bad_run[sv.name] = 0
            return
        for i in sv.new:
            if math.isfinite(sv.values[i]):
                run = 0
                continue
            run += 1
            loss_nan = any(
                v.role.kind == "loss" for k in self.open for v in [view.series.get(k)] if v
            )
            if run >= need and sv.name not in self.open and not loss_nan:
                self._fire(view, sv, i, f" for {run} logging steps in a row", Severity.CRITICAL)
        self.grad_bad_run[sv.name] = run

    def _fire(
        self,
        view: RunView,
        sv: SeriesView,
        i: int,
        extra: str,
        severity: Severity,
        key: str | None = None,
        action: str | None = None,
    ) -> None:
        step = int(sv.steps[i])
        value = sv.values[i]
        finite = np.flatnonzero(np.isfinite(sv.values[:i]))
        last = (int(sv.steps[finite[-1]]), float(sv.values[finite[-1]])) if len(finite) else None
        context = {}
        for other in view.series.values():
            if other.role.kind in ("loss", "grad_norm", "lr") and other.name != sv.name:
                j = other.at_or_before(step)
                if j >= 0 and math.isfinite(other.values[j]):
                    context[other.name] = float(other.values[j])
        last_txt = f"; last finite {fmt(last[1])} at step {last[0]}" if last else ""
        self.fire(
            key or sv.name,
            severity,
            step,
            [sv.name],
            f"{sv.name} is {fmt(value)} at step {step}{extra}{last_txt}",
            {"value": value, "last_finite": last, "context": context},
            action
            or "stop training: lower the learning rate, clip gradients, check inputs/labels for "
            "NaN/inf, or run with anomaly detection to find the op",
        )


def _episode_start(sv: SeriesView, episode: list[int], last: int) -> int:
    """The index in `sv` of the first log of a non-finite episode ([first step, logs]) whose
    last log is at `last`: counted back from it, or found by its step where a bounded store has
    reduced the episode's history since (its first non-finite point is kept: Series.bound)."""
    i = last - (episode[1] - 1)
    if 0 <= i <= last and int(sv.steps[i]) == episode[0]:
        return i
    return min(int(np.searchsorted(sv.steps[: last + 1], episode[0], side="left")), last)


def _all_finite(values: np.ndarray) -> bool:
    """np.isfinite(values).all(), in plain Python for a live read's few values."""
    if len(values) <= FEW:
        return all(map(math.isfinite, values.tolist()))
    return bool(np.isfinite(values).all())


def _broken_evals(losses: list[SeriesView], step: int) -> list[str]:
    """The validation (or test) losses logged at exactly `step` with a NaN/inf value."""
    out = []
    for v in losses:
        j = v.at_or_before(step)
        if (
            v.role.split in ("val", "test")
            and j >= 0
            and int(v.steps[j]) == step
            and not math.isfinite(v.values[j])
        ):
            out.append(v.name)
    return out


def _judged_by_train(sv: SeriesView, losses: list[SeriesView]) -> bool:
    """A validation (or test) loss, in a run that logs a train loss: the train loss says whether
    the weights are broken; the validation loss alone may just have overflowed."""
    return sv.role.split in ("val", "test") and any(
        t.role.split not in ("val", "test") for t in losses
    )


BLOCK = 65536  # points judged at once by a vectorised pass (bounds its temporary arrays)


def window_medians(finite: np.ndarray, k0: int, k1: int, w: int) -> np.ndarray:
    """The median of finite[k - w + 1 : k + 1] for k in k0..k1-1 (k0 >= w - 1), ignoring NaN
    (NaN where a window has no value), as np.nanmedian gives it one window at a time."""
    if k1 <= k0:
        return np.empty(0)
    if k1 - k0 <= FEW:
        return np.array(
            [small_median(finite[k - w + 1 : k + 1].tolist(), skip_nan=True) for k in range(k0, k1)]
        )
    if not np.isnan(finite[k0 - w + 1 : k1]).any():
        return sliding_medians(finite[k0 - w + 1 : k1], w)
    windows = np.lib.stride_tricks.sliding_window_view(finite[k0 - w + 1 : k1], w)
    gaps = np.isnan(windows).any(axis=1)
    meds = np.median(windows, axis=1)
    for j in np.flatnonzero(gaps):
        row = windows[j]
        meds[j] = float(np.nanmedian(row)) if not np.isnan(row).all() else math.nan
    return meds


def sliding_medians(x: np.ndarray, w: int) -> np.ndarray:
    """np.median of each window of w successive values of a NaN-free array. For the default
    window of 5, a selection network of np.minimum / np.maximum (the middle value itself, no
    arithmetic: the same numbers), an order of magnitude cheaper than np.median per row."""
    if w != 5 or len(x) < w:
        return np.median(np.lib.stride_tricks.sliding_window_view(x, w), axis=1)
    n = len(x) - 4
    p0, p1, p2, p3, p4 = (x[j : j + n] for j in range(5))
    # Devillard's opt_med5: 7 compare-exchanges, the median lands in p2
    p0, p1 = np.minimum(p0, p1), np.maximum(p0, p1)
    p3, p4 = np.minimum(p3, p4), np.maximum(p3, p4)
    p0, p3 = np.minimum(p0, p3), np.maximum(p0, p3)
    p1, p4 = np.minimum(p1, p4), np.maximum(p1, p4)
    p1, p2 = np.minimum(p1, p2), np.maximum(p1, p2)
    p2, p3 = np.minimum(p2, p3), np.maximum(p2, p3)
    return np.maximum(p1, p2)  # the last exchange's larger value


def sliding_min(x: np.ndarray, w: int) -> np.ndarray:
    """min(x[i : i + w]) for each i (as sliding_window_view(x, w).min(axis=1), the same values:
    a min is exact), by doubling spans: O(n log w) contiguous passes, not n x w strided reads."""
    out, span = x, 1
    while 2 * span <= w:
        out = np.minimum(out[:-span], out[span:])
        span *= 2
    if span < w:  # two overlapping spans cover each window
        m = len(x) - w + 1
        out = np.minimum(out[:m], out[w - span : w - span + m])
    return out


Flags = list[bool] | np.ndarray  # one per eval


def _jumps(v: np.ndarray, jump: float, floor: float) -> tuple[Flags, Flags, list[int]]:
    """For each eval: a jump up `jump` x from the eval before (a positive one) to at least
    `floor`, and a fall as steep (to a positive value), False for the first; and where either
    happens. Plain floats and the same comparisons for a live read's few evals, numpy for more."""
    if len(v) <= FEW:
        vl = v.tolist()
        pairs = list(zip(vl, vl[1:], strict=False))
        up = [False] + [b >= jump * a and a > 0 and b >= floor for a, b in pairs]
        down = [False] + [b * jump <= a and b > 0 for a, b in pairs]
        return up, down, [k for k in range(len(vl)) if up[k] or down[k]]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ups = np.concatenate([[False], (v[1:] >= jump * v[:-1]) & (v[:-1] > 0) & (v[1:] >= floor)])
        downs = np.concatenate([[False], (v[1:] * jump <= v[:-1]) & (v[1:] > 0)])
    return ups, downs, np.flatnonzero(ups | downs).tolist()


class Divergence(Detector):
    """The smoothed train loss (median of 5) rises far above its running minimum (3x, and far
    beyond the loss's own noise) and above where training started, for several logging steps in
    a row: the loss is exploding. Also a loss blown up 100x above the untrained loss in the first
    logs, and a validation loss bouncing 2x up and down between evals. All critical: each needs
    a rise that noise, a warm-up bump or a slow drift cannot make, and it ends in NaN if left.
    Warning: after good progress (the minimum below half the start) the smoothed loss back at
    3x its minimum, by a tenth of the start or more, without passing the start (a mid-run blow-up
    that undid the learning; it may settle, it may not)."""

    id = "divergence"
    DEFAULTS = {
        "window": 5,
        "ratio": 3.0,
        "over_start": 1.2,
        "persist": 3,
        "noise_z": 8.0,
        "progress": 0.5,
        "relapse_rise": 0.1,
        "jump": 2.0,
        "jumps": 2,
        "jump_window": 6,
        "early_logs": 20,
        "early_ratio": 100.0,
    }

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.run_min = math.inf
        self.start_level = math.nan
        self.streak = 0
        self.min_step = 0
        self.blew_up = False
        self.first_eval: float | None = None  # the first finite validation loss

    def update(self, view: RunView) -> None:
        if view.is_rl:
            return
        self._unstable_evals(view)
        sv = view.pick("train", "loss")
        if sv is None or sv.new_from >= len(sv.values):
            return
        self._blown_up_at_start(view, sv)
        w = int(self.p["window"])
        lo = max(0, sv.new_from - w + 1)
        vals = sv.values[lo:]
        finite = np.where(np.isfinite(vals), vals, np.nan)
        if math.isnan(self.start_level):
            head = sv.values[:w]
            if len(head) == w and np.isfinite(head).all():
                self.start_level = small_median(head.tolist())  # np.median's arithmetic
        head_end = min(len(sv.values), max(sv.new_from, 2 * w))
        self._walk(view, sv, finite, lo, sv.new_from - lo, head_end - lo, w)
        if head_end < len(sv.values):
            lo2 = head_end - w + 1
            few = len(sv.values) - head_end <= FEW  # walked at once: cheaper than a quiet check
            if few or not self._quiet_chunk(sv, finite[lo2 - lo :], lo2, w, head_end):
                self._walk(view, sv, finite, lo, head_end - lo, len(vals), w)

    def _walk(
        self, view: RunView, sv: SeriesView, finite: np.ndarray, lo: int, k0: int, k1: int, w: int
    ) -> None:
        k0 = max(k0, w - 1 - lo)  # the first point with a full window of w logs
        for b0 in range(k0, k1, BLOCK):
            b1 = min(k1, b0 + BLOCK)
            self._walk_medians(view, sv, lo, b0, window_medians(finite, b0, b1, w), w)

    def _walk_medians(
        self, view: RunView, sv: SeriesView, lo: int, k0: int, meds: np.ndarray, w: int
    ) -> None:
        """The rule at each point from its smoothed loss (`meds[j]`: the median of the w logs
        ending at index lo + k0 + j): O(1) a point, the noise measured only when it may fire."""
        ratio, over_start, persist = self.p["ratio"], self.p["over_start"], self.p["persist"]
        for j, m in enumerate(meds.tolist()):
            if not math.isfinite(m):
                continue
            i = lo + k0 + j
            if math.isnan(self.start_level):
                self.start_level = m
            limit = max(ratio * self.run_min, over_start * self.start_level)
            relapse = self._relapse(m, self.run_min)
            if (m > limit or relapse) and math.isfinite(self.run_min):
                self.streak += 1
                key = "relapse:" + sv.name if m <= limit else sv.name
                if (
                    self.streak >= persist
                    and key not in self.open  # already said: nothing to add
                    and self._beyond_noise(sv, i, m, w)
                ):
                    self._fire(view, sv, i, m, relapse=m <= limit)
            else:
                self.streak = 0
                if m < 1.5 * self.run_min:
                    self.clear(sv.name)
                    self.clear("relapse:" + sv.name)
            if m < self.run_min:
                self.run_min, self.min_step = m, int(sv.steps[i])

    def _relapse(self, m: float | np.ndarray, run_min: float | np.ndarray) -> bool | np.ndarray:
        """After good progress (the running minimum below `progress` x the start), a loss back
        at `ratio` x that minimum, by at least `relapse_rise` of the start, has blown up even
        if it has not passed its start: training undid what it had learned."""
        start = self.start_level
        return (
            (run_min < self.p["progress"] * start)
            & (m > self.p["ratio"] * run_min)
            & (m - run_min >= self.p["relapse_rise"] * start)
        )

    def _blown_up_at_start(self, view: RunView, sv: SeriesView) -> None:
        """A learning rate far too high explodes the loss in the first steps, before any window
        of logs could set a running minimum. The first log, taken before that (step 0 of a hand
        loop), is an untrained model's loss: when three logs in a row within the first
        `early_logs` sit `early_ratio` x above it, the loss has blown up. A batch loss at
        initialisation is ln K (or the targets' variance) give or take little, so a healthy run
        never sits 100x above it."""
        n = int(self.p["early_logs"])
        if self.blew_up or sv.name in self.open or sv.new_from >= n or len(sv.values) < 4:
            return
        v0 = float(sv.values[0])
        if not (math.isfinite(v0) and v0 > 0):
            return
        head = sv.values[: min(n, len(sv.values))].tolist()  # 20 logs: plain floats
        for i in range(max(3, sv.new_from), len(head)):
            window = head[i - 2 : i + 1]
            if all(map(math.isfinite, window)) and min(window) >= self.p["early_ratio"] * v0:
                m = sorted(window)[1]  # np.median of 3 finite values
                self.fire(
                    sv.name,
                    Severity.CRITICAL,
                    int(sv.steps[i]),
                    [sv.name],
                    f"{sv.name} blew up in the first steps: {fmt(m)} at step {int(sv.steps[i])} "
                    f"against {fmt(v0)} at step {int(sv.steps[0])} ({m / v0:.0f}x)",
                    {"first": v0, "first_step": int(sv.steps[0]), "smoothed_loss": m},
                    "stop training: the learning rate is far too high for this model; lower it "
                    "(10x or more) and add a warm-up and gradient clipping",
                )
                self.blew_up = True  # once per run: the later logs are the main rule's to judge
                return

    def _unstable_evals(self, view: RunView) -> None:
        """A learning rate far too high for the model often never shows a clean explosion: the
        loss blows up in the first logs and then bounces. The evaluations show it: the
        validation loss jumps `jump` x up from one eval to the next (to at least half the first
        eval's level) `jumps` times within `jump_window` evals, and falls as steeply in between:
        it bounces. A healthy validation loss moves smoothly, a converged one that jitters near
        zero stays far below its first eval, and a steady climb is overfitting's to call."""
        val = view.pick("val", "loss")
        if val is None or val.new_from >= len(val.values) or "unstable:" + val.name in self.open:
            return
        first = self._first_eval(val)
        if not math.isfinite(first) or first <= 0:
            return
        jump, need, window = self.p["jump"], int(self.p["jumps"]), int(self.p["jump_window"])
        base = max(0, val.new_from - window)  # only the new evals and the window before them
        v = val.values[base:]
        up, down, moves = _jumps(v, jump, 0.5 * first)
        for k in moves:
            i = base + k
            if i < max(val.new_from, 1):
                continue
            lo = max(0, int(k) - window + 1)
            # bouncing, not a steady climb: jumps up and at least one fall as steep
            if sum(up[lo : k + 1]) < need or not any(down[lo : k + 1]):
                continue
            ratios = [float(v[j] / v[j - 1]) for j in range(lo, int(k) + 1) if up[j]]
            self.fire(
                "unstable:" + val.name,
                Severity.CRITICAL,
                int(val.steps[i]),
                [val.name],
                f"training is unstable: {val.name} jumped "
                + ", ".join(f"{r:.1f}x" for r in ratios)
                + f" from one eval to the next within {window} evals (now "
                f"{fmt(float(val.values[i]))}, first eval {fmt(first)})",
                {"jumps": ratios, "now": float(val.values[i]), "first_eval": first},
                "stop training: the learning rate is far too high for this model; lower it (10x) "
                "and add gradient clipping and a warm-up",
            )
            return

    def _first_eval(self, val: SeriesView) -> float:
        """The first finite validation loss already seen (else the first new one), found once."""
        if self.first_eval is None:
            seen = val.values[: max(val.new_from, 1)]
            finite = np.flatnonzero(np.isfinite(seen))
            if len(finite):
                self.first_eval = float(seen[finite[0]])
            else:
                return float(val.values[val.new_from])
        return self.first_eval

    def _beyond_noise(self, sv: SeriesView, i: int, m: float, w: int) -> bool:
        """Per-batch losses can be so noisy that a median of 5 wanders to 3x the lowest median
        of 5 seen: the rise must also stand `noise_z` standard errors above that minimum, the
        noise measured on the 256 logs before the rise (robustly, from successive differences)."""
        end = max(0, i - self.streak - w + 2)
        before = sv.values[max(0, end - 256) : end]
        before = before[np.isfinite(before)]
        if len(before) < 16:
            return True
        sigma = step_noise(before)
        return m > self.run_min + self.p["noise_z"] * 1.2533 * sigma / math.sqrt(w)

    def _quiet_chunk(self, sv: SeriesView, finite: np.ndarray, lo: int, w: int, start: int) -> bool:
        """Vectorised pass: if no point of the chunk can trip or clear the rule, just carry the
        running state forward and report True; otherwise the caller walks the chunk."""
        first = start - lo
        if lo + len(finite) < w or math.isnan(self.start_level) or self.open or self.streak:
            return False
        if not np.isfinite(finite).all():
            return False
        meds = sliding_medians(finite, w)
        meds = meds[first - (w - 1) :] if first >= w - 1 else meds
        if len(meds) != len(finite) - first:
            return False
        prev_min = np.minimum.accumulate(np.concatenate([[self.run_min], meds]))[:-1]
        limit = np.maximum(self.p["ratio"] * prev_min, self.p["over_start"] * self.start_level)
        if (meds > limit).any() or np.any(self._relapse(meds, prev_min)):
            return False
        j = int(np.argmin(meds))
        if meds[j] < self.run_min:
            self.run_min, self.min_step = float(meds[j]), int(sv.steps[start + j])
        return True

    def _fire(self, view: RunView, sv: SeriesView, i: int, m: float, relapse: bool = False) -> None:
        step = int(sv.steps[i])
        evidence = {
            "smoothed_loss": m,
            "running_min": self.run_min,
            "min_step": self.min_step,
            "start_level": self.start_level,
        }
        grad = view.pick("train", "grad_norm")
        extra = ""
        if grad is not None and len(grad.values):
            g_now = grad.value_at(step)
            g_then = median_finite(grad.values[: max(1, grad.at_or_before(self.min_step) + 1)])
            evidence.update(grad_norm=g_now, grad_norm_at_min=g_then)
            if math.isfinite(g_now) and math.isfinite(g_then) and g_then > 0:
                extra = f"; grad norm {fmt(g_now)} vs {fmt(g_then)}"
        if relapse:
            self.fire(
                "relapse:" + sv.name,
                Severity.WARNING,
                step,
                [sv.name],
                f"{sv.name} blew up after good progress: {fmt(m)} vs its minimum "
                f"{fmt(self.run_min)} (step {self.min_step}), {m / self.run_min:.1f}x, back "
                f"towards its start {fmt(self.start_level)}{extra}",
                evidence,
                "look now: keep the checkpoint from before the jump; lower the learning rate or "
                "clip gradients, and look for a bad batch or a schedule change at that step",
            )
            return
        self.fire(
            sv.name,
            Severity.CRITICAL,
            step,
            [sv.name],
            f"{sv.name} is exploding: {fmt(m)} (median of 5) vs its lowest median "
            f"{fmt(self.run_min)} (step {self.min_step}), {fmt(m / self.run_min)}x{extra}",
            evidence,
            "stop training before it turns NaN: lower the learning rate, add gradient clipping, "
            "check the warm-up",
        )


class GradSpike(Detector):
    """A gradient norm far above the median of the previous ones and well above their usual
    maximum (earlier spikes left out: an outlier, not a gradual rise such as a warm-up), and
    above the run's early level (so that a norm shrinking towards zero does not make every blip
    a spike).

    - info: the first spike of the run (one bad batch that clipping or the loss shrugs off is
      common in healthy runs; what follows it is divergence's and nan_loss's to judge).
    - warning: a spike after an earlier one (spikes recur: the learning rate or the data has a
      problem that will strike again).
    - never critical."""

    id = "grad_spike"
    DEFAULTS = {"factor": 10.0, "over_max": 2.5, "window": 20, "min_history": 10, "cooldown": 20}

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.since_spike: dict[str, int] = {}
        self.early: dict[str, float] = {}
        self.spikes: dict[str, list[int]] = {}  # steps of the spikes so far, per series

    def update(self, view: RunView) -> None:
        for sv in view.series.values():
            if sv.role.kind != "grad_norm" or sv.new_from >= len(sv.values):
                continue
            w, need = int(self.p["window"]), int(self.p["min_history"])
            if sv.name not in self.early:
                self._set_early(sv, need)
            head_end = min(len(sv.values), max(sv.new_from, w))
            self._walk(view, sv, range(sv.new_from, head_end), w, need)
            for lo in range(head_end, len(sv.values), BLOCK):
                hi = min(len(sv.values), lo + BLOCK)
                if hi - lo <= FEW or not self._block(view, sv, w, lo, hi):
                    self._walk(view, sv, range(lo, hi), w, need)

    def _walk(self, view: RunView, sv: SeriesView, indices: range, w: int, need: int) -> None:
        base = max(0, indices.start - w)
        values = sv.values[base : indices.stop].tolist()  # plain floats, converted once
        for i in indices:
            v = values[i - base]
            hist = [x for x in values[max(0, i - w) - base : i - base] if math.isfinite(x)]
            if sv.name not in self.early and len(hist) >= need:
                self._set_early(sv, need)
            n = self.since_spike.get(sv.name)
            if n is not None:
                self.since_spike[sv.name] = n + 1
                if n + 1 >= self.p["cooldown"]:
                    self.clear(sv.name)
                    del self.since_spike[sv.name]
            if len(hist) < need or not math.isfinite(v):
                continue
            med = small_median(hist)
            usual = [x for x in hist if x <= self.p["factor"] * med]  # spikes do not raise it
            outlier = v > self.p["factor"] * med and v > self.p["over_max"] * max(usual)
            if med > 0 and outlier and v > self.early.get(sv.name, 0.0):
                self._spike(view, sv, int(sv.steps[i]), v, med)

    def _spike(self, view: RunView, sv: SeriesView, step: int, v: float, med: float) -> None:
        self.since_spike[sv.name] = 0
        seen = self.spikes.setdefault(sv.name, [])
        seen.append(step)
        loss = view.pick("train", "loss")
        loss_txt = ""
        if loss is not None:
            lv = loss.value_at(step)
            if math.isfinite(lv):
                loss_txt = f"; loss {fmt(lv)}"
        evidence = {"value": v, "median": med, "ratio": v / med, "spikes": list(seen)}
        if len(seen) == 1:
            self.fire(
                sv.name,
                Severity.INFO,
                step,
                [sv.name],
                f"gradient norm spiked to {fmt(v)} at step {step}, {v / med:.0f}x its recent "
                f"median {fmt(med)}{loss_txt}: one spike so far",
                evidence,
                "nothing to do if the loss shrugs it off; if spikes repeat, lower the learning "
                "rate or clip gradients (max_grad_norm)",
            )
            return
        self.clear(sv.name)  # the info episode ends: spikes recur
        self.fire(
            "recurring:" + sv.name,
            Severity.WARNING,
            step,
            [sv.name],
            f"gradient norm spikes recur: {fmt(v)} at step {step}, {v / med:.0f}x its recent "
            f"median {fmt(med)}, spike {len(seen)} since step {seen[0]}{loss_txt}",
            evidence,
            "lower the learning rate or clip gradients (max_grad_norm); look for bad batches "
            "(empty, mislabelled, extreme lengths) at the spike steps",
        )

    def _block(self, view: RunView, sv: SeriesView, w: int, lo: int, hi: int) -> bool:
        """The walk over points lo..hi-1 at once, when every point of the block and of the
        window before it is finite and the early level is known: the spike test vectorised, then
        the cooldown carried from spike to spike. False: the caller walks the block."""
        if sv.name not in self.early or lo < w:
            return False
        vals = sv.values[lo - w : hi]
        if not np.isfinite(vals).all():
            return False
        new = vals[w:]
        factor = self.p["factor"]
        # a spike is above factor x its window's median, so above factor x its minimum: only
        # the points above that (rare) get their window's median worked out
        maybe = (new > self.early[sv.name]) & (
            new > factor * sliding_min(vals, w)[:-1] if factor > 0 else True
        )
        k_maybe = np.flatnonzero(maybe)
        if not len(k_maybe):  # no point can be a spike: only the cooldown moves on
            self._cool(sv, hi - lo)
            return True
        meds = np.zeros(len(new))
        spikes = np.zeros(len(new), dtype=bool)
        if len(k_maybe):
            rows = vals[k_maybe[:, None] + np.arange(w)]  # the windows before those points
            m = np.median(rows, axis=1)
            maxes = np.where(rows <= factor * m[:, None], rows, -np.inf).max(axis=1)
            cand = new[k_maybe]
            meds[k_maybe] = m
            spikes[k_maybe] = (m > 0) & (cand > factor * m) & (cand > self.p["over_max"] * maxes)
        at = lo
        for k in np.flatnonzero(spikes):
            self._cool(sv, lo + int(k) + 1 - at)  # the cooldown counts the spike's point too
            at = lo + int(k) + 1
            self._spike(view, sv, int(sv.steps[at - 1]), float(new[k]), float(meds[k]))
        self._cool(sv, hi - at)
        return True

    def _cool(self, sv: SeriesView, points: int) -> None:
        """Count `points` logs into the open spike's cooldown; the episode ends once it is over."""
        n = self.since_spike.get(sv.name)
        if n is None or points <= 0:
            return
        if n + points >= self.p["cooldown"]:
            self.clear(sv.name)
            del self.since_spike[sv.name]
        else:
            self.since_spike[sv.name] = n + points

    def _set_early(self, sv: SeriesView, need: int) -> None:
        head = sv.values[np.isfinite(sv.values)][:need]
        if len(head) == need:
            self.early[sv.name] = small_median(head.tolist())  # np.median's arithmetic

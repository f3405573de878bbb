"""The run's schedule: the learning rate's shape, and a run that stopped before its planned length.

Both read the schedule from the writer's own record (RunView.planned_steps: HF max_steps, Keras'
`Epoch N/M`, Ultralytics' args.yaml, a run card; the early-stopping state a library saves) and
stay silent where the record says nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import numpy as np

from watchrun.detectors.base import FEW, Detector, RunView, SeriesView, fmt, pct
from watchrun.model import RunStatus, Severity


def _smoothed(values: np.ndarray, k: int = 5) -> np.ndarray:
    """Running median of k (fewer at the start), NaN-free input assumed."""
    if len(values) < k:
        return np.array([float(np.median(values[: i + 1])) for i in range(len(values))])
    head = [float(np.median(values[: i + 1])) for i in range(k - 1)]
    body = np.median(np.lib.stride_tricks.sliding_window_view(values, k), axis=1)
    return np.concatenate([np.array(head), body])


def loss_cost(train: SeriesView | None, step: int, planned: int | None) -> str | None:
    """What a learning rate still climbing has cost the loss by `step`, from the points up to
    it: the loss flat for the first quarter of the plan (the LR was too low to learn), or climbed
    back well above its best (the LR grew too high). None when the loss shows no cost."""
    if train is None:
        return None
    upto = train.values[: train.at_or_before(step) + 1]
    steps = train.steps[: len(upto)]
    ok = np.isfinite(upto)
    upto, steps = upto[ok], steps[ok]
    if len(upto) < 8:
        return None
    smooth = _smoothed(upto)
    best = float(smooth.min())
    now = float(smooth[-1])
    if (
        best > 0
        and now >= 1.3 * best
        and now - best >= 0.25 * (float(smooth[0]) - best + now - best)
    ):
        return f"the loss climbed back from {fmt(best)} to {fmt(now)} as it rose"
    if planned:
        quarter = smooth[steps <= 0.25 * planned]
        if len(quarter) >= 4 and quarter[0] > 0 and quarter[-1] >= 0.95 * quarter[0]:
            return (
                f"the loss did not move in the first quarter of the run ({fmt(float(quarter[0]))} "
                f"-> {fmt(float(quarter[-1]))})"
            )
    return None


class LrSchedule(Detector):
    """Learning-rate schedule mistakes, read from the logged learning rate.

    - Warm-up that never ends: the LR has only risen since the first log, still rises
      (`rising_points` increases in a row) and is >= `min_rise` x its first value, past
      `past_fraction` of the planned length (the writer's own record; silent
      when the plan is unknown), or at the end of a run whose loop finished (HF train_runtime)
      having never decayed. WARNING when the loss shows the cost (flat for the first quarter of
      the plan: too low to learn; or climbed back >= 30% above its best: too high), INFO when the
      loss still falls (the run trains; it just never reaches its peak LR).
    - The LR climbs back: after coming down to <= `trough_fraction` of an earlier peak, it rises
      again (`rising_points` increases in a row, >= 20% above the trough). WARNING when
      the trough is ~0 (<= `annealed_fraction` of the peak: an annealing schedule whose period is
      shorter than the run, e.g. a cosine T_max of half the epochs), INFO otherwise (a scheduler
      restarted mid-run, e.g. a resume without its state, or a cyclic schedule).
    """

    id = "lr_schedule"
    DEFAULTS = {
        "rising_points": 5,
        "past_fraction": 0.5,
        "min_rise": 2.0,
        "trough_fraction": 0.5,
        "annealed_fraction": 0.01,
    }

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.peak = -math.inf  # the highest LR so far
        self.trough = math.inf  # the lowest LR since the peak
        self.run_up = 0  # increases in a row ending at the last point
        self.last = math.nan
        self.first = math.nan
        self.trough_step = 0
        self.bucket = -1
        self.fell = False  # the LR has come down at least once
        self.last_step = -1
        self.support = 0  # logs that climbed to or held the peak
        self.descent = 0  # falling logs since the peak

    def update(self, view: RunView) -> None:
        sv = view.lr()
        if sv is None or sv.new_from >= len(sv.values):
            return
        n = int(self.p["rising_points"])
        planned = view.planned_steps
        for i in self._to_judge(sv, n):
            v = float(sv.values[i])
            if not math.isfinite(v):
                continue
            self._track(v, int(sv.steps[i]))
            if (
                self.run_up >= n - 1
                and v >= self.peak
                and planned
                and sv.steps[i] >= self.p["past_fraction"] * planned
            ):
                bucket = (
                    int(sv.steps[i]) * 50 // planned
                )  # the loss is judged once per 2% of the plan
                if bucket != self.bucket and i + 1 >= n and self._rising(sv, i, n):
                    self.bucket = bucket
                    self._warmup(
                        view,
                        sv,
                        i,
                        f"{pct(sv.steps[i] / planned)} of the "
                        f"planned {planned} {view.run.step_unit}s",
                    )
            elif self.run_up >= n - 1 and self._climbs_back(v):
                self._climb(view, sv, i, v)

    def _to_judge(self, sv: SeriesView, n: int) -> Iterator[int]:
        """The new points that end n - 1 increases in a row, the only ones update() can judge;
        the points between them are tracked in bulk (a decaying or constant LR needs no look
        per log). Each is yielded before it is tracked; update() tracks it."""
        if len(sv.values) - sv.new_from <= FEW:  # a live read: each point as it comes
            yield from range(sv.new_from, len(sv.values))
            return
        new = sv.values[sv.new_from :]
        idx = sv.new_from + np.flatnonzero(np.isfinite(new))  # NaN logs are skipped
        vals = sv.values[idx]
        at = 0
        for h in [*np.flatnonzero(self._run_ups(vals) >= n - 1).tolist(), len(vals)]:
            self._track_many(vals[at:h], sv.steps[idx[at:h]])
            if h < len(vals):
                yield int(idx[h])
            at = h + 1

    def _run_ups(self, vals: np.ndarray) -> np.ndarray:
        """run_up after each of `vals` is tracked: the increases in a row ending there."""
        prev = np.concatenate([[self.last], vals[:-1]])
        pos = np.arange(len(vals))
        reset = np.maximum.accumulate(np.where(vals > prev, -1, pos)) if len(vals) else pos
        return np.where(reset >= 0, pos - reset, self.run_up + pos + 1)

    def _track_many(self, vals: np.ndarray, steps: np.ndarray) -> None:
        """_track over many finite points at once, with the same result."""
        if len(vals) <= 1:
            for v, step in zip(vals.tolist(), steps.tolist(), strict=True):
                self._track(v, step)
            return
        run_ups = self._run_ups(vals)
        prev = np.concatenate([[self.last], vals[:-1]])
        prev_steps = np.concatenate([[self.last_step], steps[:-1]])
        if math.isnan(self.first):
            self.first = float(vals[0])
        self.fell = self.fell or bool((vals < prev).any())
        peak_before = np.maximum.accumulate(np.concatenate([[self.peak], vals[:-1]]))
        peaks = np.flatnonzero(vals > peak_before)
        start = 0
        if len(peaks):  # the last new peak resets what is counted since the peak
            p = int(peaks[-1])
            run_up_before = int(run_ups[p - 1]) if p else self.run_up
            self.trough_step = self._trough_step_before(vals, steps, peaks)
            self.peak, self.trough, self.descent = float(vals[p]), math.inf, 0
            self.support = run_up_before + 2 if vals[p] > prev[p] else 1
            start = p + 1
        tail, tail_prev = vals[start:], prev[start:]
        held = tail == self.peak
        self.support += int((held & (steps[start:] != prev_steps[start:])).sum())
        below = ~held
        self.descent += int((below & (tail < tail_prev)).sum())
        if below.any():
            j = int(np.argmin(np.where(below, tail, np.inf)))
            if tail[j] < self.trough:
                self.trough, self.trough_step = float(tail[j]), int(steps[start + j])
        self.run_up = int(run_ups[-1])
        self.last, self.last_step = float(vals[-1]), int(steps[-1])

    def _trough_step_before(self, vals: np.ndarray, steps: np.ndarray, peaks: np.ndarray) -> int:
        """trough_step as the last new peak of `vals` leaves it (a peak resets the trough, not
        its step): the step of the last new low before that peak, found segment by segment
        from the last peak back."""
        for q in range(len(peaks) - 1, -1, -1):
            begin = int(peaks[q - 1]) + 1 if q else 0
            seg = vals[begin : int(peaks[q])]
            peak, trough = (float(vals[peaks[q - 1]]), math.inf) if q else (self.peak, self.trough)
            below = seg < peak
            if below.any():
                j = int(np.argmin(np.where(below, seg, np.inf)))
                if seg[j] < trough:
                    return int(steps[begin + j])
        return self.trough_step

    def _track(self, v: float, step: int) -> None:
        if math.isnan(self.first):
            self.first = v
        rising = not math.isnan(self.last) and v > self.last
        self.fell = self.fell or (not math.isnan(self.last) and v < self.last)
        if v > self.peak:
            self.peak, self.trough, self.descent = v, math.inf, 0
            self.support = self.run_up + 2 if rising else 1
        elif v == self.peak:
            self.support += int(step != self.last_step)  # a row logged twice holds nothing
        else:
            self.descent += int(v < self.last)
            if v < self.trough:
                self.trough, self.trough_step = v, step
        self.run_up = self.run_up + 1 if rising else 0
        self.last, self.last_step = v, step

    def _climbs_back(self, v: float) -> bool:
        """Rising again from a trough well below an established peak: one the LR climbed to or
        held for `rising_points` logs (a warm-up, a constant phase), or came down from over as
        many (a decay), not a lone first log."""
        n = int(self.p["rising_points"])
        if not math.isfinite(self.trough) or self.peak <= 0 or max(self.support, self.descent) < n:
            return False
        return self.trough <= self.p["trough_fraction"] * self.peak and v >= max(
            1.2 * self.trough, 1e-3 * self.peak
        )

    def finalize(self, view: RunView) -> None:
        sv = view.lr()
        n = int(self.p["rising_points"])
        if sv is None or view.planned_steps or len(sv.values) < n:
            return  # with a plan, update() has judged the warm-up against it
        if view.run.explicit_status is not RunStatus.FINISHED:
            return  # a snapshot or a run cut short: still in warm-up says nothing
        vals = sv.values[np.isfinite(sv.values)]
        if self._rising(sv, len(sv.values) - 1, n) and np.all(np.diff(vals) >= 0):
            self._warmup(view, sv, len(sv.values) - 1, "the end of the run, never having decayed")

    def _rising(self, sv: SeriesView, i: int, n: int) -> bool:
        """A warm-up still under way: the LR has never come down since the first log, rose over
        the last n logs, and is at least `min_rise` times where it started (a ramp, not a drift)."""
        w = sv.values[i - n + 1 : i + 1]
        if self.fell or not np.isfinite(w).all() or w[0] <= 0 or not self.first > 0:
            return False
        return bool(np.all(np.diff(w) > 0) and w[-1] >= self.p["min_rise"] * self.first)

    def _warmup(self, view: RunView, sv: SeriesView, i: int, when: str) -> None:
        """INFO while the loss still falls; a WARNING (once) when it shows the cost."""
        step = int(sv.steps[i])
        cost = loss_cost(view.pick("train", "loss"), step, view.planned_steps)
        if not cost and "warmup-cost" in self.open:
            return
        self.fire(
            "warmup-cost" if cost else "warmup",
            Severity.WARNING if cost else Severity.INFO,
            step,
            [sv.name],
            f"learning rate still rising at {when} ({fmt(self.first)} -> "
            f"{fmt(float(sv.values[i]))}): "
            "the warm-up never ends" + (f"; {cost}" if cost else "; the loss still falls"),
            {"lr": float(sv.values[i]), "first_lr": self.first, "loss_cost": cost},
            "check warmup_steps / warmup_ratio against the total steps, and the scheduler's "
            "step interval (per step vs per epoch)",
        )

    def _climb(self, view: RunView, sv: SeriesView, i: int, v: float) -> None:
        annealed = self.trough <= self.p["annealed_fraction"] * self.peak
        step = int(sv.steps[i])
        if annealed:
            what = (
                f"learning rate climbs back after annealing to {fmt(self.trough)} at step "
                f"{self.trough_step} ({fmt(self.peak)} at its peak, {fmt(v)} now): the schedule's "
                "period is shorter than the run"
            )
            action = (
                "set the annealing period to the run's length (CosineAnnealingLR T_max = total "
                "epochs or steps, not half of them), or stop at the end of the first period"
            )
        else:
            what = (
                f"learning rate rising again from {fmt(self.trough)} (step {self.trough_step}) to "
                f"{fmt(v)} after a peak of {fmt(self.peak)}: the scheduler restarted (a resume "
                "without its state?) or cycles"
            )
            action = "if the run was resumed, restore the scheduler's state with the optimizer's"
        self.fire(
            "climb",
            Severity.WARNING if annealed else Severity.INFO,
            step,
            [sv.name],
            what,
            {"lr": v, "peak": self.peak, "trough": self.trough, "trough_step": self.trough_step},
            action,
        )


_MAP = re.compile(r"mAP_?(50|0\.5)(-95|:0\.95)?(\(\w+\))?$")
_LIGHTNING_MONITOR = re.compile(r"^early stopping: (\S+) did not improve")


class EarlyStopped(Detector):
    """The run ended before its planned length; what the library's own record says about why,
    with the best step and checkpoint (the one to keep). INFO: stopping early is what the
    callback is for; the news is where the best model is. At the run's end only; the alert's step
    is where the stop shows (the last step, or the step the record names).

    Evidence, each from the library's own record:
    - HF EarlyStoppingCallback's saved state: its patience counter reached the patience.
    - Ultralytics args.yaml (`epochs`, `patience`) and results.csv ending before `epochs`: the best
      fitness (0.1 mAP50 + 0.9 mAP50-95) `patience` epochs before the end is its EarlyStopping;
      otherwise the run was cut short (killed, crashed).
    - Keras `Epoch N: early stopping` and Lightning's `Monitored metric ... did not improve` lines.
    - A planned length (HF max_steps, Keras `Epoch N/M`, a run card, Lightning's max_epochs among
      its hparams against its epoch column) not reached by a run whose loop returned (HF
      train_runtime) or whose process died (a console's traceback: KeyboardInterrupt, an OOM),
      or by an epoch-counted run: stopped by some callback or cut short. A run a step or two
      short of max_steps (HF's epoch rounding) is not.
    """

    id = "early_stopped"

    def finalize(self, view: RunView) -> None:
        run = view.run
        meta = run.meta
        last = self._last_step(view)
        if last is None:
            return
        patience, counter = meta.get("patience"), meta.get("patience_counter")
        if isinstance(patience, int) and isinstance(counter, int) and counter >= patience:
            step = int(meta.get("global_step") or last)
            self._fire(
                view,
                step,
                f"EarlyStoppingCallback: no better eval for {counter} evaluations "
                f"(patience {patience}), at step {step}" + self._of_planned(view, step),
            )
            return
        for at, message in run.events:
            if "early stopping" in message:
                self._fire(
                    view,
                    last if at is None else int(at),
                    message,
                    self._monitored(view, message),
                )
                return
        if meta.get("library") == "ultralytics":
            self._ultralytics(view, last)
            return
        planned = view.planned_steps
        epochs = view.series.get("epoch")
        if (
            run.step_unit != "epoch"
            and view.planned_epochs
            and epochs is not None
            and len(epochs.values)
        ):
            done = int(np.nanmax(epochs.values)) + 1  # Lightning's epoch column counts from 0
            if done < view.planned_epochs:
                self._fire(view, last, f"stopped after epoch {done} of {view.planned_epochs}")
            return
        if not planned:
            return
        if run.step_unit == "epoch":
            done = self._epochs_done(view, last)
            if done < planned:
                self._fire(view, last, f"stopped after epoch {done} of {planned}")
        elif last < planned - max(2, 0.01 * planned) and (
            run.summary.get("train_runtime") is not None or meta.get("died_of")
        ):
            died = f" (the process ended with {meta['died_of']})" if meta.get("died_of") else ""
            self._fire(view, last, f"stopped at step {last} of {planned}{died}")

    @staticmethod
    def _last_step(view: RunView) -> int | None:
        ends = [int(sv.steps[-1]) for sv in view.series.values() if len(sv.steps)]
        return max(ends) if ends else None

    @staticmethod
    def _epochs_done(view: RunView, last: int) -> int:
        """Epochs completed: Ultralytics >= 8.1 counts epochs from 1, Keras and older ones from
        0."""
        firsts = [int(sv.steps[0]) for sv in view.series.values() if len(sv.steps)]
        return last if firsts and min(firsts) == 1 else last + 1

    @staticmethod
    def _of_planned(view: RunView, step: int) -> str:
        planned = view.planned_steps
        return f" of the planned {planned}" if planned and step < planned else ""

    def _ultralytics(self, view: RunView, last: int) -> None:
        planned, patience = view.planned_epochs, view.run.meta.get("patience")
        if not planned:
            return
        done = self._epochs_done(view, last)
        if done >= planned:
            return
        best = self._fitness_best(view)
        if best is not None and isinstance(patience, int) and last - best[0] >= patience:
            what = (
                f"EarlyStopping: no better fitness for {last - best[0]} epochs (patience "
                f"{patience}), stopped after epoch {done} of {planned}"
            )
        else:
            what = f"stopped after epoch {done} of {planned}" + (
                f", before its patience ({patience}) ran out: interrupted or crashed"
                if patience
                else ""
            )
        self._fire(view, last, what, best, checkpoint="weights/best.pt" if best else None)

    @staticmethod
    def _fitness_best(view: RunView) -> tuple[int, str, float] | None:
        """Ultralytics' fitness (0.1 mAP50 + 0.9 mAP50-95 summed over box/mask/pose): its best
        epoch (the first of equals: its EarlyStopping moves the best only on a strictly better
        fitness), the name and the value."""
        parts: list[tuple[float, SeriesView]] = []
        for sv in view.series.values():
            m = _MAP.search(sv.name)
            if m:
                parts.append((0.9 if m.group(2) else 0.1, sv))
        if not parts:
            return None
        n = min(len(sv.values) for _, sv in parts)
        if n == 0:
            return None
        fitness = sum(w * np.nan_to_num(sv.values[:n], nan=0.0) for w, sv in parts)
        j = int(np.argmax(fitness))
        return int(parts[0][1].steps[j]), "fitness", float(fitness[j])

    def _monitored(self, view: RunView, message: str) -> tuple[int, str, float] | None:
        """The metric a Lightning EarlyStopping line names, at its best."""
        m = _LIGHTNING_MONITOR.match(message)
        sv = view.series.get(m.group(1)) if m else None
        if sv is None or not np.isfinite(sv.values).any():
            return None
        vals = np.where(np.isfinite(sv.values), sv.values, np.nan)
        j = int(np.nanargmax(vals) if sv.role.higher_better else np.nanargmin(vals))
        return int(sv.steps[j]), sv.name, float(sv.values[j])

    def _best(self, view: RunView) -> tuple[int, str, float] | None:
        """The run's best: HF's own (best_metric at best_global_step), else the lowest val loss."""
        meta = view.run.meta
        if isinstance(meta.get("best_global_step"), int) and isinstance(
            meta.get("best_metric"), (int, float)
        ):
            return int(meta["best_global_step"]), "best_metric", float(meta["best_metric"])
        val = view.pick("val", "loss")
        if val is None or not np.isfinite(val.values).any():
            return None
        j = int(np.nanargmin(np.where(np.isfinite(val.values), val.values, np.nan)))
        return int(val.steps[j]), val.name, float(val.values[j])

    def _fire(
        self,
        view: RunView,
        step: int,
        what: str,
        best: tuple[int, str, float] | None = None,
        checkpoint: str | None = None,
    ) -> None:
        best = best or self._best(view)
        best_txt = ""
        if best is not None:
            name = "eval (metric_for_best_model)" if best[1] == "best_metric" else best[1]
            best_txt = f"; best {name} {fmt(best[2])} at {view.run.step_unit} {best[0]}"
            checkpoint = checkpoint or view.best_checkpoint(best[0], metric=best[1])
        checkpoint = checkpoint or view.best_checkpoint()
        metrics = [best[1]] if best is not None and best[1] in view.series else []
        self.fire(
            "early",
            Severity.INFO,
            step,
            metrics,
            f"early stopped: {what}{best_txt}" + (f" ({checkpoint})" if checkpoint else ""),
            {
                "best_step": best[0] if best else None,
                "best_value": best[2] if best else None,
                "best_checkpoint": checkpoint,
            },
            "use the best checkpoint, not the last one",
        )

"""Is the evaluation itself trustworthy? A perfect score (leakage, duplicates, a tiny set), or so
few evaluations that the curve cannot be seen."""

from __future__ import annotations

import math

import numpy as np

from watchrun.detectors.base import Detector, RunView, SeriesView, fmt, shown
from watchrun.model import Severity

# precision alone is 1 for a model that predicts the positive class for a handful of sure cases,
# recall alone for one that predicts it everywhere: neither says the validation is perfect
_SCORE_KINDS = ("accuracy", "f1", "auc")


class PerfectValidation(Detector):
    """Validation accuracy/F1/AUC = 1, a detector's mAP at its ceiling (>= 0.995, the most the
    usual 101-point interpolation gives) with every object found (recall >= 0.99 at the same
    eval), or a classification loss ~0 (far below where it started), for `persist` evals in a
    row: warning (leakage, duplicates, or a validation set too small or too easy to tell
    checkpoints apart). A loss 10x below the ~0 bar speaks at its first eval. Never critical:
    the run itself is fine, its yardstick is not."""

    id = "perfect_validation"
    DEFAULTS = {
        "persist": 2,
        "score": 0.9999,
        "loss_abs": 1e-3,
        "loss_rel": 0.01,
        "map": 0.995,
        "recall": 0.99,
    }

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.streak: dict[str, int] = {}

    def update(self, view: RunView) -> None:
        for sv in view.series.values():
            r = sv.role
            if r.split != "val" or r.cls is not None or sv.new_from >= len(sv.values):
                continue  # no new eval: the streak goes on (a pass between evals is no break)
            if r.kind in _SCORE_KINDS:
                self._scan(view, sv, self.p["score"], math.inf)
            elif r.kind == "map":
                recall = view.pick("val", "recall")
                if recall is not None:
                    found = _values_at(recall, sv.steps[sv.new_from :]) >= self.p["recall"]
                    self._scan(view, sv, self.p["map"], 1.0, found)
            elif r.kind == "loss":
                ref = self._reference_loss(view, sv)
                if ref is not None:
                    limit = min(self.p["loss_abs"], self.p["loss_rel"] * ref)
                    self._scan(view, sv, 0.0, limit)

    def _reference_loss(self, view: RunView, sv: SeriesView) -> float | None:
        """Where the losses started: a ~0 loss means something only if they started well above."""
        starts = [float(sv.values[0])] if len(sv.values) else []
        train = view.pick("train", "loss")
        if train is not None and len(train.values):
            starts.append(float(train.values[0]))
        starts = [s for s in starts if math.isfinite(s)]
        return max(starts) if starts and max(starts) >= 0.05 else None

    def _scan(
        self, view: RunView, sv: SeriesView, lo: float, hi: float, also: np.ndarray | None = None
    ) -> None:
        new = sv.values[sv.new_from :]
        perfect = (new >= lo) & (new <= hi)
        if also is not None:
            perfect &= also
        if not perfect.any():  # the vectorised equivalent of walking the chunk
            self.streak[sv.name] = 0
            if len(new):
                self.clear(sv.name)
            return
        for k, i in enumerate(sv.new):
            if not perfect[k]:
                self.streak[sv.name] = 0
                self.clear(sv.name)
                continue
            self.streak[sv.name] = self.streak.get(sv.name, 0) + 1
            if sv.name in self.open:
                continue
            v = float(sv.values[i])
            instant = sv.role.kind == "loss" and v <= self.p["loss_abs"] * 0.1
            if self.streak[sv.name] >= self.p["persist"] or instant:
                self._fire(view, sv, i, float(sv.values[i]))

    def _fire(self, view: RunView, sv: SeriesView, i: int, v: float) -> None:
        step = int(sv.steps[i])
        n = self.streak[sv.name]
        evidence: dict = {"value": v, "evals": n}
        extra = []
        train = view.pick("train", "loss")
        if sv.role.kind == "loss" and train is not None:
            t = train.value_at(step)
            if math.isfinite(t):
                evidence["train_loss"] = t
                if v < t:
                    extra.append(f"below the train loss {fmt(t)}")
        size = self._eval_size(view, step)
        if size:
            evidence["eval_samples"] = size
            extra.append(f"on ~{size} samples")
        self.fire(
            sv.name,
            Severity.WARNING,
            step,
            [sv.name],
            f"perfect validation: {sv.name} = {shown(view, sv.name, v)} "
            + (f"for {n} evals in a row" if n > 1 else "at its first eval")
            + (f" ({', '.join(extra)})" if extra else ""),
            evidence,
            "suspect leakage: check for duplicates between train and validation, a feature that "
            "encodes the label, or a validation set too small to mean anything",
        )

    def _eval_size(self, view: RunView, step: int) -> int | None:
        """HF logs eval_runtime and eval_samples_per_second: their product is the set's size."""
        rt = next((s for s in view.series.values() if s.name.endswith("eval_runtime")), None)
        sps = next(
            (s for s in view.series.values() if s.name.endswith("eval_samples_per_second")), None
        )
        if rt is None or sps is None:
            return None
        n = rt.value_at(step) * sps.value_at(step)
        return int(round(n)) if math.isfinite(n) and n > 0 else None


def _values_at(sv: SeriesView, steps: np.ndarray) -> np.ndarray:
    """The series' value logged at exactly each of `steps` (NaN where it logged none)."""
    i = np.searchsorted(sv.steps, steps, side="right") - 1
    ok = (i >= 0) & (sv.steps[np.maximum(i, 0)] == steps)
    return np.where(ok, sv.values[np.maximum(i, 0)], np.nan)


class SparseEval(Detector):
    """Too few evaluations to see the curve: the schedule allows at most one (max_steps vs
    eval_steps), or the whole run ended with a single evaluation."""

    id = "sparse_eval"
    DEFAULTS = {"max_evals": 1, "min_train_points": 5}

    def update(self, view: RunView) -> None:
        val = self._val(view)
        planned, every = view.planned_steps, view.run.meta.get("eval_steps")
        if val is None or not planned or not every or len(val.values) == 0 or val.new_from > 0:
            return
        first = int(val.steps[0])
        if first != every:  # evaluated per epoch, not every eval_steps: the plan says nothing
            return
        n = planned // every
        if n <= self.p["max_evals"]:
            self._fire(view, val, first, n, planned, planned=True)

    def finalize(self, view: RunView) -> None:
        val = self._val(view)
        train = view.pick("train", "loss")
        if val is None or train is None or len(train.values) < self.p["min_train_points"]:
            return
        if view.test_as_val and len(val.values) == 1 and val.steps[0] >= train.steps[-1]:
            return  # no validation during training, one test after it: a final test, not an eval
        if 0 < len(val.values) <= self.p["max_evals"]:
            last = int(max(train.steps[-1], val.steps[-1]))
            self._fire(view, val, int(val.steps[-1]), len(val.values), last, planned=False)

    def _val(self, view: RunView) -> SeriesView | None:
        return view.pick("val", "loss") or next(
            (s for s in view.series.values() if s.role.split == "val" and s.role.is_quality), None
        )

    def _fire(
        self, view: RunView, val: SeriesView, step: int, n: int, total: int, planned: bool
    ) -> None:
        suggestion = max(1, total // 10)
        self.fire(
            "sparse",
            Severity.WARNING,
            step,
            [val.name],
            f"{n} evaluation{'s' if n != 1 else ''} in {total} {view.run.step_unit}s"
            + (" planned" if planned else "")
            + ": the validation curve cannot be seen",
            {"evals": n, "length": total, "eval_steps": view.run.meta.get("eval_steps")},
            f"evaluate more often: set eval_steps to ~{suggestion} (about 10 evaluations per run)",
        )

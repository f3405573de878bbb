"""What a headline number hides about classes: a minority class left behind, predictions that
collapse onto one class."""

from __future__ import annotations

import math

import numpy as np

from watchrun.detectors.base import Detector, RunView, SeriesView, fmt, shown, warming_up
from watchrun.model import Severity

_SPLITS = ("val", "test")


def _eval_steps(views: list[SeriesView]) -> np.ndarray:
    """Steps at which any of `views` has a new point, in order."""
    return steps_where([(sv.steps[sv.new_from :], None) for sv in views])


def steps_where(parts: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """The sorted distinct steps of `parts` (steps, and a mask of those to take, None: all), as
    np.unique(np.concatenate(...)) gives them. The metrics of one eval are usually logged at
    the same steps: then the union is one array's masked steps, with no sort."""
    if not parts:
        return np.empty(0, np.int64)
    base = parts[0][0]
    raw = base.tobytes()  # int64 steps: equal bytes, equal steps (a memcmp, not numpy calls)
    shared = all(
        steps is base or (len(steps) == len(base) and steps.tobytes() == raw)
        for steps, _ in parts[1:]
    ) and (len(base) < 2 or bool((base[1:] > base[:-1]).all()))
    if not shared:
        taken = [steps if mask is None else steps[mask] for steps, mask in parts]
        return np.unique(np.concatenate(taken)).astype(np.int64)
    if any(mask is None for _, mask in parts):
        return base.astype(np.int64)
    union = np.zeros(len(base), dtype=bool)
    for _, mask in parts:
        union |= mask
    return base[union].astype(np.int64)


JUDGE, ZERO, NONE = 2, 1, 0  # what _at does at a candidate step (see _EvalStreak._acts)


class _EvalStreak(Detector):
    """A detector that judges eval steps one at a time, with a streak of bad evals per split,
    but examines only candidate steps found with numpy (`_candidates`): at any other eval the
    condition cannot hold, so the streak ends and so does the episode, exactly as examining it
    would. While the split has no open episode, a candidate that `_acts` shows cannot be bad
    only ends the streak (or leaves it), so _at is called only where it may find something."""

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.streak: dict[str, int] = {}

    def _walk(self, view: RunView, split: str, views: list[SeriesView]) -> None:
        cands = self._candidates(views)
        if len(cands) == 0:
            if any(sv.new_from < len(sv.steps) for sv in views):  # evals, none a candidate
                first = int(_eval_steps(views)[0]) if split in self.open else None
                self._reset(split, first)
            return
        all_steps = _eval_steps(views)
        pos = np.searchsorted(all_steps, cands)
        gap = np.diff(pos, prepend=-1) > 1  # an eval that is no candidate comes before
        act = self._acts(view, split, views, cands)
        judged = np.flatnonzero(act == JUDGE)
        ends = np.concatenate(([0], np.cumsum(gap | (act == ZERO))))
        m, j = len(cands), 0
        while j < m:
            if split in self.open:  # every candidate judged, as one by one
                if gap[j]:  # ended at the first eval after the previous candidate
                    self._reset(split, int(all_steps[(pos[j - 1] if j else -1) + 1]))
                self._at(view, split, views, int(cands[j]))
                j += 1
                continue
            at = int(np.searchsorted(judged, j))
            nxt = int(judged[at]) if at < len(judged) else m
            # nothing open: a gap or a ZERO candidate before `nxt`, or a gap at it, only ends
            # the streak (clearing nothing)
            if ends[nxt] > ends[j] or (nxt < m and gap[nxt]):
                self.streak[split] = 0
            if nxt == m:
                break
            self._at(view, split, views, int(cands[nxt]))
            j = nxt + 1
        if pos[-1] < len(all_steps) - 1:
            self._reset(split, int(all_steps[pos[-1] + 1]))

    def _reset(self, split: str, step: int | None) -> None:
        """End the streak, and the episode at `step` (the first eval that is no candidate)."""
        self.streak[split] = 0
        self.clear(split, step)

    def _candidates(self, views: list[SeriesView]) -> np.ndarray:
        raise NotImplementedError

    def _acts(
        self, view: RunView, split: str, views: list[SeriesView], cands: np.ndarray
    ) -> np.ndarray:
        """What _at would do at each candidate while the split has no open episode: JUDGE
        (anything: call it), ZERO (only end the streak) or NONE (nothing at all)."""
        return np.full(len(cands), JUDGE, dtype=np.int8)

    def _at(self, view: RunView, split: str, views: list[SeriesView], step: int) -> None:
        raise NotImplementedError


def exact_at(sv: SeriesView, steps: np.ndarray) -> np.ndarray:
    """sv.exact at each of `steps` (vectorised, the same values): NaN where no point is at it."""
    if len(sv.steps) == 0:
        return np.full(len(steps), np.nan)
    i = np.searchsorted(sv.steps, steps, side="right") - 1
    ok = i >= 0
    i = np.maximum(i, 0)
    ok &= sv.steps[i] == steps
    return np.where(ok, sv.values[i], np.nan)


def _positive_recall(sv: SeriesView) -> bool:
    """A recall with no class and no average: binary, the positive class's."""
    return sv.role.kind == "recall" and sv.role.cls is None and sv.role.avg in ("", "binary")


def _positive_class(sv: SeriesView) -> bool:
    """A binary recall or F1: the positive class's."""
    return (
        sv.role.kind in ("recall", "f1") and sv.role.cls is None and sv.role.avg in ("", "binary")
    )


def still_separating(view: RunView, split: str, step: int) -> bool:
    """The split's AUC is clearly above chance (>= 0.6) and still rising (up >= 0.02 since the
    previous eval): the model ranks the classes apart and is still learning to. A threshold
    metric at 0 then means the threshold has not been crossed yet, not a lost class (an
    imbalanced model's first epochs)."""
    auc = next(
        (
            sv
            for sv in view.series.values()
            if sv.role.split == split and sv.role.kind == "auc" and sv.role.cls is None
        ),
        None,
    )
    if auc is None:
        return False
    i = auc.at_or_before(step)
    if i < 1:
        return False
    now, before = float(auc.values[i]), float(auc.values[i - 1])
    return math.isfinite(now) and math.isfinite(before) and now >= 0.6 and now - before >= 0.02


def _still_rising(sv: SeriesView, step: int) -> bool:
    """The class's score rose at each of the last two evals, by 0.05 in all: it is being
    learned (an imbalanced model learns its minority last), not left behind."""
    i = sv.at_or_before(step)
    if i < 2:
        return False
    a, b, c = (float(x) for x in sv.values[i - 2 : i + 1])
    return b > a and c > b and c - a >= 0.05


def at_uniform_guess(view: RunView, losses: list[float]) -> bool:
    """The loss sits at the uniform guess (ln K, K known; else ln 2, a binary model): a model
    that has not learned yet outputs the same probabilities everywhere, and its accuracy is then
    the majority share too. That is not learning (loss_at_chance, not_learning), not a model
    confidently collapsed onto one class."""
    k = view.num_classes()
    chance = math.log(k) if k else math.log(2)
    fin = [x for x in losses if math.isfinite(x)]
    return bool(fin) and abs(float(np.median(fin)) - chance) <= 0.03 * chance


class MinorityClassHidden(_EvalStreak):
    """A headline metric (binary F1, accuracy) looks good while the worst class or the macro
    average is bad: warning (there is no critical; the run trains on, it is judged wrongly).

    The headline is the best-looking overall number, except that per-class F1s are compared
    with their own overall F1 when the run logs one (seqeval's entity-level overall_f1, not the
    token accuracy that the background tag inflates). Evidence needed: two evals in a row, or
    one when the gap is huge but never the first validation eval (an imbalanced model learns the
    minority last; a test set scored after training is final), and never while the learning
    rate still rises (warm-up), while the split's AUC still climbs clearly above chance, or while
    the worst class's score still rises eval after eval (being learned). Without per-class
    metrics, a binary recall far below the accuracy (the positive class is the minority, and is
    missed) counts after three evals in a row."""

    id = "minority_class_hidden"
    DEFAULTS = {
        "headline_min": 0.75,
        "class_max": 0.5,
        "gap": 0.3,
        "macro_gap": 0.25,
        "instant_gap": 0.4,
        "inferred_evals": 3,
    }

    def update(self, view: RunView) -> None:
        for split in _SPLITS:
            views = [
                sv
                for sv in view.series.values()
                if sv.role.split == split
                and sv.role.kind in ("f1", "accuracy", "recall", "precision")
            ]
            if len(views) < 2 or not any(
                sv.role.cls or sv.role.avg == "macro" or _positive_class(sv) for sv in views
            ):
                continue
            self._walk(view, split, views)

    def _candidates(self, views: list[SeriesView]) -> np.ndarray:
        """Steps of the new points where a class, positive-class or macro metric is at or below
        what `_at` could call bad or still bad (vectorised)."""
        found = []
        for sv in views:
            r = sv.role
            if r.cls is not None or _positive_class(sv):
                limit = self.p["class_max"]
            elif r.avg == "macro":
                limit = max(self.p["class_max"], 1.0 - self.p["macro_gap"])
            else:
                continue
            new = sv.values[sv.new_from :]
            found.append((sv.steps[sv.new_from :], new <= limit))
        return steps_where(found)

    def _acts(
        self, view: RunView, split: str, views: list[SeriesView], cands: np.ndarray
    ) -> np.ndarray:
        """NONE where no headline metric has a finite value at the step (_at returns at once),
        ZERO where the best of them is below `headline_min`: the headline _at takes is one of
        them, so the step cannot be bad, and with nothing open that only ends the streak."""
        heads = [
            exact_at(sv, cands)
            for sv in views
            if sv.role.cls is None
            and sv.role.avg in ("", "binary", "micro")
            and sv.role.kind in ("f1", "accuracy")
        ]
        if not heads:
            return np.full(len(cands), NONE, dtype=np.int8)
        values = np.stack(heads)
        fin = np.isfinite(values)
        best = np.where(fin, values, -np.inf).max(axis=0)
        act = np.where(best >= self.p["headline_min"], JUDGE, ZERO).astype(np.int8)
        act[~fin.any(axis=0)] = NONE
        return act

    def _at(self, view: RunView, split: str, views: list[SeriesView], step: int) -> None:
        at = {sv.name: sv.exact(step) for sv in views}
        at = {k: v for k, v in at.items() if math.isfinite(v)}
        roles = {sv.name: sv.role for sv in views if sv.name in at}
        headline = [
            n
            for n, r in roles.items()
            if r.cls is None and r.avg in ("", "binary", "micro") and r.kind in ("f1", "accuracy")
        ]
        if not headline:
            return
        classes = {
            n: at[n] for n, r in roles.items() if r.cls is not None and r.kind in ("f1", "recall")
        }
        head = _own_aggregate(roles, at, classes) or max(
            headline, key=lambda n: at[n]
        )  # the best-looking hides
        hv = at[head]
        inferred = not classes and roles[head].kind == "accuracy"
        if inferred:
            # no per-class metrics: a binary recall or F1 (Keras' Recall(), sklearn's default) is
            # the positive class's; below the accuracy by the gap, the positive class is the
            # minority
            classes = {
                n: at[n] for n, r in roles.items() if n in at and _positive_class(view.series[n])
            }
        macro = {
            n: at[n] for n, r in roles.items() if r.avg == "macro" and r.kind in ("f1", "recall")
        }
        worst = min(classes, key=classes.__getitem__) if classes else None
        gap_class = hv - classes[worst] if worst else -1.0
        gap_macro = hv - min(macro.values()) if macro else -1.0
        bad = hv >= self.p["headline_min"] and (
            (
                worst is not None
                and classes[worst] <= self.p["class_max"]
                and gap_class >= self.p["gap"]
            )
            or gap_macro >= self.p["macro_gap"]
        )
        key = split
        if not bad:
            self.streak[key] = 0
            still_bad = (worst is not None and classes[worst] <= self.p["class_max"]) or (
                macro and min(macro.values()) <= self.p["class_max"]
            )
            if not still_bad:  # a dip of the headline alone does not end the episode
                self.clear(key, step)
            return
        if (
            warming_up(view, step)
            or still_separating(view, split, step)
            or (worst is not None and _still_rising(view.series[worst], step))
        ):
            self.streak[key] = 0
            return
        self.streak[key] = self.streak.get(key, 0) + 1
        gap = max(gap_class, gap_macro)
        # a test set scored after training (next to a validation split) is the final verdict
        final_test = split == "test" and not view.test_as_val
        first_eval = view.series[head].at_or_before(step) == 0 and not final_test
        if self.streak[key] < 2 and (gap < self.p["instant_gap"] or first_eval):
            return
        if inferred and not macro and self.streak[key] < self.p["inferred_evals"]:
            return  # the class is inferred, and the minority is often learned last: wait longer
        parts = [f"{head} {shown(view, head, hv)} looks good"]
        evidence: dict = {"headline": head, "headline_value": hv}
        metrics = [head]
        if worst:
            cls = roles[worst].cls or "1 (positive)"
            recall = next(
                (at[n] for n, r in roles.items() if r.cls == cls and r.kind == "recall"), None
            )
            parts.append(
                f"class {cls} {roles[worst].kind} {shown(view, worst, classes[worst])}"
                + (
                    f" (recall {fmt(recall)})"
                    if recall is not None and roles[worst].kind != "recall"
                    else ""
                )
            )
            evidence.update(worst_class=cls, worst_value=classes[worst], worst_metric=worst)
            metrics.append(worst)
        if macro:
            mname = min(macro, key=macro.__getitem__)
            parts.append(f"{mname} {shown(view, mname, macro[mname])}")
            evidence["macro"] = macro[mname]
            metrics.append(mname)
        self.fire(
            key,
            Severity.WARNING,
            step,
            metrics,
            "minority class hidden: " + "; ".join(parts),
            evidence,
            "judge the run by macro F1 and per-class recall; use class weights, resampling or a "
            "threshold tuned on the minority class",
        )


def _own_aggregate(roles: dict, at: dict, classes: dict) -> str | None:
    """The overall (micro) F1 of a per-class F1 family, when the run logs one: the classes'
    like-for-like headline. A binary F1 equal to one class's F1 is that class, not an aggregate."""
    if not any(roles[n].kind == "f1" for n in classes):
        return None
    for n, r in roles.items():
        if r.kind == "f1" and r.cls is None and r.avg in ("", "micro"):
            if all(abs(at[n] - v) > 1e-9 for c, v in classes.items() if roles[c].kind == "f1"):
                return n
    return None


class PredictionCollapse(_EvalStreak):
    """Predictions collapse onto one (or a few) classes, or a detector stops predicting anything.

    Nothing is said while the learning rate still rises (a warm-up: the model has not had its
    chance to learn), nor from one eval alone.
    - critical: `persist` evals in a row with 99% of predictions in one class, or one distinct
      class predicted (the metrics count the predictions themselves: conclusive).
    - warning: `persist` evals in a row with a top-class share >= `top_share`, a prediction
      entropy <= `entropy`, one class with all the recall, a binary F1 (or precision and recall)
      of 0 while accuracy is not; or the accuracy pinned at one value from the first eval for
      `pinned_evals` evals while the loss moves (the majority-class share; not while the loss
      sits at the uniform guess: that is a model not learning yet), for `pinned_evals` evals
      while the loss is NaN (a constant output), or for `pinned_evals` evals at a value 0.1
      below where it had been (it learned, then collapsed: a blow-up); or a detector's
      precision, recall and mAP exactly 0 at `pinned_evals` evals in a row after they had been
      above 0 (it found objects, and now outputs none)."""

    id = "prediction_collapse"
    DEFAULTS = {"top_share": 0.9, "entropy": 0.1, "persist": 2, "pinned_evals": 3}

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.pinned_value: dict[
            str, float | None
        ] = {}  # the accuracy an open "pinned" episode holds

    def update(self, view: RunView) -> None:
        for split in _SPLITS:
            views = [
                sv
                for sv in view.series.values()
                if sv.role.split == split
                and sv.role.kind
                in (
                    "top_class_share",
                    "unique_preds",
                    "pred_entropy",
                    "recall",
                    "precision",
                    "f1",
                    "accuracy",
                    "loss",
                    "map",
                )
            ]
            if not views:
                continue
            self._walk(view, split, views)

    def _candidates(self, views: list[SeriesView]) -> np.ndarray:
        """Steps of the new points at which a collapse condition could hold (vectorised)."""
        found: list[tuple[np.ndarray, np.ndarray | None]] = []
        for sv in views:
            new = sv.values[sv.new_from :]
            steps = sv.steps[sv.new_from :]
            if len(new) == 0:
                continue
            r = sv.role
            if r.kind in ("top_class_share", "unique_preds", "pred_entropy") or (
                r.kind == "recall" and r.cls
            ):
                found.append((steps, None))
            elif (r.kind in ("f1", "map") and r.cls is None) or _positive_recall(sv):
                found.append((steps, new == 0.0))
            elif r.kind == "accuracy" and r.cls is None:
                before = sv.values[max(sv.new_from - 1, 0) : -1]  # each new point's previous
                prev = np.concatenate([[np.nan], before]) if sv.new_from == 0 else before
                found.append((steps, new == prev))
        return steps_where(found)

    def _at(self, view: RunView, split: str, views: list[SeriesView], step: int) -> None:
        if warming_up(view, step) or still_separating(view, split, step):
            self.streak[split] = 0  # too early to judge; an open episode stays open
            return
        at = {sv.name: (sv.role, sv.exact(step)) for sv in views}
        at = {k: v for k, v in at.items() if math.isfinite(v[1])}
        reason, evidence, sev, metrics = self._reason(view, at)
        if reason is None:
            reason, evidence, metrics = self._pinned(view, split, at, step)
            sev = Severity.WARNING
        if reason is None:
            reason, evidence, metrics = self._nothing_detected(view, at, step)
        if reason is None:
            if split in self.open and self._still_pinned(view, split, at):
                return  # the accuracy has not left the pinned share: the same episode
            self.streak[split] = 0
            self.clear(split, step)
            return
        self.streak[split] = self.streak.get(split, 0) + 1
        if self.streak[split] < self.p["persist"] and not evidence.get("pinned"):
            return
        self.pinned_value[split] = evidence["accuracy"] if evidence.get("pinned") else None
        action = (
            "the model predicts (almost) one class: check class weights and their mapping, the "
            "label encoding, the learning rate; stop and fix before training on"
        )
        if "last_nonzero" in evidence:
            action = (
                "check that the training labels hold boxes (empty or misplaced label files), the "
                "class list in the data config, and the learning rate; "
                "stop and fix before training on"
            )
        self.fire(split, sev, step, metrics, f"prediction collapse: {reason}", evidence, action)

    def _reason(self, view: RunView, at: dict) -> tuple:
        for name, (role, v) in at.items():
            if role.kind == "top_class_share" and v >= self.p["top_share"]:
                sev = Severity.CRITICAL if v >= 0.99 else Severity.WARNING
                return (
                    f"{fmt(v * 100)}% of predictions are one class ({name})",
                    {"top_share": v},
                    sev,
                    [name],
                )
            if role.kind == "unique_preds" and v <= 1:
                k = view.num_classes()
                if k is None or k > 1:
                    return (
                        f"only {v:.0f} distinct class predicted ({name})",
                        {"unique": v},
                        Severity.CRITICAL,
                        [name],
                    )
            if role.kind == "pred_entropy" and v <= self.p["entropy"]:
                return (
                    f"prediction entropy {fmt(v)} ({name})",
                    {"entropy": v},
                    Severity.WARNING,
                    [name],
                )
        recalls = {
            role.cls: v for name, (role, v) in at.items() if role.kind == "recall" and role.cls
        }
        if len(recalls) >= 2:
            hi = [c for c, v in recalls.items() if v >= 0.95]
            if len(hi) == 1 and all(v <= 0.05 for c, v in recalls.items() if c != hi[0]):
                return (
                    f"class {hi[0]} gets recall {fmt(recalls[hi[0]])}, every other class ~0",
                    {"recalls": recalls},
                    Severity.WARNING,
                    [n for n, (r, _) in at.items() if r.kind == "recall" and r.cls],
                )
        f1 = [
            (n, v)
            for n, (r, v) in at.items()
            if r.kind == "f1" and r.cls is None and r.avg in ("", "binary")
        ]
        acc = [(n, v) for n, (r, v) in at.items() if r.kind == "accuracy" and r.cls is None]
        if f1 and acc and f1[0][1] == 0.0 and acc[0][1] > 0.0:
            return (
                f"{f1[0][0]} is 0 while {acc[0][0]} is {shown(view, acc[0][0], acc[0][1])}: the "
                "positive class is never predicted",
                {"f1": 0.0, "accuracy": acc[0][1]},
                Severity.WARNING,
                [f1[0][0], acc[0][0]],
            )
        binary = {
            r.kind: (n, v)
            for n, (r, v) in at.items()
            if r.kind in ("precision", "recall") and r.cls is None and r.avg in ("", "binary")
        }
        if (
            acc
            and len(binary) == 2
            and all(v == 0.0 for _, v in binary.values())
            and acc[0][1] > 0.0
        ):
            (p_name, _), (r_name, _) = binary["precision"], binary["recall"]
            return (
                f"{p_name} and {r_name} are 0 while {acc[0][0]} is "
                f"{shown(view, acc[0][0], acc[0][1])}: the positive class is never predicted",
                {"precision": 0.0, "recall": 0.0, "accuracy": acc[0][1]},
                Severity.WARNING,
                [acc[0][0], p_name, r_name],
            )
        return None, {}, None, []

    def _still_pinned(self, view: RunView, split: str, at: dict) -> bool:
        """An open "pinned accuracy" episode lasts while the accuracy stays at that value (the
        loss may settle meanwhile: the model has not started to separate the classes)."""
        pinned = self.pinned_value.get(split)
        acc = [v for r, v in at.values() if r.kind == "accuracy" and r.cls is None]
        return pinned is not None and bool(acc) and acc[0] == pinned

    def _nothing_detected(self, view: RunView, at: dict, step: int) -> tuple:
        """A detector's precision, recall and mAP all exactly 0 at the last `pinned_evals` evals,
        after the mAP had been above 0: it found objects once and now predicts none (labels
        without boxes, a class mapping broken, confidence collapsed)."""
        det = {
            r.kind: n
            for n, (r, v) in at.items()
            if r.kind in ("map", "precision", "recall") and r.cls is None
        }
        if "map" not in det or len(det) < 2 or any(at[n][1] != 0.0 for n in det.values()):
            return None, {}, []
        n = int(self.p["pinned_evals"])
        map_sv = view.series[det["map"]]
        i = map_sv.at_or_before(step)
        if i + 1 <= n or (map_sv.values[i - n + 1 : i + 1] != 0.0).any():
            return None, {}, []
        before = map_sv.values[: i - n + 1]
        if not (before[np.isfinite(before)] > 0).any():
            return None, {}, []  # never above 0: not a collapse, a model that has not learned
        names = sorted(det.values())
        last = int(map_sv.steps[int(np.flatnonzero(before > 0)[-1])])
        return (
            f"{', '.join(names)} are all 0 at the last {n} evals (the mAP was above 0 until step "
            f"{last}): the model predicts no objects",
            {"evals": n, "pinned": True, "last_nonzero": last, "accuracy": None},
            names,
        )

    def _pinned(self, view: RunView, split: str, at: dict, step: int) -> tuple:
        acc = [n for n, (r, v) in at.items() if r.kind == "accuracy" and r.cls is None]
        loss = sorted(
            n for n, sv in view.series.items() if sv.role.split == split and sv.role.kind == "loss"
        )
        if not acc or not loss:
            return None, {}, []
        acc_sv, loss_sv = view.series[acc[0]], view.series[loss[0]]
        n = int(self.p["pinned_evals"])
        i = acc_sv.at_or_before(step)
        if i + 1 < n:
            return None, {}, []
        accs = [float(x) for x in acc_sv.values[i - n + 1 : i + 1]]
        losses = [loss_sv.exact(int(s)) for s in acc_sv.steps[i - n + 1 : i + 1]]
        acc_name, loss_name = acc[0], loss[0]
        if not any(math.isfinite(x) for x in losses) and len(set(accs)) == 1 and 0 <= accs[0] < 1:
            return (
                f"{acc_name} pinned at {shown(view, acc_name, accs[0])} for {n} evals while "
                f"{loss_name} is {fmt(losses[-1])}: the network outputs a constant, "
                "one class for every input",
                {"accuracy": accs[0], "evals": n, "pinned": True},
                [acc_name],
            )
        one_value = len(set(accs)) == 1 and 0 < accs[0] < 1
        earlier = acc_sv.values[: i - n + 1] if one_value else acc_sv.values[:0]  # O(n): only
        earlier = earlier[np.isfinite(earlier)]  # when the accuracy is pinned
        if (
            one_value
            and len(earlier)
            and float(earlier.max()) >= accs[0] + 0.1
            and all(math.isfinite(x) for x in losses)
        ):  # it had learned (0.1 better, absolute), and now scores one value exactly
            best = float(earlier.max())
            return (
                f"{acc_name} pinned at {shown(view, acc_name, accs[0])} for {n} evals after "
                f"reaching {shown(view, acc_name, best)}: the network outputs (almost) a "
                "constant, one class for every input",
                {"accuracy": accs[0], "evals": n, "pinned": True, "best_before": best},
                [acc_name],
            )
        first = float(acc_sv.values[0])
        pinned_from_start = (
            accs[0] == first
        )  # a collapsed model sits at the majority share from the start
        if not all(math.isfinite(x) for x in losses):
            return None, {}, []
        if (
            len(set(accs)) == 1
            and pinned_from_start
            and 0 < accs[0] < 1
            and max(losses) > min(losses) * 1.01
            and not at_uniform_guess(view, losses)
        ):
            return (
                f"{acc_name} pinned at {shown(view, acc_name, accs[0])} for {n} evals while "
                f"{loss_name} moves ({fmt(min(losses))}-{fmt(max(losses))}): "
                "likely the majority-class share",
                {"accuracy": accs[0], "evals": n, "pinned": True},
                [acc_name],
            )
        return None, {}, []

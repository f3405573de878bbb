"""Is the run getting anywhere? A metric that no longer moves, a loss at chance level, a target
out of reach. (The schedule's rules, learning rate and early stopping, are in schedule.py.)"""

from __future__ import annotations

import math

import numpy as np

from watchrun.config import Target
from watchrun.detectors.base import (
    FEW,
    Detector,
    RunView,
    SeriesView,
    fmt,
    small_median,
    step_noise,
)
from watchrun.detectors.fitting import rising_trend_t, smoothed_at
from watchrun.model import Severity
from watchrun.semantics import role_of


def train_moved(train: SeriesView, first_step: int, last_step: int) -> tuple[float, float] | None:
    """The smoothed train loss at both steps when it moved between them (see StuckMetric)."""
    return TrainTrend(train).moved(first_step, last_step)


class TrainTrend:
    """train_moved for the windows of one pass: the running maximum, minimum and count of the
    finite train losses are built once, so each window costs O(1), not a copy of the history
    before it. The same numbers: the extremes and the last 64 of the same finite values."""

    def __init__(self, train: SeriesView) -> None:
        self.train = train
        self.built = False

    def _build(self) -> None:
        values = self.train.values
        fin = np.isfinite(values)
        kept = np.where(fin, values, np.nan)  # fmax/fmin pass NaNs over
        self.hi, self.lo = np.fmax.accumulate(kept), np.fmin.accumulate(kept)
        self.count = np.cumsum(fin)
        self.finite = np.flatnonzero(fin)
        self.built = True

    def moved(self, first_step: int, last_step: int) -> tuple[float, float] | None:
        train = self.train
        a, b = smoothed_at(train, first_step), smoothed_at(train, last_step)
        j = train.at_or_before(last_step)
        if j < 0 or not (math.isfinite(a) and math.isfinite(b)):
            return None
        if not self.built:
            self._build()
        m = int(self.count[j])  # finite losses up to `last_step`
        if m < 4:
            return None
        span = float(self.hi[j] - self.lo[j])
        tail = train.values[self.finite[max(0, m - 64) : m]]
        noise = 3.0 * 1.2533 * step_noise(tail) * math.sqrt(2 / 5)
        moved = abs(b - a)
        if moved >= 0.05 * abs(a) and moved >= 0.05 * span and moved > noise:
            return a, b
        return None


class StuckMetric(Detector):
    """WARNING: an eval metric identical to the last digit for `evals` evaluations in a row while
    the train loss moves (frozen statistics: the evaluation does not see training), or since the
    first eval (the evaluated model never changed), or at a degenerate value (0 precision/recall/
    mAP, an error rate of 1: the model outputs nothing useful); and the same split's loss is flat
    too (a score's resolution can hide a model that still changes). A flat train loss with a flat
    non-degenerate metric is left to not_learning: a converged run is flat too.
    INFO: the same, on a metric that an open warning or critical already explains (a collapse
    onto one class pins the accuracy): the frozen value is context for that alert, not a second
    alarm. Silent on a metric an info alert already speaks for (a CTC model's blank phase)."""

    id = "stuck_metric"
    DEFAULTS = {"evals": 5, "loss_moved": 1e-6}

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.said: dict[tuple[str, int], str] = {}  # (split, step) -> the metric alerted on
        self.flat_since: dict[str, int] = {}  # metric -> the step its flat episode began at

    def clear(self, key: str, step: int | None = None) -> None:
        self.flat_since.pop(key, None)  # a window that is not flat ends the episode
        super().clear(key, step)

    def update(self, view: RunView) -> None:
        if view.is_rl:
            return
        for sv in view.series.values():
            r = sv.role
            if not r.is_quality or r.kind == "reward" or sv.new_from >= len(sv.values):
                continue
            if r.cls is not None:  # one class's score flat (a minority class at 0 recall while
                continue  # the others learn) is minority_class_hidden's, not a frozen model
            if r.split in ("val", "test"):
                self._scan(view, sv, int(self.p["evals"]))

    def _train_moving(self, view: RunView):  # type: ignore[no-untyped-def]
        """Is training still going somewhere? The smoothed train loss (median of 5) moved >= 5%
        over the window of the stuck metric, >= 5% of its whole range, and beyond what its
        per-log scatter moves a median of 5 (3 sigma). Without a train loss: assume it is."""
        train = view.pick("train", "loss")
        trend = TrainTrend(train) if train is not None else None

        def moving(first_step: int, last_step: int) -> bool:
            if train is None or trend is None or len(train.values) < 4:
                return True
            return trend.moved(first_step, last_step) is not None

        return moving

    def _loss_moving(self, view: RunView, sv: SeriesView):  # type: ignore[no-untyped-def]
        """An accuracy or F1 counts right answers on a fixed set: once a model has converged it
        can repeat the same count for many evals while the model still changes, and the same
        split's loss shows it (it moved >= `loss_moved` over the window). Such a flat score is
        resolution, not a stuck model, unless it sits at a degenerate value (0, or an error rate
        of 1: nothing right), which is news however the loss moves."""
        split = sv.role.split or "val"
        loss = view.pick(split, "loss")
        if loss is None or loss is sv or sv.role.kind == "loss":
            return None

        def moving(first_step: int, last_step: int, v: float) -> bool:
            if (sv.role.higher_better and v <= 0.0) or (
                sv.role.higher_better is False and v >= 1.0
            ):
                return False
            a, b = loss.value_at(first_step), loss.value_at(last_step)
            return bool(
                math.isfinite(a)
                and math.isfinite(b)
                and abs(b - a) >= self.p["loss_moved"] * abs(a)
            )

        return moving

    def _scan(self, view: RunView, sv: SeriesView, n: int) -> None:
        """Judge each new window of n evals that is flat; any other new window ends the
        episode (there is at least one new window: sv has a new point)."""
        vals = sv.values
        lo = max(0, sv.new_from - n + 1)
        if len(vals) < n or len(vals) - lo < n:
            return
        seg = vals[lo:]
        if n >= 2 and not (seg[1:] == seg[:-1]).any():  # no value repeated: nothing flat
            self.clear(sv.name)
            return
        first_idx = lo + n - 1  # index of the last point of the first window
        flat = _flat_windows(seg, n)[max(0, sv.new_from - first_idx) :]
        first_idx = max(first_idx, sv.new_from)  # of the first new window's last point
        hits = np.flatnonzero(flat).tolist()
        if hits:
            moving, loss_moving = self._train_moving(view), self._loss_moving(view, sv)
        prev = -1  # the last flat window: one that is not flat after it clears the episode
        for k in hits:
            if k > prev + 1:
                self.clear(sv.name)
            prev = k
            i = first_idx + k
            v = float(vals[i])
            if self._perfect(sv, v):
                continue
            first, last = int(sv.steps[i - n + 1]), int(sv.steps[i])
            began = self.flat_since.setdefault(sv.name, first)
            if view.claims_at(sv.name, last, loud=True):  # a warning (open at this window's
                # end) explains the flat value: not resolution
                self._fire(view, sv, i, n, v, explained=True)
                continue
            if view.claims_at(sv.name, last):
                continue  # an info alert on it already says what there is to say
            if loss_moving is not None and loss_moving(first, last, v):
                continue  # the model still changes; the score's resolution hides it
            if i - n + 1 > 0 and not moving(began, last) and not _degenerate(sv, v):
                continue  # everything converged: a flat metric is no news (unless it has
                # never moved since the first eval: then the evaluated model never changed;
                # or it sits at nothing right: then the model outputs nothing useful). The
                # train loss is judged since the value froze: a slow decline over 100 frozen
                # evals is training the evaluation does not see, though no 5 of them show it
            self._fire(view, sv, i, n, v)
        if prev < len(flat) - 1:
            self.clear(sv.name)

    @staticmethod
    def _perfect(sv: SeriesView, v: float) -> bool:
        hb = sv.role.higher_better
        return (hb and v >= 0.9999 and sv.role.kind != "reward") or (hb is False and abs(v) <= 1e-6)

    def _fire(
        self, view: RunView, sv: SeriesView, i: int, n: int, v: float, explained: bool = False
    ) -> None:
        step = int(sv.steps[i])
        since = self.flat_since.get(sv.name, int(sv.steps[i - n + 1]))
        n = max(n, i - int(np.searchsorted(sv.steps, since)) + 1)  # the evals it has been flat
        said = self.said.setdefault((sv.role.split, step), sv.name)
        if said != sv.name:  # the same split froze at the same eval (its loss and its accuracy):
            self.open.add(sv.name)  # one alert says it; this metric is covered while it stays
            return
        if sv.name in self.open:
            return  # said already: what follows only builds the alert that fire() would drop
        train = view.pick("train", "loss")
        evidence = {"value": v, "since_step": since, "points": n}
        while_txt, action = (
            "",
            (
                "the model has stopped changing on this metric: check the learning rate "
                "(decayed to 0?), frozen layers, or a collapse to a constant output"
            ),
        )
        if i - n + 1 == 0:
            while_txt = ", since the first eval: the evaluated model has never changed"
            action = (
                "check that the optimizer steps (learning rate 0? parameters frozen or not passed "
                "to the optimizer?) and that the evaluation uses the trained weights"
            )
        moved = train_moved(train, since, step) if train is not None else None
        if _degenerate(sv, v) and i - n + 1 > 0:
            while_txt = ": no right answer at all, the model outputs nothing useful"
            action = (
                "check the labels reach the model (empty targets, a wrong class index), the data "
                "pipeline and the loss; compare with the first evals, where it scored above this"
            )
        elif train is not None and moved is not None:
            a, b = moved
            if a > 0:
                evidence |= {"train_loss_from": a, "train_loss_to": b}
                while_txt = f" while {train.name} moved {fmt(a)} -> {fmt(b)}"
                action = (
                    "training changes the model but the evaluation does not see it: check that the "
                    "evaluation uses the trained weights (a model copy, an EMA or a checkpoint not "
                    "reloaded), that the eval data and metric are not constant, "
                    "and the learning rate"
                )
        if explained:  # another open alert on this metric says why: the frozen value is context
            while_txt, action = (
                "; the other alert on this metric says why",
                "see the other alert on it",
            )
        also = _frozen_alongside(view, sv, since, step)
        also_txt = "".join(f" (and {name} at {fmt(value)})" for name, value in also)
        self.fire(
            sv.name,
            Severity.INFO if explained else Severity.WARNING,
            step,
            [sv.name] + [name for name, _ in also],
            f"{sv.name} unchanged at {fmt(v)}{also_txt} for {n} evals (since step {since})"
            f"{while_txt}",
            evidence,
            action,
        )


def _flat_windows(vals: np.ndarray, n: int) -> np.ndarray:
    """For each window of n values, whether all are finite and equal (max - min == 0, finite):
    a running count of the changes between neighbours, O(1) a window."""
    changes = np.concatenate(([0], np.cumsum(vals[1:] != vals[:-1])))  # NaN != NaN: a change
    return (changes[n - 1 :] == changes[: len(vals) - n + 1]) & np.isfinite(
        vals[: len(vals) - n + 1]
    )


def _frozen_alongside(
    view: RunView, sv: SeriesView, since: int, step: int
) -> list[tuple[str, float]]:
    """The other metrics of `sv`'s split, not per class, identical at every eval from `since`
    to `step` too: one frozen evaluation, said in one alert."""
    out = []
    for other in view.series.values():
        r = other.role
        if other is sv or r.split != sv.role.split or r.cls is not None:
            continue
        if not (r.is_quality or r.kind == "loss"):
            continue
        lo, hi = other.at_or_before(since), other.at_or_before(step)
        window = other.values[max(lo, 0) : hi + 1]
        if lo >= 0 and hi - lo >= 2 and np.isfinite(window).all() and np.ptp(window) == 0:
            out.append((other.name, float(window[-1])))
    return out


def _degenerate(sv: SeriesView, v: float) -> bool:
    """A whole-run score at the value of no right answer: 0 precision/recall/F1/accuracy/mAP, or
    an error rate of 1 (a class's own score at 0 is minority_class_hidden's)."""
    if sv.role.cls is not None:
        return False
    return bool(
        (sv.role.higher_better and v <= 0.0)
        or (sv.role.higher_better is False and sv.role.kind in ("wer", "cer") and v >= 1.0)
    )


UNKNOWN_K_CHANCE = (math.log(2), 0.25)  # binary cross-entropy; MSE/Brier of always answering 0.5
SAMPLE = 4096  # the most earlier logs a quartile is taken on


class EarlierLogs:
    """The logs of a series before a point, as loss_at_chance's quartile takes them, kept as
    they pass: all of them up to SAMPLE, then every 2nd, 4th, 8th... (the smallest power of two
    that keeps at most SAMPLE), from the first log on. What it quotes is then the same however
    much of the history the store still holds (a bounded one reduces it to min/max buckets
    once the detectors have seen it), and costs O(SAMPLE) memory however long the run.

    Logs are taken in up to a point only when a quartile before it is asked for (the sample's
    spacing depends on that point) or when no later question can reach back past it (`keep`
    logs behind the last one seen): the rest wait in `pending`."""

    def __init__(self, name: str, keep: int) -> None:
        self.name = name
        self.keep = keep
        self.kept = np.empty(SAMPLE)  # kept[j] = log j * stride, for j < count
        self.count = 0
        self.stride = 1
        self.upto = 0  # the logs before this index are taken into `kept`
        self.pending = np.empty(0)  # logs upto .. seen - 1
        self.quartile: tuple[int, float] = (-1, math.inf)  # (end, its lower quartile)

    @property
    def seen(self) -> int:
        return self.upto + len(self.pending)

    def feed(self, values: np.ndarray) -> None:
        """The logs that follow the ones seen."""
        self.pending = np.concatenate((self.pending, values))

    def settle(self) -> None:
        """Take in what no later question can reach back past (once that is more than `keep`
        logs: each take moves many, so a read of a few logs costs a few)."""
        if len(self.pending) > 2 * self.keep:
            self._take(self.seen - self.keep)

    def lower_quartile(self, end: int) -> float:
        """The 25th percentile of the finite logs before index `end` (>= every end asked or
        settled before), on the sample; inf with fewer than 4."""
        if self.quartile[0] != end:
            if end < self.upto:
                raise ValueError(f"logs before {end} asked for after {self.upto} were taken in")
            self._take(end)
            before = self.kept[: self.count]
            before = before[np.isfinite(before)]
            low = float(np.percentile(before, 25)) if len(before) >= 4 else math.inf
            self.quartile = (end, low)
        return self.quartile[1]

    def _take(self, end: int) -> None:
        """Take the logs before `end` into the sample, spaced as `end` needs: kept[j] is log
        j * stride, for every multiple of the stride before `end` (at most SAMPLE of them)."""
        if end <= self.upto:
            return
        old, moved = self.stride, end - self.upto
        part = self.pending[(-self.upto) % old : moved : old]  # the next multiples of `old`
        s = old
        while -(-end // s) > SAMPLE:
            s *= 2
        if s > old:  # every f-th of them stays: those at multiples of the new spacing
            f = s // old
            part = part[(-self.count) % f :: f]
            thinned = self.kept[: self.count : f].copy()
            self.count = len(thinned)
            self.kept[: self.count] = thinned
        self.kept[self.count : self.count + len(part)] = part
        self.count += len(part)
        self.stride = s
        self.pending, self.upto = self.pending[moved:], end


class LossAtChance(Detector):
    """The loss sits at ln(K), the loss of a uniform guess over K classes, long after warm-up.
    K comes from the hparams or the per-class metrics: the last max(2n, a tenth of the logs)
    logs all within `tol` of ln K and not falling as a trend (a loss that starts at ln K passes
    through it as it learns), or back at ln K after a quarter of its logs were well below it.
    Without K, only a loss that reached well below ln 2 (for a quarter of its logs) and came
    back to it counts (a binary model that collapsed), or one pinned there for a tenth of the
    run; or K >= 3 is taken where the accuracy sits at 1/K (classes_from_accuracy) while the
    loss sits at ln K, two signals that agree on a uniform guess, and judged as a known K (a
    loss repeated exactly is left to not_learning: frozen weights sit where they started)."""

    id = "loss_at_chance"
    DEFAULTS = {
        "points": 10,
        "tol": 0.03,
        "warmup_fraction": 0.2,
        "min_points": 20,
        "min_points_at_end": 5,
    }

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.earlier: EarlierLogs | None = None  # the train loss's logs, as they pass
        self.offset = 0  # this pass: the index in the whole series of the view's first log

    def update(self, view: RunView) -> None:
        if view.is_rl:
            return
        sv = view.pick("train", "loss")
        if sv is None or sv.new_from >= len(sv.values):
            return
        if sv.name in self.open:
            return  # said already: _at could only fire it again, which does nothing
        k = view.num_classes()
        n = int(self.p["points"])
        earlier = self._follow(sv, n)
        idx, med = self._candidates(sv, k, n)
        judged = [int(i) for i in self._worth_judging(view, sv, idx, med, k, n)]
        if k is None:
            self._judge_inferring(view, sv, judged, n)
        else:
            for i in judged:
                if sv.name in self.open:
                    break
                self._at(view, sv, i, k, n)
        earlier.settle()

    def _judge_inferring(self, view: RunView, sv: SeriesView, judged: list[int], n: int) -> None:
        """K unknown: the logs `judged` with it unknown and, in the order of the logs (the
        quartiles are asked for in order), those the accuracy gives a K (_inferred), a block of
        logs at a time: a loss at ln K from the start is judged up to its first alert, not to
        its end (each log's verdict is its own: the blocks change none)."""
        first, end = max(sv.new_from, n - 1), len(sv.values)
        acc = view.pick("val", "accuracy") or view.pick("train", "accuracy")
        if acc is None or not (acc.values < 2 / 5).any():  # (NaN: no) no K >= 3 anywhere
            blocks = [(first, end)] if judged else []
            step = max(end - first, 1)
        else:
            step = INFER_BLOCK
            blocks = [(lo, min(lo + step, end)) for lo in range(first, end, step)]
        j = 0
        for lo, hi in blocks:
            todo: list[tuple[int, int | None]] = []
            while j < len(judged) and judged[j] < hi:
                todo.append((judged[j], None))
                j += 1
            if step == INFER_BLOCK:
                todo = sorted(todo + self._inferred(view, sv, n, lo, hi), key=lambda p: p[0])
            for i, kk in todo:
                if sv.name in self.open:
                    return
                self._at(view, sv, i, kk, n, inferred=kk is not None)

    def _inferred(
        self, view: RunView, sv: SeriesView, n: int, first: int, end: int
    ) -> list[tuple[int, int | None]]:
        """With K unknown, the logs first .. end - 1 worth judging with a K that the accuracy
        says (classes_from_accuracy), each with its K: for each K, the logs whose median of n is
        near ln K among those the accuracy gives that K, through the filters of a known K."""
        ks = classes_from_accuracy(view, sv, np.arange(first, end), n)
        out: list[tuple[int, int | None]] = []
        for kk in np.unique(ks[ks > 0]).tolist():
            where = np.flatnonzero(ks == kk) + first
            idx, med = self._near(sv, kk, n, int(where[0]), int(where[-1]) + 1)
            keep = ks[idx - first] == kk
            idx, med = idx[keep], med[keep]
            out += [(int(i), kk) for i in self._worth_judging(view, sv, idx, med, kk, n)]
        return out

    def _follow(self, sv: SeriesView, n: int) -> EarlierLogs:
        """The earlier logs, with this pass's new ones fed in. A bounded store has reduced the
        history before the view's new logs (not the last RECENT of them): the logs are counted
        here, so that a log's index is its index in the whole series however many went."""
        earlier = self.earlier
        if earlier is None or earlier.name != sv.name:  # (another loss picked: from its start)
            earlier = self.earlier = EarlierLogs(sv.name, keep=n + 64)
            earlier.feed(sv.values[: sv.new_from])
        self.offset = earlier.seen - sv.new_from
        earlier.feed(sv.values[sv.new_from :])
        return earlier

    def finalize(self, view: RunView) -> None:
        """At the end, with K unknown: the last third of the train loss (all of it in a short
        run, at least `min_points_at_end` logs) sits at ln 2, steadily (its median's scatter
        within the tolerance), and the accuracy of the last evals never beat 0.6. A binary model
        that never left chance (a learning rate that threw it there, labels that do not match
        inputs). Judged only at the end, so that a slow start that learns later is never
        called."""
        sv = view.pick("train", "loss")
        acc = view.pick("val", "accuracy") or view.pick("train", "accuracy")
        if view.is_rl or view.num_classes() or sv is None or acc is None or sv.name in self.open:
            return
        vals = sv.values[np.isfinite(sv.values)]
        if len(vals) < self.p["min_points_at_end"]:  # a short run of epoch means: 5 say it
            return
        tail = vals[-max(int(self.p["points"]), len(vals) // 3) :]
        med, chance = float(np.median(tail)), UNKNOWN_K_CHANCE[0]
        if (
            abs(med - chance) > self.p["tol"] * chance
            or 1.2533 * step_noise(tail) / math.sqrt(len(tail)) > self.p["tol"] * chance
        ):
            return
        accs = acc.values[np.isfinite(acc.values)][-3:]
        if len(accs) < 2 or float(accs.max()) > 0.6:
            return
        self.fire(
            sv.name,
            Severity.WARNING,
            int(sv.steps[-1]),
            [sv.name, acc.name],
            f"{sv.name} ended at chance level: median {fmt(med)} over the last {len(tail)} logs = "
            f"ln 2 = 0.693 (binary cross-entropy), {acc.name} "
            f"{fmt(float(accs.min()))}-{fmt(float(accs.max()))}: the model learned nothing",
            {
                "median": med,
                "chance": chance,
                "classes": None,
                "accuracy": [float(a) for a in accs],
            },
            "the model predicts the uniform distribution: check the learning rate (one far too "
            "high throws a model back to chance; 0 never leaves it), that labels match inputs, "
            "the class balance",
        )

    def _sits(self, sv: SeriesView, i: int, need: int, chance: float) -> bool:
        """The last `need` logs all within `tol` of chance and not falling as a trend (slope
        t > -2.5): a loss that stays at ln K, not one passing through it as it learns."""
        stretch = sv.values[max(0, i - need + 1) : i + 1]
        if len(stretch) < need or not np.isfinite(stretch).all():
            return False
        if float(np.max(np.abs(stretch - chance))) > self.p["tol"] * chance:
            return False
        return rising_trend_t(stretch) > -2.5

    def _quartile_before(self, end: int) -> float:
        """The lower quartile of the logs before index `end` of the whole series, taken at `end`
        rounded down to a multiple of 64 past the first 256 logs (so that the candidates of a
        long stretch near chance share one computation, whatever the chunking) on at most
        SAMPLE logs, evenly spaced (EarlierLogs): O(1) per call however long the run."""
        end = max(0, end)
        if end > 256:
            end -= end % 64
        assert self.earlier is not None  # fed by update before any candidate is judged
        return self.earlier.lower_quartile(end)

    def _worth_judging(
        self,
        view: RunView,
        sv: SeriesView,
        cand: np.ndarray,
        med: np.ndarray,
        k: int | None,
        n: int,
    ) -> np.ndarray:
        """The candidates (indices, with the median of the n logs ending at each) that _at's
        first, cheap returns (too early, a median made uncertain by per-batch noise) do not
        settle, and at which it could fire, decided for many at once exactly as _at decides them
        one by one: a loss that converges near ln 2 or 0.25 makes every log a candidate."""
        if len(cand) == 0:
            return cand
        ok = cand + 1 >= max(n, self.p["min_points"])
        planned = view.planned_steps
        if planned:
            ok &= ~(sv.steps[cand] < self.p["warmup_fraction"] * planned)
        else:
            ok &= ~(cand < self.p["warmup_fraction"] * 5 * n)
        cand, med = cand[ok], med[ok]
        if len(cand) == 0:
            return cand
        ok = self._may_fire(view, sv, cand, med, k, n)
        cand, med = cand[ok], med[ok]
        span = 5 * n
        short = cand - span + 1 < 0
        keep = [cand[short]]  # a shorter history: judged one by one
        whole, wmed = cand[~short], med[~short]
        for b in range(0, len(whole), 4096):
            keep.append(self._not_noisy(sv, whole[b : b + 4096], wmed[b : b + 4096], k, n, span))
        return np.sort(np.concatenate(keep))

    def _not_noisy(
        self, sv: SeriesView, cand: np.ndarray, med: np.ndarray, k: int | None, n: int, span: int
    ) -> np.ndarray:
        """The candidates whose `span` logs are not all finite, or whose median of n is certain
        enough (_at's noise test: the same numbers, computed for all of them at once) and, with
        K unknown, that could pass _at's last test."""
        if len(cand) == 0:
            return cand
        rows = _rows(sv.values, cand, span)
        finite = np.isfinite(rows).all(axis=1)
        if k:
            chance = np.full(len(cand), math.log(k))
        else:
            c0, c1 = UNKNOWN_K_CHANCE
            chance = np.where(np.abs(med - c0) <= np.abs(med - c1), c0, c1)
        noise = 1.4826 * np.median(np.abs(np.diff(rows, axis=1)), axis=1) / math.sqrt(2)
        noisy = 1.2533 * noise / math.sqrt(n) > self.p["tol"] * chance
        keep = ~finite | ~noisy
        if not k and keep.any():
            # with K unknown, _at needs the loss pinned at chance or a quarter of its logs
            # before well below it: neither can be when the median is off chance by more than
            # pinning allows and no log before the window was that low (a quartile is never
            # below the minimum): a loss falling through ln 2 for the first time
            ends = cand - n + 1
            lows = np.fmin.accumulate(sv.values[: max(1, int(ends.max()))])[np.maximum(ends, 1) - 1]
            lows[ends <= 0] = np.inf
            may_pin = np.abs(med - chance) <= 0.002 * chance
            keep &= ~finite | may_pin | ~(lows > 0.75 * chance)
        return cand[keep]

    def _may_fire(
        self,
        view: RunView,
        sv: SeriesView,
        cand: np.ndarray,
        med: np.ndarray,
        k: int | None,
        n: int,
    ) -> np.ndarray:
        """The candidates at which _at could fire, found for all of them at once: _at's last
        tests need the accuracy not to say the model learned, and the loss pinned at chance, or
        sitting there (K known), or a quarter of its logs before well below chance. Each is
        narrowed here by a necessary condition on the same numbers: pinning needs the median
        within 0.2% of chance; sitting needs the last 2n logs (the end of its stretch) finite
        and within `tol`; a quartile is never below the minimum of the logs it is taken on. A
        median that is not finite is left to _at. A mask of `cand`. The cheap tests first:
        most candidates of a loss passing through chance fail all of them."""
        vals = sv.values
        if k:
            chance = np.full(len(cand), math.log(k))
        else:
            c0, c1 = UNKNOWN_K_CHANCE
            chance = np.where(np.abs(med - c0) <= np.abs(med - c1), c0, c1)
        may = ~np.isfinite(med)  # a NaN median: _at's choice of chance is not np.where's
        ends = np.maximum(cand + self.offset - n + 1, 0)  # as _quartile_before rounds them,
        ends = np.where(ends > 256, ends - ends % 64, ends) - self.offset  # in the whole series
        lows = np.full(len(cand), np.inf)
        top = int(ends.max())
        if top > 0:
            mins = np.fmin.accumulate(vals[:top])
            lows[ends > 0] = mins[ends[ends > 0] - 1]
        may |= lows <= 0.75 * chance  # NaN (no finite log before): never below chance
        close = np.abs(med - chance) <= 0.002 * chance  # pinning needs this
        if len(vals) >= 2 * n and (k or close.any()):  # a stretch of `need` >= 2n logs ends
            rows = _rows(vals, np.maximum(cand, 2 * n - 1), 2 * n)  # with the last 2n
            dev = np.abs(rows - chance[:, None]).max(axis=1)  # NaN: not finite, never close
            stretch = cand + 1 >= np.maximum(2 * n, (cand + 1) // 10)
            may |= stretch & close & (dev <= 0.005 * chance)
            if k:
                may |= stretch & (dev <= self.p["tol"] * chance)
        if not may.any():
            return may
        return may & ~_accuracy_learned_at(view, sv.steps[cand])

    def _candidates(self, sv: SeriesView, k: int | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The indices of the new logs whose median of n (returned with them) is near chance."""
        return self._near(sv, k, n, sv.new_from, len(sv.values))

    def _near(
        self, sv: SeriesView, k: int | None, n: int, first: int, end: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """_candidates among the logs first .. end - 1."""
        chance = [math.log(k)] if k else list(UNKNOWN_K_CHANCE)
        lo = max(0, first - n + 1)
        vals = sv.values[lo:end]
        if len(vals) < n:
            return np.empty(0, dtype=np.int64), np.empty(0)
        if len(vals) - n < FEW:  # a live read: a few windows
            meds = np.array(
                [small_median(vals[j : j + n].tolist()) for j in range(len(vals) - n + 1)]
            )
        else:
            meds = _near_medians(vals, n, chance, self.p["tol"])
        near = np.zeros(len(meds), dtype=bool)
        for c in chance:
            near |= np.abs(meds - c) <= self.p["tol"] * c
        idx = lo + n - 1 + np.flatnonzero(near)
        new = idx >= first
        return idx[new].astype(np.int64), meds[near][new]

    def _at(
        self, view: RunView, sv: SeriesView, i: int, k: int | None, n: int, inferred: bool = False
    ) -> None:
        """Judge log i with K = k (None: unknown; `inferred`: the accuracy says it)."""
        if i + 1 < max(n, self.p["min_points"]):
            return
        planned = view.planned_steps
        step = int(sv.steps[i])
        if planned and step < self.p["warmup_fraction"] * planned:
            return
        if not planned and i < self.p["warmup_fraction"] * 5 * n:
            return
        window = sv.values[i - n + 1 : i + 1]
        if inferred and float(np.min(window)) == float(np.max(window)):  # (NaN: not equal)
            return  # a loss repeated exactly: frozen weights (not_learning's call), not a guess
        med = float(np.median(window))
        chance = math.log(k) if k else min(UNKNOWN_K_CHANCE, key=lambda c: abs(med - c))
        recent = sv.values[max(0, i - 5 * n + 1) : i + 1]
        recent = recent[np.isfinite(recent)]
        noise = step_noise(recent)
        if 1.2533 * noise / math.sqrt(n) > self.p["tol"] * chance:
            return  # per-batch noise: a median this uncertain says nothing about sitting at chance
        if _accuracy_says_learned(view, step):
            return  # accuracy well above any chance level: the loss is not a uniform guess
        # pinned: 2n logs in a row (and a tenth of the logs so far) within 0.5% of chance, not a
        # loss passing through it (a smooth loss logged every step takes many logs to pass)
        need = max(2 * n, (i + 1) // 10)
        pinned = abs(med - chance) <= 0.002 * chance and i + 1 >= need
        if pinned:
            stretch = sv.values[i - need + 1 : i + 1]
            pinned = (
                bool(np.isfinite(stretch).all())
                and float(np.max(np.abs(stretch - chance))) <= 0.005 * chance
            )
        # learned: the loss had been clearly below chance for a quarter of its logs before (a
        # quantile, not the lowest median of n: a smoothed loss wanders for many logs at once)
        low = self._quartile_before(i + self.offset - n + 1)
        learned_below = low <= 0.75 * chance
        if k is None and not (learned_below or pinned):
            return
        if k is not None and not (learned_below or pinned or self._sits(sv, i, need, chance)):
            return  # a loss falling through ln K on its way down (it starts there)
        what = (
            f"ln({k}) = {fmt(chance)}"
            if k
            else "ln 2 = 0.693 (binary cross-entropy)"
            if chance == UNKNOWN_K_CHANCE[0]
            else "0.25 (MSE of always predicting 0.5)"
        )
        back = f" after reaching {fmt(low)}" if learned_below else ""
        evidence: dict[str, object] = {
            "median": med,
            "chance": chance,
            "classes": k,
            "min_before": low if math.isfinite(low) else None,
        }
        metrics = [sv.name]
        acc = view.pick("val", "accuracy") or view.pick("train", "accuracy")
        if inferred and acc is not None:
            v = float(acc.values[int(np.searchsorted(acc.steps, step, side="left")) - 1])
            what += f", with {acc.name} at {fmt(v)} ~ 1/{k}: a uniform guess over {k} classes"
            evidence |= {"classes_from": acc.name, "accuracy": v}
            metrics.append(acc.name)
        self.fire(
            sv.name,
            Severity.WARNING,
            step,
            metrics,
            f"{sv.name} at chance level: median {fmt(med)} over the last {n} logs = {what}{back}",
            evidence,
            "the model predicts the uniform distribution: lower the learning rate (a collapse "
            "after a spike), check labels and class balance, check the LR schedule",
        )


INFER_BLOCK = 8192  # logs judged with an inferred K at a time (see _judge_inferring)
ACC_BAND = 0.25  # an accuracy within 25% of 1/K: a uniform guess over K (binomial scatter)


def classes_from_accuracy(view: RunView, sv: SeriesView, idx: np.ndarray, n: int) -> np.ndarray:
    """For each log of `sv` in `idx` (each >= n - 1), the K >= 3 that the accuracy (validation
    first; not per class, not top-k) says the model guesses uniformly over, 0 where it says
    none: K = round(1 / the last eval before the log), and every eval from the last one before
    the log's window of n (and at least the last two) within ACC_BAND / K of 1 / K. A uniform
    guess scores 1/K, scattered by the binomial noise of an eval set of unknown size; K = 2 is
    ln 2's own rule. Only evals at steps before the log's are used (a live read may not hold
    the eval of its own step yet): the same K however the run is read."""
    out = np.zeros(len(idx), dtype=np.int64)
    acc = view.pick("val", "accuracy") or view.pick("train", "accuracy")
    if acc is None or len(acc.values) < 2 or len(idx) == 0:
        return out
    hi = np.searchsorted(acc.steps, sv.steps[idx], side="left") - 1
    lo = np.searchsorted(acc.steps, sv.steps[idx - n + 1], side="left") - 1
    lo = np.minimum(np.maximum(lo, 0), hi - 1)
    valid = hi >= 1
    # K >= 3 needs the last eval <= 0.4 (1 / 2.5): a model past that says none (the usual case)
    if not (valid & ~(acc.values[np.maximum(hi, 0)] > 0.4)).any():
        return out
    # only the evals the logs' windows reach (a live read's few logs: a few evals, not all)
    base = int(lo[valid].min())
    a = acc.values[base : int(hi.max()) + 1]
    hi, lo = hi - base, lo - base
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        kr = np.rint(1.0 / a)
    fits = np.isfinite(a) & (a > 0) & (kr >= 3) & (kr <= 100000)
    if not fits.any():
        return out
    last = np.clip(hi, 0, len(a) - 1)
    ks = np.where(valid & fits[last], kr[last], 0).astype(np.int64)
    for k in np.unique(ks[ks > 0]).tolist():
        band = np.abs(a - 1.0 / k) <= ACC_BAND / k  # NaN: not in it
        last_out = np.maximum.accumulate(np.where(band, -1, np.arange(len(a))))
        sel = np.flatnonzero(ks == k)
        out[sel[last_out[hi[sel]] < lo[sel]]] = k
    return out


def _near_medians(vals: np.ndarray, n: int, chance: list[float], tol: float) -> np.ndarray:
    """The median of each window of n values, where it can be within `tol` of a chance level
    (NaN elsewhere). Counting costs far less than a median: when more than half of a window's
    values lie below (above) twice that band, so does its median, which is left out."""
    hits = [vals < c - 2 * tol * c for c in chance] + [vals > c + 2 * tol * c for c in chance]
    counts = _window_counts(np.stack(hits), n) <= n // 2  # below, above each level
    maybe = counts[0] & counts[len(chance)]
    for j in range(1, len(chance)):
        maybe |= counts[j] & counts[len(chance) + j]
    meds = np.full(len(maybe), np.nan)
    if maybe.any():
        ends = np.flatnonzero(maybe) + n - 1
        meds[maybe] = row_medians(_rows(vals, ends, n))
    return meds


def _rows(vals: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """The `width` values ending at each index of `ends`, one row each (a copy)."""
    return vals[ends[:, None] + np.arange(1 - width, 1)]


def row_medians(rows: np.ndarray) -> np.ndarray:
    """np.median(rows, axis=1) with the same numbers (the middle value of each sorted row, or
    the mean of the two middle ones; NaN for a row holding one), by one sort of the rows,
    cheaper than np.median's partitions and their checks for short rows."""
    m = rows.shape[1]
    s = np.sort(rows, axis=1)
    # np.median takes the mean of the middle value(s), a sum that starts at +0.0 (so that a
    # median of -0.0s is +0.0): the same additions, in the same order
    mid = 0.0 + s[:, m // 2] if m % 2 else (0.0 + s[:, m // 2 - 1] + s[:, m // 2]) / 2
    nan = np.isnan(s[:, -1])  # NaNs sort last
    return np.where(nan, np.nan, mid) if nan.any() else mid


def _window_counts(hits: np.ndarray, n: int) -> np.ndarray:
    """How many of each window of n are True, along the last axis (a running count: O(1) a
    window)."""
    c = np.zeros(hits.shape[:-1] + (hits.shape[-1] + 1,), dtype=np.int64)
    np.cumsum(hits, axis=-1, out=c[..., 1:])
    return c[..., n:] - c[..., :-n]


def _accuracy_learned_at(view: RunView, steps: np.ndarray) -> np.ndarray:
    """_accuracy_says_learned at each of `steps` (vectorised, the same values)."""
    acc = view.pick("val", "accuracy") or view.pick("train", "accuracy")
    if acc is None or len(acc.steps) == 0:
        return np.zeros(len(steps), dtype=bool)
    j = np.searchsorted(acc.steps, steps, side="right") - 1
    v = np.where(j >= 0, acc.values[np.maximum(j, 0)], np.nan)
    return np.isfinite(v) & (v >= 0.9) & (v <= 1.0)


def _accuracy_says_learned(view: RunView, step: int) -> bool:
    """The latest accuracy (validation first) at or before `step` is >= 0.9: no model that
    predicts the uniform distribution gets there, whatever the class balance."""
    acc = view.pick("val", "accuracy") or view.pick("train", "accuracy")
    if acc is None:
        return False
    v = acc.value_at(step)
    return math.isfinite(v) and 0.9 <= v <= 1.0


class TargetMiss(Detector):
    """A user target (--target, watchrun.toml [targets], targets.json) is not reached and the
    metric has stopped improving (no new best for `patience` evals, or the run ended)."""

    id = "target_miss"
    DEFAULTS = {"patience": 5}

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.best: dict[str, tuple[float, int, int]] = {}  # metric -> (best, step, evals since)

    def _match(self, view: RunView, t: Target) -> SeriesView | None:
        if t.metric in view.series:
            return view.series[t.metric]
        want = role_of(t.metric, view.config.aliases)
        for sv in view.series.values():
            r = sv.role
            if (r.split, r.kind, r.cls, r.avg) == (
                want.split,
                want.kind,
                want.cls,
                want.avg,
            ) and r.kind != "other":
                return sv
        return None

    def update(self, view: RunView) -> None:
        for t in view.targets:
            sv = self._match(view, t)
            if sv is None:
                continue
            if len(sv.values) - sv.new_from > FEW:
                self._scan(view, t, sv)
                continue
            best, bstep, since = self.best.get(t.metric, (math.nan, 0, 0))
            for i in sv.new:
                v = float(sv.values[i])
                if not math.isfinite(v):
                    continue
                better = math.isnan(best) or (v < best if t.lower_is_better else v > best)
                if better:
                    best, bstep, since = v, int(sv.steps[i]), 0
                else:
                    since += 1
                self.best[t.metric] = (best, bstep, since)
                if t.met(best):
                    self.clear(t.metric, int(sv.steps[i]))
                elif since >= self.p["patience"]:
                    self._fire(
                        view,
                        t,
                        sv.name,
                        best,
                        bstep,
                        int(sv.steps[i]),
                        f"no improvement for {since} evals",
                    )

    def _scan(self, view: RunView, t: Target, sv: SeriesView) -> None:
        """The walk over the new points, for many at once: the running best (the value that
        reached it first, and the evals since), then the only events that can matter: the first
        eval at which a fire could open the alert, and the first at which the target is met (met
        once, met for good: the best only gets closer to it; the episode closes there)."""
        new = sv.values[sv.new_from :]
        fin = np.flatnonzero(np.isfinite(new))
        if len(fin) == 0:
            return
        vals, steps = new[fin], sv.steps[sv.new_from :][fin]
        best0, bstep0, since0 = self.best.get(t.metric, (math.nan, 0, 0))
        lower = t.lower_is_better
        start = (math.inf if lower else -math.inf) if math.isnan(best0) else best0
        run = (np.minimum if lower else np.maximum).accumulate(np.concatenate(([start], vals)))
        better = vals < run[:-1] if lower else vals > run[:-1]  # a new best (strictly)
        k = np.arange(len(vals))
        last = np.maximum.accumulate(np.where(better, k, -1))  # the latest new best, -1: none
        best = np.where(last >= 0, vals[np.maximum(last, 0)], best0)  # the value it took
        since = np.where(last >= 0, k - last, since0 + k + 1)
        met = {
            "<=": np.less_equal,
            "<": np.less,
            ">=": np.greater_equal,
            ">": np.greater,
        }[t.op](best, t.value)
        first_met = int(np.argmax(met)) if met.any() else len(vals)
        due = np.flatnonzero(~met & (since >= self.p["patience"]))
        if len(due) and int(due[0]) < first_met:
            j = int(due[0])
            b = int(last[j])
            self._fire(
                view,
                t,
                sv.name,
                float(best[j]),
                int(steps[b]) if b >= 0 else bstep0,
                int(steps[j]),
                f"no improvement for {int(since[j])} evals",
            )
        if first_met < len(vals):
            self.clear(t.metric, int(steps[first_met]))
        b = int(last[-1])
        self.best[t.metric] = (
            float(best[-1]),
            int(steps[b]) if b >= 0 else bstep0,
            int(since[-1]),
        )

    def finalize(self, view: RunView) -> None:
        for t in view.targets:
            sv = self._match(view, t)
            if sv is not None and t.metric in self.best:
                best, bstep, _ = self.best[t.metric]
                if not t.met(best):
                    self._fire(
                        view, t, sv.name, best, bstep, int(sv.steps[-1]), "the run has ended"
                    )
                continue
            value = self._summary(view, t)
            if value is not None and not t.met(value[1]):
                step = view.run.last_step() or 0
                self._fire(view, t, value[0], value[1], step, step, "final result")

    def _summary(self, view: RunView, t: Target) -> tuple[str, float] | None:
        want = role_of(t.metric, view.config.aliases)
        for name, v in view.run.summary.items():
            r = role_of(name, view.config.aliases)
            if name == t.metric or (
                (r.split, r.kind) == (want.split, want.kind) and r.kind != "other"
            ):
                if isinstance(v, (int, float)) and math.isfinite(v):
                    return name, float(v)
        return None

    def _fire(
        self, view: RunView, t: Target, name: str, best: float, bstep: int, step: int, why: str
    ) -> None:
        factor = ""
        if t.value and best and t.lower_is_better and best > 0 and t.value > 0:
            factor = f" ({best / t.value:.1f}x off)"
        elif t.value and best and not t.lower_is_better and best > 0:
            factor = f" ({t.value / best:.1f}x short)"
        self.fire(
            t.metric,
            Severity.WARNING,
            step,
            [name],
            f"target missed: {name} best {fmt(best)} (step {bstep}) vs target {t.op} "
            f"{fmt(t.value)}{factor}, {why}",
            {"best": best, "best_step": bstep, "target": str(t)},
            "the current setup will not reach the target: change the model, features or data "
            "rather than training longer",
        )

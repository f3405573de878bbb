"""What detectors share: a view of a run's settled data, and open/close of alert episodes.

A detector sees, for each metric, the current segment's points up to the settled step, and where
the points it has not seen yet begin. It keeps whatever state it needs between calls, so each new
point costs O(1) or O(window), and the alerts do not depend on how the data was chunked: batch
(`check`) and live (`check --follow`, the app) give the same alerts at the same steps.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from watchrun.config import Config, Target
from watchrun.model import Alert, Run, Severity
from watchrun.semantics import Role, is_rl, pick, role_of

_CKPT = re.compile(r"checkpoint-(\d+)")


@dataclass
class SeriesView:
    name: str
    role: Role
    steps: np.ndarray  # current segment, settled points only
    values: np.ndarray
    new_from: int  # index of the first point not seen before
    start: int = 0  # index of steps[0] in the run's Series (for its wall-clock times)

    @property
    def new(self) -> range:
        return range(self.new_from, len(self.steps))

    def at_or_before(self, step: int) -> int:
        """Index of the last point with step <= `step` (-1 if none)."""
        return int(np.searchsorted(self.steps, step, side="right")) - 1

    def value_at(self, step: int) -> float:
        i = self.at_or_before(step)
        return float(self.values[i]) if i >= 0 else math.nan

    def exact(self, step: int) -> float:
        i = self.at_or_before(step)
        return float(self.values[i]) if i >= 0 and self.steps[i] == step else math.nan


@dataclass
class RunView:
    run: Run
    series: dict[str, SeriesView]
    config: Config
    targets: list[Target] = field(default_factory=list)
    ended: bool = False  # the run has finished / failed / gone quiet and all data is settled
    claimed: set[str] = field(default_factory=set)  # metrics another detector has an alert on
    # metric -> the alerts claiming it (open when the pass began, or raised in it): see claims_at
    claims: dict[str, list[Alert]] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)  # detectors that raised an alert this segment
    test_as_val: bool = False  # no validation metric: the test metrics play that role

    def names(self) -> list[str]:
        return list(self.series)

    @property
    def is_rl(self) -> bool:
        """Reinforcement learning: the loss is no quality signal there."""
        if "_rl" not in self.__dict__:
            self.__dict__["_rl"] = is_rl(self.names())
        return self.__dict__["_rl"]

    def pick(self, split: str, kind: str) -> SeriesView | None:
        cache = self.__dict__.setdefault("_picks", {})
        if (split, kind) not in cache:
            roles = {n: sv.role for n, sv in self.series.items()} if self.test_as_val else None
            cache[(split, kind)] = pick(self.names(), split, kind, self.config.aliases, roles)
        name = cache[(split, kind)]
        return self.series.get(name) if name else None

    def claim(self, alert: Alert) -> None:
        for m in alert.metrics:
            self.claimed.add(m)
            self.claims.setdefault(m, []).append(alert)

    def claims_at(self, metric: str, step: int, loud: bool = False) -> bool:
        """An alert on `metric` (a warning or critical, with `loud`) was open at `step`: raised
        at or before it, and not ended by then (Alert.until). What was known at that step,
        however the run was read: a batch pass also sees alerts raised later in the run, and
        ones that ended earlier; live, the first did not exist yet and the second are gone."""
        return any(
            a.step <= step
            and (a.until is None or step < a.until)
            and not (loud and a.severity is Severity.INFO)
            for a in self.claims.get(metric, ())
        )

    def role(self, name: str) -> Role:
        sv = self.series.get(name)
        return sv.role if sv is not None else role_of(name, self.config.aliases)

    def where(self, **match: Any) -> list[SeriesView]:
        out = []
        for sv in self.series.values():
            if all(getattr(sv.role, k) == v for k, v in match.items()):
                out.append(sv)
        return out

    def lr(self) -> SeriesView | None:
        """The learning-rate series (the shortest-named, when several optimizers log one)."""
        return min(
            (sv for sv in self.series.values() if sv.role.kind == "lr"),
            key=lambda sv: len(sv.name),
            default=None,
        )

    @property
    def planned_steps(self) -> int | None:
        """The planned length in the run's step unit, as the writer itself recorded it: HF's
        max_steps (trainer_state.json, the console's `Total optimization steps`) or a run card's;
        for a run counted in epochs, the planned epochs (see `planned_epochs`). None when unknown,
        and rules that need it stay silent. Never a progress bar's total: any bar has one."""
        if self.run.step_unit == "epoch":
            return self.planned_epochs
        return _positive_int(self.run.meta.get("max_steps"))

    @property
    def planned_epochs(self) -> int | None:
        """Keras' `Epoch N/M`, Ultralytics' args.yaml `epochs`, a run card's max_epochs, or a
        `max_epochs` the run saved among its hyperparameters (Lightning)."""
        v = _positive_int(self.run.meta.get("max_epochs"))
        if v is None:
            v = next(
                (
                    _positive_int(hv)
                    for hk, hv in self.run.hparams.items()
                    if hk.rsplit("/", 1)[-1].rsplit(".", 1)[-1] == "max_epochs"
                ),
                None,
            )
        return v

    def best_checkpoint(self, step: int | None = None, metric: str | None = None) -> str | None:
        """The run's best checkpoint: as the logs name it, else the one saved at `step`."""
        meta = self.run.meta
        ckpts = meta.get("checkpoints") or []
        if metric and ckpts:
            role = self.role(metric)
            scored = [(c.get(metric), c["path"]) for c in ckpts if c.get(metric) is not None]
            if scored:
                pick_fn = min if role.higher_better is False else max
                return os.path.basename(pick_fn(scored)[1])
        if step is not None and ckpts:  # Lightning's `epoch=6-step=350.ckpt`: the global step after
            # the step the metrics were logged at (metrics.csv logs at global_step - 1)
            at_step = [c["path"] for c in ckpts if c.get("step") in (step, step + 1)]
            if at_step:
                return os.path.basename(at_step[0])
        if step is not None:
            saved = sorted(
                {int(m.group(1)) for f in self.run.files for m in [_CKPT.search(f)] if m}
            )
            at = [s for s in saved if s == step]
            if at:
                return f"checkpoint-{at[0]}"
        best = meta.get("best_model_checkpoint")
        if best and (step is None or meta.get("best_global_step") in (None, step)):
            name = str(best).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
            m = _CKPT.search(name)
            if step is None or (m and int(m.group(1)) == step):
                return name
        return None

    def num_classes(self) -> int | None:
        for key in ("num_classes", "num_labels", "n_classes", "nb_classes", "classes", "n_labels"):
            for hk, hv in self.run.hparams.items():
                if hk.rsplit("/", 1)[-1].rsplit(".", 1)[-1] == key:
                    try:
                        k = int(float(hv))
                    except (TypeError, ValueError, OverflowError):  # text, None, .inf
                        continue
                    if 2 <= k <= 100000:
                        return k
        family = {sv.role.cls for sv in self.series.values() if sv.role.cls is not None}
        return len(family) if len(family) >= 2 else None


def _positive_int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return int(v) if 0 < v < 2**62 else None  # HF writes sys.maxsize epochs for step-driven runs


@dataclass
class Finding:
    """A detector's verdict: open a new alert episode, or close one."""

    key: str
    alert: Alert | None = None  # None: close the episode `key`
    until: int | None = None  # a close: the step that ended it (None: not said)


class Detector:
    id = "base"
    DEFAULTS: dict[str, Any] = {}
    final_only = False

    def __init__(self, run_key: str, config: Config) -> None:
        self.run_key = run_key
        self.p = config.detector(self.id, self.DEFAULTS)
        self.open: set[str] = set()
        self.findings: list[Finding] = []
        self.episodes: dict[str, Alert] = {}  # key -> the alert of its open episode

    def update(self, view: RunView) -> None:
        """Look at the new settled points."""

    def finalize(self, view: RunView) -> None:
        """The run has ended: conclusions that need the whole run."""

    # -- helpers ------------------------------------------------------------------------------
    def fire(
        self,
        key: str,
        severity: Severity,
        step: int,
        metrics: list[str],
        message: str,
        evidence: dict[str, Any],
        action: str,
    ) -> bool:
        if key in self.open:
            return False
        self.open.add(key)
        alert = Alert(
            self.run_key, self.id, severity, int(step), metrics, message, evidence, action
        )
        self.findings.append(Finding(key, alert))
        self.episodes[key] = alert
        return True

    def clear(self, key: str, step: int | None = None) -> None:
        """End the episode `key`, at the point at `step` that no longer shows it: its alert
        stops speaking for its metrics there (RunView.claims_at). Without a step, it speaks
        for them until the pass ends (a later read no longer sees it)."""
        if key in self.open:
            self.open.discard(key)
            alert = self.episodes.pop(key, None)
            if alert is not None and step is not None:
                alert.until = step
            self.findings.append(Finding(key, None, step))

    def take(self) -> list[Finding]:
        out, self.findings = self.findings, []
        return out


def step_noise(values: np.ndarray, centred: bool = False) -> float:
    """The scatter of one log around its neighbours, robustly (MAD of successive differences,
    scaled to a normal sigma); a trend shifts every difference alike, so it is not counted as
    noise. `centred` takes the MAD around the median difference, removing a steady trend too."""
    d = np.diff(values)
    if centred:
        d = d - np.median(d)
    return 1.4826 * float(np.median(np.abs(d))) / math.sqrt(2)


def fmt(x: float) -> str:
    """A number as a person reads it in an alert."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e5):
        return f"{x:.2e}"
    if ax >= 100:
        return f"{x:.1f}"
    return f"{x:.4g}"


def pct(x: float) -> str:
    return f"{x * 100:.0f}%"


FEW = 32  # fewer new points (a live read) are judged without numpy: its per-call cost dominates


def small_median(xs: list[float], skip_nan: bool = False) -> float:
    """np.median of a short list (np.nanmedian with `skip_nan`) without numpy's per-call cost,
    with the same arithmetic: the middle value or the mean of the two middle ones, NaN when a
    value is NaN (or, skipping them, when none is left)."""
    kept = [x for x in xs if x == x]
    if len(kept) < len(xs) and not skip_nan or not kept:
        return math.nan
    kept.sort()
    m = len(kept)
    return kept[m // 2] if m % 2 else (kept[m // 2 - 1] + kept[m // 2]) / 2


def median_finite(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(np.median(v)) if len(v) else math.nan


def warming_up(view: RunView, step: int) -> bool:
    """The learning rate is still rising at `step` (a warm-up, OneCycle's first phase): the
    model has not had its chance to learn yet, so only what is conclusive already is said."""
    lr = view.lr()
    if lr is None:
        return False
    j = lr.at_or_before(step)
    return (
        j >= 1
        and bool(np.isfinite(lr.values[j - 1 : j + 1]).all())
        and lr.values[j] > lr.values[j - 1] * 1.001
    )


def shown(view: RunView, name: str, value: float) -> str:
    """A value as the source logged it: a share the runner turned from percent into a fraction
    (a WER logged as 32.01) is shown as logged (32.01), never as 0.3201."""
    sv, raw = view.series.get(name), view.run.series.get(name)
    if sv is None or raw is None or not len(sv.values) or not math.isfinite(value):
        return fmt(value)
    j = int(np.searchsorted(raw.steps, sv.steps[-1], side="right")) - 1
    v, r = float(sv.values[-1]), float(raw.values[j]) if j >= 0 else math.nan
    if math.isfinite(v) and math.isfinite(r) and v != 0 and abs(r / v - 100.0) < 1e-6:
        return fmt(value * 100.0)
    return fmt(value)

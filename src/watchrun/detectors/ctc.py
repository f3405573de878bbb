"""CTC blank collapse: the model emits the blank token at (nearly) every timestep, so every
transcript is empty and WER sits at 1.0 while the loss still looks fine."""

from __future__ import annotations

import math

import numpy as np

from watchrun.detectors.base import Detector, RunView, SeriesView, fmt, shown, warming_up
from watchrun.model import Severity


def improving(
    sv: SeriesView | None, step: int, k: int = 3, margin: float = 0.02
) -> tuple[bool, float, float] | None:
    """Is this loss still coming down at `step`: the lowest of its last k points (k evals, or a
    tenth of a per-step train loss) at least `margin` below the lowest before them? Returns
    (improving, lowest before, lowest now), or None when there are too few points to say."""
    if sv is None:
        return None
    upto = sv.values[: sv.at_or_before(step) + 1]
    upto = upto[np.isfinite(upto)]
    k = max(k, len(upto) // 10) if sv.role.split == "train" else k
    if len(upto) < k + 1:
        return None
    before, now = float(upto[:-k].min()), float(upto[-k:].min())
    return now < before * (1 - margin) if before > 0 else now < before, before, now


class BlankCollapse(Detector):
    """A CTC model emitting the blank at (nearly) every timestep: empty transcripts, WER 1.0.

    Every CTC model starts there (the all-blank phase) and leaves it once the loss has come down
    far enough; so the verdict follows the loss (the validation loss, else the train loss):
    - info: blank share >= `blank_ratio` for `persist` evals (or WER pinned at 1.0 for
      `wer_evals` evals with CER >= `cer_min`) while the loss still improves (a new low by 2%
      within its last 3 evals) or the learning rate still warms up: "still in the all-blank phase";
    - warning: the same once the loss has stopped improving;
    - critical: blank share >= 99% (or WER pinned with empty predictions in the logged samples)
      with the loss no longer improving, after the warm-up: the model will not leave it.
    The episode ends when the share (or WER) comes down."""

    id = "blank_collapse"
    DEFAULTS = {"blank_ratio": 0.95, "persist": 2, "wer_evals": 3, "cer_min": 0.9}

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.streak: dict[str, int] = {}

    def update(self, view: RunView) -> None:
        for sv in view.series.values():
            if sv.role.kind == "blank_ratio":
                self._blank(view, sv)
            elif sv.role.kind == "wer" and sv.role.split in ("val", "test", ""):
                self._wer(view, sv)

    def _verdict(self, view: RunView, step: int, conclusive: bool) -> tuple[Severity, str]:
        """Severity from the loss's course, and the words that say why."""
        loss = view.pick("val", "loss") or view.pick("train", "loss")
        trend = improving(loss, step)
        if loss is not None and trend is not None and trend[0]:
            return Severity.INFO, (
                f"still in the all-blank phase: {loss.name} still falling "
                f"({fmt(trend[1])} -> {fmt(trend[2])})"
            )
        if warming_up(view, step):
            return Severity.INFO, "still in the all-blank phase: the learning rate still warms up"
        if loss is None or trend is None:
            return Severity.INFO, "too few evals yet to see whether the loss still falls"
        why = f"{loss.name} no longer improving (lowest {fmt(trend[2])} vs {fmt(trend[1])} before)"
        return (Severity.CRITICAL if conclusive else Severity.WARNING), why

    def _open(self, key: str, severity: Severity, *args) -> None:  # type: ignore[no-untyped-def]
        """One episode per key; a later, stronger verdict replaces a weaker one."""
        for sev in (Severity.INFO, Severity.WARNING, Severity.CRITICAL):
            if f"{key}:{sev.value}" in self.open:
                if sev.rank >= severity.rank:
                    return
                self.clear(f"{key}:{sev.value}")
        self.fire(f"{key}:{severity.value}", severity, *args)

    def _close(self, key: str) -> None:
        for sev in (Severity.INFO, Severity.WARNING, Severity.CRITICAL):
            self.clear(f"{key}:{sev.value}")

    def _blank(self, view: RunView, sv: SeriesView) -> None:
        if len(sv.values) == 0 or not np.isfinite(sv.values).any():
            return
        for i in sv.new:  # shares in percent arrive as fractions (the runner's view)
            ratio = float(sv.values[i])
            if not math.isfinite(ratio) or ratio < self.p["blank_ratio"]:
                self.streak[sv.name] = 0
                self._close("blank")
                continue
            self.streak[sv.name] = self.streak.get(sv.name, 0) + 1
            if self.streak[sv.name] < self.p["persist"]:
                continue
            step = int(sv.steps[i])
            wer = self._wer_at(view, step)
            empties = self._empty_samples(view, step)
            severity, why = self._verdict(view, step, ratio >= 0.99 or empties > 0)
            details = [why]
            if wer is not None:
                wer_sv = next(s for s in view.series.values() if s.role.kind == "wer")
                details.append(f"{wer_sv.name} {shown(view, wer_sv.name, wer)}")
            if empties:
                details.append(f"{empties} empty predictions in the samples")
            self._open(
                "blank",
                severity,
                step,
                [sv.name],
                f"blank tokens at {ratio * 100:.0f}% of timesteps ({', '.join(details)})"
                + (" — stop training" if severity is Severity.CRITICAL else ""),
                {"blank_ratio": ratio, "wer": wer, "empty_samples": empties},
                "nothing to do while the loss falls: CTC models start by predicting only blanks"
                if severity is Severity.INFO
                else "stop training: the CTC model only predicts blank. Check the blank index and "
                "the vocabulary, lower the learning rate or lengthen warm-up, check the output "
                "layer's initialisation and that input lengths exceed label lengths",
            )

    def _wer(self, view: RunView, sv: SeriesView) -> None:
        if len(sv.values) == 0 or not np.isfinite(sv.values).any():
            return
        n = int(self.p["wer_evals"])
        for i in sv.new:
            w = sv.values[max(0, i - n + 1) : i + 1]
            if len(w) < n or not (w >= 0.999).all():
                if sv.values[i] < 0.999:
                    self._close("wer")
                continue
            step = int(sv.steps[i])
            cer_sv = next((c for c in view.series.values() if c.role.kind == "cer"), None)
            cer = cer_sv.value_at(step) if cer_sv is not None else math.nan
            if math.isfinite(cer) and cer < self.p["cer_min"]:
                continue
            empties = self._empty_samples(view, step)
            severity, why = self._verdict(view, step, empties > 0)
            self._open(
                "wer",
                severity,
                step,
                [sv.name] + ([cer_sv.name] if cer_sv is not None else []),
                f"{sv.name} pinned at {shown(view, sv.name, 1.0)} for {n} evals"
                + (
                    f", {cer_sv.name} {shown(view, cer_sv.name, cer)}"
                    if cer_sv and math.isfinite(cer)
                    else ""
                )
                + (f", {empties} empty predictions" if empties else "")
                + f": the model likely emits only blanks; {why}",
                {"wer": float(sv.values[i]), "cer": cer, "evals": n, "empty_samples": empties},
                "nothing to do while the loss falls: CTC models start by predicting only blanks"
                if severity is Severity.INFO
                else "log the blank ratio or a few decoded predictions to confirm; if they are "
                "empty, stop and fix (learning rate, blank index, output-layer initialisation)",
            )

    def _wer_at(self, view: RunView, step: int) -> float | None:
        sv = next((s for s in view.series.values() if s.role.kind == "wer"), None)
        if sv is None or len(sv.values) == 0 or not np.isfinite(sv.values).any():
            return None
        v = sv.value_at(step)
        return v if math.isfinite(v) else None

    def _empty_samples(self, view: RunView, step: int) -> int:
        """Predictions logged as text that are empty (`pred: ''`, `prediction=""`)."""
        count = 0
        for t in view.run.texts:
            if t.step != step or "pred" not in t.tag.lower() + t.text.lower():
                continue
            for line in t.text.splitlines():
                low = line.lower().strip()
                if low.startswith("pred") and low.split(":", 1)[-1].strip() in ("", "''", '""'):
                    count += 1
        return count

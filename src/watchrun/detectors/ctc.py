"""CTC blank collapse: the model emits the blank token at (nearly) every timestep, so every
transcript is empty and WER sits at 1.0 while the loss still looks fine."""

from __future__ import annotations

import math

import numpy as np

from watchrun.detectors.base import Detector, RunView, SeriesView, fmt
from watchrun.model import Severity


def _flat(sv: SeriesView | None, step: int, k: int = 3, tol: float = 0.05) -> bool | None:
    """Has this loss stopped moving over its last k points (relative change < tol)?"""
    if sv is None:
        return None
    i = sv.at_or_before(step)
    if i + 1 < k:
        return None
    w = sv.values[i - k + 1 : i + 1]
    if not np.isfinite(w).all() or w.max() <= 0:
        return None
    return bool((w.max() - w.min()) / w.max() < tol)


class BlankCollapse(Detector):
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

    def _blank(self, view: RunView, sv: SeriesView) -> None:
        if len(sv.values) == 0 or not np.isfinite(sv.values).any():
            return
        for i in sv.new:  # shares in percent arrive as fractions (the runner's view)
            ratio = float(sv.values[i])
            if not math.isfinite(ratio) or ratio < self.p["blank_ratio"]:
                self.streak[sv.name] = 0
                self.clear("blank")
                continue
            self.streak[sv.name] = self.streak.get(sv.name, 0) + 1
            if self.streak[sv.name] < self.p["persist"]:
                continue
            step = int(sv.steps[i])
            loss = view.pick("val", "loss") or view.pick("train", "loss")
            flat = _flat(loss, step)
            wer = self._wer_at(view, step)
            empties = self._empty_samples(view, step)
            critical = ratio >= 0.99 or flat or (wer is not None and wer >= 0.999)
            details = []
            if wer is not None:
                details.append(f"WER {fmt(wer)}")
            if empties:
                details.append(f"{empties} empty predictions in the samples")
            if flat:
                details.append("loss no longer moving")
            self.fire(
                "blank", Severity.CRITICAL if critical else Severity.WARNING, step, [sv.name],
                f"blank tokens at {ratio * 100:.0f}% of timesteps"
                + (f" ({', '.join(details)})" if details else "")
                + (" — stop training" if critical else ""),
                {"blank_ratio": ratio, "wer": wer, "loss_flat": flat, "empty_samples": empties},
                "stop training: the CTC model only predicts blank. Check the blank index and the "
                "vocabulary, lower the learning rate or lengthen warm-up, check the output layer's "
                "initialisation and that input lengths exceed label lengths",
            )

    def _wer(self, view: RunView, sv: SeriesView) -> None:
        if len(sv.values) == 0 or not np.isfinite(sv.values).any():
            return
        n = int(self.p["wer_evals"])
        for i in sv.new:
            w = sv.values[max(0, i - n + 1) : i + 1]
            if len(w) < n or not (w >= 0.999).all():
                if sv.values[i] < 0.999:
                    self.clear("wer")
                continue
            step = int(sv.steps[i])
            cer_sv = next((c for c in view.series.values() if c.role.kind == "cer"), None)
            cer = cer_sv.value_at(step) if cer_sv is not None else math.nan
            if math.isfinite(cer) and cer < self.p["cer_min"]:
                continue
            empties = self._empty_samples(view, step)
            self.fire(
                "wer", Severity.CRITICAL if empties else Severity.WARNING, step,
                [sv.name] + ([cer_sv.name] if cer_sv is not None else []),
                f"{sv.name} pinned at 1.0 for {n} evals"
                + (f", CER {fmt(cer)}" if math.isfinite(cer) else "")
                + (f", {empties} empty predictions" if empties else "")
                + ": the model likely emits only blanks",
                {"wer": float(sv.values[i]), "cer": cer, "evals": n, "empty_samples": empties},
                "log the blank ratio or a few decoded predictions to confirm; if they are empty, "
                "stop and fix (learning rate, blank index, output-layer initialisation)",
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

"""stuck_metric says a frozen metric as info while another open alert explains it, and as a
warning once that alert has ended: the same whichever way the run was read (whole, or live as
its file grows in chunks), because a claim ends at the step its episode ended (Alert.until)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from tests.unit.helpers import follow_in_chunks

from watchrun.config import Config
from watchrun.demo import CsvWriter
from watchrun.detectors.base import Detector, RunView
from watchrun.engine import Engine
from watchrun.model import Run, Severity

EVERY = 10  # an eval every 10 steps


def collapse_then_frozen() -> list[tuple[int, dict[str, float]]]:
    """The accuracy learns to 0.74 (evals 1-9), collapses to 0.5 (evals 10-14: a collapse after
    reaching 0.74, its frozen value explained), leaves it for 0.7 and freezes there (evals 15-24:
    the collapse has ended, nothing explains it while the train loss moves), then learns again;
    the validation loss is frozen from eval 10 to eval 24."""
    rng = random.Random(3)
    rows = []
    for s in range(400):
        row = {"train_loss_step": 2.0 * math.exp(-s / 400) + rng.gauss(0, 0.01)}
        if s % EVERY == EVERY - 1:
            e = s // EVERY + 1
            if e < 10:
                acc = round(0.34 + 0.045 * e, 4)
            elif e < 15:
                acc = 0.5
            elif e < 25:
                acc = 0.7
            else:
                acc = round(0.75 + 0.01 * (e - 25) + rng.gauss(0, 0.005), 4)
            loss = 1.2 if 10 <= e < 25 else round(1.5 - s / 400 + rng.gauss(0, 0.02), 4)
            row |= {"val_acc": acc, "val_loss": loss}
        rows.append((s, row))
    return rows


def _step(e: int) -> int:
    """The step of eval `e` (1-based)."""
    return e * EVERY - 1


def _write(root: Path) -> Path:
    rows = collapse_then_frozen()
    path = root / "lightning_logs" / "version_0" / "metrics.csv"
    w = CsvWriter(str(path), sorted({k for _, r in rows for k in r}))
    for step, row in rows:
        w.write(step, row)
    w.close()
    return path


def _said(e: Engine) -> list[tuple[str, str, int, tuple[str, ...]]]:
    return sorted(
        (a.detector, a.severity.value, a.step, tuple(a.metrics))
        for key in e.store.runs
        for a in e.store.alerts_for(key)
        if a.detector in ("stuck_metric", "prediction_collapse")
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("run")
    path = _write(root)
    e = Engine([str(root)], use_watchdog=False)
    e.check()
    return path, _said(e)


def test_a_frozen_metric_is_info_while_the_collapse_is_open_and_a_warning_after(batch) -> None:
    _, said = batch
    assert said == [
        ("prediction_collapse", "warning", _step(12), ("val_acc",)),
        ("stuck_metric", "info", _step(14), ("val_acc", "val_loss")),  # the collapse says why
        ("stuck_metric", "warning", _step(19), ("val_acc", "val_loss")),  # it ended at eval 15
    ]


@pytest.mark.parametrize("chunks", [2, 3, 5, 7, 13, 40])
def test_the_severity_of_a_frozen_metric_does_not_depend_on_the_chunks(
    batch, tmp_path: Path, chunks: int
) -> None:
    path, said = batch
    e = follow_in_chunks(path, tmp_path / "live", chunks, bounded=False)
    e.verdict()
    assert _said(e) == said


def test_a_claim_lasts_from_its_alert_to_the_step_its_episode_ended() -> None:
    det = Detector("r", Config())
    det.fire("k", Severity.WARNING, 20, ["val_acc"], "m", {}, "a")
    det.fire("i", Severity.INFO, 10, ["val_loss"], "m", {}, "a")
    view = RunView(Run("r", "/r"), {}, Config())
    for f in det.take():
        view.claim(f.alert)
    assert not view.claims_at("val_acc", 19) and view.claims_at("val_acc", 20, loud=True)
    assert view.claims_at("val_loss", 10) and not view.claims_at("val_loss", 10, loud=True)
    det.clear("k", 50)
    det.clear("i")  # no step said: it speaks for its metric until the pass ends
    assert [(f.key, f.until) for f in det.take()] == [("k", 50), ("i", None)]
    assert view.claims_at("val_acc", 49) and not view.claims_at("val_acc", 50)
    assert view.claims_at("val_loss", 10**9)


def _late_freeze_rows(frozen: bool) -> list[tuple[int, dict[str, float]]]:
    """A loss falling as exp(-s/2000) for 10k steps, an eval every 100 steps. With `frozen`
    the eval loss and accuracy repeat one value from step 4000 on (an evaluation that no longer
    sees training); in any 5 evals the train loss moves < 5% of its range, over the episode 30%.
    Without, they keep following training, rounded to 3 digits as a progress bar prints them."""
    rng = random.Random(7)
    rows = []
    for s in range(10_000):
        p = 1 - math.exp(-s / 2000)
        row = {"train_loss_step": 2.0 * (1 - p) + 0.3 + rng.gauss(0, 0.01)}
        if s % 100 == 99:
            val, acc = 2.0 * (1 - p) + 0.35, 0.3 + 0.6 * p
            if frozen and s >= 4000:
                val, acc = 0.61234, 0.80125
            row |= {"val_loss": round(val, 3), "val_acc": round(acc, 3)}
        rows.append((s, row))
    return rows


@pytest.mark.parametrize("frozen", [True, False])
def test_an_evaluation_frozen_while_training_slowly_goes_on_is_called(tmp_path, frozen) -> None:
    """The train loss is judged over the whole frozen stretch, not only its last 5 evals: a
    careful reader calls 20 identical evals while the train loss fell 15% a frozen evaluation."""
    rows = _late_freeze_rows(frozen)
    path = tmp_path / "lightning_logs" / "version_0" / "metrics.csv"
    w = CsvWriter(str(path), sorted({k for _, r in rows for k in r}))
    for step, row in rows:
        w.write(step, row)
    w.close()
    e = Engine([str(tmp_path)], use_watchdog=False)
    e.check()
    stuck = [a for k in e.store.runs for a in e.store.alerts_for(k) if a.detector == "stuck_metric"]
    if not frozen:
        assert stuck == []
        return
    assert [a.severity for a in stuck] == [Severity.WARNING]
    a = stuck[0]
    assert 4000 < a.step <= 6000, a.message  # within 20 evals of the freeze
    assert a.evidence["since_step"] == 4099 and "while train_loss_step moved" in a.message


def _nan_then_frozen_rows() -> list[tuple[int, dict[str, float]]]:
    """The validation loss overflows to NaN at evals 10-11 (fp16), is finite again from eval 12
    and then repeats one value to eval 24 while the train loss falls: the NaN episode ended at
    eval 12, so nothing explains the freeze."""
    rng = random.Random(5)
    rows = []
    for s in range(400):
        row = {"train_loss_step": 2.0 * math.exp(-s / 400) + rng.gauss(0, 0.01)}
        if s % EVERY == EVERY - 1:
            e = s // EVERY + 1
            loss = round(1.5 - s / 400 + rng.gauss(0, 0.02), 4)
            if e in (10, 11):
                loss = math.nan
            elif 12 <= e < 25:
                loss = 1.2
            row |= {"val_loss": loss}
        rows.append((s, row))
    return rows


@pytest.mark.parametrize("chunks", [1, 2, 3, 5, 7, 13])
def test_a_nan_episode_claims_the_metric_only_until_it_is_finite_again(
    tmp_path: Path, chunks: int
) -> None:
    rows = _nan_then_frozen_rows()
    path = tmp_path / "src" / "metrics.csv"
    w = CsvWriter(str(path), sorted({k for _, r in rows for k in r}))
    for step, row in rows:
        w.write(step, row)
    w.close()
    e = follow_in_chunks(path, tmp_path / "live", chunks, bounded=False)
    e.verdict()
    stuck = [
        (a.severity, a.metrics[0])
        for k in e.store.runs
        for a in e.store.alerts_for(k)
        if a.detector == "stuck_metric"
    ]
    assert stuck == [(Severity.WARNING, "val_loss")]

"""loss_at_chance with K recorded nowhere (no hparams, no per-class metrics): the accuracy at
1/K and the loss at ln K for the same K say a uniform guess over K classes. Judged with only
the logs at or before each step, so that a live read calls what the batch check calls."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from tests.unit.helpers import follow_in_chunks, loaded
from tests.unit.test_scenarios import finish, lightning

from watchrun.config import Config
from watchrun.detectors.base import RunView, SeriesView
from watchrun.detectors.progress import LossAtChance, classes_from_accuracy
from watchrun.model import Run
from watchrun.semantics import role_of

COLUMNS = ["train_loss", "val_loss", "val_acc"]


def _rows(loss_at, acc_at, steps: int = 4000, seed: int = 3, noise: float = 0.01):
    """A train loss every 10 steps, an eval every 200 (a 1000-image eval set's scatter)."""
    rng = random.Random(seed)
    for s in range(10, steps + 1, 10):
        row = {"train_loss": loss_at(s) + rng.gauss(0, noise)}
        if s % 200 == 0:
            row |= {"val_loss": loss_at(s) + 0.02, "val_acc": acc_at(s) + rng.gauss(0, 0.009)}
        yield s, row


def _write(path: Path, loss_at, acc_at, noise: float = 0.01) -> Path:
    lightning(path, _rows(loss_at, acc_at, noise=noise), COLUMNS)
    finish(path)
    return next(path.rglob("metrics.csv"))


def _said(e) -> list[tuple]:
    return sorted(
        (a.detector, a.severity.value, a.step, a.message, repr(sorted(a.evidence.items())))
        for key in sorted(e.store.runs)
        for a in e.store.alerts_for(key)
    )


def _batch(path: Path) -> list[tuple]:
    e = loaded(path)
    e.verdict()
    return _said(e)


def _chance(said: list[tuple]) -> list[tuple]:
    return [a for a in said if a[0] == "loss_at_chance"]


LN10 = math.log(10)


@pytest.fixture(scope="module")
def stuck(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple]]:
    path = tmp_path_factory.mktemp("stuck")
    csv = _write(path, lambda s: LN10, lambda s: 0.1)
    return csv, _batch(path)


def test_ten_classes_never_leaving_chance_are_called_without_k(stuck) -> None:
    _, said = stuck
    got = _chance(said)
    assert len(got) == 1 and got[0][1] == "warning"
    assert "ln(10)" in got[0][3] and "val_acc" in got[0][3]
    assert "('classes', 10)" in got[0][4] and "('classes_from', 'val_acc')" in got[0][4]


@pytest.mark.parametrize(("chunks", "bounded"), [(3, False), (17, False), (60, False), (17, True)])
def test_ten_classes_at_chance_live_equals_batch(stuck, tmp_path: Path, chunks, bounded) -> None:
    csv, said = stuck
    e = follow_in_chunks(csv, tmp_path / "live", chunks, bounded=bounded)
    e.verdict()
    assert _said(e) == said


@pytest.mark.parametrize(("speed", "chunks"), [(800, 1), (3000, 1), (8000, 1), (3000, 40)])
def test_ten_classes_starting_at_chance_and_learning_are_silent(tmp_path: Path, speed, chunks):
    """A healthy run starts at ln 10 with accuracy 0.1 (for its first 5 evals: the accuracy
    lags the loss), then learns: not called while its loss passes through ln 10."""
    csv = _write(
        tmp_path / "run",
        lambda s: 0.2 + (LN10 - 0.2) * math.exp(-s / speed),
        lambda s: 0.1 + 0.85 * (1 - math.exp(-max(0, s - 1000) / speed)),
    )
    if chunks == 1:
        said = _batch(tmp_path / "run")
    else:
        e = follow_in_chunks(csv, tmp_path / "live", chunks, bounded=False)
        e.verdict()
        said = _said(e)
    assert _chance(said) == []


def test_an_accuracy_at_one_in_k_with_the_loss_elsewhere_is_not_at_chance(tmp_path) -> None:
    """The accuracy at 0.1 but the loss flat at 1.5 (not ln 10): the two signals disagree."""
    _write(tmp_path / "run", lambda s: 1.5, lambda s: 0.1)
    assert _chance(_batch(tmp_path / "run")) == []


def test_a_loss_at_ln_k_with_the_accuracy_elsewhere_is_not_at_chance(tmp_path) -> None:
    """The loss at ln 10 but the accuracy at 0.4: no K that both say."""
    _write(tmp_path / "run", lambda s: LN10, lambda s: 0.4)
    assert _chance(_batch(tmp_path / "run")) == []


def test_a_loss_repeated_exactly_at_ln_k_is_left_to_not_learning(tmp_path) -> None:
    """Frozen weights (a learning rate of 0) repeat the loss of the initial model to the last
    digit: not_learning says so; the inferred K adds no second alert on the same loss."""
    _write(tmp_path / "run", lambda s: LN10, lambda s: 0.1, noise=0.0)
    said = _batch(tmp_path / "run")
    assert _chance(said) == []
    assert "not_learning" in {a[0] for a in said}


def test_the_classes_come_from_the_evals_before_each_log() -> None:
    """K where the last evals before a log's window and up to it are all near 1/K, only evals
    at earlier steps counting; 0 elsewhere (K < 3, an eval off 1/K, too few evals)."""
    acc_steps = np.array([100, 200, 300, 400, 500, 600], dtype=np.int64)
    acc = np.array([0.1, 0.11, 0.5, 0.2, 0.21, np.nan])
    steps = np.arange(0, 800, 10, dtype=np.int64)
    loss = np.full(len(steps), LN10)
    run = Run("r", "/r")
    series = {
        "train_loss": SeriesView("train_loss", role_of("train_loss", {}), steps, loss, 0),
        "val_acc": SeriesView("val_acc", role_of("val_acc", {}), acc_steps, acc, 0),
    }
    view = RunView(run, series, Config())
    idx = np.arange(9, len(steps))
    got = classes_from_accuracy(view, series["train_loss"], idx, 10)
    ks = dict(zip(steps[idx].tolist(), got.tolist(), strict=True))
    assert ks[200] == 0  # one eval before it
    assert ks[210] == 9 and ks[300] == 9  # 0.11: K = 9, and 0.1 is within 25% of 1/9
    assert ks[310] == 0  # 0.5: K = 2
    assert ks[410] == 0  # the window starts after 300 (at 0.5): the last two evals disagree
    assert ks[500] == 0 and ks[510] == 5 and ks[600] == 5  # 0.2, 0.21: K = 5
    assert ks[610] == 0  # a NaN eval


@pytest.mark.parametrize("seed", range(4))
def test_the_inferred_candidates_keep_every_one_that_fires(seed: int) -> None:
    """Every log at which _at fires with the K the accuracy gives it survives the filters, and
    a pass gives what judging every such log in order gives."""
    rng = np.random.default_rng(seed)
    fired = 0
    for _ in range(4):
        n = int(rng.integers(80, 900))
        steps = np.arange(n, dtype=np.int64) * 5
        k = int(rng.choice([3, 10, 40]))
        t = np.arange(n)
        shape = rng.integers(3)
        noise = rng.choice([1e-4, 5e-3, 2e-2]) * rng.standard_normal(n)
        if shape == 0:
            loss = math.log(k) + noise
        elif shape == 1:
            loss = math.log(k) * (1.3 - 0.6 * t / n) + noise
        else:
            loss = np.where(t < n // 3, 0.5 * math.log(k), math.log(k)) + noise
        at = steps[:: int(rng.integers(3, 30))].copy()
        acc = (1 / k) * (1 + rng.choice([0.02, 0.2, 0.4]) * rng.standard_normal(len(at)))
        view = RunView(
            Run("r", "/r"),
            {
                "train_loss": SeriesView("train_loss", role_of("train_loss", {}), steps, loss, 0),
                "val_acc": SeriesView("val_acc", role_of("val_acc", {}), at, acc, 0),
            },
            Config(),
        )
        sv = view.series["train_loss"]
        det = LossAtChance("r", Config())
        m = int(det.p["points"])
        det._follow(sv, m)
        kept = set(det._inferred(view, sv, m, m - 1, n))
        idx = np.arange(m - 1, n)
        ks = classes_from_accuracy(view, sv, idx, m)
        slow = LossAtChance("r", Config())
        slow._follow(sv, m)
        for i, kk in zip(idx.tolist(), ks.tolist(), strict=True):
            med = float(np.median(loss[i - m + 1 : i + 1]))
            if not kk or not abs(med - math.log(kk)) <= det.p["tol"] * math.log(kk):
                continue  # not a candidate: _at is asked only where the median is near ln K
            one = LossAtChance("r", Config())
            one._follow(sv, m)
            one._at(view, sv, i, kk, m, inferred=True)
            assert not one.findings or (i, kk) in kept, (seed, i, kk)
            if sv.name not in slow.open:
                slow._at(view, sv, i, kk, m, inferred=True)
        fast = LossAtChance("r", Config())
        fast.update(view)
        said = _alerts(fast)
        assert said == _alerts(slow)
        fired += bool(said)
    assert fired  # the filters were put to the test


def _alerts(det: LossAtChance) -> list[tuple]:
    return [(f.key, a.step, a.message) for f in det.take() for a in [f.alert] if a is not None]

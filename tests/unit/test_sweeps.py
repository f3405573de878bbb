"""Many simulated runs at once, drawn from the shapes training takes (HF, Lightning, Keras
writers; 10 to 1000 logs; 3 to 100 evals; per-log noise up to 10% on the train loss and 3% on
the validation loss; loss scales from 0.05 to 4.6; with and without accuracy and LR schedules).
Fixed seeds, so the counts are exact. Healthy runs must raise no warning at all; runs whose
validation loss turns up by 20-60% while the train loss falls must almost all be called."""

from __future__ import annotations

import math
import random

import pytest
from tests.unit.helpers import loaded
from tests.unit.test_scenarios import curve, write

from watchrun.model import Severity

KINDS = ("hf", "lightning", "keras")
VAL = {"hf": "eval_loss", "lightning": "val_loss", "keras": "val_loss"}
TRAIN = {"hf": "loss", "lightning": "train_loss", "keras": "loss"}
ACC = {"hf": "eval_accuracy", "lightning": "val_acc", "keras": "val_accuracy"}


def healthy(kind, n_logs, evals, noise, vnoise, start, floor, speed, acc, lr):
    def gen(rng):
        total = n_logs * 10
        every = max(1, n_logs // evals)
        for j in range(1, n_logs + 1):
            s = j * 10
            row = {
                TRAIN[kind]: max(
                    1e-4,
                    curve(s, total, start=start, floor=floor, speed=speed)
                    * (1 + rng.gauss(0, noise)),
                )
            }
            if lr == "linear":
                row["learning_rate"] = 5e-5 * (1 - s / total)
            elif lr == "warm":
                w = total * 0.06
                row["learning_rate"] = 5e-5 * (s / w if s < w else 1 - (s - w) / (total - w))
            if kind == "hf":
                row["grad_norm"] = abs(rng.lognormvariate(0.5, 0.35))
            if j % every == 0:
                v = curve(
                    s,
                    total,
                    start=start * 1.02,
                    floor=min(floor * 1.3 + 0.02 * start, start * 0.95),
                    speed=speed,
                )
                row[VAL[kind]] = max(1e-4, v * (1 + rng.gauss(0, vnoise)))
                if acc:
                    row[ACC[kind]] = min(
                        1.0,
                        0.5 + 0.45 * (1 - math.exp(-speed * s / total)) + rng.gauss(0, vnoise / 4),
                    )
            yield (s if kind != "keras" else j - 1), row

    return gen


def overfitting(kind, n_logs, evals, noise, vnoise, start, rise, turn):
    def gen(rng):
        total = n_logs * 10
        every = max(1, n_logs // evals)
        for j in range(1, n_logs + 1):
            s = j * 10
            f = s / total
            row = {
                TRAIN[kind]: curve(s, total, start=start, floor=start * 0.05, speed=4)
                * (1 + rng.gauss(0, noise))
            }
            if j % every == 0:
                base = start * (0.4 + 0.6 * math.exp(-4 * min(f, turn) / turn))
                row[VAL[kind]] = (
                    base * (1 + rise * max(0.0, f - turn) / (1 - turn)) * (1 + rng.gauss(0, vnoise))
                )
            yield (s if kind != "keras" else j - 1), row

    return gen


def healthy_params(
    rng: random.Random, noise: float | None = None, vnoise: float | None = None
) -> tuple:
    """The arguments of `healthy` for one run, drawn from the shapes training takes (the
    train and validation noise too, unless given)."""
    kind = rng.choice(KINDS)
    n_logs = rng.choice([30, 100, 300, 1000] if kind != "keras" else [10, 20, 50, 100])
    evals = n_logs if kind == "keras" else min(n_logs, rng.choice([3, 5, 10, 20, 50]))
    start = rng.choice([0.05, 0.7, 1.1, 2.3, 4.6])
    return (
        kind,
        n_logs,
        evals,
        rng.choice([0.005, 0.02, 0.05, 0.1]) if noise is None else noise,
        rng.choice([0.002, 0.01, 0.03]) if vnoise is None else vnoise,
        start,
        start * rng.choice([0.02, 0.1, 0.3, 0.6]),
        rng.choice([1.5, 3, 6, 12]),
        rng.random() < 0.6,
        rng.choice(["none", "linear", "warm"]) if kind == "hf" else "none",
    )


def overfitting_params(
    rng: random.Random, noise: float | None = None, vnoise: float | None = None
) -> tuple:
    """The arguments of `overfitting` for one run: a validation loss that turns up by 20-60%
    (the noise drawn too, unless given)."""
    kind = rng.choice(KINDS)
    n_logs = rng.choice([100, 300, 1000] if kind != "keras" else [20, 30, 50, 100])
    evals = n_logs if kind == "keras" else min(n_logs, rng.choice([10, 20, 50]))
    return (
        kind,
        n_logs,
        evals,
        rng.choice([0.01, 0.05, 0.1]) if noise is None else noise,
        rng.choice([0.005, 0.02, 0.04]) if vnoise is None else vnoise,
        rng.choice([0.7, 2.3]),
        rng.choice([0.2, 0.35, 0.6]),
        rng.choice([0.3, 0.5]),
    )


def warnings_of(tmp_path, name, gen, kind, seed) -> set[str]:
    write(tmp_path / name, gen, kind, seed)
    e = loaded(tmp_path / name)
    e.verdict()
    return {
        a.detector
        for k in e.store.runs
        for a in e.store.alerts_for(k)
        if a.severity is not Severity.INFO
    }


@pytest.mark.parametrize("batch", range(4))
def test_healthy_sweep_raises_no_warning(tmp_path, batch):
    rng = random.Random(100 + batch)
    noisy = {}
    for i in range(25):
        params = healthy_params(rng)
        kind = params[0]
        got = warnings_of(tmp_path, f"run{i}", healthy(*params), kind, rng.randrange(1000))
        if got:
            noisy[params] = got
    assert noisy == {}


def test_overfitting_sweep_is_called(tmp_path):
    rng = random.Random(7)
    missed = []
    for i in range(40):
        params = overfitting_params(rng)
        if "overfitting" not in warnings_of(
            tmp_path, f"run{i}", overfitting(*params), params[0], rng.randrange(1000)
        ):
            missed.append(params)
    # a 20% rise spread over the last 5 of 10 noisy evals is within reach of the noise: allowed
    assert len(missed) <= 2, missed

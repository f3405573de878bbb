"""Simulated training runs shaped like real ones, healthy (with the usual traps) and failing,
written through real writers. Healthy runs must raise no warning; failing runs their alert."""

from __future__ import annotations

import json
import math
import os
import random

import pytest
from tests.unit.helpers import loaded

from watchrun.demo import CsvWriter, TensorBoardWriter, TrainerStateWriter
from watchrun.model import Severity

OLD = 1.6e9  # file times: the run ended long ago


def finish(path):
    for root, _, files in os.walk(path):
        for f in files:
            os.utime(os.path.join(root, f), (OLD, OLD))


def alarms(path) -> dict[str, set[str]]:
    e = loaded(path)
    e.verdict()
    return {
        k: {a.detector for a in e.store.alerts_for(k) if a.severity is not Severity.INFO}
        for k in e.visible_keys()
    }


def lightning(path, rows, columns):
    w = CsvWriter(str(path / "lightning_logs" / "version_0" / "metrics.csv"), columns)
    for step, row in rows:
        w.write(step, row)
    w.close()


def hf(path, rows, max_steps, eval_steps):
    w = TrainerStateWriter(str(path), max_steps, eval_steps)
    for step, row in rows:
        w.write(step, row)
    w.close()


def curve(s, total, start=2.3, floor=0.2, speed=5.0):
    return floor + (start - floor) * math.exp(-speed * s / total)


# -- healthy, with traps --------------------------------------------------------------------------
def slow_start(rng):
    for s in range(10, 3001, 10):
        t = max(0, s - 500)
        row = {
            "loss": curve(t, 2500) + rng.gauss(0, 0.02),
            "learning_rate": 5e-5 * min(1, s / 500),
            "grad_norm": abs(rng.lognormvariate(0.5, 0.4)),
        }
        if s % 300 == 0:
            row |= {
                "eval_loss": curve(t, 2500, floor=0.3) + rng.gauss(0, 0.01),
                "eval_accuracy": 0.5 + 0.4 * (1 - math.exp(-5 * t / 2500)),
            }
        yield s, row


def warmup_bump(rng):
    for s in range(10, 2001, 10):
        bump = 0.6 * math.exp(-(((s - 150) / 60) ** 2))
        row = {
            "loss": curve(s, 2000) + bump + rng.gauss(0, 0.03),
            "learning_rate": 3e-4 * min(1, s / 200),
            "grad_norm": abs(rng.lognormvariate(0.3, 0.3)) * (1 + 5 * bump),
        }
        if s % 200 == 0:
            row |= {
                "eval_loss": curve(s, 2000, floor=0.35) + rng.gauss(0, 0.01),
                "eval_f1": 0.6 + 0.3 * (1 - math.exp(-5 * s / 2000)),
            }
        yield s, row


def fp16_grad_nans(rng):
    for s in range(10, 1501, 10):
        g = abs(rng.lognormvariate(0.2, 0.3))
        if s in (20, 40, 700):
            g = float("nan") if s != 40 else float("inf")
        row = {"loss": curve(s, 1500) + rng.gauss(0, 0.02), "grad_norm": g, "learning_rate": 2e-5}
        if s % 150 == 0:
            row["eval_loss"] = curve(s, 1500, floor=0.3) + rng.gauss(0, 0.01)
        yield s, row


def converged_small_val(rng):
    """Fast convergence, then a long flat tail; accuracy on a 20-sample val set repeats."""
    for e in range(40):
        yield (
            e * 100 + 99,
            {
                "train_loss": curve(e, 8, start=1.2, floor=0.05) + rng.gauss(0, 0.003),
                "val_loss": curve(e, 8, start=1.2, floor=0.12) + rng.gauss(0, 0.004),
                "val_acc": min(19, 10 + e) / 20,
            },
        )


def tiny_mse_regression(rng):
    for e in range(30):
        yield (
            e * 50 + 49,
            {
                "train_loss": 1e-3 * curve(e, 10, start=5, floor=0.05) + abs(rng.gauss(0, 1e-6)),
                "val_loss": 1e-3 * curve(e, 10, start=5, floor=0.08) + abs(rng.gauss(0, 2e-6)),
            },
        )


def noisy_keras(rng):
    for e in range(40):
        yield (
            e,
            {
                "loss": curve(e, 40, start=1.5, floor=0.3) + rng.gauss(0, 0.01),
                "accuracy": 0.95 - 0.5 * math.exp(-e / 8),
                "val_loss": curve(e, 40, start=1.5, floor=0.4) + rng.gauss(0, 0.03),
                "val_accuracy": 0.9 - 0.45 * math.exp(-e / 8) + rng.gauss(0, 0.01),
            },
        )


def noisy_batch_losses(rng):
    """Per-batch train loss with a small batch: the noise (0.3) is larger than the whole
    improvement (0.9 -> 0.6), yet the medians fall clearly: the model learns."""
    for s in range(10, 15001, 10):
        row = {
            "train_loss_step": max(
                0.01, curve(s, 15000, start=0.9, floor=0.6, speed=3) + rng.gauss(0, 0.3)
            )
        }
        if s % 1500 == 0:
            row |= {
                "val_loss": curve(s, 15000, start=0.85, floor=0.62, speed=3) + rng.gauss(0, 0.005),
                "val_acc": 0.6 + 0.2 * (1 - math.exp(-3 * s / 15000)),
            }
        yield s, row


def cosine_schedule(rng):
    """Linear warm-up for 100 steps, cosine decay to zero: the schedule is right."""
    for s in range(10, 2001, 10):
        lr = 1e-4 * s / 100 if s <= 100 else 1e-4 * 0.5 * (1 + math.cos(math.pi * (s - 100) / 1900))
        row = {
            "loss": curve(s, 2000) + rng.gauss(0, 0.02),
            "learning_rate": lr,
            "grad_norm": abs(rng.lognormvariate(0.0, 0.3)),
        }
        if s % 200 == 0:
            row |= {
                "eval_loss": curve(s, 2000, floor=0.3) + rng.gauss(0, 0.01),
                "eval_accuracy": 0.9 - 0.3 * math.exp(-5 * s / 2000),
            }
        yield s, row


def three_epoch_finetune(rng):
    """A pretrained model fine-tuned for 3 epochs, evaluated per epoch: the eval loss ticks up at
    the last epoch while accuracy still improves (over-confidence, not overfitting)."""
    for s in range(10, 1501, 10):
        row = {
            "loss": curve(s, 1500, start=0.7, floor=0.15, speed=3) + rng.gauss(0, 0.03),
            "learning_rate": 2e-5 * (1 - s / 1500),
            "grad_norm": abs(rng.lognormvariate(1.0, 0.3)),
        }
        if s % 500 == 0:
            row |= {
                "eval_loss": {500: 0.31, 1000: 0.28, 1500: 0.30}[s],
                "eval_accuracy": {500: 0.88, 1000: 0.90, 1500: 0.905}[s],
            }
        yield s, row


HEALTHY = {
    "noisy_batch_losses": (noisy_batch_losses, "lightning"),
    "cosine_schedule": (cosine_schedule, "hf"),
    "three_epoch_finetune": (three_epoch_finetune, "hf"),
    "slow_start": (slow_start, "hf"),
    "warmup_bump": (warmup_bump, "hf"),
    "fp16_grad_nans": (fp16_grad_nans, "hf"),
    "converged_small_val": (converged_small_val, "lightning"),
    "tiny_mse_regression": (tiny_mse_regression, "lightning"),
    "noisy_keras": (noisy_keras, "keras"),
}


def write(path, gen, kind, seed=0):
    rows = list(gen(random.Random(seed)))
    if kind == "hf":
        hf(
            path,
            rows,
            max_steps=rows[-1][0],
            eval_steps=max(s for s, r in rows if any(k.startswith("eval") for k in r)) // 10,
        )
    elif kind == "lightning":
        cols = sorted({k for _, r in rows for k in r})
        lightning(path, rows, cols)
    else:
        cols = sorted({k for _, r in rows for k in r})
        w = CsvWriter(str(path / "training_log.csv"), cols, step_col="epoch", crlf=True)
        for s, r in rows:
            w.write(s, r)
        w.close()


@pytest.mark.parametrize("name", sorted(HEALTHY))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_healthy_runs_raise_no_warning(tmp_path, name, seed):
    gen, kind = HEALTHY[name]
    write(tmp_path / name, gen, kind, seed)
    got = alarms(tmp_path)
    assert all(not v for v in got.values()), got


def test_resumed_hf_run_is_one_run_with_a_restart_and_no_warning(tmp_path):
    out = tmp_path / "out"
    rng = random.Random(0)
    first = TensorBoardWriter(str(out / "runs" / "Nov23_10-00-00_gpu01"))
    for s in range(10, 1241, 10):
        first.write(
            s,
            {"train/loss": curve(s, 3000) + rng.gauss(0, 0.02)}
            | ({"eval/loss": curve(s, 3000, floor=0.3)} if s % 200 == 0 else {}),
        )
    first.close()
    second = TensorBoardWriter(str(out / "runs" / "Nov23_12-00-00_gpu01"))
    for s in range(1010, 3001, 10):  # resumed from checkpoint-1000
        second.write(
            s,
            {"train/loss": curve(s, 3000) + rng.gauss(0, 0.02)}
            | ({"eval/loss": curve(s, 3000, floor=0.3)} if s % 200 == 0 else {}),
        )
    second.close()
    finish(tmp_path)
    e = loaded(tmp_path)
    e.detect(final=False)
    e.detect(final=True)
    assert e.visible_keys() == ["out"]
    alerts = e.store.alerts_for("out")
    assert [a.detector for a in alerts if a.severity is not Severity.INFO] == []
    assert [a.step for a in alerts if a.detector == "restarted"] == [1010]


# -- failing --------------------------------------------------------------------------------------
def test_sparse_eval_one_evaluation_in_588_steps(tmp_path):
    rows = [(s, {"loss": 0.3 - s / 5000}) for s in range(100, 501, 100)] + [
        (500, {"eval_loss": 0.2225, "eval_f1": 0.85})
    ]
    rows.append((588, {"loss": 0.25}))
    hf(tmp_path / "run1", rows, max_steps=588, eval_steps=500)
    got = loaded(tmp_path)
    got.detect(final=False)
    alerts = got.detect(final=True)
    sparse = [a for a in got.store.alerts_for("run1") if a.detector == "sparse_eval"]
    assert sparse and sparse[0].step == 500 and "eval_steps to ~58" in sparse[0].action
    assert alerts is not None


def test_accuracy_pinned_at_majority_share_is_a_collapse(tmp_path):
    rows = [
        (
            e,
            {
                "train_loss": 0.7 - 0.01 * e,
                "val_loss": 0.69 - 0.005 * e,
                "val_acc": 0.8461538,
                "val_f1": 0.0,
            },
        )
        for e in range(6)
    ]
    lightning(tmp_path / "clf", rows, ["train_loss", "val_loss", "val_acc", "val_f1"])
    got = alarms(tmp_path)
    assert "prediction_collapse" in got["clf/lightning_logs/version_0"]


def test_perfect_validation_on_a_tiny_set(tmp_path):
    rows = [
        (1, {"train_loss": 0.25, "val_loss": 0.46, "val_acc": 0.846}),
        (2, {"train_loss": 0.13, "val_loss": 0.0002, "val_acc": 1.0}),
        (3, {"train_loss": 0.04, "val_loss": 0.0003, "val_acc": 1.0}),
        (4, {"train_loss": 0.03, "val_loss": 0.0, "val_acc": 1.0}),
    ]
    lightning(tmp_path / "leak", rows, ["train_loss", "val_loss", "val_acc"])
    e = loaded(tmp_path)
    e.detect(final=False)
    e.detect(final=True)
    perfect = [
        a
        for a in e.store.alerts_for("leak/lightning_logs/version_0")
        if a.detector == "perfect_validation"
    ]
    assert perfect and perfect[0].step <= 3


def test_blank_ratio_critical(tmp_path):
    rows = [
        (
            e,
            {
                "train_loss": 2.5 - 0.02 * e,
                "val_loss": 2.5 - 0.01 * e,
                "val_wer": 1.0,
                "blank_ratio": 1.0,
            },
        )
        for e in range(5)
    ]
    lightning(tmp_path / "ctc", rows, ["train_loss", "val_loss", "val_wer", "blank_ratio"])
    e = loaded(tmp_path)
    e.detect(final=True)
    crit = [
        a
        for a in e.store.alerts_for("ctc/lightning_logs/version_0")
        if a.severity is Severity.CRITICAL
    ]
    assert (
        crit
        and "blank tokens at 100% of timesteps" in crit[0].message
        and "stop training" in crit[0].message
    )


def test_wer_in_percent_pinned_at_100_and_a_wer_fraction_above_1(tmp_path):
    """HF's speech recipes log `100 * wer`: pinned at 100.0 it is the seed's "WER 1.0". A WER
    fraction can start above 1 (insertions) and fall: read as a fraction, nothing to call."""
    pinned = [
        (
            e,
            {
                "train_loss": 2.5 - 0.02 * e,
                "val_loss": 2.5 - 0.01 * e,
                "val_wer": 100.0,
                "val_cer": 93.0,
            },
        )
        for e in range(6)
    ]
    lightning(tmp_path / "pct", pinned, ["train_loss", "val_loss", "val_wer", "val_cer"])
    falling = [
        (
            e,
            {
                "train_loss": 2.5 * 0.8**e,
                "val_loss": 2.6 * 0.8**e,
                "val_wer": 2.4 * 0.7**e,
                "val_cer": 1.8 * 0.7**e,
            },
        )
        for e in range(8)
    ]
    lightning(tmp_path / "frac", falling, ["train_loss", "val_loss", "val_wer", "val_cer"])
    got = alarms(tmp_path)
    assert got == {
        "pct/lightning_logs/version_0": {"blank_collapse"},
        "frac/lightning_logs/version_0": set(),
    }, got


def test_prediction_diversity_metrics(tmp_path):
    path = tmp_path / "div" / "watchrun.jsonl"
    path.parent.mkdir()
    rows = [
        {
            "step": e,
            "val/top_class_share": 0.3 if e < 3 else 1.0,
            "val/unique_predictions": 40 if e < 3 else 1,
            "val/loss": 1.0,
        }
        for e in range(6)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    e = loaded(tmp_path)
    e.detect(final=True)
    col = [a for a in e.store.alerts_for("div") if a.detector == "prediction_collapse"]
    assert col and col[0].severity is Severity.CRITICAL and col[0].step == 4


def test_divergence_amid_per_batch_noise_fires_before_the_nan(tmp_path):
    """Noisy per-batch losses (the trap above), then the learning rate is raised at step 6000:
    the loss climbs to 40x and turns NaN at 6500. Divergence fires in between."""
    rng = random.Random(3)
    rows = []
    for s in range(10, 6501, 10):
        level = curve(s, 6000, start=0.9, floor=0.6, speed=3)
        if s > 6000:
            level *= math.exp((s - 6000) / 130)
        loss = float("nan") if s == 6500 else max(0.01, level + rng.gauss(0, 0.3))
        rows.append((s, {"train_loss_step": loss}))
    lightning(tmp_path / "lr-bump", rows, ["train_loss_step"])
    e = loaded(tmp_path)
    e.verdict()
    alerts = {a.detector: a for a in e.store.alerts_for("lr-bump/lightning_logs/version_0")}
    assert set(alerts) >= {"divergence", "nan_loss"}
    assert 6000 < alerts["divergence"].step < alerts["nan_loss"].step == 6500


def test_binary_model_collapsing_back_to_ln2_is_at_chance(tmp_path):
    """A binary classifier learns (loss 0.69 -> 0.35), a spike sends it back to predicting 0.5
    for everything: the loss sits at ln 2 with batch noise of 0.01."""
    rng = random.Random(5)
    rows = []
    for s in range(10, 4001, 10):
        level = curve(s, 1500, start=0.69, floor=0.35) if s < 1500 else math.log(2)
        rows.append(
            (
                s,
                {"loss": level + rng.gauss(0, 0.01)}
                | ({"eval_loss": level + 0.02} if s % 500 == 0 else {}),
            )
        )
    hf(tmp_path / "collapse", rows, max_steps=4000, eval_steps=500)
    got = alarms(tmp_path)
    assert "loss_at_chance" in got["collapse"]


def _tutorial_run(logdir, test_loss_at, epochs=20, final_test_only=False):
    """A hand-written PyTorch loop as the tutorials write it: torch's SummaryWriter, `Loss/train`
    every 10 batches, `Loss/test` and `Accuracy/test` after every epoch (or once at the end)."""
    from torch.utils.tensorboard import SummaryWriter

    rng = random.Random(7)
    w = SummaryWriter(str(logdir))
    for epoch in range(epochs):
        for b in range(0, 100, 10):
            step = epoch * 100 + b
            w.add_scalar(
                "Loss/train",
                curve(step, epochs * 100, start=2.3, floor=0.05) + rng.gauss(0, 0.01),
                step,
            )
        if not final_test_only or epoch == epochs - 1:
            w.add_scalar("Loss/test", test_loss_at(epoch), epoch * 100 + 99)
            w.add_scalar("Accuracy/test", 0.9 - 0.3 * math.exp(-epoch / 3), epoch * 100 + 99)
    w.close()


def test_tutorial_loop_test_split_plays_validation(tmp_path):
    """No metric says `val`: the per-epoch `Loss/test` is the validation curve, and its U-turn
    while `Loss/train` falls is overfitting."""
    _tutorial_run(
        tmp_path / "overfit", lambda e: 0.3 + 0.02 * (e - 6) ** 2 / 6 + 0.4 * math.exp(-e / 2)
    )
    _tutorial_run(tmp_path / "healthy", lambda e: 0.3 + 0.5 * math.exp(-e / 3))
    _tutorial_run(tmp_path / "final-test", lambda e: 0.31, final_test_only=True)
    got = alarms(tmp_path)
    assert got["overfit"] == {"overfitting"}
    assert got["healthy"] == set()
    assert got["final-test"] == set()  # one test after training is not a sparse evaluation


def test_bouncing_validation_loss_is_unstable_a_steady_climb_is_not(tmp_path):
    """Adam at a learning rate 10,000x too high (measured on a real Lightning run): the loss
    blows up in the first steps, then the validation loss bounces 0.7 -> 1.7 -> 4.8 -> 1.5 ...
    That is called as unstable (divergence, critical) at the first steep fall between jumps.
    A validation loss that doubles at every epoch without falling back is overfitting's call."""
    bounce = [0.708, 1.688, 4.758, 1.547, 2.207, 3.794, 0.72, 4.582, 1.799, 1.796]
    rows = [
        (e * 63 + 62, {"train_loss_step": 3.0 + (e % 3), "val_loss": v})
        for e, v in enumerate(bounce)
    ]
    lightning(tmp_path / "bounce", rows, ["train_loss_step", "val_loss"])
    climb = [0.010, 0.026, 0.056, 0.108, 0.2]
    rows = [(e * 10 + 9, {"train_loss": 0.5 / (e + 1), "val_loss": v}) for e, v in enumerate(climb)]
    lightning(tmp_path / "climb", rows, ["train_loss", "val_loss"])
    e = loaded(tmp_path)
    e.verdict()
    bounce_alerts = [
        a
        for a in e.store.alerts_for("bounce/lightning_logs/version_0")
        if a.detector == "divergence"
    ]
    assert (
        bounce_alerts
        and bounce_alerts[0].step == 3 * 63 + 62
        and bounce_alerts[0].severity is Severity.CRITICAL
    )
    assert "unstable" in bounce_alerts[0].message and "2.4x, 2.8x" in bounce_alerts[0].message
    assert "divergence" not in {
        a.detector for a in e.store.alerts_for("climb/lightning_logs/version_0")
    }


def test_smooth_loss_logged_every_step_is_not_stuck_nor_at_chance_and_its_last_nan_alerts(tmp_path):
    """FAULTS L1's NaN at the last point, on a loss logged at every one of 300k steps (a
    smoothed loss, as a tqdm postfix or an EMA gives): it passes slowly through 0.25 and ln 2
    and flattens, which is neither a loss at chance nor a stuck metric."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tests.unit.helpers import scalar_event

    run = tmp_path / "dense"
    run.mkdir()
    n = 300_000
    writer = EventFileWriter(str(run))  # the file version record, as every writer starts
    writer.close()
    path = next(run.iterdir())
    with open(path, "ab") as fh:
        fh.write(
            b"".join(
                scalar_event(i, "train/loss", 1.0 / (1 + i / 1000) if i < n - 1 else float("nan"))
                for i in range(n)
            )
        )
    e = loaded(tmp_path)
    e.verdict()
    alerts = [(a.detector, a.step) for a in e.store.alerts_for("dense")]
    assert alerts == [("nan_loss", n - 1)], alerts

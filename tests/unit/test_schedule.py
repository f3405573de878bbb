"""The schedule is read from the writer's own record: the planned length, the early-stopping
rule, the learning-rate schedule. Silent where the record says nothing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tests.conftest import REALLOGS

from watchrun.engine import Engine
from watchrun.integrations import RunLogger
from watchrun.model import Severity

REALLOGS2 = REALLOGS.parent / "reallogs2"


def verdict(path: Path) -> tuple[Engine, dict[str, list]]:
    e = Engine([str(path)], use_watchdog=False)
    e.check()
    return e, {k: e.store.alerts_for(k) for k in e.store.runs}


def of(alerts: list, detector: str) -> list:
    return [a for a in alerts if a.detector == detector]


# -- planned length ----------------------------------------------------------------------------

HF_DICTS = [
    f"{{'loss': {2.0 - 0.1 * i:.2f}, 'grad_norm': 1.5, 'learning_rate': {1e-5 * (i + 1):.1e}, "
    f"'epoch': {0.1 * (i + 1):.1f}}}"
    for i in range(12)
] + ["{'eval_loss': 1.2, 'eval_runtime': 3.1, 'epoch': 1.2}"]


def test_a_progress_bar_of_something_else_is_not_the_planned_length(tmp_path):
    """transformers prints `Loading checkpoint shards: 2/2` (and `Writing model shards: 1/1`):
    a bar's total is no plan. Before, the run read as 2 steps planned and the warm-up that is
    normal at step 2 of thousands was `still rising at 100% of the planned 2 steps`."""
    log = tmp_path / "train.log"
    log.write_text(
        "Loading checkpoint shards: 100%|##########| 2/2 [00:03<00:00,  1.52s/it]\n"
        + "\n".join(HF_DICTS)
        + "\nWriting model shards: 100%|##########| 1/1 [00:00<00:00,  3.21it/s]\n"
    )
    e, alerts = verdict(tmp_path)
    run = e.store.runs["train.log"]
    assert "max_steps" not in run.meta
    assert not of(alerts["train.log"], "lr_schedule")
    assert not [a for a in of(alerts["train.log"], "sparse_eval") if "planned" in a.message]


def test_the_hf_header_gives_the_planned_length(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "***** Running training *****\n  Num examples = 28043\n  Num Epochs = 10\n"
        "  Total optimization steps = 8,760\n" + "\n".join(HF_DICTS) + "\n"
    )
    e, _ = verdict(tmp_path)
    assert e.store.runs["train.log"].meta["max_steps"] == 8760
    assert e.store.runs["train.log"].meta["num_train_epochs"] == 10


# -- early stopping -----------------------------------------------------------------------------


def test_console_early_stopping_is_placed_where_it_shows_not_at_step_0(tmp_path):
    """Lightning's EarlyStopping line names no step: the stop shows at the run's last step.
    Keras' `Epoch 7: early stopping` is its 0-based epoch 6."""
    pl = tmp_path / "pl" / "version_0"
    pl.mkdir(parents=True)
    (pl / "train.log").write_text(
        "Monitored metric val_loss did not improve in the last 3 records. Best score: 0.412. "
        "Signaling Trainer to stop.\n"
    )
    rows = ["epoch,step,train_loss,val_loss"] + [
        f"{ep},{(ep + 1) * 50 - 1},{1.0 / (ep + 1):.3f},{[0.6, 0.5, 0.412, 0.45, 0.47, 0.5][ep]}"
        for ep in range(6)
    ]
    (pl / "metrics.csv").write_text("\n".join(rows) + "\n")
    keras = tmp_path / "keras"
    keras.mkdir()
    lines = []
    for ep in range(7):
        lines += [
            f"Epoch {ep + 1}/50",
            f"10/10 - 1s - loss: {1 / (ep + 1):.4f} - val_loss: {0.5 + 0.01 * abs(ep - 3):.4f}",
        ]
    (keras / "fit.log").write_text("\n".join(lines + ["Epoch 7: early stopping"]) + "\n")
    _, alerts = verdict(tmp_path)
    [pl_stop] = of(alerts["pl/version_0"], "early_stopped")
    assert pl_stop.step == 299 and pl_stop.severity is Severity.INFO
    assert "best val_loss 0.412 at step 149" in pl_stop.message
    [keras_stop] = of(alerts["keras/fit.log"], "early_stopped")
    assert keras_stop.step == 6


@pytest.fixture
def yolo():
    if not REALLOGS2.is_dir():
        pytest.skip(f"labelled real runs not present at {REALLOGS2}")
    return REALLOGS2


def test_ultralytics_early_stopping_from_args_yaml_patience(yolo):
    """args.yaml: epochs 50, patience 10; results.csv ends at epoch 31, its best fitness
    (0.1 mAP50 + 0.9 mAP50-95) at 21: Ultralytics' EarlyStopping, best.pt from epoch 21."""
    _, alerts = verdict(yolo / "yolo-dog-emotion-earlystop")
    [stop] = of(alerts["runs/detect/train/results.csv"], "early_stopped")
    assert stop.step == 31 and stop.severity is Severity.INFO
    assert "patience 10" in stop.message and "epoch 31 of 50" in stop.message
    assert (
        stop.evidence["best_step"] == 21 and stop.evidence["best_checkpoint"] == "weights/best.pt"
    )


def test_ultralytics_run_cut_short_and_run_completed(yolo):
    _, cut = verdict(yolo / "yolo-crack-aborted-18of100")
    [stop] = of(cut["runs/detect/train-6/results.csv"], "early_stopped")
    assert "epoch 18 of 100" in stop.message and "interrupted or crashed" in stop.message
    _, done = verdict(yolo / "yolo-anemia-no-boxes-collapse")  # 50 of 50 epochs
    assert not of(done["runs/detect/train/results.csv"], "early_stopped")


def test_equal_fitness_keeps_the_first_best_epoch(yolo):
    """Ultralytics moves its best only on a strictly better fitness: a saturated run (0.995 at
    epoch 374 and again later) stopped at 374 + patience 100."""
    _, alerts = verdict(yolo / "yolo-cigarette-earlystop-saturated")
    [stop] = of(alerts["runs/detect/train/results.csv"], "early_stopped")
    assert stop.evidence["best_step"] == 374 and "patience 100" in stop.message


def test_hf_one_step_short_of_max_steps_is_not_an_early_stop(yolo):
    _, alerts = verdict(yolo / "hf-covbert-mlm-healthy")  # global_step 5000 of max_steps 5001
    assert not [a for v in alerts.values() for a in of(v, "early_stopped")]


# -- learning-rate schedule ----------------------------------------------------------------------


def _log_schedule(run_dir: Path, sched_factory, steps: int, loss) -> None:
    """A real torch optimizer and scheduler; watchrun's RunLogger records the planned length."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = sched_factory(opt)
    log = RunLogger(str(run_dir), max_steps=steps)
    for step in range(steps):
        log.log(step, {"loss": loss(step), "learning_rate": opt.param_groups[0]["lr"]})
        opt.step()
        sched.step()


def test_cosine_period_half_the_run_climbs_back(tmp_path):
    _log_schedule(
        tmp_path / "cos",
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=100),
        200,
        lambda s: 2.0 * math.exp(-s / 60) + 0.1,
    )
    _, alerts = verdict(tmp_path)
    [climb] = of(alerts["cos"], "lr_schedule")
    assert climb.severity is Severity.WARNING and 100 < climb.step <= 106
    assert "period is shorter than the run" in climb.message


def test_warmup_then_step_decay_is_a_schedule_not_a_mistake(tmp_path):
    def warm_step(o):
        warm = torch.optim.lr_scheduler.LinearLR(o, start_factor=0.01, total_iters=50)
        steps = torch.optim.lr_scheduler.MultiStepLR(o, milestones=[100, 200], gamma=0.1)
        return torch.optim.lr_scheduler.SequentialLR(o, [warm, steps], milestones=[50])

    _log_schedule(tmp_path / "ws", warm_step, 300, lambda s: 2.0 * math.exp(-s / 80) + 0.1)
    _, alerts = verdict(tmp_path)
    assert not of(alerts["ws"], "lr_schedule")


def test_warmup_longer_than_the_run_is_info_while_the_loss_falls_warning_when_flat(tmp_path):
    def long_warmup(o):
        return torch.optim.lr_scheduler.LinearLR(o, start_factor=0.01, total_iters=500)

    _log_schedule(tmp_path / "falls", long_warmup, 400, lambda s: 2.0 * math.exp(-s / 100) + 0.1)
    _log_schedule(
        tmp_path / "flat",
        long_warmup,
        400,
        lambda s: 1.6 + 0.01 * math.sin(s) if s < 150 else 1.6 * math.exp(-(s - 150) / 60),
    )
    _, alerts = verdict(tmp_path)
    [falls] = of(alerts["falls"], "lr_schedule")
    assert falls.severity is Severity.INFO and falls.step == 200
    [flat] = of(alerts["flat"], "lr_schedule")
    assert flat.severity is Severity.WARNING and "did not move in the first quarter" in flat.message


def test_scheduler_reset_mid_run_is_info(tmp_path):
    """Resumed at step 150 with a fresh scheduler: the warm-up starts again."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    log = RunLogger(str(tmp_path / "reset"), max_steps=300)
    for phase in range(2):
        for g in opt.param_groups:
            g["lr"] = 0.1
        sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=40)
        for step in range(150 * phase, 150 * (phase + 1)):
            log.log(
                step,
                {
                    "loss": 2.0 * math.exp(-step / 100) + 0.1,
                    "learning_rate": opt.param_groups[0]["lr"],
                },
            )
            opt.step()
            sched.step()
    _, alerts = verdict(tmp_path)
    [reset] = of(alerts["reset"], "lr_schedule")
    assert reset.severity is Severity.INFO and 150 < reset.step < 160


# -- frozen metrics ------------------------------------------------------------------------------


def test_a_score_frozen_at_zero_is_called_even_when_training_has_converged(tmp_path):
    """A detector whose labels lost their boxes: the train loss converges (to predicting nothing)
    and precision sits at exactly 0 for the rest of the run. A flat score after convergence is
    usually no news; a flat score of 0 is."""
    rows = ["epoch,loss,val_loss,val_precision"]
    for ep in range(14):
        loss = 0.05 if ep >= 4 else 1.0 / (ep + 1)
        rows.append(
            f"{ep},{loss},{3.5 + 0.001 * ep},{[0.3, 0.2, 0.1, 0.05][ep] if ep < 4 else 0.0}"
        )
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    _, alerts = verdict(tmp_path)
    [stuck] = of(alerts["log.csv"], "stuck_metric")
    assert stuck.step == 8 and "no right answer" in stuck.message


def _keras_fit_log(path, losses, planned):
    path.mkdir(parents=True)
    lines = []
    for ep, loss in enumerate(losses):
        lines += [
            f"Epoch {ep + 1}/{planned}",
            f"10/10 - 1s - loss: {loss:.4f} - val_loss: {loss * 1.1:.4f}",
        ]
    (path / "fit.log").write_text("\n".join(lines) + "\n")


def test_a_run_cut_short_while_its_loss_still_falls_had_not_converged(tmp_path):
    """Keras says `Epoch N/100`; the log ends at epoch 18 with the loss falling steadily (with
    some scatter): cut off mid-descent, info. Cut as short after the loss had flattened: no."""
    falling = [2.0 - 0.04 * ep + 0.01 * (-1) ** ep for ep in range(18)]
    _keras_fit_log(tmp_path / "falling", falling, 100)
    flat = [0.5 + 1.5 * 0.5**ep + 0.002 * (-1) ** ep for ep in range(18)]
    _keras_fit_log(tmp_path / "flat", flat, 100)
    _, alerts = verdict(tmp_path)
    [under] = of(alerts["falling/fit.log"], "underfitting")
    assert under.severity is Severity.INFO and under.step == 17
    assert "stopped after epoch 18 of 100" in under.message
    assert not of(alerts["flat/fit.log"], "underfitting")

"""What each detector needs before it speaks, and the severity its evidence earns: runs written
through the project's writers (Keras CSVLogger, Lightning CSVLogger, HF trainer_state.json), each
a healthy trap next to the failure it resembles."""

from __future__ import annotations

import math
import random

from tests.unit.helpers import loaded
from tests.unit.test_scenarios import curve, finish, hf, lightning

from watchrun.demo import CsvWriter
from watchrun.model import Severity


def alerts_of(path, key):
    finish(path)
    e = loaded(path)
    e.verdict()
    return e.store.alerts_for(key)


def keras(path, rows, columns):
    w = CsvWriter(str(path / "training_log.csv"), columns, step_col="epoch", crlf=True)
    for epoch, row in rows:
        w.write(epoch, row)
    w.close()


def by_detector(alerts, detector):
    return [(a.severity, a.step) for a in alerts if a.detector == detector]


# -- nan_loss -------------------------------------------------------------------------------------
def _epochs(n, bad_train=(), bad_val=()):
    rows = []
    for e in range(n):
        row = {"loss": 2.0 * math.exp(-e / 5) + 0.1, "val_loss": 2.1 * math.exp(-e / 5) + 0.2}
        if e in bad_train:
            row["loss"] = math.inf
        if e in bad_val:
            row["val_loss"] = math.nan
        rows.append((e, row))
    return rows


def test_one_overflowed_epoch_mean_that_recovers_is_info(tmp_path):
    keras(tmp_path / "amp", _epochs(12, bad_train={5}), ["loss", "val_loss"])
    got = by_detector(alerts_of(tmp_path, "amp/training_log.csv"), "nan_loss")
    assert got == [(Severity.INFO, 5)]


def test_validation_loss_overflowing_while_training_is_finite_is_info(tmp_path):
    keras(tmp_path / "evalamp", _epochs(15, bad_val={4, 5, 6, 7}), ["loss", "val_loss"])
    got = by_detector(alerts_of(tmp_path, "evalamp/training_log.csv"), "nan_loss")
    assert got == [(Severity.INFO, 4)]


def test_train_and_validation_nan_at_the_same_epoch_is_critical_at_once(tmp_path):
    rows = _epochs(10, bad_train={9}, bad_val={9})
    keras(tmp_path / "dead", rows + [(10, {"loss": 0.3, "val_loss": 0.4})], ["loss", "val_loss"])
    got = by_detector(alerts_of(tmp_path, "dead/training_log.csv"), "nan_loss")
    assert got[0] == (Severity.CRITICAL, 9)


def test_train_loss_nan_two_logs_in_a_row_is_critical_at_the_first(tmp_path):
    keras(tmp_path / "stays", _epochs(10, bad_train={6, 7, 8, 9}), ["loss", "val_loss"])
    got = by_detector(alerts_of(tmp_path, "stays/training_log.csv"), "nan_loss")
    assert got == [(Severity.CRITICAL, 6)]


def test_validation_nan_that_never_recovers_warns_at_the_end(tmp_path):
    keras(tmp_path / "evaldead", _epochs(10, bad_val={7, 8, 9}), ["loss", "val_loss"])
    got = by_detector(alerts_of(tmp_path, "evaldead/training_log.csv"), "nan_loss")
    assert (Severity.WARNING, 7) in got and all(sev is not Severity.CRITICAL for sev, _ in got)


# -- prediction_collapse --------------------------------------------------------------------------
def _pinned_hf(path, warmup_steps):
    """A 5-class classifier whose eval accuracy sits at the majority share (0.4) for its first
    evals while the loss moves; the LR warms up over `warmup_steps`."""
    rows = []
    for s in range(10, 201, 10):
        lr = 5e-5 * min(1.0, s / warmup_steps)
        row = {"loss": 1.6 - 0.001 * s, "learning_rate": lr}
        if s % 20 == 0:
            row |= {"eval_loss": 1.56 - 0.0005 * s, "eval_accuracy": 0.4}
        rows.append((s, row))
    hf(path, rows, max_steps=200, eval_steps=20)


def test_majority_share_during_the_warm_up_is_not_a_collapse(tmp_path):
    _pinned_hf(tmp_path / "warm", warmup_steps=500)  # the LR rises for the whole run
    got = alerts_of(tmp_path, "warm")
    assert by_detector(got, "prediction_collapse") == []


def test_majority_share_at_a_steady_learning_rate_is_a_collapse(tmp_path):
    _pinned_hf(tmp_path / "flat", warmup_steps=1)
    got = by_detector(alerts_of(tmp_path, "flat"), "prediction_collapse")
    assert got == [(Severity.WARNING, 60)]  # the third eval at the same share


YOLO = [
    "train/box_loss",
    "train/cls_loss",
    "metrics/precision(B)",
    "metrics/recall(B)",
    "metrics/mAP50(B)",
    "metrics/mAP50-95(B)",
    "val/box_loss",
    "val/cls_loss",
    "lr/pg0",
]


def _yolo(path, metrics_at):
    rows = []
    for e in range(1, 31):
        p, r, m = metrics_at(e)
        rows.append(
            (
                e,
                {
                    "train/box_loss": 1.5 * math.exp(-e / 20) + 0.5,
                    "train/cls_loss": 3 * math.exp(-e / 10) + 0.5,
                    "metrics/precision(B)": p,
                    "metrics/recall(B)": r,
                    "metrics/mAP50(B)": m,
                    "metrics/mAP50-95(B)": m / 2,
                    "val/box_loss": 1.6 * math.exp(-e / 20) + 0.6,
                    "val/cls_loss": 3 * math.exp(-e / 10) + 0.7,
                    "lr/pg0": 1e-3 * min(1.0, e / 3) * (1 - e / 40),
                },
            )
        )
    keras(path, rows, YOLO)


def test_detector_that_stops_predicting_boxes_collapses_at_the_third_zero_eval(tmp_path):
    _yolo(tmp_path / "lost", lambda e: (0.2, 0.3, 0.05) if e < 15 else (0.0, 0.0, 0.0))
    got = by_detector(alerts_of(tmp_path, "lost/training_log.csv"), "prediction_collapse")
    assert got == [(Severity.WARNING, 17)]


def test_detector_at_zero_before_it_first_finds_objects_is_no_collapse(tmp_path):
    _yolo(tmp_path / "scratch", lambda e: (0.0, 0.0, 0.0) if e < 8 else (0.3, 0.4, 0.1 + e / 100))
    got = alerts_of(tmp_path, "scratch/training_log.csv")
    assert by_detector(got, "prediction_collapse") == by_detector(got, "not_learning") == []


# -- minority_class_hidden ------------------------------------------------------------------------
def test_a_huge_class_gap_at_the_first_eval_waits_for_the_next(tmp_path):
    """An imbalanced binary model predicts the majority class at its first eval (it has not
    learned yet): said only if the next eval still shows it."""
    rows = []
    for e in range(6):
        learned = e >= 1
        rows.append(
            (
                e,
                {
                    "train_loss": 0.6 - 0.05 * e,
                    "val_loss": 0.55 - 0.04 * e,
                    "val_acc": 0.92 if learned else 0.9,
                    "val_f1_class_0": 0.95,
                    "val_f1_class_1": 0.8 if learned else 0.0,
                },
            )
        )
    lightning(tmp_path / "learns", rows, sorted(rows[0][1]))
    assert (
        by_detector(alerts_of(tmp_path, "learns/lightning_logs/version_0"), "minority_class_hidden")
        == []
    )


def test_ner_entity_types_are_judged_against_the_entity_f1_not_the_token_accuracy(tmp_path):
    """seqeval's overall_accuracy counts the O tag: 0.9 while entities score 0.6; a rare type at
    F1 0 is not hidden by a headline that already says 0.6."""
    rng = random.Random(1)
    rows = []
    for s in range(100, 1001, 100):
        rows.append((s, {"loss": curve(s, 1000, start=1.0, floor=0.1)}))
        rows.append(
            (
                s,
                {
                    "eval_loss": curve(s, 1000, start=0.9, floor=0.3),
                    "eval_overall_accuracy": 0.88 + rng.random() / 100,
                    "eval_overall_f1": 0.55 + s / 10000,
                    "eval_T017_f1": 0.6 + s / 10000,
                    "eval_T022_f1": 0.0,
                    "eval_T038_f1": 0.7,
                },
            )
        )
    hf(tmp_path / "ner", rows, max_steps=1000, eval_steps=100)
    assert by_detector(alerts_of(tmp_path, "ner"), "minority_class_hidden") == []


# -- grad_spike -----------------------------------------------------------------------------------
def _spiky_hf(path, spikes):
    rng = random.Random(3)
    rows = []
    for s in range(10, 2001, 10):
        grad = 100.0 if s in spikes else abs(rng.lognormvariate(0, 0.3))
        rows.append(
            (
                s,
                {
                    "loss": curve(s, 2000) + rng.gauss(0, 0.01),
                    "grad_norm": grad,
                    "learning_rate": 5e-5,
                },
            )
        )
    hf(path, rows, max_steps=2000, eval_steps=500)


def test_one_gradient_spike_the_loss_shrugs_off_is_info(tmp_path):
    _spiky_hf(tmp_path / "once", {700})
    assert by_detector(alerts_of(tmp_path, "once"), "grad_spike") == [(Severity.INFO, 700)]


def test_gradient_spikes_that_recur_warn_at_the_second(tmp_path):
    _spiky_hf(tmp_path / "again", {700, 790, 1500})
    got = by_detector(alerts_of(tmp_path, "again"), "grad_spike")
    assert got == [(Severity.INFO, 700), (Severity.WARNING, 790)]


# -- blank_collapse -------------------------------------------------------------------------------
def _ctc(path, val_loss_at):
    rows = [
        (
            e,
            {
                "train_loss": val_loss_at(e) + 0.1,
                "val_loss": val_loss_at(e),
                "val_wer": 1.0,
                "val_cer": 0.99,
                "val_blank_ratio": 1.0,
            },
        )
        for e in range(8)
    ]
    lightning(path, rows, sorted(rows[0][1]))


def test_all_blank_while_the_loss_falls_is_the_usual_ctc_start(tmp_path):
    _ctc(tmp_path / "phase", lambda e: 6.0 * 0.85**e)
    got = alerts_of(tmp_path, "phase/lightning_logs/version_0")
    assert {a.severity for a in got if a.detector == "blank_collapse"} == {Severity.INFO}
    assert not [a for a in got if a.severity is not Severity.INFO]


def test_all_blank_once_the_loss_stopped_improving_is_critical(tmp_path):
    _ctc(tmp_path / "stuck", lambda e: 6.0 * 0.85**e if e < 3 else 6.0 * 0.85**3 + 0.001 * (e % 2))
    got = by_detector(alerts_of(tmp_path, "stuck/lightning_logs/version_0"), "blank_collapse")
    # flat from epoch 3: no new low in the three evals after it, so at epoch 6
    assert (Severity.CRITICAL, 6) in got and all(
        sev is Severity.INFO for sev, step in got if step < 6
    )


# -- overfitting in short runs --------------------------------------------------------------------
def _short(path, val):
    rows = [
        (e, {"loss": 0.6 * 0.85**e, "val_loss": v, "accuracy": 0.7 + 0.03 * e})
        for e, v in enumerate(val)
    ]
    keras(path, rows, ["accuracy", "loss", "val_loss"])


def test_a_seven_epoch_run_whose_val_loss_rises_three_times_overfits(tmp_path):
    _short(tmp_path / "short", [0.56, 0.52, 0.49, 0.46, 0.47, 0.50, 0.53])
    got = by_detector(alerts_of(tmp_path, "short/training_log.csv"), "overfitting")
    assert got == [(Severity.WARNING, 6)]


def test_a_plateau_then_one_spike_is_no_short_run_overfitting(tmp_path):
    """The val loss settles (+2%, +0.1% above its lowest eval), then one eval jumps 14% and the
    next comes back: three rises in a row, but one of them is the whole rise: a spike."""
    _short(tmp_path / "spike", [0.81, 0.61, 0.55, 0.51, 0.479, 0.4888, 0.4895, 0.5601, 0.5006])
    assert by_detector(alerts_of(tmp_path, "spike/training_log.csv"), "overfitting") == []


def test_a_short_run_whose_val_loss_bumps_twice_and_comes_back_is_healthy(tmp_path):
    _short(tmp_path / "bump", [0.21, 0.17, 0.163, 0.16, 0.168, 0.179, 0.157, 0.155])
    assert by_detector(alerts_of(tmp_path, "bump/training_log.csv"), "overfitting") == []


# -- perfect_validation ---------------------------------------------------------------------------
def test_detector_at_the_map_ceiling_with_every_object_found_is_perfect_validation(tmp_path):
    _yolo(
        tmp_path / "saturated",
        lambda e: (0.99, 1.0, 0.995) if e >= 20 else (0.8, 0.8, 0.7 + e / 100),
    )
    got = by_detector(alerts_of(tmp_path, "saturated/training_log.csv"), "perfect_validation")
    assert got == [(Severity.WARNING, 21)]


def test_high_map_with_objects_missed_is_not_perfect(tmp_path):
    _yolo(tmp_path / "good", lambda e: (0.99, 0.9, 0.995) if e >= 20 else (0.8, 0.8, 0.7 + e / 100))
    assert by_detector(alerts_of(tmp_path, "good/training_log.csv"), "perfect_validation") == []


# -- not_learning from the task metric ------------------------------------------------------------
def test_detector_that_never_finds_an_object_is_not_learning_at_the_end(tmp_path):
    _yolo(tmp_path / "blind", lambda e: (0.0, 0.0, 0.0))
    got = alerts_of(tmp_path, "blind/training_log.csv")
    assert by_detector(got, "not_learning") == [(Severity.WARNING, 30)]
    assert by_detector(got, "prediction_collapse") == []  # nothing was found, so nothing was lost


def test_success_rate_that_rises_a_little_is_learning(tmp_path):
    rows = [
        (e, {"train_loss": 1.0 / (1 + e), "val_loss": 1.1 / (1 + e), "val_success_rate": 0.002 * e})
        for e in range(12)
    ]
    lightning(tmp_path / "rl", rows, ["train_loss", "val_loss", "val_success_rate"])
    assert by_detector(alerts_of(tmp_path, "rl/lightning_logs/version_0"), "not_learning") == []


def test_after_the_weights_turn_nan_a_pinned_accuracy_is_a_collapse_and_nothing_else(tmp_path):
    """From epoch 8 on both losses are NaN and the accuracy sits at 1/100 (a constant output)."""
    rows = []
    for e in range(14):
        dead = e >= 8
        rows.append(
            (
                e,
                {
                    "loss": math.nan if dead else 4.0 - 0.3 * e,
                    "val_loss": math.nan if dead else 4.1 - 0.2 * e,
                    "val_accuracy": 0.01 if dead else 0.05 + 0.03 * e,
                },
            )
        )
    keras(tmp_path / "nan100", rows, ["loss", "val_accuracy", "val_loss"])
    got = alerts_of(tmp_path, "nan100/training_log.csv")
    assert by_detector(got, "nan_loss") == [
        (Severity.CRITICAL, 8)
    ]  # no second alert for the val loss
    assert by_detector(got, "prediction_collapse") == [(Severity.WARNING, 10)]


# -- overfitting of a speech model ----------------------------------------------------------------
def _asr(path, wer):
    rows = []
    for s in range(100, 2001, 100):
        rows.append((s, {"loss": curve(s, 2000, start=2.0, floor=0.01), "learning_rate": 1e-5}))
        if s % 200 == 0:
            k = s // 200
            rows.append((s, {"eval_loss": 0.3 + 0.03 * max(0, k - 3), "eval_wer": wer(k)}))
    hf(path, rows, max_steps=2000, eval_steps=200)


def test_speech_eval_loss_rising_while_wer_improves_is_info(tmp_path):
    _asr(tmp_path / "asr", lambda k: 0.5 - 0.01 * k)
    got = by_detector(alerts_of(tmp_path, "asr"), "overfitting")
    assert got and {sev for sev, _ in got} == {Severity.INFO}


def test_speech_eval_loss_rising_while_wer_worsens_is_a_warning(tmp_path):
    _asr(tmp_path / "asrbad", lambda k: 0.5 - 0.01 * min(k, 3) + 0.02 * max(0, k - 3))
    got = by_detector(alerts_of(tmp_path, "asrbad"), "overfitting")
    assert Severity.WARNING in {sev for sev, _ in got}


def test_a_wer_logged_in_percent_is_shown_in_percent(tmp_path):
    _asr(tmp_path / "pct", lambda k: 50.0 - 1.0 * k)  # 100 * wer, as HF's speech recipes log it
    got = [a for a in alerts_of(tmp_path, "pct") if a.detector == "overfitting"]
    assert got and "eval_wer still improving (44)" in got[0].message, got[0].message


def test_blank_phase_wer_in_percent_is_shown_pinned_at_100(tmp_path):
    rows = [
        (
            e,
            {
                "train_loss": 3.0 - 0.2 * e,
                "val_loss": 3.1 - 0.2 * e,
                "val_wer": 100.0,
                "val_cer": 99.0,
            },
        )
        for e in range(6)
    ]
    lightning(tmp_path / "ctcpct", rows, ["train_loss", "val_cer", "val_loss", "val_wer"])
    got = [
        a
        for a in alerts_of(tmp_path, "ctcpct/lightning_logs/version_0")
        if a.detector == "blank_collapse"
    ]
    assert got and "val_wer pinned at 100.0 for 3 evals, val_cer 99" in got[0].message, got[
        0
    ].message


# -- divergence after good progress ---------------------------------------------------------------
def _lm(path, after):
    rng = random.Random(4)
    rows = []
    for s in range(10, 3001, 10):
        loss = curve(s, 2000, start=10.0, floor=2.0, speed=6) if s <= 2000 else after(s)
        rows.append((s, {"train_loss": loss * (1 + rng.gauss(0, 0.02))}))
    lightning(path, rows, ["train_loss"])


def test_loss_that_jumps_back_up_after_good_progress_warns(tmp_path):
    _lm(tmp_path / "relapse", lambda s: 7.0)
    got = by_detector(alerts_of(tmp_path, "relapse/lightning_logs/version_0"), "divergence")
    assert got and got[0][0] is Severity.WARNING and 2000 < got[0][1] <= 2060


def test_converged_loss_wobbling_near_zero_is_no_divergence(tmp_path):
    _lm(tmp_path / "wobble", lambda s: 2.0 + 0.3 * math.sin(s / 50))
    assert by_detector(alerts_of(tmp_path, "wobble/lightning_logs/version_0"), "divergence") == []


def _lightning_step_and_epoch(path, epoch_train):
    """A Lightning CSVLogger file for a metric logged with on_step and on_epoch: a noisy
    `train_loss_step` every 5 steps, `train_loss_epoch` and `val_loss` once per epoch of 32
    steps. The val loss comes down to epoch 4 and then rises 21% over four evals."""
    rng = random.Random(3)
    val = [0.57, 0.29, 0.19, 0.191, 0.176, 0.184, 0.185, 0.189, 0.213, 0.19]
    rows = ["epoch,step,train_loss_epoch,train_loss_step,val_loss"]
    for e in range(10):
        for s in range(e * 32 + 4, e * 32 + 32, 5):
            batch = max(0.01, epoch_train[e] * rng.uniform(0.2, 1.8))  # one batch's loss
            rows.append(f"{e},{s},,{batch},")
        rows.append(f"{e},{e * 32 + 31},,,{val[e]}")
        rows.append(f"{e},{e * 32 + 31},{epoch_train[e]},,")
    run = path / "lightning_logs" / "version_0"
    run.mkdir(parents=True)
    (run / "hparams.yaml").write_text("lr: 0.001\n")
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")


LIGHTNING_RUN = "lightning_logs/version_0"


def test_a_flat_epoch_mean_is_no_overfitting_whatever_single_batches_say(tmp_path):
    """The epoch means barely move (0.213 -> 0.205) while the val loss drifts up: a plateau.
    Single batches logged every few steps fell by chance; they are not the train loss."""
    flat = [0.65, 0.44, 0.255, 0.223, 0.213, 0.214, 0.208, 0.207, 0.205, 0.2046]
    _lightning_step_and_epoch(tmp_path, flat)
    alerts = alerts_of(tmp_path, LIGHTNING_RUN)
    assert alerts == [] or by_detector(alerts, "overfitting") == []
    assert not [a for a in alerts if a.severity is not Severity.INFO]


def test_a_falling_epoch_mean_with_a_rising_val_loss_is_overfitting(tmp_path):
    falling = [0.65, 0.44, 0.255, 0.223, 0.213, 0.18, 0.15, 0.12, 0.09, 0.07]
    _lightning_step_and_epoch(tmp_path, falling)
    found = [a for a in alerts_of(tmp_path, LIGHTNING_RUN) if a.detector == "overfitting"]
    assert found and found[0].severity is Severity.WARNING
    assert "train_loss_epoch" in found[0].message


# -- overfitting in one part of a summed loss -----------------------------------------------------
def _yolo_parts(path, cls_after_best, map_after_best, seed=3):
    """A detector's run with no total loss logged: box loss falling in both splits, the
    classification loss at its best at epoch 20 and then that best plus `cls_after_best(k)` (k
    epochs later), mAP at 0.6 at epoch 20 and then `map_after_best(k)`; a little scatter."""
    rng = random.Random(seed)
    rows = []
    for e in range(1, 41):
        k = e - 20
        cls_val = 1.8 * math.exp(-min(e, 20) / 6) + 0.8 + (cls_after_best(k) if k > 0 else 0)
        m = 0.6 * (1 - math.exp(-e / 6)) / (1 - math.exp(-20 / 6)) if k <= 0 else map_after_best(k)
        rows.append(
            (
                e,
                {
                    "train/box_loss": 1.5 * math.exp(-e / 20) + 0.4,
                    "train/cls_loss": 3 * math.exp(-e / 10) + 0.5 - 0.004 * e,
                    "metrics/precision(B)": m + 0.1,
                    "metrics/recall(B)": m + 0.05,
                    "metrics/mAP50(B)": m + 0.1,
                    "metrics/mAP50-95(B)": m,
                    "val/box_loss": 1.6 * math.exp(-e / 20) + 0.5 + rng.gauss(0, 0.004),
                    "val/cls_loss": cls_val + rng.gauss(0, 0.006),
                    "lr/pg0": 1e-3 * (1 - e / 50),
                },
            )
        )
    keras(path, rows, YOLO)


def test_a_classification_loss_rising_as_a_trend_while_map_stalls_overfits(tmp_path):
    """val/cls_loss climbs ~1% an epoch for 20 epochs after its best while its train twin falls
    and mAP no longer improves: the classification head memorises, whatever the box loss does."""
    _yolo_parts(tmp_path / "dog", lambda k: 0.008 * k, lambda k: 0.6 - 0.0005 * k)
    got = alerts_of(tmp_path, "dog/training_log.csv")
    assert [sev for sev, _ in by_detector(got, "overfitting")] == [Severity.WARNING]
    assert [a.metrics[0] for a in got if a.detector == "overfitting"] == ["val/cls_loss"]


def test_a_part_rising_while_map_still_climbs_is_a_trade_not_overfitting(tmp_path):
    _yolo_parts(tmp_path / "trade", lambda k: 0.008 * k, lambda k: 0.6 + 0.006 * k)
    assert by_detector(alerts_of(tmp_path, "trade/training_log.csv"), "overfitting") == []


def test_a_part_flat_and_noisy_after_its_lowest_eval_is_not_overfitting(tmp_path):
    """Every eval after a minimum is above it: without a slope that is scatter, not a rise."""
    rng = random.Random(11)
    _yolo_parts(tmp_path / "flat", lambda k: 0.03 + rng.gauss(0, 0.02), lambda k: 0.6)
    assert by_detector(alerts_of(tmp_path, "flat/training_log.csv"), "overfitting") == []


# -- loss_at_chance in a short run ----------------------------------------------------------------
def _binary(path, loss_at, acc_at, epochs=6, seed=5):
    rng = random.Random(seed)
    rows = [
        (
            e,
            {
                "accuracy": acc_at(e) + rng.gauss(0, 0.01),
                "loss": loss_at(e) + rng.gauss(0, 0.0005),
                "val_accuracy": acc_at(e) + rng.gauss(0, 0.01),
                "val_loss": loss_at(e) + 0.001 + rng.gauss(0, 0.0005),
            },
        )
        for e in range(epochs)
    ]
    keras(path, rows, ["accuracy", "loss", "val_accuracy", "val_loss"])


def test_a_short_binary_run_that_never_leaves_chance_warns_at_its_end(tmp_path):
    """Six epochs of a binary model at ln 2 with accuracy ~0.5: it learned nothing."""
    _binary(tmp_path / "coin", lambda e: math.log(2), lambda e: 0.5)
    got = by_detector(alerts_of(tmp_path, "coin/training_log.csv"), "loss_at_chance")
    assert got == [(Severity.WARNING, 5)]


def test_a_short_binary_run_that_starts_at_chance_and_learns_is_silent(tmp_path):
    _binary(tmp_path / "slow", lambda e: math.log(2) - 0.015 * e, lambda e: 0.5 + 0.03 * e)
    assert by_detector(alerts_of(tmp_path, "slow/training_log.csv"), "loss_at_chance") == []


def _ten_classes(path, loss_at, acc_at, epochs, seed=9):
    """A run whose per-class metrics say K = 10 (ln 10 = 2.303 is the uniform guess)."""
    rng = random.Random(seed)
    rows = []
    for e in range(epochs):
        row = {"loss": loss_at(e) + rng.gauss(0, 0.01), "val_loss": loss_at(e) + 0.05}
        row |= {f"val_acc_class_{c}": acc_at(e) for c in range(10)}
        rows.append((e, row))
    keras(path, rows, ["loss", "val_loss"] + [f"val_acc_class_{c}" for c in range(10)])


def test_a_loss_that_starts_at_ln_k_and_falls_through_it_is_not_at_chance(tmp_path):
    """A K-class model's loss starts a little above ln K and passes through it as it learns,
    slowly enough that a window of 10 logs has its median at ln K: not a uniform guess."""
    _ten_classes(
        tmp_path / "learns",
        lambda e: 0.2 + 2.3 * math.exp(-e / 120),
        lambda e: 0.1 + 0.8 * (1 - math.exp(-e / 120)),
        300,
    )
    assert by_detector(alerts_of(tmp_path, "learns/training_log.csv"), "loss_at_chance") == []


def test_a_loss_that_stays_at_ln_k_is_at_chance(tmp_path):
    _ten_classes(tmp_path / "stays", lambda e: math.log(10), lambda e: 0.1, 60)
    got = by_detector(alerts_of(tmp_path, "stays/training_log.csv"), "loss_at_chance")
    assert [sev for sev, _ in got] == [Severity.WARNING]


# -- stuck_metric: resolution and classes ---------------------------------------------------------
def test_an_accuracy_at_its_ceiling_while_the_eval_loss_still_moves_is_not_stuck(tmp_path):
    """A converged model on data with label noise: the same count of right answers at every
    eval (0.952) while the eval loss still moves in its fourth digit. The evaluation sees the
    model (its loss changes); the accuracy's resolution is what repeats."""
    rows = []
    for e in range(14):
        learned = e >= 2
        rows.append(
            (
                e,
                {
                    "loss": 0.2 + 0.01 * (e % 3) if learned else 0.69,
                    "val_loss": 0.1915 + 0.0004 * ((e * 7) % 5) if learned else 0.69,
                    "val_accuracy": 0.952 if learned else 0.573,
                },
            )
        )
    keras(tmp_path / "ceiling", rows, ["loss", "val_loss", "val_accuracy"])
    got = alerts_of(tmp_path, "ceiling/training_log.csv")
    assert by_detector(got, "stuck_metric") == []


def test_a_frozen_evaluation_is_stuck(tmp_path):
    """The evaluation scores a copy of the untrained model: its loss and accuracy repeat to the
    last digit while the train loss falls."""
    rows = [
        (e, {"loss": 1.0 / (e + 1), "val_loss": 0.7012, "val_accuracy": 0.498}) for e in range(8)
    ]
    keras(tmp_path / "frozen", rows, ["loss", "val_loss", "val_accuracy"])
    got = alerts_of(tmp_path, "frozen/training_log.csv")
    assert [sev for sev, _ in by_detector(got, "stuck_metric")] == [Severity.WARNING]


def test_a_minority_class_at_zero_recall_is_not_a_frozen_model(tmp_path):
    rows = []
    for e in range(10):
        p = 1 - math.exp(-e / 3)
        rows.append(
            (
                e,
                {
                    "loss": 1.0 - 0.5 * p,
                    "val_loss": 0.9 - 0.4 * p,
                    "val_accuracy": 0.62 + 0.2 * p,
                    "val_recall_class_0": 0.9 + 0.05 * p,
                    "val_recall_class_1": 0.2 + 0.5 * p,
                    "val_recall_class_2": 0.0,
                },
            )
        )
    cols = ["loss", "val_loss", "val_accuracy"] + [f"val_recall_class_{c}" for c in range(3)]
    keras(tmp_path / "minority", rows, cols)
    got = alerts_of(tmp_path, "minority/training_log.csv")
    assert by_detector(got, "stuck_metric") == []


# -- an imbalanced model before it has learned its minority ---------------------------------------
def _imbalanced(path, recall_at, auc_at, epochs=14):
    rows = []
    for e in range(epochs):
        r = recall_at(e)
        rows.append(
            (
                e,
                {
                    "loss": 0.45 * math.exp(-e / 6) + 0.05,
                    "val_loss": 0.3 * math.exp(-e / 6) + 0.1,
                    "val_accuracy": 0.916 + 0.08 * 0.916 * r,
                    "val_auc": auc_at(e),
                    "val_precision": 0.9 if r > 0 else 0.0,
                    "val_recall": r,
                },
            )
        )
    cols = ["loss", "val_loss", "val_accuracy", "val_auc", "val_precision", "val_recall"]
    keras(path, rows, cols)


def test_an_imbalanced_model_still_learning_its_minority_gets_no_class_alarm(tmp_path):
    """92/8 binary data: the first three epochs predict the majority only (precision and recall
    0) while the AUC climbs 0.54 -> 0.81; then the minority's recall rises epoch after epoch.
    Neither a collapse nor a hidden minority: the model is learning it."""
    _imbalanced(
        tmp_path / "learning",
        lambda e: 0.0 if e < 3 else min(0.1 * (e - 2), 0.7),
        lambda e: min(0.54 + 0.14 * e, 0.92),
    )
    got = alerts_of(tmp_path, "learning/training_log.csv")
    assert (
        by_detector(got, "prediction_collapse") == by_detector(got, "minority_class_hidden") == []
    )


def test_an_imbalanced_model_that_never_predicts_its_minority_collapses(tmp_path):
    """The same data, AUC stuck near chance and the minority never predicted: a collapse."""
    _imbalanced(tmp_path / "stuck", lambda e: 0.0, lambda e: 0.52 + 0.001 * e)
    got = alerts_of(tmp_path, "stuck/training_log.csv")
    assert by_detector(got, "prediction_collapse") or by_detector(got, "minority_class_hidden")


def test_an_accuracy_pinned_while_the_loss_sits_at_ln_2_is_not_a_collapse(tmp_path):
    """A slow start on balanced data: the model outputs 0.5 everywhere (loss ln 2), so its
    accuracy is the majority share, flipping 0.498/0.502. That is not learning yet
    (loss_at_chance's to judge), not a model confidently collapsed onto one class."""
    rng = random.Random(4)
    rows = [
        (
            e,
            {
                "loss": math.log(2) + 0.01 + rng.gauss(0, 0.004),
                "val_loss": math.log(2) + 0.004 + abs(rng.gauss(0, 0.01)),
                "val_accuracy": 0.498,
            },
        )
        for e in range(12)
    ]
    keras(tmp_path / "slow", rows, ["loss", "val_loss", "val_accuracy"])
    got = alerts_of(tmp_path, "slow/training_log.csv")
    assert by_detector(got, "prediction_collapse") == []


def test_an_accuracy_pinned_well_below_where_it_had_been_is_a_collapse(tmp_path):
    """After a blow-up the network outputs (almost) one class: the accuracy, 0.93 before, is
    exactly 0.538 eval after eval while the loss wanders near ln 2."""
    accs = [0.81, 0.90, 0.92, 0.93, 0.92, 0.5, 0.52, 0.538, 0.538, 0.538, 0.538]
    rows = [
        (
            e,
            {
                "loss": 0.5 * 0.8**e if e < 5 else 0.66 + 0.002 * (e % 3),
                "val_loss": 0.45 * 0.8**e + 0.1 if e < 5 else 0.665 + 0.004 * (e % 2),
                "val_accuracy": a,
            },
        )
        for e, a in enumerate(accs)
    ]
    keras(tmp_path / "blown", rows, ["loss", "val_loss", "val_accuracy"])
    got = by_detector(alerts_of(tmp_path, "blown/training_log.csv"), "prediction_collapse")
    assert got == [(Severity.WARNING, 9)]

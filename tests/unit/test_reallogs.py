"""Every file in ../shared/reallogs is discovered and read as its SOURCES.md describes."""

from __future__ import annotations

import json

import pytest
from tests.unit.helpers import loaded

from watchrun.sources.tensorboard import TensorBoardSource
from watchrun.store import Store


@pytest.fixture(scope="module")
def engine(request):
    from tests.conftest import REALLOGS

    if not (REALLOGS / "SOURCES.md").exists():
        pytest.skip(f"real logs not present at {REALLOGS}")
    return loaded(REALLOGS)


def run(engine, key):
    return engine.store.runs[key]


def test_every_run_is_found_and_grouped(engine):
    keys = set(engine.visible_keys())
    expected = {
        "hf-financial-sentiment-overfit",
        "hf-subjectivity-collapse/results",
        "hf-whisper-small-hi-overfit",
        "hf-agnews-lora-checkpoints/results",
        "hf-hatespeech-state-plus-tfevents",
        "pl-mnist-tb-multifile-and-csv/lightning_logs/mnist_cnn/version_0",
        "pl-mnist-tb-multifile-and-csv/lightning_logs/mnist_cnn/version_1",
        "pl-mnist-tb-multifile-and-csv/lightning_logs/version_0",
        "pl-asl-csv/lightning_logs/version_0",
        "pl-csv-edgecases/Goreg12345/lightning_logs/version_0",
        "pl-csv-edgecases/DiogoFerreira7/lightning_logs/version_0",
        "pl-csv-edgecases/DranovEgor/lightning_logs/version_0",
        "keras-csvlogger/tomato-overfit/training_log.csv",
        "keras-csvlogger/braintumor-appended/training_log.csv",
        "mlflow-filestore-mnist-cnn/mlruns/0/b0b3b9a1d5ae4aba891eb32484f3d897",
        "mlflow-filestore-mnist-cnn/mlruns/0/1bafc65714d44376aac3df504eefef2c",
        "mlflow-keras-tf2-swahili/mlruns/1/ed05f9cd599442fe9a0c9222184710b8",
        "tb-rl-sb3-and-rllib/sb3-dqn/DQN_1",
        "tb-rl-sb3-and-rllib/rllib-ppo/PPO_JBW-cycle-1e6-v3_9a92d_00000_0_2021-04-11_10-56-44",
        "dvclive-hf-regressor/dvclive",
    }
    assert keys == expected
    for key in keys:
        assert not run(engine, key).warnings, (key, run(engine, key).warnings)


def test_hf_state_and_tfevents_are_one_run(engine, reallogs):
    r = run(engine, "hf-hatespeech-state-plus-tfevents")
    assert r.formats == {"hf-trainer", "tensorboard"}
    # the event file covers the whole run, the state file stops at its checkpoint-1500 snapshot
    assert r.series["loss"].last_step == 3000
    assert r.meta["global_step"] == 1500 and r.meta["max_steps"] == 3000
    assert r.meta["best_model_checkpoint"] == "./results\\checkpoint-1500"
    # no step counted twice although both files log `loss` up to 1500
    steps = r.series["loss"].steps.tolist()
    assert len(steps) == len(set(steps)) == 300
    assert {t.tag for t in r.texts} == {"args", "model_config"}
    assert r.pid == 5844 and r.host == "LAPTOP-QND4BJ3N"


def test_hatespeech_event_file_counts(reallogs):
    path = next(
        (reallogs / "hf-hatespeech-state-plus-tfevents" / "logs").glob("events.out.tfevents.*")
    )
    store = Store()
    src = TensorBoardSource(store, "r")
    src.add_file(str(path))
    n = src.poll()
    r = store.runs["r"]
    # 1219 events = 1216 scalars + 2 text summaries + the file_version record
    assert n == 1216 and len(r.texts) == 2
    assert {"train/loss", "eval/loss", "train/train_runtime", "train/total_flos"} <= set(r.series)


def test_hf_checkpoints_are_prefixes_emitted_once(engine, reallogs):
    r = run(engine, "hf-agnews-lora-checkpoints/results")
    doc = json.loads(
        (
            reallogs / "hf-agnews-lora-checkpoints/results/checkpoint-1200/trainer_state.json"
        ).read_text()
    )
    evals = [e for e in doc["log_history"] if "eval_loss" in e]
    assert len(r.series["eval_loss"]) == len(evals) == 12
    assert r.series["eval_loss"].steps.tolist() == [e["step"] for e in evals]
    assert r.series["loss"].steps.tolist() == [e["step"] for e in doc["log_history"] if "loss" in e]


def test_hf_final_state_summary_and_results(engine):
    r = run(engine, "hf-whisper-small-hi-overfit")
    assert r.status.value == "finished"
    assert "train_runtime" in r.summary and "eval_wer" in r.summary
    assert r.series["eval_loss"].values.round(3).tolist() == [0.307, 0.356, 0.421, 0.452, 0.468]
    fin = run(engine, "hf-financial-sentiment-overfit")
    assert fin.meta["best_global_step"] == 8280 and fin.meta["max_steps"] == 10350
    assert len(fin.series["eval_macro_f1"]) == 10


def test_lightning_tensorboard_multifile(engine):
    for v in ("version_0", "version_1"):
        r = run(engine, f"pl-mnist-tb-multifile-and-csv/lightning_logs/mnist_cnn/{v}")
        assert r.hparams["num_classes"] == 10
        assert {
            "train_loss",
            "val_loss",
            "val_accuracy",
            "test_loss",
            "test_accuracy",
            "hp_metric",
        } <= set(r.series)
        assert r.pid == 1798 and r.host == "squirrels-iMac.local"
        assert r.status.value == "finished"  # hparams session_end_info


def test_lightning_csv_sparse_rows(engine):
    r = run(engine, "pl-mnist-tb-multifile-and-csv/lightning_logs/version_0")
    assert set(r.series) == {"epoch", "train_loss", "val_accuracy", "val_loss", "test_loss"}
    assert r.series["test_loss"].steps.tolist() == [8595]
    asl = run(engine, "pl-asl-csv/lightning_logs/version_0")
    assert len(asl.series["val_f1"]) == 10 and asl.series["val_f1"].values.max() > 0.99
    assert asl.hparams["cfg/seed"] is not None
    odd = run(engine, "pl-csv-edgecases/DiogoFerreira7/lightning_logs/version_0")
    assert "out_tensor([0.])" in odd.series and len(odd.series["train_loss"]) == 80
    old = run(engine, "pl-csv-edgecases/Goreg12345/lightning_logs/version_0")
    assert set(old.series) == {"train_loss", "train_acc", "epoch"}


def test_keras_csvlogger(engine):
    tomato = run(engine, "keras-csvlogger/tomato-overfit/training_log.csv")
    assert tomato.step_unit == "epoch" and len(tomato.series["val_loss"]) == 29
    appended = run(engine, "keras-csvlogger/braintumor-appended/training_log.csv")
    s = appended.series["loss"]
    assert len(s.segments) == 4  # the epoch restarts at 0 three times
    assert sorted(set(appended.series["learning_rate"].values.round(6).tolist())) == [1e-05, 0.0001]


def test_mlflow_file_store(engine, reallogs):
    r = run(engine, "mlflow-filestore-mnist-cnn/mlruns/0/b0b3b9a1d5ae4aba891eb32484f3d897")
    assert r.display_name == "clean-bass-451" and r.status.value == "finished"
    loss = r.series["loss"]
    assert len(loss) == 9375 and loss.steps.tolist() == list(range(9375))  # step= never passed
    assert r.series["train_loss"].steps.tolist() == [0, 1, 2, 3, 4]
    assert r.hparams["epochs"]
    failed = run(engine, "mlflow-filestore-mnist-cnn/mlruns/0/1bafc65714d44376aac3df504eefef2c")
    assert failed.status.value == "failed" and not failed.series
    sw = run(engine, "mlflow-keras-tf2-swahili/mlruns/1/ed05f9cd599442fe9a0c9222184710b8")
    assert sw.formats == {"mlflow", "tensorboard"}
    assert len(sw.series["loss"]) == 10 and len(sw.series["train/epoch_loss"]) == 10
    params = reallogs / "mlflow-keras-tf2-swahili/mlruns/1/ed05f9cd599442fe9a0c9222184710b8/params"
    assert sw.pid == 21044 and len(sw.hparams) == len(list(params.iterdir()))


def test_rl_tensorboard(engine):
    dqn = run(engine, "tb-rl-sb3-and-rllib/sb3-dqn/DQN_1")
    assert dqn.points() == 12500 and "rollout/exploration rate" in dqn.series
    assert max(s.last_step for s in dqn.series.values()) == 2000000
    ppo = run(
        engine,
        "tb-rl-sb3-and-rllib/rllib-ppo/PPO_JBW-cycle-1e6-v3_9a92d_00000_0_2021-04-11_10-56-44",
    )
    tb_tags = [n for n in ppo.series if n.startswith("ray/tune/")]
    assert len(tb_tags) == 36  # 38 tags, two of them histograms (skipped)
    assert ppo.host == "285e2a0aa751" and ppo.pid is None
    assert "csv" in ppo.formats


def test_dvclive_duplicates_dropped(engine):
    r = run(engine, "dvclive-hf-regressor/dvclive")
    assert r.series["eval_loss"].steps.tolist() == list(range(11))
    assert r.summary["eval_r2"] == pytest.approx(0.649)

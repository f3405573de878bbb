"""One training is one run: real trainings that log through several writers at once are found as
one run each, their sources merged (a metric two writers log kept once), and two trainings side
by side stay two. Plus the shared real logs: one run per training directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import REALLOGS

from watchrun.engine import Engine

HERE = Path(__file__).parent
REALLOGS2 = REALLOGS.parent / "reallogs2"


def train(root: Path, mode: str, console: Path | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    with open(console or os.devnull, "w") as out:
        subprocess.run(
            [sys.executable, str(HERE / "train_loggers.py"), str(root), mode],
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            check=True,
            timeout=600,
        )


def loaded(root: Path) -> Engine:
    e = Engine([str(root)], use_watchdog=False)
    e.load()
    return e


def test_lightning_tensorboard_and_csv_loggers_and_console_are_one_run(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    train(job, "lightning", console=job / "train.log")
    e = loaded(tmp_path)
    assert e.visible_keys() == ["job"]
    run = e.store.runs["job"]
    assert {"tensorboard", "lightning-csv", "console"} <= run.formats
    formats = Counter(run.file_formats.values())
    assert formats["tensorboard"] == 1 and formats["lightning-csv"] == 1 and formats["console"] == 1
    assert run.joined and "equal values" in run.joined[0]
    # the TensorBoard and CSV copies of train_loss are one series, each step once
    steps = run.series["train_loss_step"].steps.tolist()
    assert len(steps) == len(set(steps)) > 5
    csv_rows = (job / "csv_logs" / "model" / "version_0" / "metrics.csv").read_text().splitlines()
    assert len(steps) == sum(
        1 for r in csv_rows[1:] if r.split(",")[csv_rows[0].split(",").index("train_loss_step")]
    )
    alerts = e.check()
    assert len({a.run for a in alerts}) <= 1  # judged once


def test_keras_csvlogger_tensorboard_and_console_are_one_run(tmp_path):
    job = tmp_path / "keras-job"
    job.mkdir()
    train(job, "keras", console=job / "train.log")
    e = loaded(tmp_path)
    assert e.visible_keys() == ["keras-job"]
    run = e.store.runs["keras-job"]
    assert {"tensorboard", "keras-csv", "console"} <= run.formats and run.step_unit == "epoch"
    # `loss` (CSVLogger) and `train/epoch_loss` (TensorBoard) are one metric: kept once
    assert sorted(run.series) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert run.duplicate_of["train/epoch_loss"] == "loss" and run.series["loss"].steps.tolist() == [
        0,
        1,
        2,
        3,
        4,
    ]
    rows = (job / "training_log.csv").read_text().splitlines()
    loss_col = rows[0].split(",").index("loss")
    assert run.series["loss"].values.tolist() == [
        float(r.split(",")[loss_col]) for r in rows[1:]
    ]  # the CSV's, not the console's


def test_two_keras_trainings_in_one_folder_stay_two_runs(tmp_path):
    train(tmp_path / "exp", "keras-two")
    e = loaded(tmp_path)
    # one process, one after the other: the same pid, but never at the same time
    assert sorted(e.visible_keys()) == ["exp/a_log.csv", "exp/b_log.csv"]
    for key in e.visible_keys():
        run = e.store.runs[key]
        assert run.formats == {"keras-csv", "tensorboard"}, (key, run.formats)
        stem = "a" if "a_log" in " ".join(run.files) else "b"
        assert all(f"logs_{stem}" in f or f"{stem}_log.csv" in f for f in run.files)


def test_hf_trainer_with_tensorboard_and_checkpoints_is_one_run(tmp_path):
    out = tmp_path / "out"
    train(out, "hf", console=tmp_path / "train.log")
    e = loaded(tmp_path)
    assert e.visible_keys() == [
        tmp_path.name
    ]  # the console one level up joins it: the run spans both
    run = e.store.runs[tmp_path.name]
    assert {"tensorboard", "hf-trainer", "console"} <= run.formats
    steps = run.series["loss"].steps.tolist()
    assert (
        len(steps) == len(set(steps)) == 10
    )  # 20 steps, logged every 2: from TB and trainer_state, once


@pytest.mark.parametrize("which", ["reallogs", "reallogs2"])
def test_one_run_per_training_in_the_shared_real_logs(which):
    root = REALLOGS if which == "reallogs" else REALLOGS2
    if not (root / "SOURCES.md").exists():
        pytest.skip(f"real logs not present at {root}")
    out = subprocess.run(
        [sys.executable, "-m", "watchrun", "ls", "--json", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    runs = [json.loads(line)["run"] for line in out.stdout.splitlines()]
    per_dir = Counter(r.split("/")[0] for r in runs)
    if which == "reallogs":
        # pl-mnist holds three trainings (two TensorBoard versions of one process, one at a time,
        # and a separate CSVLogger run); mlflow-filestore-mnist-cnn two MLflow runs
        expected = {d.name: 1 for d in root.iterdir() if d.is_dir()}
        expected.update(
            {
                "pl-mnist-tb-multifile-and-csv": 3,
                "mlflow-filestore-mnist-cnn": 2,
                "keras-csvlogger": 2,
                "pl-csv-edgecases": 3,
                "tb-rl-sb3-and-rllib": 2,
            }
        )
        assert per_dir == expected
    else:
        labelled = json.loads((root / "labels.json").read_text())
        assert per_dir == dict.fromkeys(labelled, 1), runs  # the W&B run folders included

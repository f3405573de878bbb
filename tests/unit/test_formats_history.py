"""JSON histories rewritten whole, baselines' progress.csv and log.txt tables, mmengine's
scalars.json, Keras CSV in a `.log`, a terminal capture in a `.txt`: found by their content and
read with every number checked against the files."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path

import pytest
from tests.unit.helpers import loaded, points

from watchrun.discover import discover
from watchrun.sources.console import ConsoleSource
from watchrun.sources.history_json import JsonHistorySource
from watchrun.sources.keras import KerasCsvSource
from watchrun.sources.table import JsonlSource, TableSource
from watchrun.store import Store

REALLOGS2 = Path(__file__).resolve().parents[2].parent / "shared" / "reallogs2"
DDPG = REALLOGS2 / "rl-ddpg-pilot-healthy/model_static/model_SMode/model_SMode_exp2/Exp2_1/data"


def real(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real logs not present at {path}")
    return path


def only_run(engine):
    (key,) = engine.visible_keys()
    return key, engine.store.runs[key]


def poll_history(tmp_path: Path, docs: list) -> tuple[Store, list[int]]:
    """Rewrite one JSON file whole with each doc in turn, polling after each rewrite."""
    store = Store()
    src = JsonHistorySource(store, "r")
    f = tmp_path / "history.json"
    added = []
    for doc in docs:
        f.write_text(json.dumps(doc))
        src.add_file(str(f))
        added.append(src.poll())
    return store, added


def series(store: Store) -> dict[str, list[tuple[int, float]]]:
    return {
        n: list(zip(s.steps.tolist(), s.values.tolist(), strict=True))
        for n, s in store.runs["r"].series.items()
    }


# -- JSON histories -----------------------------------------------------------------------------
def test_keras_history_dumped_after_each_epoch_by_real_keras(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    import numpy as np

    path = tmp_path / "history.json"
    store = Store()
    src = JsonHistorySource(store, "r")
    added: list[int] = []

    class DumpHistory(keras.callbacks.Callback):
        """What users write: keep the logs, json.dump them whole after every epoch."""

        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}

        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                self.history.setdefault(k, []).append(float(v))
            with open(path, "w") as fh:
                json.dump(self.history, fh)
            src.add_file(str(path))
            added.append(src.poll())

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    dump = DumpHistory()
    history = model.fit(
        x, y, epochs=5, batch_size=16, validation_split=0.25, verbose=0, callbacks=[dump]
    )
    got = series(store)
    for name, values in history.history.items():
        assert got[name] == [(i, pytest.approx(v)) for i, v in enumerate(values)]
    n_metrics = len(history.history)
    assert added == [n_metrics] * 5  # each rewrite emitted only its new epoch
    assert store.runs["r"].step_unit == "epoch"


def test_list_of_epoch_dicts_rewritten_emits_only_new_rows(tmp_path):
    rows = [
        {"epoch": i + 1, "train_loss": 1 / (i + 1), "val_loss": "0.5", "lr": 1e-3} for i in range(4)
    ]
    store, added = poll_history(tmp_path, [rows[:1], rows[:2], rows[:2], rows[:4]])
    assert added == [3, 3, 0, 6]
    got = series(store)
    assert got["train_loss"] == [(i + 1, 1 / (i + 1)) for i in range(4)]
    assert got["val_loss"] == [(i + 1, 0.5) for i in range(4)]  # numeric strings are numbers


@pytest.mark.parametrize("key", ["epochs", "log_history", "history"])
def test_list_under_one_key(tmp_path, key):
    rows = [{"step": 10 * (i + 1), "loss": 2.0 - i, "eval": {"acc": 0.1 * i}} for i in range(3)]
    store, added = poll_history(tmp_path, [{key: rows[:2]}, {key: rows}])
    assert added == [4, 2]
    assert series(store)["loss"] == [(10, 2.0), (20, 1.0), (30, 0.0)]
    assert series(store)["eval/acc"] == [(10, 0.0), (20, 0.1), (30, pytest.approx(0.2))]
    assert store.runs["r"].step_unit == "step"


def test_half_written_rewrite_is_retried_and_a_new_history_starts_a_segment(tmp_path):
    rows = [{"epoch": i, "loss": 1.0 - 0.1 * i} for i in range(3)]
    store = Store()
    src = JsonHistorySource(store, "r")
    f = tmp_path / "training_log.json"
    f.write_text(json.dumps(rows[:2]))
    src.add_file(str(f))
    assert src.poll() == 2
    f.write_text(json.dumps(rows)[:-7])  # the writer is mid-way
    assert src.poll() == 0
    f.write_text(json.dumps(rows))
    assert src.poll() == 1
    again = [{"epoch": 0, "loss": 5.0}]  # the script started over
    f.write_text(json.dumps(again))
    assert src.poll() == 1
    s = store.runs["r"].series["loss"]
    assert s.steps.tolist() == [0, 1, 2, 0] and s.segments == [0, 3]


def test_json_histories_are_found_by_content_whatever_their_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "run_output.json").write_text(
        json.dumps({"loss": [1.0, 0.5], "val_accuracy": [0.3, 0.6]})
    )
    (tmp_path / "a" / "config.json").write_text(
        json.dumps({"lr": 0.1, "layers": [64, 32], "name": "x"})
    )
    (tmp_path / "a" / "dataset.json").write_text(
        json.dumps([{"id": 1, "text": "hi", "label": 0}] * 5)
    )
    (tmp_path / "a" / "preds.json").write_text(
        json.dumps([{"image": "a.png", "pred": 3, "label": 3}])
    )
    coco = [{"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.87}] * 3
    (tmp_path / "a" / "bbox_results.json").write_text(json.dumps(coco))
    (tmp_path / "a" / "scores.json").write_text(json.dumps({"scores": [0.1, 0.9, 0.4]}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "metrics.json").write_text(
        json.dumps([{"epoch": 1, "loss": 0.3, "acc": "0.9"}])
    )
    engine = loaded(tmp_path)
    assert sorted(engine.visible_keys()) == ["a/run_output.json", "b/metrics.json"]
    assert points(engine, "a/run_output.json")["val_accuracy"] == [(0, 0.3), (1, 0.6)]
    assert points(engine, "b/metrics.json")["acc"] == [(1, 0.9)]


def test_claims_of_a_big_history_decide_from_the_head_only():
    rows = [{"epoch": i, "loss": 1 / (i + 1), "val_loss": 2 / (i + 1)} for i in range(20000)]
    text = json.dumps({"log_history": rows}).encode()
    assert len(text) > 64 * 1024
    assert JsonHistorySource.claims("x.json", text[: 64 * 1024])
    keras_like = json.dumps({"loss": [0.1] * 20000, "acc": [0.5] * 20000}).encode()
    assert JsonHistorySource.claims("x.json", keras_like[: 64 * 1024])
    dataset = json.dumps([{"text": "t" * 50, "label": 1}] * 5000).encode()
    assert not JsonHistorySource.claims("x.json", dataset[: 64 * 1024])


# -- mmengine scalars.json ----------------------------------------------------------------------
def test_mmengine_scalars_json_lines(tmp_path):
    vis = tmp_path / "20240101_120000" / "vis_data"
    vis.mkdir(parents=True)
    lines = [
        {
            "lr": 0.01,
            "data_time": 0.1,
            "loss": 2.0 - i / 10,
            "time": 0.5,
            "epoch": 1,
            "iter": 10 * i,
            "memory": 900,
            "step": 10 * i,
        }
        for i in range(1, 6)
    ]
    lines.append({"coco/bbox_mAP": 0.25, "data_time": 0.05, "time": 0.2, "step": 1})
    (vis / "scalars.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert JsonlSource.claims(str(vis / "scalars.json"), (vis / "scalars.json").read_bytes())
    engine = loaded(tmp_path)
    key, run = only_run(engine)
    assert key.endswith("scalars.json")
    assert points(engine, key)["loss"] == [
        (10 * i, pytest.approx(2.0 - i / 10)) for i in range(1, 6)
    ]
    assert points(engine, key)["coco/bbox_mAP"] == [(1, 0.25)]


# -- OpenAI-baselines / Stable-Baselines --------------------------------------------------------
def test_progress_csv_with_unsorted_columns_and_empty_first_cells(tmp_path):
    header = ["rollout/ep_rew_mean", "time/total_timesteps", "train/loss", "eval/success_rate"]
    rows = [
        ["-100.5", "2048", "0.9", ""],
        ["-80.0", "4096", "0.7", ""],
        ["-50.25", "6144", "0.5", "0.4"],
    ]
    d = tmp_path / "ppo_1"
    d.mkdir()
    (d / "progress.csv").write_text("\n".join(",".join(r) for r in [header] + rows) + "\n")
    engine = loaded(tmp_path)
    key, run = only_run(engine)
    got = points(engine, key)
    assert got["rollout/ep_rew_mean"] == [(2048, -100.5), (4096, -80.0), (6144, -50.25)]
    assert got["eval/success_rate"] == [(6144, 0.4)]
    assert "time/total_timesteps" not in got


def test_real_ddpg_progress_csv_matches_the_file():
    data = real(DDPG)
    with open(data / "progress.csv") as fh:
        rows = list(csv.DictReader(fh))
    engine = loaded(data.parents[4])
    key, run = only_run(engine)
    assert {"csv", "console"} <= run.formats
    got = points(engine, key)
    steps = [int(r["total/steps"]) for r in rows]
    assert len(rows) == 435 and steps[-1] == 870000
    for column in ("rollout/return_history", "train/loss_critic", "AI_distance", "rollout/Q_mean"):
        assert got[column] == [(s, float(r[column])) for s, r in zip(steps, rows, strict=True)]
    success = [
        (s, float(r["AI_success_rate"]))
        for s, r in zip(steps, rows, strict=True)
        if r["AI_success_rate"]
    ]
    assert got["AI_success_rate"] == success and len(success) < 435  # empty in the first rows
    assert not any(name.endswith("...") for name in got)  # log.txt's cut names are not metrics


def test_real_ddpg_log_txt_tables_alone():
    log = real(DDPG / "log.txt")
    engine = loaded(log)
    key, run = only_run(engine)
    got = points(engine, key)
    with open(DDPG / "progress.csv") as fh:
        rows = list(csv.DictReader(fh))
    returns = got["rollout/return_history"]
    assert len(returns) == len(rows)
    for (step, value), row in zip(
        returns, rows, strict=True
    ):  # the table prints 3 significant digits
        assert value == pytest.approx(float(row["rollout/return_history"]), rel=5e-3, abs=0.05)
        assert step == pytest.approx(int(row["total/steps"]), rel=5e-3)


def test_log_txt_table_blocks_parsed_live(tmp_path):
    store = Store()
    src = ConsoleSource(store, "r")
    f = tmp_path / "log.txt"
    f.write_text("Logging to /tmp/x\n")
    src.add_file(str(f))
    blocks = [
        "---------------------------------\n| eval/return         | 12.3    |\n"
        "| time/total_timesteps| 1000    |\n",
        "| train/loss          | 0.5     |\n---------------------------------\n\n",
        "---------------------------------\n| eval/return         | 15      |\n"
        "| time/total_timesteps| 2000    |\n"
        "| train/loss          | 0.25    |\n---------------------------------\n",
    ]
    for block in blocks:
        with open(f, "a") as fh:
            fh.write(block)
        src.poll()
    run = store.runs["r"]
    assert run.series["eval/return"].steps.tolist() == [1000, 2000]
    assert run.series["eval/return"].values.tolist() == [12.3, 15.0]
    assert run.series["train/loss"].values.tolist() == [0.5, 0.25]


# -- content in files with other names ----------------------------------------------------------
def test_keras_csv_in_a_dot_log_file_matches_the_file():
    root = real(REALLOGS2 / "keras-irfanet-appended-overfit")
    (log,) = root.glob("*.log")
    engine = loaded(root)
    key, run = only_run(engine)
    assert run.formats == {"keras-csv"} and run.step_unit == "epoch"
    with open(log, newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = points(engine, key)
    assert got["val_loss"] == [(int(r["epoch"]), float(r["val_loss"])) for r in rows]
    assert run.series["val_loss"].segments == [0, 35]  # the second fit() appended from epoch 0


def test_terminal_capture_in_a_txt_file_matches_its_dict_lines():
    root = real(REALLOGS2 / "console-hf-xlsr-arabic-blank-phase")
    (txt,) = root.rglob("*.txt")
    engine = loaded(root)
    key, run = only_run(engine)
    assert run.formats == {"console"}
    text = txt.read_text(errors="replace")
    wers = [float(m) for m in re.findall(r"'eval_wer': ([\d.]+)", text)]
    got = points(engine, key)
    assert [v for _, v in got["eval_wer"]] == wers and wers[:6] == [1.0] * 6
    assert run.meta["max_steps"] == 8760
    losses = [s for s, _ in got["loss"]]
    assert losses == sorted(losses) and losses[-1] <= 8760  # on the training bar, not a map bar
    assert len(run.series["loss"].segments) == 1


@pytest.mark.parametrize(
    "name,content,expected",
    [
        ("train.log", "epoch,loss,val_loss\n0,0.9,1.0\n1,0.8,0.95\n", "keras-csv"),
        (
            "out.txt",
            "{'loss': 0.7, 'learning_rate': 1e-05, 'epoch': 0.1}\n{'loss': 0.6, 'epoch': 0.2}\n",
            "console",
        ),
        ("x.txt", "Epoch 1/3\n10/10 - 1s - loss: 0.5 - acc: 0.8\nEpoch 2/3\n", "console"),
        (
            "results.txt",
            "epoch 1 | train_loss=0.5 val_loss=0.6\nepoch 2 | train_loss=0.4 val_loss=0.5\n",
            "console",
        ),
        ("requirements.txt", "torch==2.1\nnumpy>=1.24\n", ""),
        ("README.txt", "Train with python train.py --epochs 10\nThe loss should fall.\n", ""),
        ("notes.log", "started\nstep 1 done\nstep 2 done\n", ""),
    ],
)
def test_content_claims(tmp_path, name, content, expected):
    f = tmp_path / name
    f.write_text(content)
    head = content.encode()
    claimed = [
        s.format
        for s in (KerasCsvSource, TableSource, JsonHistorySource, JsonlSource, ConsoleSource)
        if s.claims(str(f), head)
    ]
    assert (claimed[0] if claimed else "") == expected
    runs = discover(str(tmp_path))
    formats = {rf.format for spec in runs.values() for rf in spec.files}
    if expected:
        assert expected in formats
    elif name.endswith(".txt"):
        assert not formats  # a .txt that is not a training console is not a run


def test_binary_and_nan_values_do_not_break_claims():
    assert not ConsoleSource.claims("x.txt", b"\x00\x01epoch 1 loss=0.5\n" * 3)
    assert not JsonHistorySource.claims("x.json", b"\xff\xfe{not json")
    assert JsonHistorySource.claims("x.json", b'[{"epoch": 0, "loss": NaN}]')
    assert math.isnan(json.loads('[{"epoch": 0, "loss": NaN}]')[0]["loss"])


def test_progress_csv_rewritten_in_place_with_a_new_column(tmp_path):
    """SB3/baselines' CSV logger, when a key appears, rewrites the file in place (seek 0, no
    truncation): the wider header, the old rows padded with empty cells, then the new row."""
    d = tmp_path / "sac_1"
    d.mkdir()
    f = d / "progress.csv"
    f.write_text("time/total_timesteps,rollout/ep_rew_mean\n100,-5.0\n200,-4.0\n")
    engine = loaded(tmp_path)
    key, _ = only_run(engine)
    old = f.read_text().splitlines()
    with open(f, "r+") as fh:
        fh.seek(0)
        fh.write(old[0] + ",train/actor_loss\n")
        for line in old[1:]:
            fh.write(line + ",\n")
        fh.write("300,-3.0,0.7\n")
    engine.poll()
    got = points(engine, key)
    assert got["rollout/ep_rew_mean"] == [(100, -5.0), (200, -4.0), (300, -3.0)]
    assert got["train/actor_loss"] == [(300, 0.7)]


# -- which column counts the steps ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "rows", "step_col"),
    [
        ("steps,eval,train", ["100,1.46,2.34", "200,1.29,1.43"], "steps"),  # an author's export
        ("Iterations,loss", ["10,0.5", "20,0.4"], "Iterations"),
        ("total/epochs,loss", ["1.0,0.5", "2.0,0.4"], "total/epochs"),
        ("batch,loss", ["32,0.5", "32,0.4"], None),  # a batch size as often as a batch index
        ("steps,loss", ["0.5,0.5", "1.5,0.4"], None),  # fractions count no steps
        ("steps,loss", ["-3,0.5", "-2,0.4"], None),
    ],
)
def test_a_step_column_is_named_like_a_counter_and_holds_whole_numbers(
    tmp_path, header, rows, step_col
):
    f = tmp_path / "log.csv"
    f.write_text(header + "\n" + "\n".join(rows) + "\n")
    store = Store()
    src = TableSource(store, "r")
    src.add_file(str(f))
    src.poll()
    got = series(store)
    first = header.split(",")[0]
    if step_col is None:  # the row number counts, the column is a metric
        assert got["loss"] == [(i, float(r.split(",")[-1])) for i, r in enumerate(rows)]
        assert [v for _, v in got[first]] == [float(r.split(",")[0]) for r in rows]
    else:
        assert first not in got
        assert [s for s, _ in got["loss" if "loss" in got else "train"]] == [
            int(float(r.split(",")[0])) for r in rows
        ]


def test_real_author_loss_csv_counts_steps_in_its_steps_column():
    """hf-covbert's model/loss.csv (`steps,eval,train`): the author's export of the run's
    trainer_state.json, at the same steps (its last row has no newline: it waits, as any row a
    writer may still be writing)."""
    f = real(REALLOGS2 / "hf-covbert-mlm-healthy" / "model" / "loss.csv")
    with open(f, newline="") as fh:
        rows = list(csv.DictReader(fh))[:-1]
    store = Store()
    src = TableSource(store, "r")
    src.add_file(str(f))
    src.poll()
    got = series(store)
    assert sorted(got) == ["eval", "train"]
    for column in ("eval", "train"):
        assert got[column] == [(int(r["steps"]), float(r[column])) for r in rows]
    state = json.loads((f.parent / "trainer_state.json").read_text())
    evals = {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e}
    assert all(evals[s] == pytest.approx(v, abs=1e-8) for s, v in got["eval"])
    # in the run, the author's columns are the trainer's own `loss` and `eval_loss` again
    engine = loaded(f.parent)
    key, run = only_run(engine)
    assert run.duplicate_of == {"eval": "eval_loss", "train": "loss"}
    assert run.series["eval_loss"].steps.tolist() == sorted(evals)

"""Each format through its real writer where the writer runs here (tensorboard's EventFileWriter,
tensorboardX's SummaryWriter, mlflow with its SQLite store), and console output as the libraries
print it."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from tests.unit.helpers import loaded, points

from watchrun.engine import Engine
from watchrun.model import RunStatus, Severity


def tb_event_writer(logdir, suffix=""):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    os.makedirs(logdir, exist_ok=True)
    return EventFileWriter(str(logdir), filename_suffix=suffix)


def scalar(step, tag, value):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    return event_pb2.Event(
        wall_time=time.time(),
        step=step,
        summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]),
    )


def test_tensorboardx_writer_scalars_text_hparams_histograms(tmp_path):
    np = pytest.importorskip("numpy")
    from tensorboardX import SummaryWriter

    logdir = tmp_path / "tbx"
    w = SummaryWriter(str(logdir))
    for i in range(20):
        w.add_scalar("train/loss", 1.0 / (i + 1), i)
        w.add_histogram("weights", np.random.randn(100), i)
    w.add_text("predictions", "pred: ''\nref: hello", 19)
    w.add_hparams({"lr": 0.01, "num_classes": 3}, {"hparam/accuracy": 0.9})  # a <time> subfolder
    w.close()
    e = loaded(tmp_path)
    assert e.visible_keys() == ["tbx"]  # the add_hparams subfolder belongs to its parent run
    r = e.store.runs["tbx"]
    assert points(e)["train/loss"] == [(i, pytest.approx(1.0 / (i + 1))) for i in range(20)]
    assert "weights" not in r.series
    assert any(t.tag == "predictions" and "ref: hello" in t.text for t in r.texts)
    assert r.hparams["lr"] == 0.01 and r.hparams["num_classes"] == 3


def test_tensor_scalars_and_keras_tf2_layout(tmp_path):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.scalar import metadata
    from tensorboard.util import tensor_util

    def tensor_scalar(tag, value):  # what tf.summary.scalar writes in TF2: a tensor + metadata
        return summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(
                    tag=tag,
                    metadata=metadata.create_summary_metadata(tag, ""),
                    tensor=tensor_util.make_tensor_proto(value, dtype="float32"),
                )
            ]
        )

    logs = tmp_path / "fit" / "logs"
    for split, base in (("train", 1.0), ("validation", 1.2)):
        w = tb_event_writer(logs / split, suffix=".v2")
        for epoch in range(5):
            pb = tensor_scalar("epoch_loss", base / (epoch + 1))
            w.add_event(event_pb2.Event(wall_time=time.time(), step=epoch, summary=pb))
        w.close()
    e = loaded(tmp_path)
    assert e.visible_keys() == ["fit/logs"]
    p = points(e)
    assert p["train/epoch_loss"][-1] == (4, pytest.approx(0.2))
    assert p["validation/epoch_loss"][0] == (0, pytest.approx(1.2))
    from watchrun.semantics import classify

    assert (classify("validation/epoch_loss").split, classify("validation/epoch_loss").kind) == (
        "val",
        "loss",
    )
    assert e.store.runs["fit/logs"].pid == os.getpid()


def test_hf_output_dir_with_runs_and_console_is_one_run(tmp_path):
    out = tmp_path / "out"
    w = tb_event_writer(out / "runs" / "Nov23_10-00-00_gpu01")
    for s in (10, 20, 30):
        w.add_event(scalar(s, "train/loss", 1.0 / s))
    w.add_event(scalar(30, "eval/loss", 0.5))
    w.close()
    hp = tb_event_writer(out / "runs" / "Nov23_10-00-00_gpu01" / "1700000000.123456")
    hp.add_event(scalar(0, "hp_metric", 0.0))
    hp.close()
    state = {
        "global_step": 20,
        "max_steps": 40,
        "logging_steps": 10,
        "eval_steps": 30,
        "log_history": [{"loss": 0.1, "step": 10}, {"loss": 0.05, "step": 20}],
    }
    (out / "checkpoint-20").mkdir()
    (out / "checkpoint-20" / "trainer_state.json").write_text(json.dumps(state))
    bar = "".join(
        f"\r {n * 100 // 40:3d}%|###       | {n}/40 [00:0{n % 10}<00:10,  3.1it/s]"
        for n in range(36, 41)
    )
    (out / "train.log").write_text(
        f"{bar}\n{{'loss': '0.02', 'grad_norm': '0.5', 'learning_rate': '1e-05', 'epoch': '1.0'}}\n"
    )
    e = loaded(tmp_path)
    assert e.visible_keys() == ["out"]
    r = e.store.runs["out"]
    assert r.formats >= {"tensorboard", "hf-trainer", "console"}
    # the loss from the richest of its three writers (TensorBoard), whatever was read first; the
    # grad norm only the console printed stays the console's
    assert points(e)["loss"] == [
        (10, pytest.approx(0.1)),
        (20, pytest.approx(0.05)),
        (30, pytest.approx(1 / 30)),
    ]
    assert r.origins["loss"] == [(0, "tensorboard")]
    assert points(e)["grad_norm"] == [(40, 0.5)]
    assert points(e)["eval_loss"] == [(30, 0.5)]


def test_console_logs(tmp_path):
    hf4 = textwrap.dedent("""\
        ***** Running training *****
          Num examples = 2342
        {'loss': 0.2919, 'grad_norm': 1.5, 'learning_rate': 4.1e-05, 'epoch': 0.68}
        {'eval_loss': 0.2225, 'eval_accuracy': 0.747, 'eval_runtime': 1.2, 'epoch': 3.4}
        {'train_runtime': 80.1, 'train_samples_per_second': 117.0, 'train_loss': 0.27, 'epoch': 4.0}
    """)
    bars = "\r".join(f" {n}/588 [00:{n // 10:02d}<01:00, 6.9it/s]" for n in (1, 50, 100))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "nohup.out").write_text(bars + "\n" + hf4)
    keras = textwrap.dedent("""\
        Epoch 1/20
        938/938 [==============================] - 3s 3ms/step - loss: 0.2870 - accuracy: 0.9170 - val_loss: 0.1403 - val_accuracy: 0.9580
        Epoch 2/20
        469/938 [==============>...............] - ETA: 1s - loss: 0.1302 - accuracy: 0.9610
        938/938 [==============================] - 3s 3ms/step - loss: 0.1202 - accuracy: 0.9640 - val_loss: 0.1003 - val_accuracy: 0.9690
        Epoch 2: early stopping
    """)  # noqa: E501 - Keras' progress lines as Keras prints them
    (tmp_path / "slurm-1234.out").write_text(keras)
    hand = (
        "epoch 1 | train_loss=0.71 val_loss=0.69 lr=0.001\n"
        "epoch 2 | train_loss=0.52 val_loss=0.55 lr=0.001\n"
    )
    (tmp_path / "train.log").write_text(hand)
    (tmp_path / "unrelated.log").write_text("starting server\nlistening on 8080\n")
    e = loaded(tmp_path)
    assert sorted(e.visible_keys()) == ["hf/nohup.out", "slurm-1234.out", "train.log"]
    hf = points(e, "hf/nohup.out")
    assert hf["loss"] == [(100, 0.2919)] and hf["eval_accuracy"] == [(100, 0.747)]
    assert e.store.runs["hf/nohup.out"].summary["train_runtime"] == 80.1
    k = points(e, "slurm-1234.out")
    assert (
        k["val_loss"] == [(0, 0.1403), (1, 0.1003)] and len(k["loss"]) == 2
    )  # the ETA line is skipped
    assert e.store.runs["slurm-1234.out"].meta["max_epochs"] == 20
    assert any("early stopping" in m for _, m in e.store.runs["slurm-1234.out"].events)
    assert points(e, "train.log")["val_loss"] == [(1, 0.69), (2, 0.55)]


def test_mlflow_sqlite_store_written_live_by_mlflow(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    script = textwrap.dedent(f"""
        import mlflow, time
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/mlflow.db")
        mlflow.set_experiment("exp")
        with mlflow.start_run(run_name="alpha"):
            mlflow.log_param("lr", 0.1)
            for i in range(30):
                mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
                mlflow.log_metric("val/acc", i / 30, step=i)
                time.sleep(0.02)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    e = Engine([str(tmp_path)], poll_seconds=0.05)
    e.load()
    while proc.poll() is None:
        e.tick()
        time.sleep(0.05)
    assert proc.returncode == 0
    e.rescan_needed = True
    e.tick()
    key = "mlflow.db/exp/alpha"
    assert key in e.visible_keys()
    p = points(e, key)
    assert [s for s, _ in p["loss"]] == list(range(30)) and len(p["val/acc"]) == 30
    assert e.store.runs[key].hparams["lr"] == "0.1"
    e.update_statuses()
    assert e.store.runs[key].status.value == "finished"


def test_mlflow_run_turning_nan_is_called_at_its_step(tmp_path):
    """MLflow stores a NaN as 0 with an is_nan flag: the value read back is NaN, nan_loss fires
    at step 79, and no "still falling" note is made about the finite part of the run."""
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    script = textwrap.dedent(f"""
        import math, mlflow
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/mlflow.db")
        with mlflow.start_run(run_name="nan-run"):
            for s in range(100):
                loss = float("nan") if s >= 79 else 2.0 * math.exp(-s / 30) + 0.1
                mlflow.log_metric("train_loss", loss, step=s)
                if s % 10 == 9:
                    mlflow.log_metric("val_loss", 2.1 * math.exp(-s / 30) + 0.15, step=s)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    e = loaded(tmp_path)
    e.verdict()
    alerts = e.store.alerts_for("mlflow.db/Default/nan-run")
    assert [(a.detector, a.step) for a in alerts] == [("nan_loss", 79)]
    assert "last finite 0.2485 at step 78" in alerts[0].message


def test_mlflow_sqlite_infinity_is_read_back_as_one(tmp_path):
    """MLflow's SQL store keeps an infinite value as +-1.797e308 (the largest float): read back
    as inf, a loss that overflows is nan_loss's, not a huge finite number."""
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    script = textwrap.dedent(f"""
        import math, mlflow
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/mlflow.db")
        with mlflow.start_run(run_name="inf-run"):
            for s in range(40):
                loss = float("inf") if s >= 30 else 2.0 * math.exp(-s / 30) + 0.1
                mlflow.log_metric("train_loss", loss, step=s)
            mlflow.log_metric("grad_norm", float("-inf"), step=0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    e = loaded(tmp_path)
    p = points(e, "mlflow.db/Default/inf-run")
    assert p["train_loss"][30] == (30, float("inf")) and p["grad_norm"] == [(0, float("-inf"))]
    e.verdict()
    alerts = e.store.alerts_for("mlflow.db/Default/inf-run")
    assert ("nan_loss", 30) in [(a.detector, a.step) for a in alerts]


def test_trackio_database(tmp_path):
    db = tmp_path / "project.db"
    con = sqlite3.connect(db)
    # trackio's SQLiteStorage schema: metrics(id, timestamp, run_name, step, metrics JSON), configs
    con.executescript("""
        CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
                              run_name TEXT NOT NULL, step INTEGER NOT NULL, metrics TEXT NOT NULL);
        CREATE TABLE configs (id INTEGER PRIMARY KEY AUTOINCREMENT, run_name TEXT NOT NULL,
                              config TEXT NOT NULL, created_at TEXT NOT NULL);
    """)
    con.execute(
        "INSERT INTO configs (run_name, config, created_at) VALUES (?, ?, ?)",
        ("r1", json.dumps({"lr": 0.1}), "now"),
    )
    for i in range(5):
        con.execute(
            "INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES (?, ?, ?, ?)",
            ("now", "r1", i, json.dumps({"train/loss": 1 / (i + 1), "_timestamp": 1})),
        )
    con.commit()
    e = loaded(tmp_path)
    assert points(e, "project.db/r1")["train/loss"][-1] == (4, 0.2)
    con.execute(
        "INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES (?, ?, ?, ?)",
        ("now", "r1", 5, json.dumps({"train/loss": 0.1})),
    )
    con.commit()
    con.close()
    e.poll()
    assert len(points(e, "project.db/r1")["train/loss"]) == 6
    assert e.store.runs["project.db/r1"].hparams["lr"] == 0.1


def test_f11_two_writers_in_one_dir_are_both_read(tmp_path):
    d = tmp_path / "shared"
    w1, w2 = tb_event_writer(d), tb_event_writer(d)
    for i in range(10):
        w1.add_event(scalar(i, "a/loss", i))
        w2.add_event(scalar(i, "b/loss", -i))
        w1.flush()
        w2.flush()
    w1.close()
    w2.close()
    p = points(loaded(tmp_path))
    assert len(p["a/loss"]) == 10 and len(p["b/loss"]) == 10


def test_inotify_events_bring_new_points_without_polling(tmp_path):
    f = tmp_path / "r" / "metrics.csv"
    f.parent.mkdir()
    f.write_text("step,loss\n1,0.5\n")
    e = Engine([str(tmp_path)])
    e.poll_seconds = 3600.0  # the slow poll will not come: only file events can wake us
    e.load()
    e.start_watching()
    try:
        assert e.watching
        e._last_full_poll = time.monotonic() + 3600
        with open(f, "a") as fh:
            fh.write("2,0.25\n")
        deadline = time.time() + 5
        while time.time() < deadline and len(points(e)["loss"]) < 2:
            e.wake.wait(0.2)
            e.wake.clear()
            e.tick()
        assert points(e)["loss"] == [(1, 0.5), (2, 0.25)]
    finally:
        e.stop_watching()


def test_many_files_with_a_low_descriptor_limit(tmp_path):
    for i in range(300):
        (tmp_path / f"run{i:03d}.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        from watchrun.engine import Engine
        e = Engine([{str(tmp_path)!r}], use_watchdog=False); e.load()
        print(sum(r.points() for r in e.store.runs.values()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "300"


def console_run(run, script: str) -> Engine:
    """Run `script` with its stdout going to `run`/train.log, as `python train.py > train.log`;
    the engine loaded over the run's parent."""
    run.mkdir()
    with open(run / "train.log", "w") as out:
        subprocess.run([sys.executable, "-c", script], stdout=out, check=True, timeout=60)
    return loaded(run.parent)


def test_pytorch_example_console_output(tmp_path):
    """The output of pytorch/examples mnist/main.py (its own format strings), tee'd to a file by
    a real process: per-batch train losses by sample count, a test summary after each epoch. The
    test loss turns up after epoch 3 while the train loss falls: overfitting on the test split."""
    script = textwrap.dedent("""\
        import math
        n = 60000
        for epoch in range(1, 9):
            for batch_idx in range(0, 938, 100):
                loss = 0.05 + 2.2 * math.exp(-((epoch - 1) * 938 + batch_idx) / 800)
                print('Train Epoch: {} [{}/{} ({:.0f}%)]\\tLoss: {:.6f}'.format(
                    epoch, batch_idx * 64, n, 100. * batch_idx / 938, loss))
            test_loss = 0.03 + 0.01 * (epoch - 3) ** 2
            correct = 9900 - 20 * abs(epoch - 3)
            print('\\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\\n'.format(
                test_loss, correct, 10000, 100. * correct / 10000))
    """)
    e = console_run(tmp_path / "mnist", script)
    got = points(e, "mnist/train.log")
    assert got["test_loss"][0] == (60000 + 900 * 64, 0.03 + 0.01 * 4) and len(got["test_loss"]) == 8
    assert got["test_accuracy"][2] == (3 * 60000 + 900 * 64, 0.99)
    assert len(got["Loss"]) == 80 and [s for s, _ in got["Loss"]] == sorted(
        s for s, _ in got["Loss"]
    )
    e.verdict()
    assert "overfitting" in {a.detector for a in e.store.alerts_for("mnist/train.log")}


def test_nanogpt_console_output(tmp_path):
    """nanoGPT's two print statements, verbatim: `name value` pairs with no colon between."""
    script = textwrap.dedent("""\
        import math
        for iter_num in range(0, 3001, 10):
            if iter_num % 250 == 0:
                t = 2.0 * math.exp(-iter_num / 1000) + 0.3
                v = t + 0.1 + 0.0004 * max(0, iter_num - 1200)
                losses = {"train": t, "val": v}
                print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            lossf, dt, running_mfu = 2.0 * math.exp(-iter_num / 1000) + 0.3, 0.1012, 0.121
            print(f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu {running_mfu*100:.2f}%")
    """)  # noqa: E501 - nanoGPT's two print statements, verbatim
    e = console_run(tmp_path / "shakespeare", script)
    got = points(e, "shakespeare/train.log")
    assert len(got["loss"]) == 301 and got["loss"][1] == (
        10,
        round(2.0 * 2.718281828**-0.01 + 0.3, 4),
    )
    assert [s for s, _ in got["val_loss"]] == list(range(0, 3001, 250)) and got["train_loss"][
        0
    ] == (0, 2.3)
    assert got["time"][0] == (0, 101.2) and got["mfu"][0] == (0, 12.1)
    e.verdict()
    over = [a for a in e.store.alerts_for("shakespeare/train.log") if a.detector == "overfitting"]
    assert (
        over and over[0].metrics[0] == "val_loss" and over[0].evidence["best_step"] in (1500, 1750)
    )


def test_ray_tune_progress_csv_with_an_empty_timesteps_column(tmp_path):
    """Ray Tune writes `timesteps_total` empty when the trainable does not report it; the step
    is then `training_iteration`, not a reason to drop every row."""
    import csv

    trial = tmp_path / "exp" / "train_fn_a1b2c_00000_0_lr=0.01"
    trial.mkdir(parents=True)
    fields = [
        "loss",
        "accuracy",
        "timestamp",
        "done",
        "timesteps_total",
        "episodes_total",
        "training_iteration",
        "trial_id",
        "date",
        "time_this_iter_s",
        "time_total_s",
        "pid",
        "hostname",
        "node_ip",
    ]
    with open(trial / "progress.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for i in range(1, 21):
            w.writerow(
                {
                    "loss": 1 / i,
                    "accuracy": 0.5 + i / 50,
                    "timestamp": 1700000000 + i,
                    "done": i == 20,
                    "timesteps_total": "",
                    "episodes_total": "",
                    "training_iteration": i,
                    "trial_id": "a1b2c_00000",
                    "date": "2024-01-01_12-00-00",
                    "time_this_iter_s": 1.5,
                    "time_total_s": 1.5 * i,
                    "pid": 4242,
                    "hostname": "gpu-box",
                    "node_ip": "10.0.0.2",
                }
            )
    e = loaded(tmp_path)
    got = points(e, "exp/train_fn_a1b2c_00000_0_lr=0.01")
    assert got["loss"] == [(i, 1 / i) for i in range(1, 21)]
    assert "timesteps_total" not in got and "trial_id" not in got


def test_timm_summary_in_percent(tmp_path):
    """timm's update_summary (csv.DictWriter, top-1/top-5 in percent): 76.5 is not above a
    perfect 1.0; a real 100.0 twice is a perfect validation."""
    import csv

    def write(path, top1):
        path.parent.mkdir(parents=True)
        with open(path, "w", newline="") as fh:
            for epoch, acc in enumerate(top1):
                row = {
                    "epoch": epoch,
                    "train_loss": 2.5 * 0.8**epoch + 0.4,
                    "eval_loss": 2.4 * 0.8**epoch + 0.6,
                    "eval_top1": acc,
                    "eval_top5": min(100.0, acc + 15),
                    "lr": 0.05 * 0.9**epoch,
                }
                w = csv.DictWriter(fh, fieldnames=row.keys())
                if epoch == 0:
                    w.writeheader()
                w.writerow(row)

    write(tmp_path / "healthy" / "summary.csv", [30 + 46.5 * (1 - 0.75**e) for e in range(20)])
    write(tmp_path / "leak" / "summary.csv", [40.0, 80.0, 100.0, 100.0, 100.0])
    e = loaded(tmp_path)
    e.verdict()
    warnings = {
        k: {a.detector for a in e.store.alerts_for(k) if a.severity.value != "info"}
        for k in e.visible_keys()
    }
    assert warnings == {"healthy/summary.csv": set(), "leak/summary.csv": {"perfect_validation"}}, (
        warnings
    )
    perfect = [
        a for a in e.store.alerts_for("leak/summary.csv") if a.detector == "perfect_validation"
    ]
    assert perfect[0].step == 3


def test_detectron2_and_mmdetection_json_logs(tmp_path):
    """detectron2's JSONWriter (metrics.json, one json.dumps per line, `iteration`) and
    mmdetection 2.x's log.json (an env line first; `iter` counts within the epoch and the val
    row's `iter` is the epoch's length): both become runs with rising global steps."""
    d2 = tmp_path / "d2" / "output"
    d2.mkdir(parents=True)
    with open(d2 / "metrics.json", "w") as fh:
        for it in range(19, 400, 20):
            fh.write(
                json.dumps(
                    {
                        "data_time": 0.01,
                        "iteration": it,
                        "loss_box_reg": 0.2,
                        "loss_cls": 0.3,
                        "lr": 0.001,
                        "total_loss": 2.0 - it / 400,
                    }
                )
                + "\n"
            )
            if (it + 1) % 200 == 0:
                fh.write(json.dumps({"bbox/AP": 30.0 + it / 100, "iteration": it}) + "\n")
    mm = tmp_path / "mm" / "work_dirs" / "faster_rcnn"
    mm.mkdir(parents=True)
    with open(mm / "20240101_120000.log.json", "w") as fh:
        fh.write(
            json.dumps(
                {
                    "env_info": "sys.platform: linux\nPython: 3.8",
                    "config": "model = dict()",
                    "seed": 0,
                }
            )
            + "\n"
        )
        for epoch in (1, 2, 3):
            for it in (50, 100, 150):
                fh.write(
                    json.dumps(
                        {
                            "mode": "train",
                            "epoch": epoch,
                            "iter": it,
                            "lr": 0.02,
                            "memory": 3100,
                            "data_time": 0.01,
                            "loss_cls": 0.5 / epoch,
                            "loss": 1.0 / epoch,
                            "time": 0.3,
                        }
                    )
                    + "\n"
                )
            fh.write(
                json.dumps(
                    {
                        "mode": "val",
                        "epoch": epoch,
                        "iter": 160,
                        "lr": 0.02,
                        "bbox_mAP": 0.2 + epoch / 10,
                    }
                )
                + "\n"
            )
    e = loaded(tmp_path)
    assert set(e.visible_keys()) == {"d2/output", "mm/work_dirs/faster_rcnn"}
    d = points(e, "d2/output")
    assert len(d["total_loss"]) == 20 and d["bbox/AP"] == [(199, 31.99), (399, 33.99)]
    m = points(e, "mm/work_dirs/faster_rcnn")
    assert [s for s, _ in m["loss"]] == [50, 100, 150, 210, 260, 310, 370, 420, 470]
    assert m["val/bbox_mAP"] == [(160, 0.2 + 1 / 10), (320, 0.2 + 2 / 10), (480, 0.2 + 3 / 10)]
    assert "env_info" not in m and "mode" not in m
    from watchrun.semantics import pick

    # the summed loss plays "the train loss", not its shorter-named parts
    assert (
        pick(list(d), "train", "loss") == "total_loss" and pick(list(m), "train", "loss") == "loss"
    )


def test_hand_loop_with_a_stepless_validation_line(tmp_path):
    """A hand-written loop that prints `Epoch: N, Average Loss: .., Trn Accuracy: ..%, lr: ..`
    and then, on a line of its own with no epoch, `Average Val Loss: .., Val_accuracy: ..`: the
    words before each colon make one name (`trn_accuracy`, `val_loss`) and the validation line
    belongs to the epoch printed just before it. Validation loss turns up after epoch 4 while the
    training loss falls: overfitting, which needs the validation line to be read."""
    script = textwrap.dedent("""\
        for epoch in range(12):
            train = 3.0 * 0.8 ** epoch
            val = 2.0 + 0.02 * (epoch - 4) ** 2
            print(f'Epoch: {epoch}, Average Loss: {train}, Trn Accuracy: {50 + epoch:.2f}%, '
                  f'lr: {1e-4 * (12 - epoch) / 12}')
            print(f'Average Val Loss: {val}, Val_accuracy: {30 + epoch / 10}')
    """)
    e = console_run(tmp_path / "loop", script)
    got = points(e, "loop/train.log")
    assert got["val_loss"][5] == (5, 2.0 + 0.02)
    assert got["Val_accuracy"][11] == (11, 30 + 1.1)
    assert got["trn_accuracy"][3] == (3, 53.0) and got["loss"][0] == (0, 3.0)
    assert len(got["val_loss"]) == len(got["loss"]) == 12
    e.verdict()
    assert "overfitting" in {a.detector for a in e.store.alerts_for("loop/train.log")}


def test_hand_loop_naming_epoch_and_global_step(tmp_path):
    """A common hand-written PyTorch loop: `Epoch [e/20] Step [s/480] Loss: x LR: y` every 8
    steps (the global step), then `Epoch [e/20] Validation Loss: x` after each epoch. The step is
    the one the line names, not the epoch; the validation line is val_loss at the epoch's last
    step, never a point of the train Loss. The loss goes NaN at step 240: called there."""
    script = textwrap.dedent("""\
        import math
        epochs, per_epoch = 20, 24
        for ep in range(10):
            for step in range(ep * per_epoch + 8, (ep + 1) * per_epoch + 1, 8):
                loss = 0.9 * math.exp(-step / 60) + 0.05 if step < 240 else float('nan')
                print(f'Epoch [{ep + 1}/{epochs}] Step [{step}/{epochs * per_epoch}] '
                      f'Loss: {loss:.4f} LR: {0.03 + step / 1000:.4f}')
            val = 0.1 + 0.8 * math.exp(-ep / 3) if ep < 9 else float('nan')
            print(f'Epoch [{ep + 1}/{epochs}] Validation Loss: {val:.4f}')
    """)
    e = console_run(tmp_path / "loop", script)
    got = points(e, "loop/train.log")
    assert [s for s, _ in got["Loss"]] == list(range(8, 241, 8))
    assert got["Loss"][0] == (8, round(0.9 * math.exp(-8 / 60) + 0.05, 4))
    assert [s for s, _ in got["val_loss"]] == list(range(24, 241, 24))
    assert got["val_loss"][1] == (48, round(0.1 + 0.8 * math.exp(-1 / 3), 4))
    assert set(got) == {"Loss", "LR", "val_loss"}
    e.verdict()
    nan = [a for a in e.store.alerts_for("loop/train.log") if a.detector == "nan_loss"]
    assert [(a.step, a.severity) for a in nan] == [(240, Severity.CRITICAL)]


def test_hand_loop_steps_counted_within_each_epoch(tmp_path):
    """Steps that start again each epoch (`Step [s/24]`, or `iter i` from 0 with no total):
    the run's step is epochs x the epoch's length + the step, so steps keep rising by the
    printed spacing across epochs, and each epoch's validation line lands at its last step."""
    script = textwrap.dedent("""\
        for ep in range(4):
            for s in (8, 16, 24):
                print(f'Epoch [{ep + 1}/4] Step [{s}/24] Loss: {1.0 / (ep * 24 + s):.4f}')
            print(f'Epoch [{ep + 1}/4] Validation Loss: {0.5 - ep / 10:.4f}')
    """)
    e = console_run(tmp_path / "bracketed", script)
    got = points(e, "bracketed/train.log")
    assert got["Loss"] == [(s, round(1.0 / s, 4)) for s in range(8, 97, 8)]
    assert got["val_loss"] == [(24 * (ep + 1), round(0.5 - ep / 10, 4)) for ep in range(4)]
    # read live, a line at a time as the loop prints them: the same steps
    lines = (tmp_path / "bracketed" / "train.log").read_text().splitlines(keepends=True)
    (tmp_path / "live").mkdir()
    log = tmp_path / "live" / "train.log"
    log.write_text(lines[0])
    live = loaded(tmp_path / "live")
    for line in lines[1:]:
        with open(log, "a") as f:
            f.write(line)
        live.poll()
    assert points(live, "train.log") == got
    script = textwrap.dedent("""\
        for epoch in range(3):
            for i in range(0, 100, 10):
                print(f'epoch {epoch} iter {i} loss={2.0 - (epoch * 100 + i) / 300:.4f}')
            print(f'epoch {epoch} Valid Accuracy: {0.5 + epoch / 10}')
    """)
    e = console_run(tmp_path / "plain", script)
    got = points(e, "plain/train.log")
    assert got["loss"] == [(s, round(2.0 - s / 300, 4)) for s in range(0, 300, 10)]
    assert got["val_accuracy"] == [(90, 0.5), (190, 0.6), (290, 0.7)]


def test_hand_loop_names_of_several_words_after_a_value(tmp_path):
    """`Epoch 3/12 Train Loss: 0.41 Val Loss: 0.52 | Val Accuracy: 71.0%`: each name of words
    before a colon is one metric, after a value as after a separator, so the validation loss is
    val_loss and never a second point of a train loss. It turns up after epoch 5 while the
    train loss falls: overfitting, which needs the two kept apart."""
    script = textwrap.dedent("""\
        for epoch in range(1, 13):
            train, val = 2.0 * 0.8 ** epoch, 1.0 + 0.02 * (epoch - 5) ** 2
            print(f'Epoch {epoch}/12 Train Loss: {train:.4f} Val Loss: {val:.4f} '
                  f'| Val Accuracy: {60 + epoch:.1f}%')
    """)
    e = console_run(tmp_path / "loop", script)
    got = points(e, "loop/train.log")
    assert set(got) == {"train_loss", "val_loss", "val_accuracy"}
    assert got["train_loss"][2] == (3, round(2.0 * 0.8**3, 4))
    assert got["val_loss"] == [(ep, round(1.0 + 0.02 * (ep - 5) ** 2, 4)) for ep in range(1, 13)]
    assert got["val_accuracy"][0] == (1, 61.0)
    e.verdict()
    assert "overfitting" in {a.detector for a in e.store.alerts_for("loop/train.log")}


HF_LIKE_LOOP = """\
import sys
print('***** Running training *****')
print('  Num Epochs = 4')
print('  Total optimization steps = 400')
for step in range(10, {last} + 1, 10):
    sys.stdout.write('\\r %d%%|#| %d/400 [00:%02d<00:10, 4.00it/s]' % (step // 4, step, step % 60))
    print()
    print({{'loss': round(2.0 / (1 + step / 100), 4), 'learning_rate': 1e-4, 'epoch': step / 100}})
    sys.stdout.flush()
{after}
"""


def test_a_console_that_ends_in_a_traceback_is_a_failed_run_stopped_early(tmp_path):
    """A real process killed by an exception mid-run (stderr into the same capture, as `python
    train.py &> train.log`): the traceback's last line says what ended it, the run has failed,
    and, its planned 400 steps not reached, early_stopped says where it stopped and why."""
    script = HF_LIKE_LOOP.format(last=250, after="raise KeyboardInterrupt")
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / "train.log", "w") as out:
        done = subprocess.run([sys.executable, "-c", script], stdout=out, stderr=out, timeout=60)
    assert done.returncode != 0
    e = loaded(tmp_path)
    run = e.store.runs["run/train.log"]
    assert run.explicit_status is RunStatus.FAILED and run.meta["died_of"] == "KeyboardInterrupt"
    assert (250, "the training process ended with KeyboardInterrupt") in run.events
    e.verdict()
    stops = [a for a in e.store.alerts_for("run/train.log") if a.detector == "early_stopped"]
    assert [(a.step, a.severity) for a in stops] == [(250, Severity.INFO)]
    assert (
        "stopped at step 250 of 400" in stops[0].message and "KeyboardInterrupt" in stops[0].message
    )


def test_a_traceback_that_training_outlives_is_no_end(tmp_path):
    """A caught exception's traceback printed by the loop (logging.exception), then more
    training: the run did not die there."""
    after = (
        "import traceback\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc(file=sys.stdout)\n"
        "print({'loss': 0.4, 'learning_rate': 1e-4, 'epoch': 2.6})"
    )
    script = HF_LIKE_LOOP.format(last=250, after=after)
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / "train.log", "w") as out:
        subprocess.run([sys.executable, "-c", script], stdout=out, check=True, timeout=60)
    run = loaded(tmp_path).store.runs["run/train.log"]
    assert run.explicit_status is None and not run.meta.get("died_of")


NEWLINE_FIRST_WRITER = """\
import json, sys
with open(sys.argv[1], "w") as f:
    for step in range(1, 11):
        row = {"step": step, "loss": 1.0 / step, "val_loss": 1.2 / step}
        f.write(("\\n" if step > 1 else "") + json.dumps(row))  # the newline goes first
        f.flush()
"""


def test_the_unterminated_last_record_of_an_ended_run_is_read(tmp_path):
    """A writer that puts each newline before its JSON line leaves the last one unterminated:
    while the run may go on it is a torn line and waits; once the run has ended (the batch
    verdict) it is the last record, read once: a JSON object cut short would not parse."""
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "metrics.jsonl"
    subprocess.run([sys.executable, "-c", NEWLINE_FIRST_WRITER, str(path)], check=True)
    e = Engine([str(tmp_path)], use_watchdog=False)
    e.load()
    assert [s for s, _ in points(e)["loss"]] == list(range(1, 10))
    e.verdict()
    got = points(e)
    assert [s for s, _ in got["loss"]] == list(range(1, 11)) and got["val_loss"][-1] == (10, 0.12)
    e.verdict()  # a second look reads nothing twice
    assert len(points(e)["loss"]) == 10


def test_the_unterminated_last_record_is_read_live_once_the_run_goes_quiet(tmp_path):
    """Followed live: the record waits while the run may go on, and is read when the run is
    judged ended (here: quiet for longer than a 1 s stale limit; no writer process is known)."""
    from watchrun.config import Config

    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "metrics.jsonl"
    subprocess.run([sys.executable, "-c", NEWLINE_FIRST_WRITER, str(path)], check=True)
    e = Engine([str(tmp_path)], Config(stale_seconds=1.0), poll_seconds=0.1)
    e.load()
    deadline = time.monotonic() + 30
    while len(points(e).get("loss", [])) < 10 and time.monotonic() < deadline:
        e.tick()
        time.sleep(0.1)
    assert [s for s, _ in points(e)["loss"]] == list(range(1, 11))


def test_a_csv_row_cut_short_stays_unread_after_the_run_ends(tmp_path):
    """FAULTS P3: "0.2345" cut to "0.2" still parses, so an unterminated CSV row is never read,
    even once the run has ended (its value cannot be told from a whole one)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.4\n3,0.2")
    e = Engine([str(tmp_path)], use_watchdog=False)
    e.load()
    e.verdict()
    assert points(e)["loss"] == [(1, 0.5), (2, 0.4)]

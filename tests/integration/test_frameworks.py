"""Real, tiny Lightning, Keras and hand-written PyTorch runs with watchrun's integrations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on the torch that is installed

from watchrun.control import request_stop  # noqa: E402
from watchrun.engine import Engine  # noqa: E402

HERE = Path(__file__).parent


def start(script, *args):
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    return subprocess.Popen(
        [sys.executable, str(HERE / script), *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def alerts(root):
    e = Engine([str(root)], use_watchdog=False)
    e.load()
    e.detect(final=True)
    return e, {k: {a.detector for a in e.store.alerts_for(k)} for k in e.visible_keys()}


def stop_and_wait(root, run_dir, proc, key_part):
    deadline = time.time() + 300
    log = run_dir / "watchrun.jsonl"
    # stop once an evaluation is logged: the run's checks need one, however fast the stop comes
    while time.time() < deadline and not (log.exists() and b'"val_' in log.read_bytes()):
        time.sleep(0.2)
    e = Engine([str(root)], use_watchdog=False)
    e.load()
    key = next(k for k in e.store.runs if key_part in k and e.store.runs[k].pid)
    assert e.store.runs[key].pid == proc.pid
    request_stop(e.store.runs[key], "test")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    done = json.loads((run_dir / ".watchrun-stop.done").read_text())
    assert os.path.exists(done["checkpoint"])
    return done


def test_lightning_collapse_is_called(tmp_path):
    pytest.importorskip("lightning")
    proc = start("train_lightning.py", tmp_path, 3, "collapse")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    run_dir = tmp_path / "lightning_logs" / "version_0"
    rows = [json.loads(line) for line in (run_dir / "watchrun.jsonl").read_text().splitlines()]
    assert any(r.get("val_top_class_share") == 1.0 for r in rows)
    # the same numbers as scikit-learn's report on the same predictions (every one is class 0)
    import lightning.pytorch as pl
    import numpy as np
    import torch
    from sklearn.metrics import classification_report

    pl.seed_everything(0)
    y = (torch.randn(512, 8)[:, 0] > 0).long().numpy()
    report = classification_report(
        y, np.zeros_like(y), labels=[0, 1], output_dict=True, zero_division=0
    )
    last = [r for r in rows if "val_f1_class_neg" in r][-1]
    assert last["val_f1_class_neg"] == pytest.approx(report["0"]["f1-score"])
    assert last["val_recall_class_pos"] == pytest.approx(report["1"]["recall"])
    assert last["val_support_class_pos"] == report["1"]["support"]
    assert last["val_macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    _, fired = alerts(tmp_path)
    assert "prediction_collapse" in fired["lightning_logs/version_0"]


def test_lightning_stop_request(tmp_path):
    pytest.importorskip("lightning")
    proc = start("train_lightning.py", tmp_path, 10_000, "long")
    done = stop_and_wait(tmp_path, tmp_path / "lightning_logs" / "version_0", proc, "version_0")
    assert done["step"] < 10_000 * 16


def test_keras_minority_matches_sklearn_and_is_called(tmp_path):
    pytest.importorskip("keras")
    import numpy as np
    from sklearn.metrics import classification_report

    run_dir = tmp_path / "keras_run"
    proc = start("train_keras.py", run_dir, 4, "imbalanced")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    rng = np.random.default_rng(0)
    rng.normal(size=(600, 6))
    y = (rng.random(600) < 0.1).astype("int64")[:200]
    preds = np.load(run_dir / "final_preds.npy")
    report = classification_report(y, preds, labels=[0, 1], output_dict=True, zero_division=0)
    last = [json.loads(line) for line in (run_dir / "watchrun.jsonl").read_text().splitlines()][-1]
    assert last["val_f1_class_rare"] == pytest.approx(report["1"]["f1-score"])
    assert last["val_recall_class_common"] == pytest.approx(report["0"]["recall"])
    csv_header = (run_dir / "training_log.csv").read_text().splitlines()[0]
    assert "val_f1_class_rare" in csv_header  # through Keras' own logs, CSVLogger got them too
    _, fired = alerts(tmp_path)
    assert (
        "minority_class_hidden" in fired["keras_run"] or "prediction_collapse" in fired["keras_run"]
    )


def test_keras_stop_request(tmp_path):
    pytest.importorskip("keras")
    run_dir = tmp_path / "keras_long"
    proc = start("train_keras.py", run_dir, 100_000, "long")
    stop_and_wait(tmp_path, run_dir, proc, "keras_long")


def test_hand_loop_logs_and_stops(tmp_path):
    pytest.importorskip("torch")
    run_dir = tmp_path / "loop"
    proc = start("train_torch.py", run_dir, 10_000_000)
    done = stop_and_wait(tmp_path, run_dir, proc, "loop")
    e, fired = alerts(tmp_path)
    run = e.store.runs["loop"]
    assert "val_f1_class_1" in run.series and run.meta["max_steps"] == 10_000_000
    assert done["step"] < 10_000_000

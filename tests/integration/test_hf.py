"""A real, tiny HF Trainer run on the CPU with watchrun's callback: the per-class numbers equal
scikit-learn's classification_report, watchrun reads them and the detectors use them, and a stop
request ends the run with a checkpoint and exit status 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from sklearn.metrics import classification_report  # noqa: E402

from watchrun.control import request_stop  # noqa: E402
from watchrun.engine import Engine  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "train_hf.py")


def run_script(out, *args, **kw):
    return subprocess.Popen([sys.executable, SCRIPT, str(out), *map(str, args)], **kw)


def test_per_class_metrics_match_sklearn_and_minority_is_called(tmp_path):
    out = tmp_path / "imbalanced"
    proc = run_script(out, 40, 0.15)
    assert proc.wait(timeout=600) == 0
    import torch

    final = torch.load(out / "final_predictions.pt", weights_only=False)
    report = classification_report(
        final["labels"], final["preds"], labels=[0, 1], output_dict=True, zero_division=0
    )
    rows = [json.loads(line) for line in (out / "watchrun.jsonl").read_text().splitlines()]
    last_eval = [r for r in rows if "eval_f1_class_minority" in r][-1]
    for i, name in enumerate(["majority", "minority"]):
        assert last_eval[f"eval_f1_class_{name}"] == pytest.approx(report[str(i)]["f1-score"])
        assert last_eval[f"eval_recall_class_{name}"] == pytest.approx(report[str(i)]["recall"])
        assert last_eval[f"eval_precision_class_{name}"] == pytest.approx(
            report[str(i)]["precision"]
        )
        assert last_eval[f"eval_support_class_{name}"] == report[str(i)]["support"]
    assert last_eval["eval_macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    engine = Engine([str(tmp_path)], use_watchdog=False)
    engine.load()
    engine.detect(final=True)
    run = engine.store.runs["imbalanced"]
    assert {"run-card", "jsonl", "console"} & run.formats >= {"run-card", "jsonl"}
    assert run.meta["max_steps"] == 40 and run.pid is not None
    fired = {a.detector for a in engine.store.alerts_for("imbalanced")}
    assert "minority_class_hidden" in fired


def test_stop_request_saves_and_ends_the_run(tmp_path):
    out = tmp_path / "long"
    proc = run_script(out, 100_000, 0.5, 1000)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "watchrun.jsonl").exists():
            time.sleep(0.2)
        engine = Engine([str(tmp_path)], use_watchdog=False)
        engine.load()
        run = engine.store.runs["long"]
        assert run.pid == proc.pid  # from the run card
        request_stop(run, "test")
        assert proc.wait(timeout=120) == 0
        done = json.loads((out / ".watchrun-stop.done").read_text())
        assert done["step"] < 100_000 and os.path.isdir(done["checkpoint"])
        assert not (out / ".watchrun-stop").exists()
        engine.scan()
        engine.poll()
        engine.update_statuses()
        assert engine.store.runs["long"].status.value == "stopped"
        assert any("stopped on request" in m for _, m in engine.store.runs["long"].events)
    finally:
        if proc.poll() is None:
            proc.kill()

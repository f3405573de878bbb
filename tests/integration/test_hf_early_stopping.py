"""A real, tiny HF Trainer run with EarlyStoppingCallback, its console captured to a file as
nohup/tee would: watchrun reads the stop from the callback's saved state (not from a progress
bar), at the step where training stopped, with the best checkpoint; the console's
`Writing model shards: 1/1` bar is not taken as the planned length."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from watchrun.engine import Engine  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "train_hf_early.py")


def test_early_stopping_callback_state_gives_the_stop_step_and_best_checkpoint(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / "train.log", "w") as console:
        proc = subprocess.run(
            [sys.executable, SCRIPT, str(out)],
            stdout=console,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    assert proc.returncode == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] < state["max_steps"]  # the callback stopped it
    engine = Engine([str(tmp_path)], use_watchdog=False)
    engine.check()
    alerts = engine.store.alerts_for("run")
    [stop] = [a for a in alerts if a.detector == "early_stopped"]
    assert stop.step == state["global_step"]
    assert "EarlyStoppingCallback" in stop.message and "patience 2" in stop.message
    assert stop.evidence["best_checkpoint"] == os.path.basename(state["best_model_checkpoint"])
    assert engine.store.runs["run"].meta["max_steps"] == state["max_steps"]
    assert not [a for a in alerts if a.detector in ("sparse_eval", "lr_schedule")]

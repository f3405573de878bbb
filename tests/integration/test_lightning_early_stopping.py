"""A real, tiny Lightning run with EarlyStopping and ModelCheckpoint: the stop is placed at the
step where it shows (the run's last logged step, never step 0), with the best epoch's checkpoint;
read from the console's EarlyStopping line when it is captured, and from max_epochs among the
hparams against the epoch column when it is not."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("lightning")

from watchrun.engine import Engine  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "train_lightning_early.py")


def _stop(root):
    engine = Engine([str(root)], use_watchdog=False)
    engine.check()
    [stop] = [
        a
        for a in engine.store.alerts_for("lightning_logs/version_0")
        if a.detector == "early_stopped"
    ]
    return stop


def test_lightning_early_stopping_step_and_best_checkpoint(tmp_path):
    root = tmp_path / "pl"
    console = tmp_path / "train.log"
    with open(console, "w") as fh:
        assert (
            subprocess.run(
                [sys.executable, SCRIPT, str(root)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=600,
            ).returncode
            == 0
        )
    version = root / "lightning_logs" / "version_0"
    with open(version / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    last_step = max(int(r["step"]) for r in rows)
    last_epoch = max(int(r["epoch"]) for r in rows)
    [ckpt] = os.listdir(version / "checkpoints")

    no_console = _stop(root)
    assert no_console.step == last_step
    assert f"stopped after epoch {last_epoch + 1} of 60" in no_console.message
    assert no_console.evidence["best_checkpoint"] == ckpt

    shutil.copy(console, version / "train.log")  # as `| tee version_0/train.log` would keep it
    with_console = _stop(root)
    assert (
        with_console.step == last_step
        and "val_loss did not improve in 2 evals" in with_console.message
    )
    assert with_console.evidence["best_checkpoint"] == ckpt

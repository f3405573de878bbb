"""watchrun.toml (thresholds, targets, metric aliases, keys) and notifications."""

from __future__ import annotations

import json
import time

import pytest
from tests.unit.helpers import loaded

from watchrun.config import ConfigError, load_config, parse_target
from watchrun.model import Alert, Severity
from watchrun.notify import osc_sequences, run_hook


def test_toml_thresholds_aliases_targets_and_keys(tmp_path):
    (tmp_path / "watchrun.toml").write_text(
        "[detectors.overfitting]\nmin_rise = 0.5\n[detectors.grad_spike]\nenabled = false\n"
        '[targets]\nval_rmse = "<=0.15"\n[metrics]\n"dev_objective" = "val_loss"\n'
        '[keys]\nstop_run = "x,ctrl+k"\n[ui]\ntheme = "watchrun-light"\n'
    )
    cfg = load_config([str(tmp_path)], targets=["test_acc>=0.9"])
    assert cfg.detector("overfitting", {"min_rise": 0.1, "patience": 3}) == {
        "min_rise": 0.5,
        "patience": 3,
    }
    assert not cfg.enabled("grad_spike") and cfg.enabled("nan_loss")
    assert [str(t) for t in cfg.targets] == ["val_rmse <= 0.15", "test_acc >= 0.9"]
    assert cfg.aliases == {"dev_objective": "val_loss"} and cfg.keys["stop_run"] == "x,ctrl+k"
    assert cfg.theme == "watchrun-light"


def test_alias_makes_an_unknown_metric_a_validation_loss(tmp_path):
    run = tmp_path / "r" / "metrics.csv"
    run.parent.mkdir()
    rows = [(e, 1.0 / (e + 1), 0.5 + (0.05 * (e - 4) if e > 4 else -0.02 * e)) for e in range(14)]
    run.write_text(
        "step,train_loss,dev_objective\n" + "".join(f"{e},{t:.4f},{v:.4f}\n" for e, t, v in rows)
    )
    (tmp_path / "watchrun.toml").write_text('[metrics]\n"dev_objective" = "val_loss"\n')
    from watchrun.engine import Engine

    plain = loaded(tmp_path)
    plain.detect(final=True)
    assert not [a for a in plain.store.alerts_for("r") if a.detector == "overfitting"]
    e = Engine([str(tmp_path)], load_config([str(tmp_path)]), use_watchdog=False)
    e.load()
    e.detect(final=True)
    assert [a for a in e.store.alerts_for("r") if a.detector == "overfitting"]


def test_bad_targets_and_config_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError):
        parse_target("val_rmse about 0.15")
    (tmp_path / "watchrun.toml").write_text("[detectors\n")
    with pytest.raises(ConfigError):
        load_config([str(tmp_path)])


def test_osc_notifications_and_tmux_passthrough(monkeypatch):
    monkeypatch.delenv("TMUX", raising=False)
    plain = osc_sequences("watchrun: run", "NaN at step 79")
    assert (
        plain.startswith("\x1b]9;watchrun: run: NaN at step 79\x07") and "\x1b]777;notify;" in plain
    )
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    wrapped = osc_sequences("t", "b")
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b]9;") and wrapped.endswith("\x1b\\")


def test_on_alert_hook_gets_the_alert_as_json(tmp_path):
    out = tmp_path / "hook.json"
    alert = Alert(
        "run",
        "nan_loss",
        Severity.CRITICAL,
        79,
        ["loss"],
        "loss is nan",
        {"value": float("nan")},
        "stop",
    )
    run_hook(f"cat > {out}", alert)
    deadline = time.time() + 5
    while time.time() < deadline and not (out.exists() and out.stat().st_size):
        time.sleep(0.05)
    got = json.loads(out.read_text())
    assert got["detector"] == "nan_loss" and got["step"] == 79 and got["evidence"]["value"] == "nan"

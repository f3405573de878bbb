"""watchrun.toml is validated at load: a wrong type, a value out of range or an unknown name is
refused with the file, the line and the key (exit 2), never a traceback or silently dropped
alerts."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest

from watchrun.config import ConfigError, key_line, load_config

OVERFITTING_CSV = "step,train_loss,val_loss\n" + "".join(
    f"{e},{1.0 / (e + 1):.4f},{0.5 + (0.05 * (e - 4) if e > 4 else -0.02 * e):.4f}\n"
    for e in range(14)
)


def _watchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "watchrun", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _run_dir(tmp_path, toml: str):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.csv").write_text(OVERFITTING_CSV)
    (tmp_path / "watchrun.toml").write_text(toml)
    return tmp_path


def _error(tmp_path, toml: str) -> str:
    (tmp_path / "watchrun.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config([str(tmp_path)])
    return str(info.value)


def test_check_refuses_a_threshold_of_the_wrong_type_with_file_line_and_key(tmp_path):
    _run_dir(tmp_path, '# thresholds\n[detectors.overfitting]\npatience = 3\nmin_rise = "abc"\n')
    got = _watchrun("check", ".", cwd=tmp_path)
    assert got.returncode == 2, got.stderr
    assert "Traceback" not in got.stderr
    assert "watchrun.toml:4:" in got.stderr and "detectors.overfitting.min_rise" in got.stderr
    assert "'abc'" in got.stderr


def test_a_valid_config_still_changes_thresholds_and_check_still_alerts(tmp_path):
    _run_dir(tmp_path, "[detectors.overfitting]\nmin_rise = 0.15\npatience = 3.0\n")
    cfg = load_config([str(tmp_path)])
    assert cfg.detectors["overfitting"] == {"min_rise": 0.15, "patience": 3}
    assert isinstance(cfg.detectors["overfitting"]["patience"], int)
    got = _watchrun("check", ".", cwd=tmp_path)
    assert got.returncode == 1 and "overfitting" in got.stdout, got.stdout + got.stderr


def test_unknown_detector_parameter_and_section_get_a_did_you_mean(tmp_path):
    text = _error(
        tmp_path,
        "stale_secnds = 60\n[detectors.overfiting]\nmin_rise = 0.2\n"
        "[detectors.divergence]\nratoi = 2.0\n[detector]\nx = 1\n",
    )
    lines = text.splitlines()
    assert len(lines) == 4
    assert any(":1: stale_secnds: unknown" in ln and "'stale_seconds'" in ln for ln in lines)
    assert any(
        ":2: detectors.overfiting: unknown detector" in ln and "'overfitting'" in ln for ln in lines
    )
    assert any(
        ":5: detectors.divergence.ratoi: unknown parameter" in ln and "'ratio'" in ln
        for ln in lines
    )
    assert any(":6: detector: unknown" in ln and "'detectors'" in ln for ln in lines)


@pytest.mark.parametrize(
    ("toml", "line", "key", "words"),
    [
        (
            "[detectors.overfitting]\npatience = 2.5\n",
            2,
            "detectors.overfitting.patience",
            "whole number",
        ),
        ("[detectors.overfitting]\nmin_rise = -0.1\n", 2, "detectors.overfitting.min_rise", ">= 0"),
        (
            "[detectors.overfitting]\nmin_rise = nan\n",
            2,
            "detectors.overfitting.min_rise",
            "number",
        ),
        (
            '[detectors.grad_spike]\nenabled = "no"\n',
            2,
            "detectors.grad_spike.enabled",
            "true or false",
        ),
        (
            "[detectors.nan_loss]\ngrad_norm_persist = true\n",
            2,
            "detectors.nan_loss.grad_norm_persist",
            "number",
        ),
        ("settle_seconds = 0\n", 1, "settle_seconds", "> 0"),
        ('stale_seconds = "2m"\n', 1, "stale_seconds", "> 0"),
        ("detectors = 3\n", 1, "detectors", "table"),
        ("[detectors]\noverfitting = 0.1\n", 2, "detectors.overfitting", "table"),
        ("[targets]\nval_rmse = 0.15\n", 2, "targets.val_rmse", "<=0.15"),
        ('[targets]\nval_rmse = "about 0.15"\n', 2, "targets.val_rmse", "<=0.15"),
        ("[targets]\nval_rmse = {maxx = 0.15}\n", 2, "targets.val_rmse", "max = 0.15"),
        ('[metrics]\ndev_objective = "my_thing"\n', 2, "metrics.dev_objective", "role"),
        ("[metrics]\ndev_objective = 3\n", 2, "metrics.dev_objective", "role"),
        ("[keys]\nstop_run = 5\n", 2, "keys.stop_run", "commas"),
        ('[keys]\nstop_run = "x,,k"\n', 2, "keys.stop_run", "commas"),
        ('[ui]\nthem = "watchrun-light"\n', 2, "ui.them", "'theme'"),
        ("[ui]\ntheme = 1\n", 2, "ui.theme", "theme name"),
    ],
)
def test_each_wrong_value_is_named_with_its_line(tmp_path, toml, line, key, words):
    text = _error(tmp_path, toml)
    assert f"watchrun.toml:{line}: {key}: " in text and words in text


def test_dotted_keys_and_inline_tables_are_found_on_their_line(tmp_path):
    text = _error(tmp_path, "[detectors]\n\ndivergence = { ratio = 3.0, windw = 5 }\n")
    assert ":3: detectors.divergence.windw" in text and "'window'" in text
    text = _error(tmp_path, '# a comment\ndetectors.overfitting.min_rise = "x"\n')
    assert ":2: detectors.overfitting.min_rise" in text


def test_key_line_tells_a_key_from_a_longer_one():
    lines = ["[detectors.overfitting]", "min_rise_without_train = 1", "min_rise = 'x'"]
    assert key_line(lines, ("detectors", "overfitting", "min_rise")) == 3
    assert (
        key_line(
            ["[detectors.'overfitting']", '  "min_rise"= 1'],
            ("detectors", "overfitting", "min_rise"),
        )
        == 2
    )


def test_unknown_binding_id_in_keys_stops_the_app_before_it_starts(tmp_path):
    """In a real terminal (a pty), so that only the [keys] check stands between it and the UI."""
    import pty

    _run_dir(tmp_path, '[ui]\ntheme = "watchrun-light"\n[keys]\nquit = "q"\nstop_rn = "x,ctrl+k"\n')
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchrun", str(tmp_path)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    try:
        code = proc.wait(timeout=60)
        text = b""
        with contextlib.suppress(OSError):  # EIO once the child's side is closed
            while chunk := os.read(master, 4096):
                text += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert code == 2
    assert b"watchrun.toml:5: keys.stop_rn: unknown binding id (did you mean 'stop_run'?)" in text


def test_check_key_ids_accepts_the_apps_ids(tmp_path):
    from watchrun.config import check_key_ids

    (tmp_path / "watchrun.toml").write_text('[keys]\nstop_run = "x"\nquit = "q"\n')
    check_key_ids(load_config([str(tmp_path)]), ["stop_run", "quit", "help"])


def test_the_stalled_alert_can_be_turned_off(tmp_path):
    from watchrun.detectors.runner import DetectorRunner
    from watchrun.store import Store

    (tmp_path / "watchrun.toml").write_text("[detectors.stalled]\nenabled = false\n")
    cfg = load_config([str(tmp_path)])
    store = Store()
    run = store.run("r", root=str(tmp_path))
    run.active_this_session, run.last_write, run.write_intervals = True, 1000.0, [5.0, 5.0, 5.0]
    # a stall is called only while a writer lives: a real process holding the run's file open
    log = tmp_path / "metrics.csv"
    writer = subprocess.Popen(
        [sys.executable, "-c", f"f = open({str(log)!r}, 'a'); print('open', flush=True); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "open"
        run.files.add(str(log))
        off, on = DetectorRunner(store, cfg), DetectorRunner(store, load_config([]))
        for runner in (off, on):
            runner.process()
        assert off.check_stalled(now=1000.0 + 3600) == []
        assert [a.detector for a in on.check_stalled(now=1000.0 + 3600)] == ["stalled"]
    finally:
        writer.kill()
        writer.wait()

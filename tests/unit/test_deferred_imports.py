"""`import watchrun`, the core modules and `watchrun ls` of scalar runs load no crc32c, protobuf,
PyYAML or detectors until a file or a command needs them (each costs tens of milliseconds at
start-up); psutil waits for the first process looked at. Checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from watchrun.sources import tfscan

HEAVY = ("crc32c", "google.protobuf", "yaml", "psutil", "watchrun.detectors", "tensorboard")


def loaded_after(code: str) -> list[str]:
    probe = (
        code + f"\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=os.environ
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_core_loads_none_of_them() -> None:
    assert (
        loaded_after(
            "import watchrun, watchrun.cli, watchrun.engine, watchrun.store, watchrun.config"
        )
        == []
    )


def test_ls_of_csv_runs_loads_none_of_them(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "step,train_loss\n" + "".join(f"{i},{1 / (i + 1)}\n" for i in range(50))
    )
    code = f"from watchrun.cli import main\nmain(['ls', {str(tmp_path)!r}])"
    assert loaded_after(code) == []


@pytest.mark.skipif(
    not tfscan.available(), reason="the compiled TFRecord scanner is not built here"
)
def test_ls_of_scalar_event_files_needs_no_crc32c_nor_protobuf(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb"))
    for i in range(100):
        w.add_scalar("train/loss", 1.0 / (i + 1), i)
    w.close()
    code = f"from watchrun.cli import main\nmain(['ls', {str(tmp_path)!r}])"
    left = set(loaded_after(code)) - {"psutil"}  # the file name holds the writer's pid: checked
    assert left == set()


def test_check_loads_the_detectors(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "step,train_loss\n" + "".join(f"{i},{1 / (i + 1)}\n" for i in range(50))
    )
    code = (
        f"from watchrun.cli import main\ntry:\n    main(['check', {str(tmp_path)!r}])\n"
        "except SystemExit:\n    pass"
    )
    assert "watchrun.detectors" in loaded_after(code)


def test_the_core_defers_the_standard_modules_only_some_paths_need() -> None:
    """tomllib (a watchrun.toml), difflib (a misspelt name), fractions (runs compared),
    logging (watching), socket (a run's host): a few milliseconds each at every start-up."""
    code = (
        "import sys, json, watchrun.cli, watchrun.engine\n"
        "names = ('tomllib', 'difflib', 'fractions', 'logging', 'socket')\n"
        "print(json.dumps([m for m in names if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

"""The headless core never imports the app, textual or plotext: the import-linter contract in
pyproject.toml, checked by `lint-imports` over the source tree, and shown to break when a core
module gains such an import (directly, or through another core module)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTRACT = "The headless core never imports the app, textual or plotext"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the contracts of `root`/pyproject.toml over `root`/src."""
    exe = shutil.which("lint-imports")
    assert exe, "lint-imports is not installed (pip install -e '.[test]')"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), *sys.path])}
    return subprocess.run(
        [exe, "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_core_keeps_the_import_isolation_contract() -> None:
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{CONTRACT} KEPT" in out.stdout
    assert "1 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("engine.py", "import textual", "watchrun.engine is not allowed to import textual"),
        (
            "detectors/base.py",
            "import plotext",
            "watchrun.detectors is not allowed to import plotext",
        ),
        (  # indirectly: every core module that imports the tail now reaches the app
            "tail.py",
            "from watchrun.app import text",
            "watchrun.sources is not allowed to import watchrun.app",
        ),
    ],
)
def test_the_import_isolation_contract_breaks_on_a_bad_import(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        REPO / "src" / "watchrun",
        tmp_path / "src" / "watchrun",
        ignore=shutil.ignore_patterns("__pycache__", "*.so"),
    )
    with open(tmp_path / "src" / "watchrun" / module, "a") as fh:
        fh.write(f"\n{line}\n")
    out = lint_imports(tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{CONTRACT} BROKEN" in out.stdout
    assert broken in out.stdout

"""Real trainings with the libraries' own default logging, no watchrun code in them: a healthy
run raises no warning, an overfitting run is called `overfitting`, whatever wrote it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from watchrun.engine import Engine
from watchrun.model import Severity

HERE = Path(__file__).parent
FRAMEWORKS = ("lightning", "keras", "torch", "hf")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every framework x mode, two trainings at a time (the box has two cores)."""
    root = tmp_path_factory.mktemp("plain")
    env = {**os.environ, "KERAS_BACKEND": "torch", "TOKENIZERS_PARALLELISM": "false"}
    jobs = [(fw, mode) for fw in FRAMEWORKS for mode in ("healthy", "overfit")]
    errors = {}
    for i in range(0, len(jobs), 2):
        procs = {job: subprocess.Popen([sys.executable, str(HERE / "train_plain.py"), job[0], job[1], str(root / job[0] / job[1])],
                                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for job in jobs[i : i + 2]}
        for job, proc in procs.items():
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                errors[job] = err[-2000:]
    assert not errors, errors
    return root


def warnings_in(path: Path) -> dict[str, set[str]]:
    e = Engine([str(path)], use_watchdog=False)
    e.check()
    return {k: {a.detector for a in e.store.alerts_for(k) if a.severity is not Severity.INFO}
            for k in e.visible_keys()}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_healthy_run_raises_no_warning(trained, framework):
    got = warnings_in(trained / framework / "healthy")
    assert got and all(not v for v in got.values()), got


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_overfitting_run_is_called(trained, framework):
    got = warnings_in(trained / framework / "overfit")
    assert got and all("overfitting" in v for v in got.values()), got

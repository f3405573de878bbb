"""Real trainings with the libraries' own default logging, no watchrun code in them: a healthy
run raises no warning; an overfitting run, a learning rate of 0 and a model that only predicts
the majority class each get their alert, whatever wrote them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from watchrun.engine import Engine
from watchrun.model import Severity

HERE = Path(__file__).parent
pytestmark = pytest.mark.timeout(900)  # the first test waits for all sixteen trainings
FRAMEWORKS = ("lightning", "keras", "torch", "hf")
MODES = ("healthy", "overfit", "frozen", "collapse")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every framework x mode: one process per framework, two at a time (two cores here)."""
    root = tmp_path_factory.mktemp("plain")
    env = {**os.environ, "KERAS_BACKEND": "torch", "TOKENIZERS_PARALLELISM": "false"}
    errors = {}
    for pair in (FRAMEWORKS[:2], FRAMEWORKS[2:]):
        procs = {fw: subprocess.Popen([sys.executable, str(HERE / "train_plain.py"), fw, str(root / fw), *MODES],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for fw in pair}
        for fw, proc in procs.items():
            _, err = proc.communicate(timeout=800)
            if proc.returncode != 0:
                errors[fw] = err[-2000:]
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


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_learning_rate_zero_is_not_learning(trained, framework):
    got = warnings_in(trained / framework / "frozen")
    assert got and all("not_learning" in v for v in got.values()), got


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_majority_class_only_is_a_collapse(trained, framework):
    got = warnings_in(trained / framework / "collapse")
    assert got and all("prediction_collapse" in v for v in got.values()), got

"""Real trainings with the libraries' own default logging, no watchrun code in them: a healthy
run, short or long, raises no warning; an overfitting run, a learning rate of 0, a learning rate
far too high and a model that only predicts the majority class each get their alert, whatever
wrote them; a loop that evaluates the untrained weights gets a stuck metric."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from watchrun.engine import Engine
from watchrun.model import Severity

HERE = Path(__file__).parent
pytestmark = pytest.mark.timeout(900)  # the first test waits for all 27 trainings
FRAMEWORKS = ("lightning", "keras", "torch", "hf")
MODES = ("healthy", "long", "overfit", "frozen", "collapse", "too_high")
ONLY = {
    "torch": ("stale_eval", "blow_up"),
    "lightning": ("resumed",),
}  # modes one library shows best


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every framework x mode: one process per framework, two at a time (two cores here)."""
    root = tmp_path_factory.mktemp("plain")
    env = {**os.environ, "KERAS_BACKEND": "torch", "TOKENIZERS_PARALLELISM": "false"}
    errors = {}
    for pair in (FRAMEWORKS[:2], FRAMEWORKS[2:]):
        procs = {
            fw: subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "train_plain.py"),
                    fw,
                    str(root / fw),
                    *MODES,
                    *ONLY.get(fw, ()),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for fw in pair
        }
        for fw, proc in procs.items():
            _, err = proc.communicate(timeout=800)
            if proc.returncode != 0:
                errors[fw] = err[-2000:]
    assert not errors, errors
    return root


def warnings_in(path: Path) -> dict[str, set[str]]:
    e = Engine([str(path)], use_watchdog=False)
    e.check()
    return {
        k: {a.detector for a in e.store.alerts_for(k) if a.severity is not Severity.INFO}
        for k in e.visible_keys()
    }


@pytest.mark.parametrize("mode", ["healthy", "long"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_healthy_run_raises_no_warning(trained, framework, mode):
    got = warnings_in(trained / framework / mode)
    assert got and all(not v for v in got.values()), got


def test_run_resumed_from_its_checkpoint_raises_no_warning(trained):
    """The resumed part starts at step ~129 with the loss already low and flat: no trend to see,
    and none to miss. The TensorBoard version holds both parts, the CSV only the resumed one: one
    training through two loggers, one run (issue 11), read from the richer one."""
    got = warnings_in(trained / "lightning" / "resumed")
    assert set(got) == {"resumed"} and all(not v for v in got.values()), got
    e = Engine([str(trained / "lightning" / "resumed")], use_watchdog=False)
    e.load()
    run = e.store.runs["resumed"]
    assert {"tensorboard", "lightning-csv"} <= run.formats and run.joined
    steps = run.series["train_loss_step"].steps.tolist()
    assert steps[0] < 100 and max(steps) > 100 and len(steps) == len(set(steps))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_overfitting_run_is_called(trained, framework):
    got = warnings_in(trained / framework / "overfit")
    assert got and all("overfitting" in v for v in got.values()), got


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_learning_rate_zero_is_not_learning(trained, framework):
    """The evals never change (a stuck metric from the first eval), and the train loss either
    repeats exactly or hovers at chance (ln 2: an untrained binary model) without a trend."""
    got = warnings_in(trained / framework / "frozen")
    assert got and all(
        "stuck_metric" in v and v & {"not_learning", "loss_at_chance"} for v in got.values()
    ), got


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_majority_class_only_is_a_collapse(trained, framework):
    got = warnings_in(trained / framework / "collapse")
    assert got and all("prediction_collapse" in v for v in got.values()), got


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_learning_rate_far_too_high_is_called_and_not_taken_for_overfitting(trained, framework):
    """The loss never leaves chance (or the outputs saturate): at chance or not learning. The
    validation loss sits above its first eval while the train loss falls back from the blow-up:
    that is not overfitting, and calling it so would send the user to add regularisation."""
    got = warnings_in(trained / framework / "too_high")
    assert got and all(
        v & {"loss_at_chance", "not_learning"} and "overfitting" not in v for v in got.values()
    ), got


def test_evaluating_the_untrained_weights_is_a_stuck_metric(trained):
    e = Engine([str(trained / "torch" / "stale_eval")], use_watchdog=False)
    e.check()
    stuck = [a for a in e.store.alerts_for("runs/exp") if a.detector == "stuck_metric"]
    # one frozen evaluation: one alert naming both of its metrics
    assert len(stuck) == 1 and set(stuck[0].metrics) == {"Loss/test", "Accuracy/test"}
    assert all(
        "while Loss/train moved" in a.message and "trained weights" in a.action for a in stuck
    )
    assert all(a.step == 160 for a in stuck)  # the fifth eval: as soon as five are identical


def test_loss_blown_up_in_the_first_steps_is_divergence(trained):
    """The hand loop logs the untrained loss at step 0 (~ln 2), then ~1e6: critical at the third
    blown-up log, long before the loss wanders back to single digits and hides it."""
    e = Engine([str(trained / "torch" / "blow_up")], use_watchdog=False)
    e.check()
    div = [a for a in e.store.alerts_for("runs/exp") if a.detector == "divergence"]
    assert div and div[0].severity is Severity.CRITICAL and div[0].step <= 40, div
    assert "blew up in the first steps" in div[0].message and div[0].evidence["first_step"] == 0


@pytest.mark.parametrize(
    ("noise", "expected"),
    [
        (1.2, {"minority_class_hidden": None}),
        (0.2, {}),
        (100.0, {"prediction_collapse": 1, "minority_class_hidden": 2}),
    ],
)
def test_keras_binary_recall_far_below_accuracy_is_a_hidden_minority(tmp_path, noise, expected):
    """10% positives and Keras' own Precision()/Recall(). A hard signal: the accuracy sits at 0.92
    while the positive class's recall stays low (called once it and the AUC stop climbing; the
    precision of 1 on a handful of positive predictions is no perfect validation). An easy one:
    the recall passes 0.5 by the third epoch, nothing is called. Labels independent of the
    inputs: no positive prediction at all (precision and recall 0) is a collapse from the second
    eval, and the zeros are not also reported as stuck metrics."""
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    subprocess.run(
        [sys.executable, str(HERE / "train_keras_binary.py"), str(tmp_path), str(noise)],
        env=env,
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    e = Engine([str(tmp_path)], use_watchdog=False)
    e.check()
    got = {
        a.detector: a
        for a in e.store.alerts_for("training_log.csv")
        if a.severity is not Severity.INFO
    }
    # a hidden minority is called once its recall and the AUC have stopped climbing (None: the
    # step depends on when they do)
    assert {d: (a.step if expected.get(d) is not None else None) for d, a in got.items()} == (
        expected
    ), got
    if "minority_class_hidden" in got:
        alert = got["minority_class_hidden"]
        assert (
            alert.metrics == ["val_accuracy", "val_recall"] and alert.evidence["worst_value"] < 0.4
        )
    if "prediction_collapse" in got:
        assert "positive class is never predicted" in got["prediction_collapse"].message

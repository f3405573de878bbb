"""The labelled real runs (../shared/reallogs2/labels.json, and ../shared/reallogs with the
expectations read from its SOURCES.md in benchmarks/reallogs_labels.json), judged as `watchrun
check` judges them: no warning or critical on a run labelled healthy, and every high-confidence
label called (at any severity), whichever detector family it belongs to.

What is not achieved yet is marked xfail(strict=True) with the reason, so that this file gives
the true picture and a fix shows up as an unexpected pass. Runs watchrun does not read at all
(W&B folders, baselines progress.csv...) are skipped as such: reading them is the formats' work.
"""

from __future__ import annotations

import pytest
from benchmarks.detection import SHARED, Labelled, Outcome, judge, load_labels

from watchrun.model import Severity

# (set/dir, label) -> why it is not called yet
NOT_YET: dict[tuple[str, str], str] = {}
# set/dir -> why a run labelled healthy still gets a warning
FALSE_ALARMS: dict[str, str] = {}

_LABELS = load_labels(SHARED) if (SHARED / "reallogs2" / "labels.json").exists() else []


def _id(item: Labelled) -> str:
    return f"{item.set}/{item.name}"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    if not _LABELS:
        pytest.skip(f"labelled runs not present at {SHARED} (../shared next to the project)")
    return {}


def outcome(cache: dict[str, Outcome], item: Labelled) -> Outcome:
    key = _id(item)
    if key not in cache:
        cache[key] = judge(item)
    got = cache[key]
    if not got.read:
        pytest.skip(f"{key}: watchrun does not read this run's files yet (formats)")
    return got


def _healthy_cases() -> list:
    out = []
    for item in _LABELS:
        if item.healthy:
            marks = (
                [pytest.mark.xfail(strict=True, reason=FALSE_ALARMS[_id(item)])]
                if _id(item) in FALSE_ALARMS
                else []
            )
            out.append(pytest.param(item, id=_id(item), marks=marks))
    return out


def _label_cases() -> list:
    out = []
    for item in _LABELS:
        for label in item.labels:
            if item.healthy or item.confidence.get(label) != "high":
                continue
            why = NOT_YET.get((_id(item), label))
            marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
            out.append(pytest.param(item, label, id=f"{_id(item)}:{label}", marks=marks))
    return out


def test_the_labelled_set_is_there():
    if not _LABELS:
        pytest.skip(f"labelled runs not present at {SHARED} (../shared next to the project)")
    assert sum(it.set == "reallogs2" for it in _LABELS) >= 30
    assert sum(it.healthy for it in _LABELS) >= 10


@pytest.mark.parametrize("item", _healthy_cases())
def test_no_warning_on_a_healthy_run(outcomes, item):
    got = outcome(outcomes, item)
    loud = [
        (a.detector, a.severity.value, a.step)
        for a in got.alerts
        if a.severity is not Severity.INFO
    ]
    assert loud == []


@pytest.mark.parametrize(("item", "label"), _label_cases())
def test_high_confidence_label_is_called(outcomes, item, label):
    got = outcome(outcomes, item)
    assert got.calls(label), (
        f"{label} not called; alerts: {[(a.detector, a.step) for a in got.alerts]}"
    )


@pytest.mark.parametrize("item", [pytest.param(it, id=_id(it)) for it in _LABELS if not it.healthy])
def test_no_warning_from_a_detector_the_labels_do_not_name(outcomes, item):
    """A failing run's other warnings are false alarms too (a loud detector on the wrong
    failure)."""
    got = outcome(outcomes, item)
    wrong = [(a.detector, a.step) for a in got.false_alarms()]
    assert wrong == []

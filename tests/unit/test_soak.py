"""FAULTS L3: a writer process logs fast to four streams at once (TFRecord, CSV, JSONL,
console) while it rotates (with and without a new file), atomically replaces, copytruncates
and cuts records in half at random moments; the engine follows it. At the end the engine holds
exactly the writer's points for every stream: none lost, none doubled.

The writer logs every point it wrote, and the test compares against that log, not against a
formula (tests/unit/soak.py). CI runs a short soak; `pytest -m slow` runs the 60 s one at
10,000 events/s per stream (and benchmarks/soak.py prints its figures)."""

from __future__ import annotations

import os

import pytest
from tests.unit.soak import KINDS, run_soak

SECONDS = float(os.environ.get("WATCHRUN_SOAK_SECONDS", "6"))


def _check(result: dict, seconds: float, rate: int) -> None:
    for kind, r in result.items():
        faults = r["faults"]
        assert sum(faults.values()) >= 2, (kind, faults)  # the faults did happen
        assert r["written"] > seconds * rate * 0.3, (
            kind,
            r,
        )  # a busy writer, even on a slow machine
        assert (r["lost"], r["doubled"]) == (0, 0), (kind, r)
    assert set(result) == set(KINDS)


@pytest.mark.parametrize("mode", ["file-events", "polling"])
def test_l3_soak_every_stream_kind_loses_and_doubles_nothing(tmp_path, mode):
    """With file events, and with polling every 0.5 s (NFS): there, several faults often fall
    between two looks, and the generations in between must still be read, once."""
    result = run_soak(str(tmp_path), SECONDS, 2000, polling=mode == "polling")
    _check(result, SECONDS, 2000)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["file-events", "polling"])
def test_l3_soak_60s_10k_events_per_second(tmp_path, mode):
    result = run_soak(str(tmp_path), 60.0, 10_000, polling=mode == "polling")
    _check(result, 60.0, 10_000)

"""Every parser under hostile input (issue 9 section 3): well-formed records around one bad
record, fed whole and in three torn chunks through the real Source class. Properties: no
exception escapes; the test ends within its timeout (no hang: a per-test timeout, never a
timing assertion); every good record is read with its value; for TensorBoard the bad record
(a flipped bit, junk, a malformed tensor) adds no point at all and is counted.

A fixed seed and the example database in tests/.hypothesis-db make every run replay the same
cases, the saved failures first. benchmarks/fuzz.py runs the same cases by the thousand.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from tests.unit.fuzz_cases import CASES, check

DB = DirectoryBasedExampleDatabase(os.path.join(os.path.dirname(__file__), "..", ".hypothesis-db"))
EXAMPLES = int(os.environ.get("WATCHRUN_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=DB,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
cuts = st.tuples(st.floats(0, 1), st.floats(0, 1))


def _fuzz(name: str):  # type: ignore[no-untyped-def]
    case = CASES[name]

    @pytest.mark.timeout(900)
    @seed(20261130)
    @FUZZ
    @given(rec=case.strategy, cut=cuts)
    def test(rec, cut):  # type: ignore[no-untyped-def]
        before, bad, after = rec
        for torn in (False, True):
            out = check(case, before, bad, after, torn, cut)
            assert out.crash is None, out.crash
            assert out.lost == 0, out.details[:5]
            assert out.extra == 0, f"{out.extra} point(s) from the bad record"
            if name == "tensorboard":
                assert out.skipped >= 1, "the corrupt record was not counted"

    test.__name__ = f"test_fuzz_{name.replace('-', '_')}"
    return test


test_fuzz_csv = _fuzz("csv")
test_fuzz_lightning_csv = _fuzz("lightning-csv")
test_fuzz_keras_csv = _fuzz("keras-csv")
test_fuzz_jsonl = _fuzz("jsonl")
test_fuzz_console = _fuzz("console")
test_fuzz_tensorboard = _fuzz("tensorboard")
test_fuzz_hf_trainer = _fuzz("hf-trainer")
test_fuzz_mlflow_file = _fuzz("mlflow-file")
test_fuzz_mlflow_sqlite = _fuzz("mlflow-sqlite")
test_fuzz_trackio = _fuzz("trackio")
test_fuzz_dvclive = _fuzz("dvclive")
test_fuzz_run_card = _fuzz("run-card")

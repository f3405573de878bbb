import os
import sys
from pathlib import Path

import pytest

REALLOGS = Path(__file__).resolve().parents[2] / "shared" / "reallogs"
if os.environ.get("WATCHRUN_REALLOGS"):
    REALLOGS = Path(os.environ["WATCHRUN_REALLOGS"])


@pytest.fixture
def reallogs() -> Path:
    if not (REALLOGS / "SOURCES.md").exists():
        pytest.skip(f"real logs not present at {REALLOGS} (../shared/reallogs next to the project)")
    return REALLOGS


def pytest_configure(config):
    sys.setrecursionlimit(5000)

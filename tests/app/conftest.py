"""Fixtures of the app tests."""

from __future__ import annotations

import pytest
from tests.app.helpers import write_demo


@pytest.fixture
def demo(tmp_path):
    """The demo runs, written by the real writers, with fixed file times and a console log."""
    write_demo(tmp_path)
    return tmp_path

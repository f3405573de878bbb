"""watchrun: watch ML training runs from the terminal. `watchrun.read(path)` gives the runs as
pandas DataFrames (pandas is loaded only then)."""

from __future__ import annotations

from typing import Any

__all__ = ["read"]


def __getattr__(name: str) -> Any:
    if name == "read":
        from watchrun.api import read

        return read
    raise AttributeError(f"module 'watchrun' has no attribute {name!r}")

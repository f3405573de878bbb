"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tests.unit.live_trainer import Trainer


@pytest.fixture
def trainer_factory(tmp_path) -> Iterator[Callable[..., Trainer]]:
    """Start training-like processes (see live_trainer.Trainer); each is killed at the end."""
    made: list[Trainer] = []

    def make(grow_mb: int, workers: int = 0) -> Trainer:
        t = Trainer(tmp_path, grow_mb, workers)
        made.append(t)
        return t

    yield make
    for t in made:
        t.kill()

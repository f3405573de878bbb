"""Helpers of the app tests: the demo runs written by the real writers, fixed file times and
clock (stable pictures), waits on conditions instead of sleeps, the screen as text."""

from __future__ import annotations

import io
import os
import time

from rich.console import Console

from watchrun.app.app import WatchrunApp
from watchrun.config import Config
from watchrun.demo import write_all

FIXED = 1_700_000_000.0
CONSOLE_LINES = [
    "epoch 0 | step 40 | loss 1.92",
    "epoch 0 | step 80 | loss nan",
    "Traceback (most recent call last):",
    '  File "train.py", line 88, in <module>',
    "RuntimeError: Function 'LogSoftmaxBackward0' returned nan values in its 0th output.",
]


def write_demo(root) -> None:
    write_all(str(root))
    (root / "lm-nan" / "train.log").write_text("\n".join(CONSOLE_LINES) + "\n")
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), (FIXED, FIXED))


def make_app(path, config: Config | None = None, **kwargs) -> WatchrunApp:
    app = WatchrunApp([str(path)], config or Config(), quiet=True, **kwargs)
    app.clock = lambda: FIXED + 3600
    app.animation_level = "none"
    return app


async def wait_for(pilot, predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(0.05)
    return predicate()


async def loaded(pilot, runs: int = 5) -> None:
    """The first read, detection and snapshot are done and drawn."""
    app = pilot.app
    assert await wait_for(
        pilot,
        lambda: app.ready and len(app.snapshot.runs) == runs and app.main.selected is not None,
    )
    await pilot.pause(0.3)


def screen_text(app) -> str:
    """What the terminal shows now (after the line filters: --ascii, NO_COLOR)."""
    width = app.size.width
    console = Console(
        width=width, color_system=None, record=True, file=io.StringIO(), legacy_windows=False
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def select(pilot, key: str) -> None:
    """Move the run list's cursor down to `key`, as the user would."""
    app = pilot.app
    for _ in range(len(app.snapshot.runs)):
        if app.selected == key:
            break
        await pilot.press("j")
        await pilot.pause(0.05)
    assert await wait_for(pilot, lambda: app.selected == key)

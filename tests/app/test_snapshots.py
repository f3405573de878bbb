"""Snapshots of the main screens at 80x24 and 160x48 (pytest-textual-snapshot).
Data, file times and the clock are fixed so that the pictures are stable."""

from __future__ import annotations

import os

import pytest

from watchrun.app.app import WatchrunApp
from watchrun.config import Config
from watchrun.demo import write_all

FIXED = 1_700_000_000.0


@pytest.fixture
def demo(tmp_path):
    write_all(str(tmp_path))
    for root, _, files in os.walk(tmp_path):
        for f in files:
            os.utime(os.path.join(root, f), (FIXED, FIXED))
    return tmp_path


def make_app(path) -> WatchrunApp:
    app = WatchrunApp([str(path)], Config(), quiet=True)
    app.clock = lambda: FIXED + 3600
    app.animation_level = "none"
    return app


async def loaded(pilot, keys=()) -> None:
    app = pilot.app
    for _ in range(400):
        if app.ready and len(app.row_keys) == 5:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.5)
    app.selected = app.row_keys[0]
    app._refresh_runs()
    app._refresh_run_view()
    await pilot.pause(0.2)
    for k in keys:
        await pilot.press(k)
        await pilot.pause(0.3)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_main_screen(snap_compare, demo, size):
    assert snap_compare(make_app(demo), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_classes_tab(snap_compare, demo, size):
    async def before(pilot):
        await loaded(pilot)
        app = pilot.app
        app.selected = "turn-classifier"
        app._refresh_runs()
        app._refresh_run_view()
        app.query_one("#tabs").active = "tab-classes"
        await pilot.pause(0.3)

    assert snap_compare(make_app(demo), terminal_size=size, run_before=before)


def test_help_screen(snap_compare, demo):
    async def before(pilot):
        await loaded(pilot, keys=["question_mark"])

    assert snap_compare(make_app(demo), terminal_size=(100, 30), run_before=before)


def test_overview_screen(snap_compare, demo):
    async def before(pilot):
        await loaded(pilot, keys=["o"])

    assert snap_compare(make_app(demo), terminal_size=(160, 48), run_before=before)

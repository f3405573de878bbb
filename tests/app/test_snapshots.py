"""Pictures of the app (pytest-textual-snapshot) at 80x24, 120x36 and 200x50. Data, file times
and the clock are fixed so that they are stable. Regenerate with `--snapshot-update` and look at
them: each one must show the x axis with its numbers, the readout and the banner."""

from __future__ import annotations

import pytest
from tests.app.helpers import loaded, make_app, select, wait_for, write_demo

SIZES = [(80, 24), (120, 36), (200, 50)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, demo, size):
    assert snap_compare(make_app(demo), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_healthy_run_curves(snap_compare, demo, size):
    async def before(pilot):
        await loaded(pilot)
        await select(pilot, "healthy-resnet")
        await pilot.pause(0.3)

    assert snap_compare(make_app(demo), terminal_size=size, run_before=before)


def test_classes_tab_fits_120_columns(snap_compare, demo):
    async def before(pilot):
        await loaded(pilot)
        await select(pilot, "turn-classifier")
        await pilot.press("2")
        await pilot.pause(0.3)

    assert snap_compare(make_app(demo), terminal_size=(120, 36), run_before=before)


def test_alerts_tab_and_detail(snap_compare, demo):
    async def before(pilot):
        await loaded(pilot)
        await pilot.press("3", "enter")
        await pilot.pause(0.3)

    assert snap_compare(make_app(demo), terminal_size=(120, 36), run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_console_pane(snap_compare, demo, size):
    async def before(pilot):
        await loaded(pilot)
        await select(pilot, "lm-nan")
        await pilot.press("5")
        await pilot.pause(0.3)

    assert snap_compare(make_app(demo), terminal_size=size, run_before=before)


def test_help_screen(snap_compare, demo):
    async def before(pilot):
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.3)

    assert snap_compare(make_app(demo), terminal_size=(120, 36), run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_overview_with_25_runs(snap_compare, tmp_path, size):
    for i in range(5):
        (tmp_path / f"team{i}").mkdir()
        write_demo(tmp_path / f"team{i}")

    async def before(pilot):
        await loaded(pilot, runs=25)
        await pilot.press("o")
        assert await wait_for(pilot, lambda: pilot.app.screen is not pilot.app.main)
        await pilot.pause(0.5)

    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=before)

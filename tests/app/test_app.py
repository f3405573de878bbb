"""Pilot tests: the app on real demo files, a real child process for the stop dialog."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from textual.widgets import DataTable, Static

from watchrun.app.app import WatchrunApp
from watchrun.config import Config
from watchrun.demo import write_all


async def wait_for(pilot, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(0.05)
    return False


@pytest.fixture
def demo_dir(tmp_path):
    write_all(str(tmp_path))
    return tmp_path


async def test_runs_listed_worst_first_banner_and_navigation(demo_dir):
    app = WatchrunApp([str(demo_dir)], Config())
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one("#runs", DataTable)
        banner = app.query_one("#banner", Static)
        assert await wait_for(pilot, lambda: table.row_count == 5 and "CRITICAL" in str(banner.render()))
        assert app.row_keys[0] in ("lm-nan", "ctc-asr/lightning_logs/version_0")  # critical first
        start = app.row_keys.index(app.selected)
        await pilot.press("j")
        assert await wait_for(pilot, lambda: app.selected == app.row_keys[start + 1])
        assert app.selected in str(app.query_one("#run-title", Static).render())
        await pilot.press("k")
        assert await wait_for(pilot, lambda: app.selected == app.row_keys[start])


async def test_filter_and_theme(demo_dir):
    app = WatchrunApp([str(demo_dir)], Config())
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one("#runs", DataTable)
        assert await wait_for(pilot, lambda: table.row_count == 5)
        await pilot.press("slash", "h", "e", "a", "l")
        assert await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: table.row_count == 5)
        assert app.theme == "watchrun-dark"
        await pilot.press("t")
        assert app.theme == "watchrun-light"


async def test_tiny_terminal_shows_notice(demo_dir):
    app = WatchrunApp([str(demo_dir)], Config())
    async with app.run_test(size=(30, 8)) as pilot:
        await pilot.pause(0.3)
        notice = app.query_one("#too-small", Static)
        assert notice.display and "too small" in str(notice.render())


async def test_stop_dialog_sends_sigint_to_the_writer(tmp_path):
    script = tmp_path / "train.py"
    marker = tmp_path / "got-sigint"
    script.write_text(
        "import json, signal, sys, time, os\n"
        f"log = open({str(tmp_path / 'run' / 'log.jsonl')!r}, 'a')\n"
        "def bye(*a):\n"
        f"    open({str(marker)!r}, 'w').write('1'); sys.exit(0)\n"
        "signal.signal(signal.SIGINT, bye)\n"
        "for i in range(10000):\n"
        "    log.write(json.dumps({'step': i, 'loss': 1.0 / (i + 1)}) + '\\n'); log.flush(); time.sleep(0.05)\n"
    )
    (tmp_path / "run").mkdir()
    child = subprocess.Popen([sys.executable, str(script)])
    try:
        for _ in range(100):
            if (tmp_path / "run" / "log.jsonl").exists():
                break
            time.sleep(0.05)
        app = WatchrunApp([str(tmp_path / "run")], Config())
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: app.selected is not None)
            await pilot.press("x")
            await pilot.pause(0.5)
            assert app.screen.__class__.__name__ == "StopScreen"
            assert app.screen.target.process is not None and app.screen.target.process.pid == child.pid
            await pilot.click("#graceful")
            assert child.wait(timeout=10) == 0
            assert marker.exists()
            alerts = app.engine.store.alerts_for(app.selected)
            assert any(a.detector == "stopped" for a in alerts)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)

"""Pilot: the `x` key on a run whose card names no valid process: the dialog says why it will
not signal and offers only the stop-request file."""

from __future__ import annotations

import json
import socket
import time

from textual.widgets import Button, Static

from watchrun.app.app import WatchrunApp
from watchrun.app.screens import StopScreen
from watchrun.config import Config
from watchrun.control import CARD_FILE, STOP_FILE


async def wait_for(pilot, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(0.05)
    return False


async def test_a_card_pid_that_is_no_process_id_shows_the_refusal_and_only_the_request(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "watchrun.jsonl").write_text(
        "".join(json.dumps({"step": i, "loss": 1 / (i + 1)}) + "\n" for i in range(30))
    )
    (run / CARD_FILE).write_text(
        json.dumps(
            {
                "pid": "abc",
                "launcher_pid": -1,
                "host": socket.gethostname(),
                "started": time.time(),
                "cmdline": ["train.py"],
            }
        )
    )
    app = WatchrunApp([str(run)], Config())
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.selected is not None)
        await pilot.press("x")
        assert await wait_for(pilot, lambda: isinstance(app.screen, StopScreen))
        dialog = app.screen
        text = str(dialog.query_one(Static).render())
        assert "will not signal any process" in text
        assert "'abc' is not a process id" in text
        assert {b.id for b in dialog.query(Button)} == {"request", "cancel"}
        await pilot.click("#request")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, StopScreen))
        assert (run / STOP_FILE).exists()
        alerts = app.engine.store.alerts_for(app.selected)
        assert any(a.detector == "stop_requested" for a in alerts)
        assert app.is_running

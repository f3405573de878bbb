"""Pilot: the `x` key. On a run whose card names no valid process the dialog says why it will
not signal and offers only the stop-request file; on a real writer, Graceful sends SIGINT."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
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


def start_writer(tmp_path, sigint_handler: str) -> subprocess.Popen:
    """A training loop writing tmp_path/run/log.jsonl every 50 ms, SIGINT set to the handler
    given (Python source); returned once its log exists."""
    script = tmp_path / "train.py"
    script.write_text(
        "import json, signal, time\n"
        f"signal.signal(signal.SIGINT, {sigint_handler})\n"
        f"log = open({str(tmp_path / 'run' / 'log.jsonl')!r}, 'a')\n"
        "for i in range(10000):\n"
        "    log.write(json.dumps({'step': i, 'loss': 1.0 / (i + 1)}) + '\\n')\n"
        "    log.flush(); time.sleep(0.05)\n"
    )
    (tmp_path / "run").mkdir()
    child = subprocess.Popen([sys.executable, str(script)])
    for _ in range(100):
        if (tmp_path / "run" / "log.jsonl").exists():
            break
        time.sleep(0.05)
    return child


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
        text = str(dialog.query_one("#dialog-text", Static).render())
        assert "will not signal any process" in text
        assert "'abc' is not a process id" in text
        assert {b.id for b in dialog.query(Button)} == {"request", "cancel"}
        await pilot.click("#request")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, StopScreen))
        assert await wait_for(pilot, lambda: (run / STOP_FILE).exists())
        # the outcome reaches the store through the engine's loop, and the app's next snapshot
        assert await wait_for(
            pilot,
            lambda: any(
                a.detector == "stop_requested" for a in app.snapshot.runs[app.selected].alerts
            ),
        )
        assert app.is_running


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
        "    log.write(json.dumps({'step': i, 'loss': 1.0 / (i + 1)}) + '\\n')\n"
        "    log.flush(); time.sleep(0.05)\n"
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
            assert await wait_for(pilot, lambda: isinstance(app.screen, StopScreen))
            assert (
                app.screen.target.process is not None and app.screen.target.process.pid == child.pid
            )
            await pilot.click("#graceful")
            assert child.wait(timeout=10) == 0
            assert marker.exists()
            assert await wait_for(
                pilot,
                lambda: any(
                    a.detector == "stopped" for a in app.snapshot.runs[app.selected].alerts
                ),
            )
            assert app.snapshot.runs[app.selected].status.value == "stopped"
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)


async def test_stop_dialog_buttons_fit_at_80_columns(tmp_path):
    """The dialog wraps its text and its buttons at 80x24: all of them stay on screen."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "watchrun.jsonl").write_text(
        "".join(json.dumps({"step": i, "loss": 1 / (i + 1)}) + "\n" for i in range(30))
    )
    app = WatchrunApp([str(run)], Config())
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.selected is not None)
        await pilot.press("x")
        assert await wait_for(pilot, lambda: isinstance(app.screen, StopScreen))
        await pilot.pause(0.2)
        for button in app.screen.query(Button):
            region = button.region
            assert region.width > 0 and region.right <= 80 and region.bottom <= 24, button.id


async def test_enter_at_once_cancels_and_stops_nothing(tmp_path):
    """The dialog opens with Cancel focused: Enter closes it and writes no request file."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "watchrun.jsonl").write_text(
        "".join(json.dumps({"step": i, "loss": 1 / (i + 1)}) + "\n" for i in range(30))
    )
    app = WatchrunApp([str(run)], Config())
    async with app.run_test(size=(120, 36)) as pilot:
        assert await wait_for(pilot, lambda: app.selected is not None)
        await pilot.press("x")
        assert await wait_for(pilot, lambda: isinstance(app.screen, StopScreen))
        await pilot.pause(0.1)
        assert isinstance(app.focused, Button) and app.focused.id == "cancel"
        await pilot.press("left")  # the arrows move between the buttons
        assert isinstance(app.focused, Button) and app.focused.id == "request"
        await pilot.press("right", "enter")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, StopScreen))
        await pilot.pause(0.3)
        assert not (run / STOP_FILE).exists()


async def test_a_finished_run_is_refused_with_only_a_close_button(tmp_path):
    """A run whose writer has exited (its pid in the TensorBoard file name is gone) has ended:
    the dialog says so and offers no stop, not even the request file nobody would read."""
    code = (
        "import sys\n"
        "from watchrun.demo import TensorBoardWriter\n"
        "writer = TensorBoardWriter(sys.argv[1])\n"
        "for step in range(20):\n"
        "    writer.write(step, {'train/loss': 1 / (step + 1)})\n"
        "writer.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], check=True)
    app = WatchrunApp([str(tmp_path / "run")], Config())
    async with app.run_test(size=(120, 36)) as pilot:
        assert await wait_for(pilot, lambda: app.selected is not None and app.ready)
        assert await wait_for(pilot, lambda: app.snapshot.runs[app.selected].ended)
        await pilot.press("x")
        assert await wait_for(pilot, lambda: isinstance(app.screen, StopScreen))
        text = str(app.screen.query_one("#dialog-text", Static).render())
        assert "has already ended" in text and "nothing to stop" in text, text
        assert [b.id for b in app.screen.query(Button)] == ["cancel"]
        assert str(app.screen.query_one("#cancel", Button).label) == "Close"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, StopScreen))
        assert not (tmp_path / "run" / STOP_FILE).exists()


async def test_a_writer_that_catches_sigint_and_goes_on_is_not_called_stopped(
    tmp_path, monkeypatch
):
    """A loop whose SIGINT handler does not stop it: after Graceful the process still runs, so
    the run stays running and the outcome says so (it was marked stopped at once before)."""
    import watchrun.app.app as app_module

    monkeypatch.setattr(app_module, "EXIT_WAIT", 1.0)
    child = start_writer(tmp_path, "lambda *_: None")
    try:
        app = WatchrunApp([str(tmp_path / "run")], Config())
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: app.selected is not None)
            await pilot.press("x")
            assert await wait_for(pilot, lambda: isinstance(app.screen, StopScreen))
            assert app.screen.target.process is not None
            await pilot.click("#graceful")

            def outcome():
                alerts = app.snapshot.runs[app.selected].alerts
                return next((a for a in alerts if a.detector.startswith("stop")), None)

            assert await wait_for(pilot, lambda: outcome() is not None)
            assert outcome().detector == "stop_failed"
            assert f"pid {child.pid} still runs" in outcome().message
            assert child.poll() is None
            assert app.snapshot.runs[app.selected].status.value != "stopped"
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait()


async def test_a_writer_that_ignores_sigint_is_offered_only_kill(tmp_path):
    """`python train.py &` from a script ignores SIGINT (SIG_IGN): the dialog says so and offers
    no Graceful stop; Kill stops it and the run is called stopped."""
    child = start_writer(tmp_path, "signal.SIG_IGN")
    try:
        app = WatchrunApp([str(tmp_path / "run")], Config())
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: app.selected is not None)
            await pilot.press("x")
            assert await wait_for(pilot, lambda: isinstance(app.screen, StopScreen))
            dialog = app.screen
            assert dialog.target.process is not None and dialog.target.process.ignores_sigint
            text = str(dialog.query_one("#dialog-text", Static).render())
            assert f"pid {child.pid} ignores SIGINT" in text, text
            assert {b.id for b in dialog.query(Button)} == {"kill", "cancel"}
            await pilot.click("#kill")
            assert await wait_for(
                pilot, lambda: app.snapshot.runs[app.selected].status.value == "stopped"
            )
            # gone (its exit status is not checked: the app's psutil wait may reap it first)
            assert await wait_for(pilot, lambda: child.poll() is not None)
            outcome = [a for a in app.snapshot.runs[app.selected].alerts if a.detector == "stopped"]
            assert outcome and "sent SIGTERM" in outcome[0].message
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait()

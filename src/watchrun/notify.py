"""Tell the user about a new critical alert: terminal bell, OSC 9 / OSC 777 desktop notification
(they travel through SSH; inside tmux they are wrapped in a DCS passthrough), a command hook."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from typing import Any

from watchrun.model import Alert


def osc_sequences(title: str, body: str) -> str:
    title = title.replace("\x1b", "").replace("\x07", "").replace(";", ",")
    body = body.replace("\x1b", "").replace("\x07", "").replace(";", ",")
    seqs = [f"\x1b]9;{title}: {body}\x07", f"\x1b]777;notify;{title};{body}\x07"]
    if os.environ.get("TMUX"):
        seqs = ["\x1bPtmux;" + s.replace("\x1b", "\x1b\x1b") + "\x1b\\" for s in seqs]
    return "".join(seqs)


def notify_terminal(app: Any, title: str, body: str) -> None:
    """Write the OSC notifications through the app's driver (never straight to stdout)."""
    driver = getattr(app, "_driver", None)
    if driver is not None and hasattr(driver, "write"):
        with contextlib.suppress(Exception):  # a notification must never break the UI
            driver.write(osc_sequences(title, body))


def run_hook(command: str, alert: Alert) -> None:
    """Run `--on-alert CMD` with the alert as JSON on stdin, off the UI thread."""

    def go() -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                command,
                shell=True,
                input=json.dumps(alert.to_json()),
                text=True,
                timeout=30,
                capture_output=True,
            )

    threading.Thread(target=go, daemon=True).start()

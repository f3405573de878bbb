"""Training-side integrations: make a run fully watchable and cleanly stoppable.

`RunLogger` (this module, no framework import) writes `watchrun.jsonl` and a run card in the run
directory and answers stop requests; `watchrun.integrations.hf` wraps it as an HF
`TrainerCallback`. Each framework is imported only by its own module.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from watchrun.control import CARD_FILE, LAUNCHERS, STOP_FILE
from watchrun.lazy import lazy

if TYPE_CHECKING:
    import psutil
else:
    psutil = lazy("psutil")

LOG_FILE = "watchrun.jsonl"
STOP_DONE_FILE = ".watchrun-stop.done"


def _launcher_pid() -> int | None:
    try:
        parent = psutil.Process().parent()
        if parent is not None and any(x in " ".join(parent.cmdline()) for x in LAUNCHERS):
            return parent.pid
    except (psutil.Error, OSError):
        pass
    return None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN/inf survive as text, the reader parses them back
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


class RunLogger:
    """Writes what watchrun reads, from the training process.

    - `watchrun-run.json`: pid, host, command line, start time, world size, the launcher's pid,
      planned length and checkpoint directory (watchrun finds and verifies the process with it).
    - `watchrun.jsonl`: one line per `log()`, `{"step": N, ...metrics}`.
    - `stop_requested()`: True once watchrun's "save and stop" wrote `.watchrun-stop`; the
      training loop saves, stops, and calls `stopped(checkpoint=...)`.
    Only rank 0 writes (pass `rank`).
    """

    def __init__(
        self,
        run_dir: str,
        max_steps: int | None = None,
        max_epochs: int | None = None,
        checkpoint_dir: str | None = None,
        world_size: int = 1,
        rank: int = 0,
        library: str = "pytorch",
    ) -> None:
        self.run_dir = run_dir
        self.rank = rank
        self.stop_path = os.path.join(run_dir, STOP_FILE)
        self._checked = 0.0
        if rank != 0:
            return
        os.makedirs(run_dir, exist_ok=True)
        card = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "cmdline": sys.argv,
            "started": time.time(),
            "world_size": world_size,
            "launcher_pid": _launcher_pid(),
            "max_steps": max_steps,
            "max_epochs": max_epochs,
            "checkpoint_dir": checkpoint_dir or run_dir,
            "library": library,
        }
        tmp = os.path.join(run_dir, CARD_FILE + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(card, fh)
        os.replace(tmp, os.path.join(run_dir, CARD_FILE))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        row = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items() if k != "step"}}
        # one complete line per write, the file closed in between: a crash leaves no torn state
        with open(os.path.join(self.run_dir, LOG_FILE), "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def stop_requested(self, every: float = 0.5) -> bool:
        """A cheap stat of the stop file, at most every `every` seconds."""
        now = time.monotonic()
        if now - self._checked < every:
            return False
        self._checked = now
        return os.path.exists(self.stop_path)

    def stopped(self, step: int, checkpoint: str | None = None) -> None:
        """Record how the requested stop ended; watchrun shows it in the alert history."""
        if self.rank != 0:
            return
        with open(os.path.join(self.run_dir, STOP_DONE_FILE), "w") as fh:
            json.dump({"step": int(step), "checkpoint": checkpoint, "at": time.time()}, fh)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.stop_path)

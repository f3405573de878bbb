"""The run card and stop outcome that watchrun's training-side integrations write
(`watchrun-run.json`, `.watchrun-stop.done`): the process to signal, the planned length, and how
a requested stop ended."""

from __future__ import annotations

import json
import os
from typing import Any

from watchrun.model import RunStatus
from watchrun.sources.base import Source
from watchrun.tail import FileCursor

CARD_KEYS = ("max_steps", "max_epochs", "checkpoint_dir", "launcher_pid", "world_size", "library", "cmdline", "started")


class RunCardSource(Source):
    format = "run-card"
    stream = "run-card"
    listed_when_empty = False

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """watchrun's own files, written by its integrations."""
        return os.path.basename(path) in ("watchrun-run.json", ".watchrun-stop.done")

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        return os.path.dirname(path), {}

    def read(self, cursor: FileCursor) -> int:
        try:
            doc = json.loads(cursor.read_all())
        except (ValueError, UnicodeDecodeError, FileNotFoundError):
            cursor.mtime_ns = -1  # being written: look again next poll
            return 0
        if not isinstance(doc, dict):
            return 0
        if os.path.basename(cursor.key) == ".watchrun-stop.done":
            ckpt = doc.get("checkpoint")
            message = f"stopped on request at step {doc.get('step')}" + (f", checkpoint {ckpt}" if ckpt else "")
            run = self.store.run(self.key)
            if not any(m == message for _, m in run.events):
                self.store.update(self.key, events=run.events + [(int(doc.get("step") or 0), message)],
                                  explicit_status=RunStatus.STOPPED)
            return 0
        meta = {k: doc[k] for k in CARD_KEYS if doc.get(k) is not None}
        self.store.update(self.key, meta=meta, pid=doc.get("pid"), host=doc.get("host"))
        return 0

"""The run card and stop outcome that watchrun's training-side integrations write
(`watchrun-run.json`, `.watchrun-stop.done`): the process to signal, the planned length, and how
a requested stop ended.

Anyone who can write the run directory can write these files. The planned length (max_steps,
max_epochs, world_size) must be a count, the stop outcome's step a step: a value of another type
is left out and reported. The process fields are kept as written: control verifies pid,
launcher_pid, host, cmdline and started before any use."""

from __future__ import annotations

import json
import os
from typing import Any

from watchrun.model import RunStatus, pid_problem
from watchrun.sources.base import Source, to_step
from watchrun.tail import FileCursor

_COUNTS = ("max_steps", "max_epochs", "world_size")
CARD_KEYS = (
    *_COUNTS,
    "checkpoint_dir",
    "launcher_pid",
    "library",
    "cmdline",
    "started",
    "pid",
    "host",
)


def _count(value: Any) -> int | None:
    n = to_step(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return n if n is not None and n >= 0 else None


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
        except (ValueError, UnicodeDecodeError, FileNotFoundError, RecursionError):
            cursor.mtime_ns = -1  # being written: look again next poll
            return 0
        if not isinstance(doc, dict):
            self.skip(cursor.path, "byte 0", "not a JSON object")
            return 0
        if os.path.basename(cursor.key) == ".watchrun-stop.done":
            self._stop_done(doc, cursor.path)
            return 0
        meta = {k: doc[k] for k in CARD_KEYS if doc.get(k) is not None}
        odd = [k for k in _COUNTS if k in meta and _count(meta[k]) is None]
        for k in _COUNTS:
            if k in meta:
                meta[k] = _count(meta[k])
                if meta[k] is None:
                    del meta[k]
        if odd:
            self.warn(f"{os.path.basename(cursor.path)}: ignored {', '.join(odd)}: not a count")
        fields: dict = {"meta": meta}
        pid, host = doc.get("pid"), doc.get("host")
        problem = None if pid is None else pid_problem(pid)
        if problem:
            self.store.warn(self.key, f"run card: pid {problem}; watchrun will not signal it")
        elif pid is not None:
            fields["pid"] = pid
        if isinstance(host, str):
            fields["host"] = host
        self.store.update(self.key, **fields)
        return 0

    def _stop_done(self, doc: dict[str, Any], path: str) -> None:
        step = to_step(doc.get("step")) if doc.get("step") is not None else 0
        ckpt = doc.get("checkpoint")
        if step is None or (ckpt is not None and not isinstance(ckpt, str)):
            self.skip(path, "byte 0", "step or checkpoint of the wrong type")
            return
        message = f"stopped on request at step {step}" + (
            f", checkpoint {ckpt[:4096]}" if ckpt else ""
        )
        run = self.store.run(self.key)
        if not any(m == message for _, m in run.events):
            self.store.update(
                self.key, events=run.events + [(step, message)], explicit_status=RunStatus.STOPPED
            )

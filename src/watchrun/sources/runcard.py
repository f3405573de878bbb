"""The run card and stop outcome that watchrun's training-side integrations write
(`watchrun-run.json`, `.watchrun-stop.done`): the process to signal, the planned length, and how
a requested stop ended.

Anyone who can write the run directory can write these files: every field is checked for the
type the rest of watchrun reads (a pid is a plain integer above 1, a host a short text); a field
of another type is left out and reported, never passed on."""

from __future__ import annotations

import json
import os
from typing import Any

from watchrun.model import RunStatus
from watchrun.sources.base import Source, to_step
from watchrun.tail import FileCursor

PID_MAX = 1 << 22  # the kernel's largest pid_max
_COUNTS = ("max_steps", "max_epochs", "world_size")
_PIDS = ("launcher_pid",)
_TEXTS = ("checkpoint_dir", "library")
CARD_KEYS = (*_COUNTS, *_PIDS, *_TEXTS, "cmdline", "started")


def _pid(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 < value <= PID_MAX:
        return value
    return None


def _card_field(key: str, value: Any) -> Any:
    """`value` if it has the type `key` needs, else None."""
    if key in _PIDS:
        return _pid(value)
    if key in _COUNTS:
        n = to_step(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        return n if n is not None and n >= 0 else None
    if key in _TEXTS:
        return value[:4096] if isinstance(value, str) else None
    if key == "cmdline":
        if isinstance(value, list) and all(isinstance(a, str) for a in value):
            return value
        return value if isinstance(value, str) else None
    if key == "started":
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return None


class RunCardSource(Source):
    format = "run-card"
    stream = "run-card"

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
        meta: dict[str, Any] = {}
        odd = []
        for key in CARD_KEYS:
            if doc.get(key) is None:
                continue
            value = _card_field(key, doc[key])
            if value is None:
                odd.append(key)
            else:
                meta[key] = value
        pid = _pid(doc.get("pid"))
        if doc.get("pid") is not None and pid is None:
            odd.append("pid")
        host = doc.get("host")
        if host is not None and not isinstance(host, str):
            odd.append("host")
            host = None
        if odd:
            self.warn(f"{os.path.basename(cursor.path)}: ignored field(s) of the wrong type: {', '.join(odd)}")
        self.store.update(self.key, meta=meta, pid=pid, host=host[:255] if host else None)
        return 0

    def _stop_done(self, doc: dict[str, Any], path: str) -> None:
        step = to_step(doc.get("step")) if doc.get("step") is not None else 0
        ckpt = doc.get("checkpoint")
        if step is None or (ckpt is not None and not isinstance(ckpt, str)):
            self.skip(path, "byte 0", "step or checkpoint of the wrong type")
            return
        message = f"stopped on request at step {step}" + (f", checkpoint {ckpt[:4096]}" if ckpt else "")
        run = self.store.run(self.key)
        if not any(m == message for _, m in run.events):
            self.store.update(self.key, events=run.events + [(step, message)], explicit_status=RunStatus.STOPPED)

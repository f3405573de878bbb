"""W&B local run folders: `wandb/run-<date>-<id>/` and `wandb/offline-run-<date>-<id>/`, as every
`wandb.init()` writes them, online or offline.

- `run-<id>.wandb`, the transaction log, appended as the run goes: history rows (`_step`,
  `_timestamp`, `_runtime` and each logged key, nested keys joined with `/`), summary, config, the
  run record (name, project, host, start time), the environment record (program, args, GPUs)
  and the exit record (exit code: finished or failed). Tailed like an event file: a torn last
  record waits for the rest; damaged stretches and record types newer than this reader are
  skipped and counted (wandb_records.py does the framing and decoding).
- `files/wandb-summary.json`, `files/config.yaml`, `files/wandb-metadata.json` (host, program,
  args, GPU names: the run card of the stop dialog) and `logs/debug.log` (the pid of the process
  that logs: `Configure stats pid to N`).
- `files/output.log` is the run's console: discovery gives it to the console source of the run.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from watchrun.lazy import lazy
from watchrun.model import RunStatus
from watchrun.sources.base import Source, flatten, to_float, to_step
from watchrun.sources.wandb_records import (
    FILE_MAGIC,
    Framing,
    WireError,
    best_decoder,
    split_records,
)
from watchrun.tail import MAX_READ, FileCursor

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy("yaml")  # PyYAML loads when a YAML file is read

RUN_DIR = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-([A-Za-z0-9]+)$")
# files of a run folder this source reads, by their path inside the folder
RUN_FILES = (
    "files/wandb-summary.json",
    "files/config.yaml",
    "files/wandb-metadata.json",
    "logs/debug.log",
)
CONSOLE_FILE = "files/output.log"
_STATS_PID = re.compile(rb"Configure stats pid to (\d+)")
_SKIP_KEYS = ("_step", "_timestamp", "_runtime", "_wandb")


def run_folder_member(path: str) -> tuple[str, str] | None:
    """(run folder, format) for a file inside a W&B run folder, with format "" for the files
    watchrun does not read there (requirements.txt, media, wandb's own debug logs); None for a
    file that is not in a W&B folder. The run folder is `<...>/wandb/(offline-)run-<date>-<id>/`."""
    parts = path.split(os.sep)
    for i in range(len(parts) - 2, 0, -1):
        m = RUN_DIR.match(parts[i])
        if m and parts[i - 1] == "wandb":
            folder = os.sep.join(parts[: i + 1])
            inside = "/".join(parts[i + 1 :])
            if inside == f"run-{m.group(1)}.wandb" or inside in RUN_FILES:
                return folder, WandbSource.format
            return folder, "console" if inside == CONSOLE_FILE else ""
    if (
        len(parts) >= 2
        and parts[-2] == "wandb"
        and parts[-1] in ("debug.log", "debug-internal.log", "settings")
    ):
        return os.sep.join(parts[:-1]), ""
    return None


class WandbFolderFile(Source):
    """The files of a W&B folder that watchrun does not read (requirements.txt, media tables,
    wandb's own debug logs): known, so that no other format claims them as a run of its own."""

    format = "wandb-unread"
    reads = False

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        member = run_folder_member(path)
        return member is not None and member[1] == ""


class WandbSource(Source):
    format = "wandb"
    stream = "wandb"
    richness = 3
    step_unit = "step"

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """A W&B transaction log, whatever its name (its header is `:W&B` and magic 0xBEE1), or
        a file of a run folder this source reads (the folder's layout is its format)."""
        member = run_folder_member(path)
        if member is not None:
            return member[1] == cls.format
        return head is not None and head.startswith(FILE_MAGIC + b"\xe1\xbe")

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        """A run folder is one run, whichever of its files is found."""
        member = run_folder_member(path)
        return (member[0] if member else path), {}

    def __init__(self, store: Any, key: str) -> None:
        super().__init__(store, key)
        self.decode = best_decoder()
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.rows = 0
        self.epoch_is_step: bool | None = None
        self.stuck_at: dict[str, int] = {}  # per file: where unreadable bytes wait for more

    def on_reset(self, cursor: FileCursor) -> None:
        self.counts.pop(cursor.key, None)

    def read(self, cursor: FileCursor) -> int:
        name = os.path.basename(cursor.key)
        if name.endswith(".wandb"):
            return self._log(cursor)
        if name == "debug.log":
            return self._debug_log(cursor)
        try:
            raw = cursor.read_all()
        except FileNotFoundError:
            return 0
        try:
            doc = yaml.safe_load(raw) if name.endswith(".yaml") else json.loads(raw)
        except (ValueError, UnicodeDecodeError, yaml.YAMLError):
            cursor.mtime_ns = -1  # being rewritten: look again at the next poll
            return 0
        if not isinstance(doc, dict):
            return 0
        if name == "wandb-summary.json":
            self._summary(doc)
        elif name == "config.yaml":
            self._config_yaml(doc)
        else:
            self._metadata(doc)
        return 0

    # -- the transaction log --------------------------------------------------------------------
    def _log(self, cursor: FileCursor) -> int:
        counts = self.counts[cursor.key]
        total = 0
        while True:
            data = cursor.read(MAX_READ)
            framing = split_records(data, cursor.offset)
            if framing.bad_file:
                if not counts["bad_file"]:
                    counts["bad_file"] = 1
                    self.warn(
                        f"{os.path.basename(cursor.key)}: not a W&B transaction log "
                        "(no :W&B header)"
                    )
                cursor.advance(len(data))
                return total
            start = cursor.offset
            cursor.advance(framing.consumed)
            self._count_damage(cursor, framing, start, counts)
            total += self._records(framing.records, counts, cursor.key)
            if len(data) < MAX_READ or framing.consumed == 0:
                return total

    def _count_damage(
        self, cursor: FileCursor, framing: Framing, start: int, counts: Counter
    ) -> None:
        """Damaged stretches skipped, and unreadable bytes at the end of the file (junk
        appended, or a writer's torn garbage) counted once while they wait for more data."""
        damaged = framing.corrupt
        if damaged and self.stuck_at.get(cursor.key) == start:
            damaged -= 1  # the stretch already counted while it was the end of the file
        if framing.stuck:
            if self.stuck_at.get(cursor.key) != cursor.offset:
                damaged += 1
            self.stuck_at[cursor.key] = cursor.offset
        else:
            self.stuck_at.pop(cursor.key, None)
        if damaged:
            counts["damaged"] += damaged
            name = os.path.basename(cursor.key)
            self.warn(f"{name}: skipped {counts['damaged']} damaged stretch(es)")

    def _records(self, records: list[bytes], counts: Counter, path: str) -> int:
        columns: dict[str, tuple[list[int], list[float], list[float]]] = defaultdict(
            lambda: ([], [], [])
        )
        before = (counts["unknown"], counts["undecodable"])
        for payload in records:
            try:
                kind, body = self.decode(payload)
            except WireError:
                kind, body = "undecodable", None
            counts[kind] += 1
            if kind == "history":
                self._history(body, columns)
            elif kind == "summary":
                self._summary_items(body["update"])
            elif kind == "config":
                self._config_items(body["update"])
            elif kind == "run":
                self._run(body)
            elif kind == "environment":
                self._environment(body)
            elif kind == "exit":
                self._exit(body)
        name = os.path.basename(path)
        if counts["unknown"] > before[0]:
            self.warn(
                f"{name}: skipped {counts['unknown']} record(s) "
                "of a type this reader does not know (newer wandb?)"
            )
        if counts["undecodable"] > before[1]:
            self.warn(f"{name}: skipped {counts['undecodable']} record(s) that do not decode")
        total = 0
        for metric, (steps, values, walls) in columns.items():
            total += self.store.add_points(self.key, self.stream, metric, steps, values, walls)
        return total

    def _history(self, body: dict[str, Any], columns: dict) -> None:
        items: dict[str, str] = body["items"]
        self.rows += 1
        step = to_step(_number(items.get("_step")))
        if step is None:
            logged: int | None = body.get("step")
            step = logged if logged is not None else self.rows - 1
        wall = _number(items.get("_timestamp"))
        wall = wall if wall is not None and math.isfinite(wall) else 0.0
        self._note_epoch(items, step)
        for key, raw in items.items():
            if key in _SKIP_KEYS:
                continue
            value = parse_value(raw)
            for name, number in _numbers(key, value):
                steps, values, walls = columns[name]
                steps.append(step)
                values.append(number)
                walls.append(wall)
            if isinstance(value, str):
                self.store.add_text(self.key, step, key, value, wall)
        runtime = _number(items.get("_runtime"))
        if runtime is not None:
            self.store.update(self.key, meta={"runtime": runtime})

    def _note_epoch(self, items: dict[str, str], step: int) -> None:
        """A run that logs once per epoch with `epoch` equal to `_step` counts in epochs."""
        if "epoch" not in items or self.epoch_is_step is False:
            return
        same = _number(items["epoch"]) == step
        if same != self.epoch_is_step:
            self.epoch_is_step = same
            self.store.update(self.key, step_unit="epoch" if same else "step")

    def _summary_items(self, items: dict[str, str]) -> None:
        self._summary({k: parse_value(v) for k, v in items.items()})

    def _summary(self, doc: dict[str, Any]) -> None:
        values = {}
        for key, value in doc.items():
            if key in _SKIP_KEYS:
                continue
            values.update(dict(_numbers(key, value)))
        if values:
            self.store.update(self.key, summary=values)

    def _config_items(self, items: dict[str, str]) -> None:
        config = {k: parse_value(v) for k, v in items.items() if k != "_wandb"}
        if config:
            self.store.update(self.key, hparams=flatten(config))

    def _config_yaml(self, doc: dict[str, Any]) -> None:
        """config.yaml: `key: {value: X}` per entry; `_wandb.value.e.<writer>` holds the same
        metadata as wandb-metadata.json in wandb >= 0.19."""
        config = {
            k: v.get("value")
            for k, v in doc.items()
            if isinstance(v, dict) and "value" in v and k != "_wandb"
        }
        if config:
            self.store.update(self.key, hparams=flatten(config))
        inner = doc.get("_wandb")
        writers = (
            inner.get("value", {}).get("e")
            if isinstance(inner, dict) and isinstance(inner.get("value"), dict)
            else None
        )
        if isinstance(writers, dict):
            for meta in writers.values():
                if isinstance(meta, dict):
                    self._metadata(meta)

    def _run(self, body: dict[str, Any]) -> None:
        meta = {k: body[k] for k in ("project", "entity", "group") if body.get(k)}
        if body.get("run_id"):
            meta["wandb_id"] = body["run_id"]
        if body.get("start_time"):
            meta["started"] = _iso(body["start_time"])
        fields: dict[str, Any] = {"meta": meta}
        if body.get("display_name"):
            fields["display_name"] = body["display_name"]
        if body.get("host"):
            fields["host"] = body["host"]
        self.store.update(self.key, **fields)
        self._config_items(body.get("config") or {})
        self._summary_items(body.get("summary") or {})

    def _environment(self, body: dict[str, Any]) -> None:
        self._metadata(
            {
                "host": body.get("host"),
                "program": body.get("program"),
                "args": body.get("args"),
                "gpu": body.get("gpu_type"),
                "gpu_nvidia": [{"name": g} for g in body.get("gpus") or []],
                "startedAt": _iso(body["started_at"]) if body.get("started_at") else None,
                "executable": body.get("executable"),
            }
        )

    def _metadata(self, doc: dict[str, Any]) -> None:
        """wandb-metadata.json (and its copies): the run card's host, pid, command and GPUs."""
        meta: dict[str, Any] = {}
        program = doc.get("program") or doc.get("codePath")
        raw_args = doc.get("args")
        args = raw_args if isinstance(raw_args, list) else []
        if program:
            meta["cmdline"] = " ".join([str(program)] + [str(a) for a in args])
        gpus = [
            g.get("name")
            for g in doc.get("gpu_nvidia") or []
            if isinstance(g, dict) and g.get("name")
        ]
        if not gpus and doc.get("gpu"):
            gpus = [str(doc["gpu"])] * max(1, int(doc.get("gpu_count") or 1))
        if gpus:
            meta["gpus"] = gpus
        if doc.get("startedAt"):
            meta.setdefault("started", doc["startedAt"])
        if doc.get("executable"):
            meta["executable"] = doc["executable"]
        fields: dict[str, Any] = {"meta": meta}
        if doc.get("host"):
            fields["host"] = str(doc["host"])
        if isinstance(doc.get("pid"), int):
            fields["pid"] = doc["pid"]
        self.store.update(self.key, **fields)

    def _exit(self, body: dict[str, Any]) -> None:
        code = int(body.get("exit_code") or 0)
        status = RunStatus.FINISHED if code == 0 else RunStatus.FAILED
        run = self.store.run(self.key)
        message = f"wandb: the run {'finished' if code == 0 else 'failed'} (exit code {code})"
        events = (
            run.events
            if any(m == message for _, m in run.events)
            else run.events + [(run.last_step() or 0, message)]
        )
        self.store.update(self.key, explicit_status=status, events=events, meta={"exit_code": code})

    def _debug_log(self, cursor: FileCursor) -> int:
        """wandb's logs/debug.log names the pid of the training process near its top."""
        head = cursor.read(64 * 1024)
        cursor.advance(len(head))
        m = _STATS_PID.search(head)
        if m:
            self.store.update(self.key, pid=int(m.group(1)))
        return 0


def parse_value(raw: str) -> Any:
    """A `value_json` as a Python value; numbers first (most of them), NaN/Infinity included."""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    value = parse_value(raw)
    return (
        to_float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    )


def _numbers(key: str, value: Any) -> list[tuple[str, float]]:
    """The numbers a logged value holds: itself, or a nested dict's numbers under `key/...`;
    media and tables (dicts with `_type`) and bools hold none."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [(key, float(value))]
    if isinstance(value, dict) and "_type" not in value:
        out = []
        for k, v in flatten(value, key + "/").items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((k, float(v)))
        return out
    return []


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")

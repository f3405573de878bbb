"""MLflow: the file store (mlruns/<exp>/<run>/) and the SQLite store (mlflow.db).

File store: metrics/<key> holds `timestamp value step` lines (older versions wrote two fields;
a `/` in a key is a subfolder); each line is isolated, a bad one is skipped and counted (FAULTS
P6). When a run never passed step= every step is 0: the line index becomes the step.
SQLite store: opened read-only (`mode=ro`), metrics read by rowid past the last one seen, a
locked database is retried at the next poll.
"""

from __future__ import annotations

import math
import os
import sys
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from watchrun.lazy import lazy
from watchrun.model import RunStatus
from watchrun.sources.base import (
    Lines,
    Source,
    SqliteSource,
    sqlite_kind,
    to_float,
    to_step,
    to_wall,
)
from watchrun.sources.layout import mlflow_run_of
from watchrun.tail import FileCursor

if TYPE_CHECKING:
    import sqlite3

    import yaml
else:
    sqlite3 = lazy("sqlite3")  # loaded when a database file is met
    yaml = lazy("yaml")  # PyYAML loads when a YAML file is read

_STATUS = {
    1: RunStatus.RUNNING,
    2: RunStatus.RUNNING,  # scheduled
    3: RunStatus.FINISHED,
    4: RunStatus.FAILED,
    5: RunStatus.STOPPED,  # killed
    "RUNNING": RunStatus.RUNNING,
    "SCHEDULED": RunStatus.RUNNING,
    "FINISHED": RunStatus.FINISHED,
    "FAILED": RunStatus.FAILED,
    "KILLED": RunStatus.STOPPED,
}


class MlflowFileSource(Source):
    format = "mlflow"
    stream = "mlflow"
    richness = 3

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """A file of an MLflow file-store run: the run dir's meta.yaml next to metrics/, params/
        or tags/, or a file under those (the store's layout is its format)."""
        d = os.path.dirname(path)
        if os.path.basename(path) == "meta.yaml":
            return any(os.path.isdir(os.path.join(d, k)) for k in ("metrics", "params", "tags"))
        return mlflow_run_of(d, ("metrics", "params", "tags")) is not None

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        d = os.path.dirname(path)
        if os.path.basename(path) == "meta.yaml":
            return d, {}
        return dirs.mlflow_run_of(d, ("metrics", "params", "tags")) or d, {}

    @classmethod
    def create(cls, store: Any, key: str, root: str, path: str = "") -> Source:
        return cls(store, key, root)

    def __init__(self, store: Any, key: str, run_dir: str) -> None:
        super().__init__(store, key)
        self.run_dir = run_dir
        self.lines: dict[str, Lines] = defaultdict(Lines)
        self.index: dict[str, int] = defaultdict(int)
        self.constant_step: dict[str, bool] = {}
        self.first_step: dict[str, int] = {}

    def on_reset(self, cursor: FileCursor) -> None:
        self.lines[cursor.key] = Lines()
        self.index[cursor.key] = 0

    def read(self, cursor: FileCursor) -> int:
        rel = os.path.relpath(cursor.key, self.run_dir)
        kind, _, name = rel.partition(os.sep)
        if kind == "metrics":
            return self._metric(cursor, name.replace(os.sep, "/"))
        text = cursor.read_all().decode("utf-8", "replace")
        if kind == "params":
            self.store.update(self.key, hparams={name.replace(os.sep, "/"): text.strip()})
        elif kind == "tags":
            if name == "mlflow.runName":
                self.store.update(self.key, display_name=text.strip())
        elif rel == "meta.yaml":
            self._meta(text)
        return 0

    def _meta(self, text: str) -> None:
        try:
            meta = yaml.safe_load(text) or {}
        except (yaml.YAMLError, RecursionError, ValueError):
            return
        if not isinstance(meta, dict):
            return
        raw_status = meta.get("status")
        status = _STATUS.get(raw_status) if isinstance(raw_status, (int, str)) else None  # type: ignore[call-overload]
        if status is not None and status is not RunStatus.RUNNING:
            self.store.update(self.key, explicit_status=status)
        elif status is RunStatus.RUNNING:
            self.store.update(self.key, explicit_status=None)
        if meta.get("run_name"):
            self.store.update(self.key, display_name=str(meta["run_name"]))

    def _metric(self, cursor: FileCursor, name: str) -> int:
        total = 0
        for lines in self.complete_lines(cursor, self.lines[cursor.key]):
            total += self._metric_lines(cursor, name, lines)
        return total

    def _metric_lines(self, cursor: FileCursor, name: str, lines: list[tuple[int, bytes]]) -> int:
        steps: list[int] = []
        values: list[float] = []
        walls: list[float] = []
        path = cursor.key
        for number, line in lines:
            fields = line.split()
            if len(fields) < 2:
                if line.strip():
                    self.skip(cursor.path, f"line {number}", "fewer than 2 fields", "malformed")
                continue
            ts, value = to_float(fields[0]), to_float(fields[1])
            step = to_step(fields[2]) if len(fields) >= 3 else 0
            if ts is None or value is None or step is None:
                self.skip(cursor.path, f"line {number}", "not `timestamp value step`", "malformed")
                continue
            i = self.index[path]
            self.index[path] = i + 1
            if i == 0:
                self.first_step[path] = step
            elif i == 1:
                # every step 0 (step= never passed): order by line instead
                self.constant_step[path] = step == self.first_step[path] == 0
                if self.constant_step[path] and steps:
                    steps[0] = 0
            if self.constant_step.get(path):
                step = i
            steps.append(step)
            values.append(value)
            walls.append(to_wall(ts))
        return self.store.add_points(self.key, self.stream, name, steps, values, walls)


class MlflowSqliteSource(SqliteSource):
    """An mlflow.db (or a trackio database): one source, many runs, keyed under the db path."""

    format = "mlflow-sqlite"
    stream = "mlflow"
    richness = 3
    listed_when_empty = False  # its runs are listed, under the db's path

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        return (
            head is not None
            and head[:16] == b"SQLite format 3\x00"
            and sqlite_kind(path) == cls.format
        )

    def __init__(self, store: Any, key: str) -> None:
        super().__init__(store, key)
        self.last_rowid = 0
        self.run_keys: dict[str, str] = {}

    def read_db(self, con: sqlite3.Connection) -> int:
        con.text_factory = _text  # names written by anything: undecodable bytes are replaced
        runs = con.execute(
            "SELECT r.run_uuid, r.name, r.status, r.experiment_id, e.name "
            "FROM runs r LEFT JOIN experiments e ON e.experiment_id = r.experiment_id"
        ).fetchall()
        for i, (run_uuid, name, status, exp_id, exp_name) in enumerate(runs):
            if not isinstance(run_uuid, str) or not run_uuid:
                self.skip(self.db_path, f"runs row {i + 1}", "no run_uuid")
                continue
            key = self._run_key(run_uuid, _str(name), exp_id, _str(exp_name))
            st = _STATUS.get(status) if isinstance(status, (int, str)) else None
            self.store.update(
                key,
                display_name=_str(name) or run_uuid,
                explicit_status=None if st in (None, RunStatus.RUNNING) else st,
                formats={self.format},
            )
        for run_uuid, k, v in con.execute("SELECT run_uuid, key, value FROM params"):
            if run_uuid in self.run_keys and isinstance(k, str):
                self.store.update(
                    self.run_keys[run_uuid],
                    hparams={k: v if isinstance(v, (str, int, float)) else None},
                )
        rows = con.execute(
            "SELECT rowid, run_uuid, key, value, timestamp, step, is_nan FROM metrics "
            "WHERE rowid > ? ORDER BY rowid",
            (self.last_rowid,),
        ).fetchall()
        grouped: dict[tuple[str, str], tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
        for rowid, run_uuid, k, v, ts, step, is_nan in rows:
            self.last_rowid = max(self.last_rowid, rowid)
            if run_uuid not in self.run_keys:
                continue
            point = _metric_point(k, v, ts, step, is_nan)
            if point is None:
                self.skip(
                    self.db_path, f"metrics rowid {rowid}", f"key {k!r}, value {v!r}, step {step!r}"
                )
                continue
            steps, values, walls = grouped[(self.run_keys[run_uuid], k)]
            steps.append(point[0])
            values.append(point[1])
            walls.append(point[2])
        total = 0
        for (key, k), (steps, values, walls) in grouped.items():
            total += self.store.add_points(key, self.stream, k, steps, values, walls)
        return total

    def _run_key(self, run_uuid: str, name: str | None, exp_id: Any, exp_name: str | None) -> str:
        key = self.run_keys.get(run_uuid)
        if key is None:
            label = name or run_uuid[:8]
            key = f"{self.key}/{exp_name or exp_id}/{label}"
            if key in self.store.runs and self.store.runs[key].meta.get("mlflow_run") != run_uuid:
                key = f"{key}-{run_uuid[:8]}"
            self.run_keys[run_uuid] = key
            self.store.run(key, root=self.store.run(self.key).root)
            self.store.update(key, meta={"mlflow_run": run_uuid})
        return key


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None if value is None else str(value)


def _metric_point(
    key: Any, value: Any, ts: Any, step: Any, is_nan: Any
) -> tuple[int, float, float] | None:
    """(step, value, wall seconds) of one metrics row, or None when a column has a type no
    MLflow writes (the table is typed loosely: SQLite keeps whatever was inserted)."""
    if not isinstance(key, str) or not key:
        return None
    number = math.nan if is_nan else to_float(value) if isinstance(value, (int, float)) else None
    s = to_step(step) if step is not None else 0
    wall = to_float(ts) if isinstance(ts, (int, float)) else 0.0 if ts is None else None
    if number is None or s is None or wall is None:
        return None
    if abs(number) == sys.float_info.max:  # how MLflow's SQL store keeps an infinity
        number = math.copysign(math.inf, number)
    return s, number, to_wall(wall)

"""trackio's local SQLite database (one .db per project, ~/.cache/huggingface/trackio/):
`metrics(id, timestamp, run_name, step, metrics JSON)` and `configs(run_name, config JSON)`.
Read-only, rows past the last id seen, a locked database retried at the next poll."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from typing import Any

from watchrun.sources.base import SqliteSource, sqlite_kind, to_float
from watchrun.sources.table import flatten


class TrackioSource(SqliteSource):
    format = "trackio"
    stream = "trackio"
    listed_when_empty = False  # its runs are listed, under the db's path

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        return bool(head) and head[:16] == b"SQLite format 3\x00" and sqlite_kind(path) == cls.format

    def __init__(self, store: Any, key: str) -> None:
        super().__init__(store, key)
        self.last_id = 0
        self.run_keys: dict[str, str] = {}

    def _key(self, run_name: str) -> str:
        if run_name not in self.run_keys:
            key = f"{self.key}/{run_name}"
            self.run_keys[run_name] = key
            self.store.run(key, root=self.store.run(self.key).root)
            self.store.update(key, formats={self.format}, display_name=run_name)
        return self.run_keys[run_name]

    def read_db(self, con: sqlite3.Connection) -> int:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "configs" in tables:
            for run_name, config in con.execute("SELECT run_name, config FROM configs"):
                try:
                    doc = json.loads(config)
                except (TypeError, ValueError):
                    continue
                if isinstance(doc, dict):
                    self.store.update(self._key(run_name), hparams=flatten(doc))
        rows = con.execute(
            "SELECT id, run_name, step, metrics FROM metrics WHERE id > ? ORDER BY id", (self.last_id,)
        ).fetchall()
        grouped: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
        for row_id, run_name, step, metrics in rows:
            self.last_id = max(self.last_id, row_id)
            try:
                doc = json.loads(metrics)
            except (TypeError, ValueError):
                continue
            if not isinstance(doc, dict):
                continue
            key = self._key(run_name)
            for name, value in flatten(doc).items():
                if name.startswith("_"):
                    continue
                f = to_float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
                if f is None:
                    continue
                steps, values = grouped[(key, name)]
                steps.append(int(step))
                values.append(f)
        total = 0
        for (key, name), (steps, values) in grouped.items():
            total += self.store.add_points(key, self.stream, name, steps, values)
        return total

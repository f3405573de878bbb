"""trackio's local SQLite database (one .db per project, ~/.cache/huggingface/trackio/):
`metrics(id, timestamp, run_name, step, metrics JSON)` and `configs(run_name, config JSON)`.
Read-only, rows past the last id seen, a locked database retried at the next poll."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from watchrun.lazy import lazy
from watchrun.sources.base import SqliteSource, flatten, sqlite_kind, to_float, to_step

if TYPE_CHECKING:
    import sqlite3
else:
    sqlite3 = lazy("sqlite3")


class TrackioSource(SqliteSource):
    format = "trackio"
    stream = "trackio"
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
        con.text_factory = lambda raw: raw.decode("utf-8", "replace")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "configs" in tables:
            for run_name, config in con.execute("SELECT run_name, config FROM configs"):
                doc = _json_object(config)
                if doc is not None and isinstance(run_name, str):
                    self.store.update(self._key(run_name), hparams=flatten(doc))
        rows = con.execute(
            "SELECT id, run_name, step, metrics FROM metrics WHERE id > ? ORDER BY id",
            (self.last_id,),
        ).fetchall()
        grouped: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
        for row_id, run_name, step, metrics in rows:
            if isinstance(row_id, int):
                self.last_id = max(self.last_id, row_id)
            doc = _json_object(metrics)
            s = to_step(step) if isinstance(step, (int, float, str)) else None
            if doc is None or s is None or not isinstance(run_name, str):
                self.skip(self.db_path, f"metrics id {row_id}", f"run {run_name!r}, step {step!r}")
                continue
            key = self._key(run_name)
            for name, value in flatten(doc).items():
                if name.startswith("_"):
                    continue
                f = (
                    to_float(value)
                    if isinstance(value, (int, float)) and not isinstance(value, bool)
                    else None
                )
                if f is None:
                    continue
                steps, values = grouped[(key, name)]
                steps.append(s)
                values.append(f)
        total = 0
        for (key, name), (steps, values) in grouped.items():
            total += self.store.add_points(key, self.stream, name, steps, values)
        return total


def _json_object(text: object) -> dict[str, Any] | None:
    try:
        doc = json.loads(text) if isinstance(text, (str, bytes)) else None
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None

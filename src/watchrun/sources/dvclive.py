"""dvclive: dvclive/plots/metrics/<key>.tsv (one file per metric) and metrics.json (latest values).

Rows that repeat the previous row exactly (same step, same value) are the callback logging the
same numbers twice (HF's DVCLiveCallback logs on both on_log and on_evaluate): they are dropped,
once, here.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from watchrun.lazy import lazy
from watchrun.sources.base import Lines, Source, flatten, numbers, to_float, to_step, to_wall
from watchrun.sources.layout import dvclive_root
from watchrun.tail import FileCursor

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy("yaml")  # PyYAML loads when a YAML file is read


class DvcliveSource(Source):
    format = "dvclive"
    stream = "dvclive"
    richness = 4

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """A dvclive metric file (`timestamp<TAB>step<TAB>name` rows, or `step<TAB>name` before
        dvclive 2, under plots/metrics/), or
        the live dir's metrics.json / params.yaml."""
        if os.path.basename(path) in ("metrics.json", "params.yaml"):
            return os.path.isdir(os.path.join(os.path.dirname(path), "plots", "metrics"))
        if dvclive_root(path) is None:
            return False
        if head is None:
            return path.endswith(".tsv")
        first = head.split(b"\n", 1)[0].rstrip(b"\r").split(b"\t")
        return (
            first[:2] == [b"timestamp", b"step"]
            and len(first) == 3
            or first[0] == b"step"
            and len(first) == 2
        )

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        return dvclive_root(path) or os.path.dirname(path), {}

    @classmethod
    def create(cls, store: Any, key: str, root: str, path: str = "") -> Source:
        return cls(store, key, root)

    def __init__(self, store: Any, key: str, live_dir: str) -> None:
        super().__init__(store, key)
        self.live_dir = live_dir
        self.lines: dict[str, Lines] = defaultdict(Lines)
        self.header: dict[str, list[str]] = {}
        self.last_row: dict[str, tuple[int, float]] = {}
        self.duplicates = 0

    def on_reset(self, cursor: FileCursor) -> None:
        self.lines[cursor.key] = Lines()
        self.header.pop(cursor.key, None)
        self.last_row.pop(cursor.key, None)

    def read(self, cursor: FileCursor) -> int:
        rel = os.path.relpath(cursor.key, self.live_dir)
        if rel == "metrics.json":
            try:
                doc = json.loads(cursor.read_all())
            except (ValueError, UnicodeDecodeError, RecursionError):
                cursor.mtime_ns = -1
                return 0
            if isinstance(doc, dict):
                flat = flatten(doc)
                self.store.update(self.key, summary=numbers(flat, skip="step"))
            return 0
        if rel == "params.yaml":
            try:
                params = yaml.safe_load(cursor.read_all()) or {}
            except (yaml.YAMLError, RecursionError, ValueError):
                return 0
            if isinstance(params, dict):
                self.store.update(self.key, hparams=flatten(params))
            return 0
        name = rel.split(os.sep, 2)[-1].removesuffix(".tsv").replace(os.sep, "/")
        return self._tsv(cursor, name)

    def _tsv(self, cursor: FileCursor, name: str) -> int:
        total = 0
        for lines in self.complete_lines(cursor, self.lines[cursor.key]):
            total += self._tsv_lines(cursor, name, lines)
        return total

    def _tsv_lines(self, cursor: FileCursor, name: str, lines: list[tuple[int, bytes]]) -> int:
        steps: list[int] = []
        values: list[float] = []
        walls: list[float] = []
        for number, raw in lines:
            fields = raw.decode("utf-8", "replace").split("\t")
            if cursor.key not in self.header:
                self.header[cursor.key] = fields
                continue
            header = self.header[cursor.key]
            if len(fields) != len(header):
                self.skip(
                    cursor.path,
                    f"line {number}",
                    f"{len(fields)} fields, the header has {len(header)}",
                    "malformed",
                )
                continue
            row = dict(zip(header, fields, strict=False))
            step = to_step(row.get("step"))
            value = to_float(row.get(header[-1]))
            if step is None or value is None:
                self.skip(cursor.path, f"line {number}", "no step or value", "malformed")
                continue
            if self.last_row.get(cursor.key) == (step, value):
                self.duplicates += 1
                continue
            self.last_row[cursor.key] = (step, value)
            ts = to_float(row.get("timestamp"))
            steps.append(step)
            values.append(value)
            wall = to_wall(ts) if ts else math.nan
            walls.append(wall if math.isfinite(wall) else self._mtime(cursor.path))
        return self.store.add_points(self.key, self.stream, name, steps, values, walls)

    @staticmethod
    def _mtime(path: str) -> float:
        try:
            return os.path.getmtime(path)
        except OSError:  # gone since it was read
            return 0.0

"""Row tables that grow by appended lines: CSV/TSV (Lightning, Keras, SB3, Ray Tune, generic)
and JSONL (Ray Tune result.json, watchrun.jsonl, generic).

Only complete lines are parsed (a half-written row waits for its newline: FAULTS P3). When a file
is rewritten from the start (Lightning rewrites metrics.csv with a wider header when a new metric
appears; Lightning 1.x rewrote it at every save), the rows already emitted are recognised by the
first row's non-empty cells and skipped by count, so only the new rows are emitted (F2, P4). A file
whose first row differs is a new generation (F4) and is read whole.

The stdlib csv module parses the rows: increments are a few rows, where pandas' per-call cost
dominates, and pandas silently turns a torn row into NaNs (FAULTS P3).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from typing import Any

from watchrun.sources.base import Lines, Source, flatten, to_float, to_step
from watchrun.sources.layout import dir_log_root
from watchrun.sources.probe import history_lines, history_table, is_step_name
from watchrun.tail import FileCursor

STEP_COLUMNS = (
    "step",
    "global_step",
    "trainer/global_step",
    "_step",
    "time/total_timesteps",
    "misc/total_timesteps",  # OpenAI-baselines ppo2
    "total/steps",  # OpenAI-baselines ddpg
    "TimestepsSoFar",  # OpenAI-baselines trpo/ppo1
    "timesteps_total",
    "total_timesteps",
    "training_iteration",
    "iteration",
    "iter",
    "epoch",
    "Epoch",
)


def find_step_column(columns: list[str], preferred: tuple[str, ...] = STEP_COLUMNS) -> str | None:
    for name in preferred:
        if name in columns:
            return name
    return None


def step_column_of(row: dict[str, Any], preferred: tuple[str, ...] = STEP_COLUMNS) -> str | None:
    """The step column for a file, chosen on its first row (so that a file read as it grows and
    read whole agree): the first candidate that holds a step there (Ray Tune writes an empty
    `timesteps_total` next to `training_iteration`); else a column named like a counter of
    steps (probe.is_step_name: an author's `steps`, `Iterations`, `total/epochs`) that holds a
    whole number there, not a fraction nor a negative; else the first candidate present."""
    for name in preferred:
        if name in row and to_step(row[name]) is not None:
            return name
    for name, cell in row.items():
        if is_step_name(name) and name.strip().lower() not in _NOT_COUNTERS and _counts(cell):
            return name
    return find_step_column(list(row), preferred)


_NOT_COUNTERS = {"batch"}  # a batch size as often as a batch index


def _counts(cell: Any) -> bool:
    """A whole number >= 0 (`100`, `100.0`): what a step counter holds."""
    value = to_float(cell) if not isinstance(cell, bool) else None
    return value is not None and value >= 0 and value.is_integer()


class _FileState:
    def __init__(self) -> None:
        self.header: list[str] | None = None
        self.last_header: list[str] | None = None  # kept across generations of the file
        self.delimiter = ","
        self.rows_seen = 0  # data rows parsed in this generation
        self.rows_emitted = 0  # data rows emitted across rewrites of this generation
        self.first_row: tuple | None = None
        self.checking_rewrite = False
        self.lines = Lines()
        self.bad_rows = 0
        self.step_col: str | None = None


class TableSource(Source):
    """CSV/TSV tables. Subclasses pick the step column and the step unit."""

    format = "csv"
    stream = "table"
    richness = 4
    step_unit = "step"

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """A CSV/TSV training history (probe.history_table) that no more specific table claims."""
        if head is None:
            return path.endswith((".csv", ".tsv"))
        return history_table(head) is not None

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        return dir_log_root(path), {}

    step_columns: tuple[str, ...] = STEP_COLUMNS
    skip_columns: frozenset[str] = frozenset({"timestamp", "time", "date", "datetime"})

    def __init__(self, store: Any, key: str) -> None:
        super().__init__(store, key)
        self.state: dict[str, _FileState] = defaultdict(_FileState)

    def on_reset(self, cursor: FileCursor) -> None:
        st = self.state[cursor.key]
        st.header = None
        st.rows_seen = 0
        st.checking_rewrite = st.rows_emitted > 0
        st.lines = Lines()

    def on_gone(self, cursor: FileCursor) -> None:
        self.on_reset(cursor)
        st = self.state[cursor.key]
        st.checking_rewrite = False
        st.rows_emitted = 0

    def read(self, cursor: FileCursor) -> int:
        st = self.state[cursor.key]
        total = 0
        for lines in self.complete_lines(cursor, st.lines):
            total += self._rows(cursor.path, st, lines)
        return total

    def _rows(self, path: str, st: _FileState, lines: list[tuple[int, bytes]]) -> int:
        columns: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for number, raw in lines:
            # a lone CR ends a record too (csv's own rule): never a reason to drop the read
            for part in raw.decode("utf-8", "replace").split("\r"):
                if not part.strip():
                    continue
                if st.header is None and self._header(st, part):
                    continue
                header = st.header
                assert header is not None  # _header() has set it, or kept the last one
                try:
                    row = split_row(part, st.delimiter)
                except csv.Error as exc:
                    self.skip(path, f"line {number}", str(exc), "malformed")
                    continue
                if len(row) != len(header):
                    self.skip(
                        path,
                        f"line {number}",
                        f"{len(row)} cells, the header has {len(header)}",
                        "malformed",
                    )
                    continue
                self._row(st, dict(zip(header, row, strict=True)), columns)
        total = 0
        for name, (steps, values) in columns.items():
            total += self.store.add_points(self.key, self.stream, name, steps, values)
        return total

    def _header(self, st: _FileState, line: str) -> bool:
        """Take the header of a new generation from its first row; False when that row is data
        shaped like the last header (all numbers, as many cells) instead: a generation written
        without its header, as Keras' CSVLogger(append=True) does after logrotate's copytruncate
        emptied the file (it writes the header only into an empty file, when the fit begins).
        Then the last header stands and the row is read as data."""
        delimiter = "\t" if line.count("\t") > line.count(",") else ","
        try:
            cells = split_row(line, delimiter)
        except csv.Error:  # a header the csv module refuses: its plain cells
            cells = [h.strip('"') for h in line.split(delimiter)]
        cells = [c.strip() for c in cells]
        last = st.last_header
        if last is not None and len(cells) == len(last) and _all_numbers(cells):
            st.header = last
            return False
        st.delimiter, st.header, st.last_header = delimiter, cells, cells
        return True

    def _row(self, st: _FileState, cells: dict[str, str], columns: dict) -> None:
        st.rows_seen += 1
        if st.checking_rewrite:
            fingerprint = _fingerprint(cells)
            if st.rows_seen == 1 and fingerprint != st.first_row:
                st.checking_rewrite = False  # not a rewrite: a new generation
                st.rows_emitted = 0
            elif st.rows_seen <= st.rows_emitted:
                return
            else:
                st.checking_rewrite = False
        if st.rows_seen == 1:
            st.first_row = _fingerprint(cells)
        if st.step_col is None:
            st.step_col = step_column_of(cells, self.step_columns) or ""
        step_col = st.step_col
        st.rows_emitted = st.rows_seen
        step = to_step(cells.get(step_col)) if step_col else st.rows_seen - 1
        if step is None:
            return
        for col, cell in cells.items():
            if col == step_col or col in self.skip_columns:
                continue
            value = to_float(cell)
            if value is None:
                continue
            steps, values = columns[self.rename(col)]
            steps.append(step)
            values.append(value)

    def rename(self, column: str) -> str:
        return column


def split_row(line: str, delimiter: str) -> list[str]:
    """The cells of one line. A quoted field ends with its line at the latest (the writers
    quote no newlines in metric tables), so an unterminated quote spoils its own row only,
    never the rows after it; csv.Error for a row the csv module refuses (a stray quote, a
    field over its 128 KiB limit)."""
    return next(csv.reader((line,), delimiter=delimiter, strict=True), [])


def _all_numbers(cells: list[str]) -> bool:
    """A data row, not a header: every cell a number or empty/NA, at least one a number."""
    numbers = [to_float(c) for c in cells]
    return any(n is not None for n in numbers) and all(
        n is not None or c in ("", "NA", "N/A", "null", "None")
        for n, c in zip(numbers, cells, strict=True)
    )


def _fingerprint(cells: dict[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in cells.items() if v.strip()))


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


class JsonlSource(Source):
    """JSON lines with a step-like key (Ray Tune result.json, watchrun.jsonl, mmengine's
    vis_data/scalars.json, generic JSONL)."""

    format = "jsonl"
    stream = "jsonl"
    richness = 4
    whole_when_parsed = True  # a JSON object cut short does not parse
    step_unit = "step"

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """JSON lines with a step-like key next to numbers (probe.history_lines)."""
        if head is None:
            return path.endswith(".jsonl")
        return history_lines(head)

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        return dir_log_root(path), {}

    @classmethod
    def create(cls, store: Any, key: str, root: str, path: str = "") -> Source:
        return cls(store, key, stream="watchrun" if path.endswith("watchrun.jsonl") else "jsonl")

    def __init__(self, store: Any, key: str, stream: str = "jsonl") -> None:
        self.stream = stream
        super().__init__(store, key)
        self.lines: dict[str, Lines] = defaultdict(Lines)
        self.rows: dict[str, int] = defaultdict(int)
        self.step_cols: dict[str, str] = {}  # per file: chosen on its first row, then kept
        self.mmdet: dict[str, dict[str, int]] = {}  # per file: epoch length, current epoch

    def on_reset(self, cursor: FileCursor) -> None:
        self.lines[cursor.key] = Lines()
        self.rows[cursor.key] = 0

    def read(self, cursor: FileCursor) -> int:
        total = 0
        for lines in self.complete_lines(cursor, self.lines[cursor.key]):
            total += self._objects(cursor, lines)
        return total

    def _objects(self, cursor: FileCursor, lines: list[tuple[int, bytes]]) -> int:
        columns: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for number, line in lines:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                self.skip(cursor.path, f"line {number}", _why(exc), "unreadable")
                continue
            if not isinstance(obj, dict):
                self.skip(cursor.path, f"line {number}", "not a JSON object", "unreadable")
                continue
            self.rows[cursor.key] += 1
            try:
                self.handle(obj, columns, self.rows[cursor.key] - 1, cursor.key)
            except Exception as exc:  # noqa: BLE001 - one odd record must not drop the read
                self.skip(cursor.path, f"line {number}", _why(exc), "unreadable")
        total = 0
        for name, (steps, values) in columns.items():
            total += self.store.add_points(self.key, self.stream, name, steps, values)
        return total

    def handle(self, obj: dict[str, Any], columns: dict, row: int, file: str = "") -> None:
        if obj.get("mode") in ("train", "val") and "epoch" in obj and "iter" in obj:
            self._mmdet(obj, columns, file)
            return
        flat = flatten(obj)
        step_col = self.step_cols.get(file)
        if step_col is None:
            step_col = self.step_cols[file] = step_column_of(flat) or ""
        step = to_step(flat.get(step_col)) if step_col else row
        if step is None:
            return
        for name, value in flat.items():
            if name == step_col or isinstance(value, bool):
                continue
            if isinstance(value, str) and name in ("text", "sample", "prediction"):
                continue
            f = to_float(value) if isinstance(value, (int, float, str)) else None
            if f is None or (isinstance(value, str) and not _numeric_string(value)):
                continue
            steps, values = columns[name]
            steps.append(step)
            values.append(f)

    def _mmdet(self, obj: dict[str, Any], columns: dict, file: str) -> None:
        """mmdetection 2.x log.json: `iter` counts within the epoch (the val row's `iter` is the
        epoch's length); the step is the global iteration, (epoch - 1) x its length + iter.
        Validation rows' metrics become `val/<name>`."""
        epoch, it = to_step(obj.get("epoch")), to_step(obj.get("iter"))
        if epoch is None or it is None:
            return
        st = self.mmdet.setdefault(file, {"per_epoch": 0, "epoch": epoch, "last_iter": 0})
        val = obj["mode"] == "val"
        if val:
            st["per_epoch"] = max(st["per_epoch"], it)
        elif epoch != st["epoch"]:  # a new epoch: the last one was at least this long
            st["per_epoch"] = max(st["per_epoch"], st["last_iter"])
            st["epoch"], st["last_iter"] = epoch, 0
        if not val:
            st["last_iter"] = max(st["last_iter"], it)
        step = to_step((epoch - 1) * st["per_epoch"] + it)
        if step is None:
            return
        for name, value in obj.items():
            if (
                name in ("mode", "epoch", "iter")
                or isinstance(value, bool)
                or not isinstance(value, (int, float))
            ):
                continue
            steps, values = columns[f"val/{name}" if val and not name.startswith("val") else name]
            steps.append(step)
            values.append(float(value))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)


def _numeric_string(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return text.strip().lower() in ("nan", "inf", "-inf", "infinity", "-infinity")

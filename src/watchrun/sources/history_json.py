"""A training history kept in one JSON document that the script rewrites whole after each epoch:

- Keras' `json.dump(history.history, f)`: a dict of equal-length lists, one entry per epoch;
- a list of per-epoch (or per-step) dicts (`training_log.json`, `history.json`, `metrics.json`);
- the same list under one key: `{"epochs": [...]}`, `{"log_history": [...]}`, `{"history": [...]}`.

Values are numbers or numeric strings. Each rewrite emits only the rows past those already
emitted; a rewrite whose first row differs is a new history (the script started again) and is read
whole (the store starts a new segment when the step goes back). A half-written document is
retried at the next poll.
"""

from __future__ import annotations

import json
import re
from typing import Any

from watchrun.sources.base import Source, to_float, to_step
from watchrun.sources.table import STEP_COLUMNS, flatten, step_column_of
from watchrun.tail import FileCursor

RETRY_WARN_AFTER = 20
# names that say a number is a training metric (a history), not a dataset field or a setting
_METRIC_WORDS = re.compile(
    r"loss|acc|error|err\b|f1|auc|precision|recall|iou|map\b|bleu|rouge|wer|cer|perplexity|ppl|reward|"
    r"return|score|lr\b|learning_rate|mse|mae|rmse|dice",
    re.IGNORECASE,
)
_STEP_WORDS = frozenset(c.lower() for c in STEP_COLUMNS)
_LIST_START = re.compile(rb'^\s*(?:\{\s*"[^"]{1,100}"\s*:\s*)?\[\s*\{')
_DICT_OF_LISTS = re.compile(rb'^\s*\{\s*"([^"]{1,100})"\s*:\s*\[\s*"?(?:-?[\d.]|NaN|-?Infinity)')


def history_rows(doc: Any) -> list[dict[str, Any]] | None:
    """The rows of a history document, or None when `doc` is not one."""
    if isinstance(doc, list):
        rows = doc
    elif isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
        lists = list(doc.values())
        if all(not v or not isinstance(v[0], dict) for v in lists):  # Keras: dict of lists
            n = len(lists[0])
            if any(len(v) != n for v in lists):
                return None
            return [{k: v[i] for k, v in doc.items()} for i in range(n)]
        if len(doc) != 1:
            return None
        rows = lists[0]
    elif isinstance(doc, dict):
        inner = [v for v in doc.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if len(inner) != 1:
            return None
        rows = inner[0]
    else:
        return None
    if not all(isinstance(r, dict) for r in rows):
        return None
    return rows


# keys of per-sample records (datasets, predictions, COCO results), never of a training history
_SAMPLE_KEYS = frozenset(
    {
        "id",
        "image_id",
        "label",
        "labels",
        "pred",
        "prediction",
        "text",
        "file",
        "file_name",
        "filename",
        "path",
        "bbox",
        "category_id",
        "image",
        "target",
        "sentence",
        "input",
    }
)


def looks_like_history(rows: list[dict[str, Any]]) -> bool:
    """A row with a number under a step-like or metric-like name: a dataset (`text`, `label`)
    or a list of predictions (`image_id`, `score`) is not a history."""
    for row in rows[:3]:
        if _SAMPLE_KEYS & {str(k).lower() for k in row}:
            return False
        flat = flatten(row)
        numeric = [k for k, v in flat.items() if _numeric(v)]
        if not numeric:
            continue
        if any(k.lower() in _STEP_WORDS for k in numeric) and len(numeric) >= 2:
            return True
        if any(_METRIC_WORDS.search(k) for k in numeric):
            return True
    return False


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and to_float(value) is not None and value.strip() not in ("", "-")


class JsonHistorySource(Source):
    format = "json-history"
    stream = "json-history"
    richness = 4
    step_unit = "epoch"

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """A JSON document holding a history: parsed whole when the head is the whole file,
        else its first row is parsed out of the head."""
        if not head:
            return False
        try:
            doc = json.loads(head)
        except (ValueError, UnicodeDecodeError, RecursionError):
            doc = None
        if doc is not None:
            rows = history_rows(doc)
            if isinstance(doc, dict) and len(doc) == 1 and rows and len(rows[0]) == 1:
                return "loss" in str(next(iter(doc))).lower()  # one list: a loss curve, not scores
            return rows is not None and looks_like_history(rows)
        m = _DICT_OF_LISTS.match(head)
        if m:  # Keras dict of lists, cut by the head: the first key names a metric
            return bool(_METRIC_WORDS.search(m.group(1).decode("utf-8", "replace")))
        m = _LIST_START.match(head)
        if not m:
            return False
        try:
            first, _ = json.JSONDecoder().raw_decode(head[m.end() - 1 :].decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            return False
        return isinstance(first, dict) and looks_like_history([first])

    def __init__(self, store: Any, key: str) -> None:
        super().__init__(store, key)
        self.emitted: dict[str, int] = {}
        self.first_row: dict[str, str] = {}
        self.step_col: dict[str, str] = {}
        self.failures: dict[str, int] = {}

    def on_reset(self, cursor: FileCursor) -> None:
        """Rewritten: the rows are compared by content in `read`, not forgotten here."""

    def read(self, cursor: FileCursor) -> int:
        try:
            raw = cursor.read_all()
        except FileNotFoundError:
            return 0
        try:
            rows = history_rows(json.loads(raw))
        except (ValueError, UnicodeDecodeError, RecursionError):
            rows = None
        if rows is None:
            cursor.mtime_ns = -1  # half-written: look again at the next poll
            n = self.failures[cursor.key] = self.failures.get(cursor.key, 0) + 1
            if n == RETRY_WARN_AFTER:
                self.warn(
                    f"{cursor.key.rsplit('/', 1)[-1]}: not a whole JSON history yet, retrying"
                )
            return 0
        self.failures.pop(cursor.key, None)
        return self._rows(cursor.key, rows)

    def _rows(self, path: str, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        first = json.dumps(rows[0], sort_keys=True, default=str)
        done = self.emitted.get(path, 0)
        if first != self.first_row.get(path) or len(rows) < done:
            done = 0  # a new history (or the first look): read it whole
            self.first_row[path] = first
        if path not in self.step_col:
            col = step_column_of(flatten(rows[0]))
            self.step_col[path] = col or ""
            if col and col.lower() not in ("epoch", "epochs"):
                self.store.update(self.key, step_unit="step")
            elif not col or col.lower().startswith("epoch"):
                self.store.update(self.key, step_unit="epoch")
        step_col = self.step_col[path]
        columns: dict[str, tuple[list[int], list[float]]] = {}
        for index in range(done, len(rows)):
            flat = flatten(rows[index])
            step = to_step(flat.get(step_col)) if step_col else index
            if step is None:
                continue
            for name, value in flat.items():
                if name == step_col or not _numeric(value):
                    continue
                steps, values = columns.setdefault(name, ([], []))
                steps.append(step)
                values.append(to_float(value))  # type: ignore[arg-type]
        self.emitted[path] = len(rows)
        total = 0
        for name, (steps, values) in columns.items():
            total += self.store.add_points(self.key, self.stream, name, steps, values)
        return total

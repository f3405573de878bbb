"""What the sources' `claims(path, head)` look at: the first bytes of a file and, for placing a
file in its run, the directories around it.

Every test here is linear in the head (no backtracking regex on untrusted text) and looks at a
bounded number of lines, so sniffing a tree costs one short read per file.
"""

from __future__ import annotations

import csv
import json
import re
from typing import Any

HEAD_BYTES = 64 * 1024  # what discovery reads of a file to decide what it is
TAIL_BYTES = 16 * 1024  # and of a text file's end, when it is longer (a console past its preamble)
MAX_LINE = 4096  # longer lines are not looked at

STEP_NAMES = frozenset(
    {
        "step", "steps", "global_step", "_step", "epoch", "epochs", "iter", "iters", "iteration",
        "iterations", "timesteps", "total_timesteps", "timesteps_total", "training_iteration",
        "n_updates", "updates", "batch", "nupdates",
    }
)  # fmt: skip
# words that name a training metric: a table or JSON object holding one of them next to numbers
# is a history, not a dataset (`loss`, `val_acc`, `eval/f1`, `mAP50(B)`, `rollout/ep_rew_mean`)
_METRIC_WORD = re.compile(
    r"(?:^|[^a-z])(?:loss|acc|accuracy|f1|auc|precision|recall|mae|mse|rmse|perplexity|ppl|bleu|"
    r"rouge|wer|cer|map\d*|iou|dice|reward|rew|return|lr|learning_rate|grad_norm)(?:[^a-z]|$)"
)


def is_binary(head: bytes) -> bool:
    """NUL bytes all over the start: a binary file (a stray NUL in a text log is junk, not
    binary)."""
    nuls = head[:4096].count(0)
    return nuls > 16 or nuls * 10 > len(head[:4096])


def is_step_name(name: str) -> bool:
    """`step`, `Epoch`, `trainer/global_step`, `total/epochs`, ` epoch` (space-padded)."""
    base = name.strip().lower().rsplit("/", 1)[-1]
    return base in STEP_NAMES


def is_metric_name(name: str) -> bool:
    return bool(_METRIC_WORD.search(name.strip().lower()))


def is_number(text: Any) -> bool:
    if isinstance(text, bool):
        return False
    if isinstance(text, (int, float)):
        return True
    if not isinstance(text, str):
        return False
    t = text.strip()
    if not t or len(t) > 64:
        return False
    try:
        float(t)
        return True
    except ValueError:
        return t.lower() in ("nan", "-nan", "inf", "-inf", "infinity", "-infinity")


def text_lines(head: bytes, limit: int = 64, max_line: int = MAX_LINE) -> list[str]:
    """The first complete lines of the head, decoded, blank ones dropped; carriage-return
    redraws (tqdm) split into their parts. Lines over `max_line` are left out (the patterns
    run on short lines; a JSON parse is linear, so JSON lines may be longer)."""
    text = head.decode("utf-8", "replace")
    if len(head) >= HEAD_BYTES and "\n" in text:
        text = text[: text.rindex("\n")]  # the last line may be cut
    out: list[str] = []
    for line in text.split("\n"):
        for part in line.split("\r"):
            part = part.strip()
            if part and len(part) <= max_line:
                out.append(part)
        if len(out) >= limit:
            break
    return out


# -- tables -------------------------------------------------------------------------------------
def table(head: bytes) -> tuple[list[str], list[list[str]]] | None:
    """(header, first data rows) of a CSV/TSV head, or None when it is not a table: at least two
    columns, a header that is not numbers, rows of the header's width."""
    if is_binary(head):
        return None
    lines = text_lines(head, limit=12)
    if len(lines) < 2:
        return None
    first = lines[0]
    sep = "\t" if first.count("\t") > first.count(",") else ","
    first_row = _csv_row(first, sep)
    if first_row is None:
        return None
    rows = [first_row] + [r for r in (_csv_row(line, sep) for line in lines[1:]) if r is not None]
    header = [h.strip().strip('"') for h in rows[0]]
    if len(header) < 2 or sum(is_number(h) for h in header) > len(header) // 2:
        return None
    body = [r for r in rows[1:] if len(r) == len(header)]
    if not body or len(body) < (len(rows) - 1) // 2:
        return None
    return header, body


def _csv_row(line: str, sep: str) -> list[str] | None:
    """One line's cells, parsed alone: an unterminated quote spoils its own line, not the rest."""
    try:
        return next(csv.reader([line], delimiter=sep), None)
    except csv.Error:
        return None


def numeric_share(rows: list[list[str]]) -> float:
    cells = [c for r in rows for c in r if c.strip()]
    return sum(is_number(c) for c in cells) / len(cells) if cells else 0.0


def history_table(head: bytes) -> list[str] | None:
    """The header of a table that is a training history: numbers in most cells and a step-like
    column (`epoch`, `step`, `total/steps`), or an index-like first column or metric-named columns
    (one row per epoch). Datasets, predictions and configs have neither."""
    memo = getattr(head, "__dict__", None)  # a Head: several sources ask about one file
    if memo is not None and "history_table" in memo:
        return memo["history_table"]
    found = _history_table(head)
    if memo is not None:
        memo["history_table"] = found
    return found


def _history_table(head: bytes) -> list[str] | None:
    parsed = table(head)
    if parsed is None:
        return _header_only(head)
    header, rows = parsed
    numeric = [
        i
        for i in range(len(header))
        if all(is_number(r[i]) or not r[i].strip() for r in rows)
        and any(r[i].strip() for r in rows)
    ]
    if len(numeric) < 2:
        return None
    if any(is_step_name(header[i]) for i in numeric):
        return header
    metric_cols = sum(is_metric_name(header[i]) for i in numeric)
    if numeric_share(rows) < 0.6 or not metric_cols:
        return None
    if metric_cols >= 2 or _counts_up(rows, 0, header):
        return header
    return None


def _header_only(head: bytes) -> list[str] | None:
    """A table with no row yet (the writer wrote its header): a history when the header names a
    step-like column and metrics."""
    lines = text_lines(head, limit=3)
    if len(lines) != 1 or not head.rstrip(b" ").endswith(b"\n") or is_binary(head):
        return None
    first = lines[0]
    header = [
        h.strip().strip('"')
        for h in first.split("\t" if first.count("\t") > first.count(",") else ",")
    ]
    if len(header) < 2 or any(is_number(h) for h in header):
        return None
    return (
        header
        if any(is_step_name(h) for h in header) and any(is_metric_name(h) for h in header)
        else None
    )


def _counts_up(rows: list[list[str]], col: int, header: list[str]) -> bool:
    """The first column is a row counter (pandas' unnamed index, 0, 1, 2...)."""
    if header[col] not in ("", "Unnamed: 0", "index"):
        return False
    try:
        values = [int(r[col]) for r in rows]
    except ValueError:
        return False
    return all(b == a + 1 for a, b in zip(values, values[1:], strict=False))


# -- JSON lines ---------------------------------------------------------------------------------
def json_lines(head: bytes, limit: int = 8) -> list[dict[str, Any]] | None:
    """The first JSON objects of a JSON-lines head; None if a line is not one."""
    objs: list[dict[str, Any]] = []
    for line in text_lines(head, limit=limit, max_line=HEAD_BYTES):
        if not line.startswith("{"):
            return None
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(obj, dict):
            return None
        objs.append(obj)
    return objs or None


def history_lines(head: bytes) -> bool:
    """JSON lines of a metrics log: a line with a step-like key and a number next to it, or
    mmdetection's `epoch` + `iter`."""
    objs = json_lines(head)
    if not objs:
        return False
    for obj in objs:
        keys = list(obj)
        numbers = [k for k in keys if is_number(obj[k])]
        if {"epoch", "iter"} <= obj.keys():
            return True
        if any(is_step_name(k) for k in numbers) and len(numbers) >= 2:
            return True
    return False


def json_document(head: bytes, size: int) -> Any:
    """The whole JSON document when the head holds all of it (else None)."""
    if size > len(head) or head.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return json.loads(head)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None


# -- consoles -----------------------------------------------------------------------------------
_HF_DICT = re.compile(r"^\{'(?:loss|eval_\w+|train_runtime|train_loss|grad_norm|learning_rate)': ")
_TQDM = re.compile(r"\d+/\d+ \[\d+:\d+")
_KERAS_EPOCH = re.compile(r"^Epoch \d+/\d+$")
_KERAS_ROW = re.compile(r" - (?:loss|accuracy|acc): -?\d")
_STEP_WORD = re.compile(r"\b(?:epoch|step|iter|iteration)\b\s*[:=#]?\s*\[?\s*\d+", re.IGNORECASE)
_LOSS_PAIR = re.compile(
    r"\b(?:\w*loss|\w*acc\w*|lr|perplexity|reward)\b\s*[:=]?\s*-?(?:\d+\.?\d*|\.\d+|nan|inf)",
    re.IGNORECASE,
)


_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def console_signs(lines: list[str]) -> int:
    """How many lines look like a training console: HF Trainer's printed dicts, tqdm bars,
    Keras epoch headers and rows, or hand-written `epoch 3 loss=0.41` lines printed by one format
    string (the same words, other numbers: prose that mentions a loss does not repeat itself)."""
    n = 0
    templates: dict[str, int] = {}
    for line in lines:
        if _HF_DICT.match(line) or _KERAS_EPOCH.match(line) or _KERAS_ROW.search(line):
            n += 2
        elif _TQDM.search(line) and ("it/s" in line or "s/it" in line):
            n += 1
        elif len(line) <= 300 and _STEP_WORD.search(line) and _LOSS_PAIR.search(line):
            t = _NUMBER.sub("#", line)
            templates[t] = templates.get(t, 0) + 1
    return n + sum(c for c in templates.values() if c >= 2)


def is_console(head: bytes, tail: bytes = b"") -> bool:
    if is_binary(head):
        return False
    lines = text_lines(head, limit=2000)
    if tail:
        lines += text_lines(tail.split(b"\n", 1)[-1], limit=500)
    return console_signs(lines) >= 2

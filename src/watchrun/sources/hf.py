"""HF Trainer output directories: trainer_state.json (root and checkpoint-N/), *_results.json.

trainer_state.json is rewritten whole at each save, and not atomically (open "w" + write): a read
that fails to parse is retried at the next poll, never an error (FAULTS F6). Each checkpoint's
log_history is a prefix of the next one's, so entries are emitted once each, counted by content
across all files; checkpoint directories deleted by save_total_limit lose nothing already read.

The model's config.json saved next to a trainer_state.json (`save_pretrained`: each checkpoint,
and the output dir after `save_model`) is the writer's record of a classifier's labels: their
count is kept as the run's `num_labels` hyperparameter (what detectors read as K, the number of
classes). It is read when its trainer_state.json is, once per file version, and only up to
MAX_CONFIG_BYTES.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections import Counter
from typing import Any

from watchrun.model import RunStatus
from watchrun.sources.base import Source, numbers, to_step
from watchrun.sources.layout import CHECKPOINT_DIR
from watchrun.sources.probe import is_number, json_document
from watchrun.tail import FileCursor

META_KEYS = (
    "best_metric",
    "best_model_checkpoint",
    "best_global_step",
    "max_steps",
    "eval_steps",
    "logging_steps",
    "save_steps",
    "num_train_epochs",
    "global_step",
    "train_batch_size",
    "epoch",
)
SUMMARY_MARKERS = ("train_runtime", "total_flos")
_RESULTS_KEY = re.compile(r"^(?:train|eval|test|predict)_(?:runtime|samples_per_second)$")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
RETRY_WARN_AFTER = 20
MAX_CONFIG_BYTES = 4 << 20  # a config.json naming 22k labels (ImageNet-22k) is about 2 MB
# labels that leave the loss a cross-entropy over them: not a regression, not one sigmoid each
_SINGLE_LABEL = "single_label_classification"


class HfTrainerSource(Source):
    format = "hf-trainer"
    stream = "trainer_state"
    richness = 1

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """trainer_state.json (a JSON object with `log_history`) or *_results.json (a flat
        object of numbers with a `train_`/`eval_`/`test_`/`predict_` runtime)."""
        name = os.path.basename(path)
        if head is None:
            return name == "trainer_state.json" or name.endswith("_results.json")
        start = head.lstrip()[:1]
        if start != b"{":
            return False
        if b'"log_history"' in head or b'"global_step"' in head and b'"max_steps"' in head:
            return True  # a trainer_state.json, perhaps half written (it is rewritten in place)
        doc = json_document(head, getattr(head, "size", len(head)))
        if not isinstance(doc, dict) or not doc:
            return False
        numbers = all(is_number(v) or v is None for v in doc.values())
        return numbers and any(_RESULTS_KEY.match(k) for k in doc)

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        d = os.path.dirname(path)
        return (os.path.dirname(d) if CHECKPOINT_DIR.match(os.path.basename(d)) else d), {}

    def __init__(self, store: Any, key: str) -> None:
        super().__init__(store, key)
        self.emitted: Counter = Counter()
        self.failures: Counter = Counter()
        self.configs: dict[str, tuple[int, ...]] = {}  # config.json path -> version read

    def ordered_paths(self, among: set[str] | None = None) -> list[str]:
        """checkpoint-N files by N, the output dir's own file last (it is the newest)."""

        def order(path: str) -> tuple[int, str]:
            m = _CHECKPOINT.search(os.path.dirname(path))
            return (int(m.group(1)) if m else 1 << 62, path)

        paths = self.cursors if among is None else [p for p in among if p in self.cursors]
        return sorted(paths, key=order)

    def read(self, cursor: FileCursor) -> int:
        try:
            raw = cursor.read_all()
        except FileNotFoundError:
            return 0
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError, RecursionError):
            # being rewritten: look again at the next poll, whatever the stat says
            cursor.mtime_ns = -1
            self.failures[cursor.key] += 1
            if self.failures[cursor.key] == RETRY_WARN_AFTER:
                self.warn(f"{_rel(cursor.path)}: not valid JSON yet (half-written?), retrying")
            return 0
        self.failures.pop(cursor.key, None)
        name = os.path.basename(cursor.path)
        if name == "trainer_state.json":
            self._model_config(os.path.join(os.path.dirname(cursor.path), "config.json"))
            return self._state(doc, cursor.path)
        self._results(doc, name)
        return 0

    def _state(self, doc: dict[str, Any], path: str) -> int:
        meta = _meta(doc)
        meta.update(early_stopping_state(doc))
        is_checkpoint = bool(_CHECKPOINT.search(os.path.dirname(path)))
        run = self.store.run(self.key)
        current = run.meta.get("global_step", -1)
        if meta.get("global_step", -1) >= current or not is_checkpoint:
            self.store.update(self.key, meta=meta)
        history = doc.get("log_history") or []
        if not isinstance(history, list):
            history = []
        seen: Counter = Counter()
        columns: dict[str, tuple[list[int], list[float]]] = {}
        summary: dict[str, float] = {}
        for i, entry in enumerate(history):
            if not isinstance(entry, dict):
                continue
            try:
                fp = json.dumps(entry, sort_keys=True)
            except (ValueError, RecursionError) as exc:
                self.skip(path, f"log_history[{i}]", str(exc))
                continue
            seen[fp] += 1
            if seen[fp] <= self.emitted[fp]:
                continue
            self.emitted[fp] += 1
            step = to_step(entry.get("step"))
            if step is None:
                self.skip(
                    path, f"log_history[{i}]", f"step {str(entry.get('step'))[:40]!r} is not a step"
                )
                continue
            numeric = numbers(entry, skip="step")
            if any(m in entry for m in SUMMARY_MARKERS):
                summary.update(numeric)
                continue
            for k, v in numeric.items():
                steps, values = columns.setdefault(k, ([], []))
                steps.append(step)
                values.append(v)
        total = 0
        for name, (steps, values) in columns.items():
            total += self.store.add_points(self.key, self.stream, name, steps, values)
        if summary:
            self.store.update(self.key, summary=summary, explicit_status=RunStatus.FINISHED)
        return total

    def _model_config(self, path: str) -> None:
        """The class count of the model config at `path`, if it records one (class_count), as
        the run's `num_labels`. A version (inode, size, mtime) is read once; a file too big,
        not a regular file (a FIFO would block the read), or not JSON is left out, said once."""
        try:
            st = os.stat(path)
        except OSError:
            return
        version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self.configs.get(path) == version:
            return
        self.configs[path] = version
        if not stat.S_ISREG(st.st_mode):
            self.warn(f"{_rel(path)}: not read (not a regular file)")
            return
        if st.st_size > MAX_CONFIG_BYTES:
            self.warn(f"{_rel(path)}: not read (over {MAX_CONFIG_BYTES >> 20} MiB)")
            return
        try:
            doc = json.loads(_read_regular(path, MAX_CONFIG_BYTES))
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            self.warn(f"{_rel(path)}: not read ({type(exc).__name__})")
            return
        k = class_count(doc)
        if k is not None:
            self.store.update(self.key, hparams={"num_labels": k})

    def _results(self, doc: dict[str, Any], name: str) -> None:
        self.store.update(self.key, summary=numbers(doc))
        if name in ("all_results.json", "train_results.json"):
            self.store.update(self.key, explicit_status=RunStatus.FINISHED)


_STRING_META = {"best_model_checkpoint"}


def _meta(doc: dict[str, Any]) -> dict[str, Any]:
    """The run facts of a trainer_state.json, each of the type the rest of watchrun reads
    (a number, or the checkpoint path as text); others are left out."""
    meta: dict[str, Any] = {}
    for k in META_KEYS:
        v = doc.get(k)
        if k in _STRING_META:
            if isinstance(v, str):
                meta[k] = v
        elif isinstance(v, float) and k in ("best_metric", "epoch", "num_train_epochs"):
            meta[k] = v
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            step = to_step(v)
            if step is not None:
                meta[k] = step
    return meta


def class_count(config: Any) -> int | None:
    """How many classes a model's loss is a cross-entropy over, as its config.json records
    them: the labels (`id2label`, else `num_labels`) of a single-label classifier, one whose
    problem_type says so or, with none saved, whose architecture is a `...Classification` head
    (sequence, token, image, audio). None for regression and multi-label models (problem_type)
    and for any other model (a language model's labels are no classes of its loss)."""
    if not isinstance(config, dict):
        return None
    problem = config.get("problem_type")
    heads = config.get("architectures")
    classifier = isinstance(heads, list) and any(
        isinstance(h, str) and "Classification" in h for h in heads
    )
    if not (problem == _SINGLE_LABEL or problem is None and classifier):
        return None
    labels = config.get("id2label")
    if isinstance(labels, dict) and labels:
        k: int | None = len(labels)
    else:
        n = config.get("num_labels")
        k = to_step(n) if isinstance(n, int) and not isinstance(n, bool) else None
    return k if k is not None and k >= 2 else None


def early_stopping_state(doc: dict[str, Any]) -> dict[str, int]:
    """EarlyStoppingCallback's saved state (transformers >= 4.41 keeps each stateful callback in
    `stateful_callbacks`, several instances of one class as a list): its patience and how many
    evaluations in a row have not improved. Empty when the run has no such callback."""
    callbacks = doc.get("stateful_callbacks")
    state = callbacks.get("EarlyStoppingCallback") if isinstance(callbacks, dict) else None
    if isinstance(state, list):
        state = state[-1] if state else None
    if not isinstance(state, dict):
        return {}
    args, attributes = state.get("args"), state.get("attributes")
    patience = to_step(args.get("early_stopping_patience")) if isinstance(args, dict) else None
    counter = (
        to_step(attributes.get("early_stopping_patience_counter"))
        if isinstance(attributes, dict)
        else None
    )
    if patience is None or patience <= 0 or counter is None:
        return {}
    return {"patience": patience, "patience_counter": counter}


def _read_regular(path: str, limit: int) -> bytes:
    """Up to `limit` bytes of a regular file; opened without blocking, so that a FIFO put in
    its place after the stat raises instead of waiting for a writer."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path}: not a regular file")
        return f.read(limit)


def _rel(path: str) -> str:
    parts = path.split(os.sep)
    return os.sep.join(parts[-2:])

"""Console logs (nohup/tee files, slurm-*.out): often the only live source of an HF run.

Recognised lines:
- HF Trainer's printed logs, `{'loss': 0.69, 'epoch': 0.5}` (transformers 5 prints the numbers as
  strings). They carry no step: the step is the position of the training progress bar (tqdm,
  `450/1000 [..]`, updated with carriage returns) when the dict was printed.
- Keras fit: `Epoch 3/20` then `... - loss: 0.2 - val_loss: 0.3` (epoch rows, 0-based like CSVLogger).
- Lightning EarlyStopping (`Monitored metric val_loss did not improve ... Signaling Trainer to
  stop`) and Keras `Epoch 7: early stopping`: kept as run events.
- Hand-written loops: a line that names an epoch/step/iteration number and `name: value` or
  `name=value` pairs (`epoch 3 | train_loss=0.41 val_loss=0.52`); PyTorch's examples
  (`Train Epoch: 3 [12800/60000 (21%)]  Loss: 0.21`, then `Test set: Average loss: 0.03,
  Accuracy: 9893/10000 (99%)`, kept as test_loss and test_accuracy at the last step).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from typing import Any

from watchrun.sources.base import Source, to_float
from watchrun.sources.probe import is_console
from watchrun.tail import FileCursor, LineBuffer

_TQDM = re.compile(r"(\d+)/(\d+) \[")
_KERAS_EPOCH = re.compile(r"^Epoch (\d+)/(\d+)\s*$")
_KERAS_BAR = re.compile(r"^\s*(\d+)/(\d+)\s")
_PAIR = re.compile(
    r"([A-Za-z_][\w/.\-]*)\s*[:=]\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:/\d+)?|nan|-?inf)(?![\w.])"
)
_SPACED_PAIR = re.compile(r"^\s*([A-Za-z][A-Za-z_ /]{0,40}?)\s+(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|-?inf)\s*(?:ms|s|%)?\s*$")
_HAND_STEP = re.compile(r"\b(epoch|step|iter|iteration)\b\s*[:=#]?\s*\[?(\d+)", re.IGNORECASE)
# PyTorch's examples: `Train Epoch: 3 [12800/60000 (21%)]  Loss: 0.21` (the step is the sample
# count) and, after each epoch, `Test set: Average loss: 0.0331, Accuracy: 9893/10000 (99%)`.
_IN_EPOCH = re.compile(r"\s*\[\s*(\d+)\s*/\s*(\d+)")
_EVAL_LINE = re.compile(r"^\W*(test|val|valid|validation|eval|evaluation|dev)(?:\s+set)?\s*[:|\-]", re.IGNORECASE)
_EARLY = re.compile(
    r"Monitored metric (\S+) did not improve in the last (\d+) records?\. Best score: ([-\d.eE+naif]+)"
)
_KERAS_EARLY = re.compile(r"Epoch (\d+): early stopping")
_NOT_METRICS = {"epoch", "step", "iter", "iteration", "eta", "lr_scheduler", "batch", "it", "s"}


class ConsoleSource(Source):
    format = "console"
    stream = "console"
    listed_when_empty = False
    attaches = 2  # a console joins the run of its directory (or the parent's), if there is one
    standalone = True

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """Text whose lines look like a training console (probe.console_signs), in the head or,
        for a long file, its last bytes."""
        if head is None:
            return path.endswith((".log", ".out", ".err"))
        return is_console(head, getattr(head, "tail", b""))

    def __init__(self, store: Any, key: str) -> None:
        super().__init__(store, key)
        self.lines: dict[str, LineBuffer] = defaultdict(LineBuffer)
        self.train_total = 0
        self.train_pos: int | None = None
        self.keras_epoch: int | None = None
        self.dicts = 0
        self.hand_step: int | None = None  # the step of the last hand-loop line

    def on_reset(self, cursor: FileCursor) -> None:
        self.lines[cursor.key] = LineBuffer()

    def read(self, cursor: FileCursor) -> int:
        lines, consumed = self.lines[cursor.key].feed(cursor.read())
        cursor.advance(consumed)
        columns: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for raw in lines:
            for part in raw.split(b"\r"):
                self._line(part.decode("utf-8", "replace").strip(), columns)
        total = 0
        for name, (steps, values) in columns.items():
            total += self.store.add_points(self.key, self.stream, name, steps, values)
        return total

    def _line(self, line: str, columns: dict) -> None:
        if not line:
            return
        if line.startswith("{") and line.endswith("}"):
            self._hf_dict(line, columns)
            return
        m = _KERAS_EPOCH.match(line)
        if m:
            self.keras_epoch = int(m.group(1)) - 1
            self.store.update(self.key, meta={"max_epochs": int(m.group(2))}, step_unit="epoch")
            return
        m = _EARLY.search(line)
        if m:
            self._event(f"early stopping: {m.group(1)} did not improve in {m.group(2)} evals, best {m.group(3)}")
            return
        m = _KERAS_EARLY.search(line)
        if m:
            self._event(f"early stopping at epoch {m.group(1)}")
            return
        for m in _TQDM.finditer(line):
            n, total = int(m.group(1)), int(m.group(2))
            if total >= self.train_total:
                self.train_total = total
                self.train_pos = n
                self.store.update(self.key, meta={"max_steps": total})
        if self.keras_epoch is not None:
            bar = _KERAS_BAR.match(line)
            if bar and bar.group(1) == bar.group(2) and " - " in line:
                self._pairs(line[bar.end() :], self.keras_epoch, columns)
                return
        hand = _HAND_STEP.search(line)
        if hand and not _TQDM.search(line):
            step = int(hand.group(2))
            within = _IN_EPOCH.match(line, hand.end()) if hand.group(1).lower() == "epoch" else None
            if within:  # `Epoch: 3 [12800/60000 (21%)]`: count samples, so steps keep rising
                step = step * int(within.group(2)) + int(within.group(1))
                line = line[within.end() :]
            self.hand_step = step
            if not self._pairs(line, step, columns, skip=hand.group(1).lower()):
                self._spaced_pairs(line[hand.end() :], step, columns)
            return
        ev = _EVAL_LINE.match(line)
        if ev and self.hand_step is not None:  # an evaluation summary after the last logged step
            prefix = {"test": "test", "dev": "val"}.get(ev.group(1).lower(), "val")
            self._pairs(line[ev.end() :], self.hand_step, columns, prefix=prefix + "_")

    def _hf_dict(self, line: str, columns: dict) -> None:
        try:
            obj = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return
        if not isinstance(obj, dict):
            return
        values = {str(k): to_float(v) for k, v in obj.items()}
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            return
        self.dicts += 1
        if "train_runtime" in values:
            self.store.update(self.key, summary=values)
            return
        step = int(values.pop("step")) if "step" in values else self._snap(self.train_pos, values)
        if step is None:
            step = self.dicts
        for k, v in values.items():
            steps, vals = columns[k]
            steps.append(step)
            vals.append(v)

    def _snap(self, pos: int | None, values: dict[str, float]) -> int | None:
        """tqdm redraws at most every 0.1 s, so the bar can lag the step the dict belongs to;
        when the run says how often it logs/evaluates, round to that grid."""
        if pos is None:
            return None
        meta = self.store.run(self.key).meta
        every = meta.get("eval_steps" if any(k.startswith("eval_") for k in values) else "logging_steps")
        if isinstance(every, int) and every > 1:
            snapped = int(round(pos / every)) * every
            if snapped > 0 and abs(snapped - pos) <= max(2, every // 10):
                return snapped
        return pos

    def _spaced_pairs(self, text: str, step: int, columns: dict) -> None:
        """nanoGPT and its kin: `iter 100: loss 4.2011, time 101.3ms, mfu 12.1%` and
        `step 250: train loss 3.1, val loss 3.2`: comma-separated `name value` pairs."""
        for part in text.lstrip(" :]").split(","):
            m = _SPACED_PAIR.match(part)
            if m:
                value = to_float(m.group(2))
                if value is not None:
                    steps, vals = columns[re.sub(r"\s+", "_", m.group(1).strip())]
                    steps.append(step)
                    vals.append(value)

    def _pairs(self, text: str, step: int, columns: dict, skip: str = "", prefix: str = "") -> int:
        """`name: value` / `name=value` pairs (`a/b` fractions as their ratio); how many."""
        found = 0
        for name, raw in _PAIR.findall(text):
            if name.lower() in _NOT_METRICS or name.lower() == skip:
                continue
            if "/" in raw:  # `Accuracy: 9893/10000`
                num, den = raw.split("/")
                value = float(num) / float(den) if float(den) else None
            else:
                value = to_float(raw)
            if value is None:
                continue
            name = prefix + name.lower() if prefix else name
            steps, vals = columns[name]
            steps.append(step)
            vals.append(value)
            found += 1
        return found

    def _event(self, message: str) -> None:
        run = self.store.run(self.key)
        step = run.last_step() or 0
        self.store.update(self.key, events=run.events + [(step, message)])

"""Console logs (nohup/tee files, slurm-*.out): often the only live source of an HF run.

Recognised lines:
- HF Trainer's printed logs, `{'loss': 0.69, 'epoch': 0.5}` (transformers 5 prints the numbers as
  strings). They carry no step: the step is the position of the training progress bar (tqdm,
  `450/1000 [..]`, updated with carriage returns) when the dict was printed.
- Keras fit: `Epoch 3/20` then `... - loss: 0.2 - val_loss: 0.3` (epoch rows, 0-based like
  CSVLogger).
- Lightning EarlyStopping (`Monitored metric val_loss did not improve ... Signaling Trainer to
  stop`) and Keras `Epoch 7: early stopping`: kept as run events (Keras' at its 0-based epoch;
  Lightning's names no step in the run's unit, so it is kept without one: the end of the run).
- HF Trainer's header (`Num Epochs = 10`, `Total optimization steps = 8,760`): the planned length.
  A progress bar's total is never taken as the plan: any bar (`Writing model shards: 1/1`) has one.
- Hand-written loops: a line that names an epoch/step/iteration number and `name: value` or
  `name=value` pairs (`epoch 3 | train_loss=0.41 val_loss=0.52`); PyTorch's examples
  (`Train Epoch: 3 [12800/60000 (21%)]  Loss: 0.21`, then `Test set: Average loss: 0.03,
  Accuracy: 9893/10000 (99%)`, kept as test_loss and test_accuracy at the last step), and
  summaries whose first name says the split (`Average Val Loss: 3.7, Val_accuracy: 12.6`: val_loss
  and val_accuracy at the last step).
- OpenAI-baselines / Stable-Baselines key-value tables (`log.txt`, the terminal): rows
  `| rollout/return | 12.3 |` between dashed lines, one table per dump; the step is the table's
  step-like key (`total/steps`, `time/total_timesteps`...) or the table's index.
"""

from __future__ import annotations

import ast
import itertools
import math
import os
import re
from collections import defaultdict
from typing import Any

from watchrun.model import RunStatus
from watchrun.semantics import role_of
from watchrun.sources.base import Lines, Source, numbers, to_float, to_step
from watchrun.sources.probe import is_binary, is_console
from watchrun.sources.table import find_step_column
from watchrun.sources.wandbrun import run_folder_member
from watchrun.tail import FileCursor

# Every pattern here runs on untrusted lines: each quantifier is bounded, so a match attempt
# costs a constant however long the line (an unbounded `\d+\.?\d*` or `[\w.]*\s*[:=]` tried
# at every position of a long word is quadratic: 18 s on a 40k-character word).
MAX_LINE = 64 * 1024  # longer console lines are skipped and counted: no metric line is that long
_NUM = r"-?(?:\d{1,40}(?:\.\d{0,40})?|\.\d{1,40})(?:[eE][+-]?\d{1,4})?"
_TQDM = re.compile(r"(?<!\d)(\d{1,18})/(\d{1,18}) \[")
_KERAS_EPOCH = re.compile(r"^Epoch (\d{1,18})/(\d{1,18})\s{0,8}$")
_KERAS_BAR = re.compile(r"^\s{0,64}(\d{1,18})/(\d{1,18})\s")
# `name: value` / `name=value`: a name is tried only where a run of name characters starts (the
# lookbehind), so a long word costs one bounded attempt, not one per character
_PAIR = re.compile(
    r"(?<![\w/.\-])([A-Za-z_][\w/.\-]{0,63})[ \t]{0,16}[:=][ \t]{0,16}("
    + _NUM
    + r"(?:/\d{1,40})?|nan|-?inf)(?![\w.])"
)
_SPACED_PAIR = re.compile(
    r"^\s{0,16}([A-Za-z][A-Za-z_ /]{0,40}?)\s{1,16}("
    + _NUM
    + r"|nan|-?inf)\s{0,8}(?:ms|s|%)?\s{0,8}$"
)
_HAND_STEP = re.compile(
    r"\b(epoch|step|iter|iteration)\b\s{0,8}[:=#]?\s{0,8}\[?(\d{1,18})(?!\d)", re.IGNORECASE
)
# what may follow a hand loop's counter: its total (`Epoch [2/20]`, `Step 40/480`)
_HAND_TOTAL = re.compile(r"\s{0,8}/\s{0,8}(\d{1,18})\s{0,8}\]?")
# PyTorch's examples: `Train Epoch: 3 [12800/60000 (21%)]  Loss: 0.21` (the step is the sample
# count) and, after each epoch, `Test set: Average loss: 0.0331, Accuracy: 9893/10000 (99%)`.
_IN_EPOCH = re.compile(r"\s{0,8}\[\s{0,8}(\d{1,18})\s{0,8}/\s{0,8}(\d{1,18})")
_EVAL_LINE = re.compile(
    r"^\W{0,16}(test|val|valid|validation|eval|evaluation|dev)(?:\s{1,8}set)?\s{0,8}[:|\-]",
    re.IGNORECASE,
)
_EARLY = re.compile(
    r"Monitored metric (\S{1,200}) did not improve in the last (\d{1,18}) records?\. "
    r"Best score: ([-\d.eE+naif]{1,40})"
)
_KERAS_EARLY = re.compile(r"Epoch (\d{1,18}): early stopping")
# Python prints a NaN or infinite float as a bare `nan`/`inf`, which literal_eval rejects: quoted
# so that to_float reads them (`{'loss': nan}` is HF Trainer's line for a NaN loss)
_NONFINITE = re.compile(r"([:\[,][ \t]{0,8})(-?)(nan|inf)\b")
# `Average Val Loss: 3.7, Trn Accuracy: 96%`, `Train Loss: 0.4 Val Loss: 0.5`: a name of a few
# words right after a separator or a value is one metric (`val_loss`, `trn_accuracy`);
# "average"/"mean" in front says nothing about it, nor a unit the value before it left behind
_WORDS_NAME = re.compile(
    r"(^|[,|;][ \t]{0,8}|(?:(?<=[\d%])|(?<=nan)|(?<=inf))[ \t]{1,8})"
    r"([A-Za-z][A-Za-z_]{0,30}(?: [A-Za-z][A-Za-z_]{0,30}){1,3})(?=[ \t]{0,4}[:=])"
)
_FILLER_WORDS = ("average", "avg", "mean", "s", "ms")
_SPLIT_WORDS = {"validation": "val", "valid": "val", "evaluation": "eval"}  # a name's short split
_NOT_METRICS = {"epoch", "step", "iter", "iteration", "eta", "lr_scheduler", "batch", "it", "s"}
_HF_TOTAL_STEPS = re.compile(r"^Total optimization steps = ([\d,]{1,24})$")
_HF_NUM_EPOCHS = re.compile(r"^Num Epochs = ([\d,]{1,24})$")
_TABLE_RULE = re.compile(r"^-{10,}$")
_TRACEBACK = "Traceback (most recent call last):"
# the exception line that ends a traceback: `KeyboardInterrupt`, `RuntimeError: CUDA out of ...`
_EXCEPTION_LINE = re.compile(
    r"^([A-Za-z_][\w.]{0,120}(?:Error|Exception|Interrupt|Exit))\b(?::.{0,200})?"
)
_TABLE_ROW = re.compile(r"^\|\s{0,16}([^|]{0,200}?)\s{0,16}\|\s{0,16}([^|]{0,64}?)\s{0,16}\|$")
CONSOLE_SUFFIXES = (".log", ".out", ".err")  # a job's output, by its name
_TEXT_SUFFIXES = (".txt",)  # where two training output lines make a console
MAX_CLAIM_LINE = 1024  # a line longer than this is no training output line (claims)
# what a training console shows in its first lines (claims): HF dict logs, tqdm bars, Keras epochs,
# `epoch N ... loss=...` loops, key-value tables
_CLAIM_LINES = (
    re.compile(r"^\{'(?:loss|eval_\w+|train_\w+|learning_rate|grad_norm|epoch)': "),
    re.compile(r"\d+%\|.*\|\s*\d+/\d+ \[\d+:\d+"),
    _KERAS_EPOCH,
    re.compile(
        r"\b(?:epoch|step|iter|iteration)\b\s*[:=#]?\s*\[?\d+.*\b\w*(?:loss|acc\w*)\b\s*[:=]?\s*-?\d",
        re.I,
    ),
    re.compile(r"^\|\s*[\w/.]+\s*\|\s*-?[\d.]+(?:e[+-]?\d+)?\s*\|$"),
)


class ConsoleSource(Source):
    format = "console"
    stream = "console"
    richness = 0
    step_unit = "step"
    listed_when_empty = False
    attaches = 2  # a console joins the run of its directory (or the parent's), if there is one
    standalone = True

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """A terminal capture of a training, whatever it is called (`trainning_output.txt`):
        its lines look like a training console (probe.console_signs) in the head or, for a long
        file, its last bytes; or two lines of the head are training output lines. Binary files
        never are; with no head (unreadable) the name decides."""
        member = run_folder_member(path)
        if member is not None:  # in a W&B run folder only files/output.log is the console
            return member[1] == cls.format
        if head is None:
            return _job_output_name(path)
        if b"\x00" in head or _json_document(head):
            return False  # binary, or JSON quoting training lines (a labels or results file)
        if is_console(head, getattr(head, "tail", b"")):
            return True
        return path.endswith(_TEXT_SUFFIXES) and _training_lines(head)

    @classmethod
    def by_name(cls, path: str, head: bytes | None) -> bool:
        """Named as shells and schedulers name a job's output (`train.log`, `slurm-123.out`,
        `nohup.out`): a console whatever its first lines print, unless binary (`a.out`)."""
        if run_folder_member(path) is not None:
            return False
        return _job_output_name(path) and (head is None or not is_binary(head))

    def __init__(self, store: Any, key: str) -> None:
        super().__init__(store, key)
        self.lines: dict[str, Lines] = defaultdict(Lines)
        self.train_total = 0
        self.train_pos: int | None = None
        self.keras_epoch: int | None = None
        self.dicts = 0
        self.hand_step: int | None = None  # the step of the last hand-loop line
        # hand-loop lines that name an epoch and a step (_epoch_step): the last one's epoch and
        # step as printed, the first epoch, and whether steps count within the epoch
        self.step_epoch: int | None = None
        self.step_in_epoch = 0
        self.first_epoch = 0
        self.epoch_first_step = 0  # the first step printed in the epoch of step_epoch
        self.step_spacing = 0  # the smallest gap between its printed steps (0: none yet)
        self.epoch_length = 0
        self.counts_within = False
        self.table: dict[str, float] | None = None  # the key-value table being read
        self.planned_steps: int | None = None  # HF Trainer's `Total optimization steps = N`
        self.num_epochs: int | None = None  # HF Trainer's `Num Epochs = N`
        self.pos_at_last_dict: int | None = None
        self.in_traceback = False
        self.died: str | None = None  # the exception that ended the training process, if any
        self.points_at_death = 0  # metric points of the chunk being read when it died
        self.last_dict_step = 0
        self.tables = 0

    def on_reset(self, cursor: FileCursor) -> None:
        self.lines[cursor.key] = Lines()

    def read(self, cursor: FileCursor) -> int:
        total = 0
        for lines in self.complete_lines(cursor, self.lines[cursor.key]):
            total += self._lines(cursor, lines)
        return total

    def _lines(self, cursor: FileCursor, lines: list[tuple[int, bytes]]) -> int:
        columns: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        self.points_at_death = 0
        shown: list[str] = []
        for number, raw in lines:
            parts = raw.split(b"\r")
            for part in parts:
                if len(part) > MAX_LINE:
                    self.skip(
                        cursor.path, f"line {number}", f"longer than {MAX_LINE} bytes", "over-long"
                    )
                    continue
                try:
                    self._line(part.decode("utf-8", "replace").strip(), columns)
                except Exception as exc:  # noqa: BLE001 - one odd line must not drop the read
                    self.skip(cursor.path, f"line {number}", f"{type(exc).__name__}: {exc}")
            last = next(
                (p for p in reversed(parts) if p.strip()), b""
            )  # a progress bar's last state
            shown.append(last[:MAX_LINE].decode("utf-8", "replace").rstrip())
        self.store.add_console_lines(self.key, shown)
        total = 0
        for name, (steps, values) in columns.items():
            total += self.store.add_points(self.key, self.stream, name, steps, values)
        if self.died is not None and _count(columns) > self.points_at_death:
            self.died = None  # training went on: that traceback was not its end
            self.store.update(self.key, explicit_status=None, meta={"died_of": None})
        return total

    def _traceback(self, line: str, columns: dict) -> bool:
        """Python's traceback of an uncaught exception: its last line names what ended the
        process (`KeyboardInterrupt`, `torch.OutOfMemoryError: CUDA out of memory`). The run
        then has ended, failed; metrics printed after it (a caught exception's traceback, a
        worker's) take that back."""
        if _TRACEBACK in line:  # `^CTraceback ...`: a terminal echoes the ^C before it
            self.in_traceback = True
            return True
        if not self.in_traceback:
            return False
        m = _EXCEPTION_LINE.match(line)
        if m is None:
            return line.startswith(("File ", "^", "~")) or not _PAIR.search(line)
        self.in_traceback = False
        self.died = m.group(0)
        self.points_at_death = _count(columns)
        step = self.hand_step if self.hand_step is not None else self.train_pos
        run = self.store.run(self.key)
        message = f"the training process ended with {self.died}"
        self.store.update(
            self.key,
            explicit_status=RunStatus.FAILED,
            meta={"died_of": m.group(1)},
            events=run.events + [(step, message)],
        )
        return True

    def _line(self, line: str, columns: dict) -> None:
        if not line:
            return
        if self._traceback(line, columns):
            return
        if _TABLE_RULE.match(line):
            self._table_rule(columns)
            return
        if self.table is not None:
            row = _TABLE_ROW.match(line)
            if row:
                value = to_float(row.group(2))
                if value is not None and not row.group(1).endswith("..."):  # a cut name
                    self.table[row.group(1)] = value
                return
            self.table = None  # not a table after all
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
            self._event(
                f"early stopping: {m.group(1)} did not improve in {m.group(2)} evals, "
                f"best {m.group(3).rstrip('.')}",
                None,
            )
            return
        m = _KERAS_EARLY.search(line)
        if m:
            self._event(f"early stopping at epoch {m.group(1)}", int(m.group(1)) - 1)
            return
        m = _HF_NUM_EPOCHS.match(line)
        if m:
            self.num_epochs = int(m.group(1).replace(",", ""))
            self.store.update(self.key, meta={"num_train_epochs": self.num_epochs})
            return
        m = _HF_TOTAL_STEPS.match(line)
        if m:  # the training bar is the one with this total (not a dataset map before it)
            self.planned_steps = self.train_total = int(m.group(1).replace(",", ""))
            self.train_pos = None
            self.store.update(self.key, meta={"max_steps": self.planned_steps})
            return
        for m in _TQDM.finditer(line):
            n, total = int(m.group(1)), int(m.group(2))
            if self.planned_steps is not None:
                if total == self.planned_steps:
                    self.train_pos = n
            elif total >= self.train_total:
                self.train_total = total
                self.train_pos = n
        if self.keras_epoch is not None:
            bar = _KERAS_BAR.match(line)
            if bar and bar.group(1) == bar.group(2) and " - " in line:
                self._pairs(line[bar.end() :], self.keras_epoch, columns)
                return
        hand = _HAND_STEP.search(line)
        if hand and not _TQDM.search(line):
            self._hand_line(line, hand, columns)
            return
        if self.hand_step is None:
            return
        ev = _EVAL_LINE.match(line)
        if ev:  # an evaluation summary after the last logged step
            prefix = {"test": "test", "dev": "val"}.get(ev.group(1).lower(), "val")
            self._pairs(line[ev.end() :], self.hand_step, columns, prefix=prefix + "_")
        elif _names_a_held_out_split(line):  # `Average Val Loss: 2.9, Val_accuracy: 27.7`
            self._pairs(line, self.hand_step, columns)

    def _hand_line(self, line: str, hand: re.Match[str], columns: dict) -> None:
        """A hand loop's line: its `name: value` pairs at the step it names. The counters are
        read out of the text first, each left as a `|`, so that the words after one make a
        name (`Epoch [2/20] Validation Loss: 0.3` is val_loss, not Loss)."""
        marks = list(itertools.islice(_HAND_STEP.finditer(line), 4))
        hand = marks[0]  # the same match, as the one object `is` compares below
        epoch = next((m for m in marks if m.group(1).lower() == "epoch"), None)
        count = next((m for m in marks if m.group(1).lower() != "epoch"), None)
        within = _IN_EPOCH.match(line, hand.end()) if hand is epoch else None
        step: int | None
        if epoch is not None and count is not None:  # `Epoch [2/20] Step [40/480] Loss: ..`
            total = _HAND_TOTAL.match(line, count.end())
            step = self._epoch_step(
                int(epoch.group(2)), int(count.group(2)), int(total.group(1)) if total else None
            )
            marks = [epoch, count]
        elif within:  # `Epoch: 3 [12800/60000 (21%)]`: count samples, so steps keep rising
            step = to_step(int(hand.group(2)) * int(within.group(2)) + int(within.group(1)))
            line, marks = line[within.end() :], []
        elif hand is epoch and self.step_epoch is not None:
            # `Epoch [2/20] Validation Loss: ..` among lines that name a step: the evaluation of
            # the step printed last
            step, marks = self.hand_step, [hand]
        else:
            step, marks = int(hand.group(2)), [hand]
        if step is None:
            return
        self.hand_step = step
        text, rest = _without_counters(line, sorted(marks, key=lambda m: m.start()))
        if not self._pairs(text, step, columns, skip=hand.group(1).lower()):
            self._spaced_pairs(rest, step, columns)

    def _epoch_step(self, epoch: int, step: int, total: int | None) -> int | None:
        """The run's step for a line that names both an epoch and a step. A step that went back
        when the epoch moved on counts within the epoch (`Epoch [2/3] Step [5/24]`): the run's
        step is then the epochs since the first one times the epoch's length, plus the step.
        The length is the step's printed total, else what the steps of the epochs that ended
        say: from its first printed step a to its last b, every k steps, the next epoch's a
        follows b by k (b + k - a: 24 for 8, 16, 24; 100 for 0, 10, .., 90). Until a step goes
        back, it is taken as printed: for the first epoch both readings give the same step."""
        if self.step_epoch is None:
            self.first_epoch, self.epoch_first_step = epoch, step
        elif epoch != self.step_epoch:
            if epoch > self.step_epoch and step < self.step_in_epoch:
                self.counts_within = True
            first, last = self.epoch_first_step, self.step_in_epoch
            every = self.step_spacing or max(last, 1)  # one line per epoch: at its end
            self.epoch_length = max(self.epoch_length, total or last + every - first)
            self.epoch_first_step, self.step_spacing = step, 0
        elif step > self.step_in_epoch:
            gap = step - self.step_in_epoch
            self.step_spacing = min(self.step_spacing, gap) if self.step_spacing else gap
        self.step_epoch, self.step_in_epoch = epoch, step
        if not self.counts_within:
            return step
        return to_step(max(epoch - self.first_epoch, 0) * self.epoch_length + step)

    def _table_rule(self, columns: dict) -> None:
        """A dashed line opens a key-value table or closes the open one (emitting its row)."""
        if not self.table:
            self.table = {}
            return
        row, self.table = self.table, None
        self.tables += 1
        step_key = find_step_column(list(row))
        step = to_step(row.pop(step_key)) if step_key else self.tables - 1
        if step is None:
            return
        for name, value in row.items():
            steps, vals = columns[name]
            steps.append(step)
            vals.append(value)

    def _hf_dict(self, line: str, columns: dict) -> None:
        try:
            obj = ast.literal_eval(_NONFINITE.sub(r"\1'\2\3'", line))
        except Exception:  # noqa: BLE001 - not a literal (or a hostile one): not a metrics dict
            return
        if not isinstance(obj, dict):
            return
        values = numbers(obj)
        if not values:
            return
        self.dicts += 1
        if "train_runtime" in values:
            self.store.update(self.key, summary=values)
            return
        if "step" in values:
            step: int | None = to_step(values.pop("step"))
        elif self.train_pos == self.pos_at_last_dict and self._from_epoch(values) is not None:
            # the capture kept no bar redraw since the last dict: the epoch says where it is
            # (rounded to 2 decimals, so never before the last dict's step)
            step = max(self._from_epoch(values) or 0, self.last_dict_step)
        else:
            step = self._snap(self.train_pos, values)
            if step is not None and 0 < self.last_dict_step - step <= self._epoch_rounding():
                step = self.last_dict_step  # an epoch-derived step before it overshot a little
        self.pos_at_last_dict = self.train_pos
        if step is None:
            step = self.dicts
        self.last_dict_step = step
        for k, v in values.items():
            steps, vals = columns[k]
            steps.append(step)
            vals.append(v)

    def _from_epoch(self, values: dict[str, float]) -> int | None:
        """HF's dict names the (fractional) epoch; with `Num Epochs` and `Total optimization
        steps` printed at the start, that is a step."""
        if "epoch" not in values or not self.planned_steps or not self.num_epochs:
            return None
        step = values["epoch"] * self.planned_steps / self.num_epochs
        return to_step(round(step)) if math.isfinite(step) else None

    def _epoch_rounding(self) -> int:
        """How far a step derived from a 2-decimal epoch can be off."""
        if not self.planned_steps or not self.num_epochs:
            return 0
        return int(self.planned_steps / self.num_epochs * 0.005) + 1

    def _snap(self, pos: int | None, values: dict[str, float]) -> int | None:
        """tqdm redraws at most every 0.1 s, so the bar can lag the step the dict belongs to;
        when the run says how often it logs/evaluates, round to that grid."""
        if pos is None:
            return None
        meta = self.store.run(self.key).meta
        every = meta.get(
            "eval_steps" if any(k.startswith("eval_") for k in values) else "logging_steps"
        )
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
        for name, raw in _PAIR.findall(_WORDS_NAME.sub(_joined_name, text)):
            if name.lower() in _NOT_METRICS or name.lower() == skip:
                continue
            if "/" in raw:  # `Accuracy: 9893/10000`
                num, den = raw.split("/")
                value = to_float(num) / float(den) if float(den) else None  # type: ignore[operator]
            else:
                value = to_float(raw)
            if value is None:
                continue
            if prefix:  # `Val_accuracy` after `Average Val Loss`: the split is named once
                name = name.lower()
                name = name if name.startswith(prefix) else prefix + name
            steps, vals = columns[name]
            steps.append(step)
            vals.append(value)
            found += 1
        return found

    def _event(self, message: str, step: int | None) -> None:
        """A run event at `step` (None: the line names no step in the run's unit; the event
        belongs to the end of the run)."""
        run = self.store.run(self.key)
        self.store.update(self.key, events=run.events + [(step, message)])


def _count(columns: dict) -> int:
    return sum(len(steps) for steps, _ in columns.values())


def _joined_name(m: re.Match[str]) -> str:
    """`, Average Val Loss` -> `, val_loss`: one metric name from the words before a colon."""
    words = m.group(2).lower().split()
    while len(words) > 1 and words[0] in _FILLER_WORDS:
        words.pop(0)
    if len(words) > 1:  # `Validation Loss` -> val_loss
        words[0] = _SPLIT_WORDS.get(words[0], words[0])
    return m.group(1) + "_".join(words)


def _without_counters(line: str, marks: list[re.Match[str]]) -> tuple[str, str]:
    """`line` with each counter (`Epoch [2/20]`, its total included) left as a `|`, and the
    text after the last one."""
    parts, start = [], 0
    for m in marks:
        total = _HAND_TOTAL.match(line, m.end())
        parts.append(line[start : m.start()])
        start = total.end() if total else m.end()
    return "|".join([*parts, line[start:]]), line[start:]


def _names_a_held_out_split(line: str) -> bool:
    """A line of `name: value` pairs with no step of its own, at least one of them a validation
    or test metric: the evaluation of the step logged just before it."""
    names = [name for name, _ in _PAIR.findall(_WORDS_NAME.sub(_joined_name, line))]
    return any(role_of(name).split in ("val", "test") for name in names)


def _training_lines(head: bytes) -> bool:
    """Two lines of the head look like training output (_CLAIM_LINES)."""
    text = head[: head.rfind(b"\n") + 1].decode("utf-8", "replace")
    hits = 0
    for raw in text.splitlines():
        for line in raw.split("\r"):
            line = line.strip()
            if line and len(line) <= MAX_CLAIM_LINE and any(p.search(line) for p in _CLAIM_LINES):
                hits += 1
                if hits >= 2:
                    return True
    return False


def _json_document(head: bytes) -> bool:
    """A JSON object or array (`{"...`, `[`); a console's dict lines are Python's
    `{'loss': ...}`."""
    start = head.lstrip()[:2]
    return start[:1] == b"[" or start == b'{"' or start in (b"{\n", b"{\r", b"{ ", b"{\t")


def _job_output_name(path: str) -> bool:
    return path.endswith(CONSOLE_SUFFIXES) or os.path.basename(path).startswith(("slurm-", "nohup"))

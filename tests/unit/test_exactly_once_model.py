"""Exactly once, every rotation: a model-based test (issue 9 §2, FAULTS F1-F5 and L3).

A writer does, in any order hypothesis picks: write records, rotate (rename + create, rename
without create, with the writer reopening at once or later through its old handle),
copytruncate, atomic replace by a longer copy, delete, recreate, reopen; and between any two of
them the engine may look. The writer keeps its own log: which records each file on disk holds.
After a final look the engine must hold exactly the required records, as a multiset of
(metric, step, value): none lost, none doubled, none invented.

Which records are required (and which cannot be): a record is required when it was, at some
look, in a file the engine can see: the path itself or one of its rotated siblings
(`train.jsonl.1` ... `.3`, the oldest deleted by the next rotation, as logrotate's `rotate 3`
does). A record written and then deleted (or rotated out, or written through a handle to a
deleted file) before any look is gone for every reader and is not required; since the engine
reads only at looks, it cannot have read such a record either, so the comparison is exact.

Every format family is modelled: TFRecord (TensorBoard event files framed by the project's own
writer), CSV with a header (written into every new file the writer opens empty), CSV without
(Keras CSVLogger(append=True): the header only in the first file; after copytruncate or a
rotation the rows go on headerless), JSONL, console lines, and JSON rewritten whole
(trainer_state.json, in place or atomically; never rotated). Each runs with polling and with
file events (watchdog/inotify: a look reads only the paths events named, after waiting for the
events written before it to arrive).

CI runs a few hundred examples (fixed seed); `pytest -m slow` and `benchmarks/exactly_once.py`
run 10,000.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from tensorboard.compat.proto import event_pb2
from tests.unit.helpers import scalar_event

from watchrun.engine import Engine
from watchrun.sources.tensorboard import frame

KEEP_ROTATED = 3  # train.jsonl.1 .. .3; the next rotation deletes .3


def value_of(step: int) -> float:
    """Exact in float32 (TensorBoard) and in decimal text (CSV, console)."""
    return step * 0.25


@dataclass(frozen=True)
class Family:
    name: str
    rel: str  # the file, relative to the watched root
    key: str  # the engine's run key for it
    header_every_file: bool = False  # a header when the writer opens an empty file
    header_first_file: bool = False  # a header only in the writer's first file (Keras append)
    whole: bool = False  # rewritten whole, never appended (trainer_state.json)

    def header(self, file_no: int) -> bytes:
        if self.name == "tfrecord":  # the file_version event a writer starts each file with
            ev = event_pb2.Event(wall_time=1.7e9 + file_no, file_version="brain.Event:2")
            return frame(ev.SerializeToString())
        if self.name == "csv":
            return b"step,loss\n"
        if self.name == "keras":
            return b"epoch,loss\r\n"
        return b""

    def record(self, step: int) -> bytes:
        v = value_of(step)
        if self.name == "tfrecord":
            return scalar_event(step, "loss", v, wall=1.7e9 + step)
        if self.name == "csv":
            return f"{step},{v}\n".encode()
        if self.name == "keras":
            return f"{step},{v}\r\n".encode()
        if self.name == "jsonl":
            return (json.dumps({"step": step, "loss": v}) + "\n").encode()
        if self.name == "console":
            return f"step {step} | loss={v}\n".encode()
        raise ValueError(self.name)

    def document(self, steps: list[int]) -> bytes:
        """trainer_state.json with these log_history entries."""
        history = [{"loss": value_of(s), "step": s} for s in steps]
        return json.dumps(
            {"global_step": steps[-1] if steps else 0, "log_history": history}
        ).encode()


FAMILIES = {
    "tfrecord": Family(
        "tfrecord", "tb/events.out.tfevents.1700000000.host.1.0", "tb", header_every_file=True
    ),
    "csv": Family("csv", "version_0/metrics.csv", "version_0", header_every_file=True),
    "keras": Family(
        "keras", "keras/training_log.csv", "keras/training_log.csv", header_first_file=True
    ),
    "jsonl": Family("jsonl", "run/train.jsonl", "run/train.jsonl"),
    "console": Family("console", "crun/train.log", "crun/train.log"),
    "json": Family("json", "hf/trainer_state.json", "hf", whole=True),
}
MODES = ("polling", "events")


class ExactlyOnce(RuleBasedStateMachine):
    """The writer, its log, and the engine following it. Subclasses set FAMILY and MODE."""

    FAMILY: Family
    MODE: str

    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="exactonce-")
        self.path = os.path.join(self.root, self.FAMILY.rel)
        os.makedirs(os.path.dirname(self.path))
        self.next_step = 0
        self.files_opened = 0
        self.next_inode = 0
        self.inodes: dict[int, list[int]] = {}  # the writer's log: steps in each file it made
        self.names: dict[str, int] = {}  # "" (the path) or ".1" ... -> file
        self.handle: tuple[int, BinaryIO] | None = None
        self.required: set[int] = set()
        self.engine: Engine | None = None
        self.looks = 0

    # -- the writer -------------------------------------------------------------------------
    def _new_steps(self, n: int) -> list[int]:
        steps = list(range(self.next_step, self.next_step + n))
        self.next_step += n
        return steps

    def _new_file(self, steps: list[int]) -> int:
        self.next_inode += 1
        self.inodes[self.next_inode] = steps
        return self.next_inode

    def _name(self, suffix: str) -> str:
        return self.path + suffix

    def _open(self, fresh: bool = False) -> None:
        """The writer opens the path for appending, creating it if missing; into an empty file
        it writes its header (the first file only, for Keras' append mode, unless `fresh`: a
        new fit)."""
        self._close()
        if "" not in self.names:
            self.names[""] = self._new_file([])
        fh = open(self.path, "ab")  # noqa: SIM115 - the writer's long-lived handle
        if os.fstat(fh.fileno()).st_size == 0:
            fam = self.FAMILY
            if fam.header_every_file or (
                fam.header_first_file and (self.files_opened == 0 or fresh)
            ):
                fh.write(fam.header(self.files_opened))
                fh.flush()
        self.files_opened += 1
        self.handle = (self.names[""], fh)

    def _close(self) -> None:
        if self.handle is not None:
            self.handle[1].close()
            self.handle = None

    def _shift_rotated(self) -> None:
        """`.2` -> `.3`, `.1` -> `.2`; the old `.3` is deleted."""
        for k in range(KEEP_ROTATED, 0, -1):
            name = f".{k}"
            if name not in self.names:
                continue
            if k == KEEP_ROTATED:
                os.unlink(self._name(name))
                del self.names[name]
            else:
                os.rename(self._name(name), self._name(f".{k + 1}"))
                self.names[f".{k + 1}"] = self.names.pop(name)

    def _write_document(self, steps: list[int], atomic: bool) -> None:
        data = self.FAMILY.document(steps)
        if atomic:
            tmp = os.path.join(os.path.dirname(self.path), ".replace.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
            self.names[""] = self._new_file(steps)
        else:
            with open(self.path, "wb") as fh:  # not atomic, as HF Trainer writes it
                fh.write(data)
            if "" not in self.names:
                self.names[""] = self._new_file([])
            self.inodes[self.names[""]] = steps

    @initialize(n=st.integers(0, 3))
    def start(self, n: int) -> None:
        """The run exists with a few records when the engine starts; the engine loads it."""
        if self.FAMILY.whole:
            self._write_document(self._new_steps(n), atomic=False)
        else:
            self._open()
            self._append(self._new_steps(n))
        if self.MODE == "polling":
            self.engine = Engine([self.root], poll_seconds=0.0)  # every look a full poll
        else:
            self.engine = Engine([self.root])
        self.engine.load()
        self._mark_required()
        if self.MODE == "events":
            self.engine.start_watching()
            assert self.engine.watching

    def _append(self, steps: list[int]) -> None:
        assert self.handle is not None
        ino, fh = self.handle
        fh.write(b"".join(self.FAMILY.record(s) for s in steps))
        fh.flush()
        self.inodes[ino] = self.inodes[ino] + steps

    @rule(n=st.integers(1, 4))
    def write(self, n: int) -> None:
        steps = self._new_steps(n)
        if self.FAMILY.whole:
            current = self.inodes[self.names[""]] if "" in self.names else []
            self._write_document(current + steps, atomic=False)
            return
        if self.handle is None:  # WatchedFileHandler: the path is opened (created) again
            self._open()
        self._append(steps)

    @precondition(lambda self: not self.FAMILY.whole)
    @rule(create=st.booleans(), reopen=st.booleans())
    def rotate(self, create: bool, reopen: bool) -> None:
        """logrotate `create` (a new empty file at once) or `nocreate`; the writer reopens now
        (postrotate HUP) or goes on through its old handle until `reopen`."""
        if "" not in self.names:
            return
        self._shift_rotated()
        os.rename(self.path, self._name(".1"))
        self.names[".1"] = self.names.pop("")
        if create:
            open(self.path, "wb").close()  # noqa: SIM115
            self.names[""] = self._new_file([])
        if reopen:
            if create:
                self._open()
            else:
                self._close()  # the next write creates the file (WatchedFileHandler)

    @precondition(lambda self: not self.FAMILY.whole)
    @rule()
    def copytruncate(self) -> None:
        """logrotate copytruncate: copy to `.1`, empty the file; the writer (O_APPEND) goes on
        writing into the emptied file, without a new header."""
        if "" not in self.names:
            return
        self._shift_rotated()
        shutil.copyfile(self.path, self._name(".1"))
        self.names[".1"] = self._new_file(list(self.inodes[self.names[""]]))
        os.truncate(self.path, 0)
        self.inodes[self.names[""]] = []

    @rule(n=st.integers(0, 3))
    def replace(self, n: int) -> None:
        """An atomic replace by a longer copy: what the file holds plus `n` records, written to
        a temporary file and renamed over the path; the writer reopens it."""
        if "" not in self.names:
            return
        steps = self.inodes[self.names[""]] + self._new_steps(n)
        if self.FAMILY.whole:
            self._write_document(steps, atomic=True)
            return
        with open(self.path, "rb") as fh:
            data = fh.read()
        data += b"".join(self.FAMILY.record(s) for s in steps[len(steps) - n :])
        tmp = os.path.join(os.path.dirname(self.path), ".replace.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        self._close()
        os.replace(tmp, self.path)
        self.names[""] = self._new_file(steps)
        self._open()

    @rule()
    def delete(self) -> None:
        """The file is deleted and its writer stops (Lightning deletes metrics.csv at start)."""
        if "" not in self.names:
            return
        self._close()
        os.unlink(self.path)
        del self.names[""]

    @rule(n=st.integers(0, 3))
    def recreate(self, n: int) -> None:
        """A new training writes a new file at the path (deleting the old one if there)."""
        self._close()
        if "" in self.names:
            os.unlink(self.path)
            del self.names[""]
        if self.FAMILY.whole:
            self._write_document(self._new_steps(n), atomic=False)
            return
        self._open(fresh=True)
        self._append(self._new_steps(n))

    @precondition(lambda self: not self.FAMILY.whole)
    @rule()
    def reopen(self) -> None:
        """The writer reopens its file by name (logrotate's postrotate HUP, at last)."""
        self._open()

    # -- the engine -------------------------------------------------------------------------
    @rule()
    def look(self) -> None:
        self._look()

    def _look(self) -> None:
        assert self.engine is not None
        if self.MODE == "events":
            self._wait_for_events()
        self.engine.tick()
        self.looks += 1
        self._mark_required()

    def _wait_for_events(self) -> None:
        """Make a marker file and wait until its event has arrived: the events of every change
        made before it have arrived too (inotify keeps their order). A new name each time: one
        write sends several events (open, modify, close), and a late one of the last marker
        must not pass for this one."""
        assert self.engine is not None
        marker = os.path.join(self.root, f".look-{self.looks}")
        with open(marker, "w") as fh:
            fh.write(".")
        deadline = time.monotonic() + 10
        while marker not in self.engine.dirty and time.monotonic() < deadline:
            time.sleep(0.001)
        assert marker in self.engine.dirty, "the file event of the marker never came"

    def _mark_required(self) -> None:
        for ino in self.names.values():
            self.required.update(self.inodes[ino])

    def teardown(self) -> None:
        try:
            if self.engine is not None:
                self._look()
                self.engine._last_full_poll = 0.0  # and the full poll the engine makes anyway
                self._look()
                self._check()
        finally:
            self._close()
            if self.engine is not None:
                self.engine.stop_watching()
            shutil.rmtree(self.root, ignore_errors=True)

    def _check(self) -> None:
        assert self.engine is not None
        expected = Counter(("loss", s, value_of(s)) for s in self.required)
        got: Counter = Counter()
        run = self.engine.store.runs.get(self.FAMILY.key)
        if run is not None:
            for name, series in run.series.items():
                for s, v in zip(series.steps.tolist(), series.values.tolist(), strict=True):
                    got[(name, s, v)] += 1
        lost = expected - got
        extra = got - expected
        assert not lost and not extra, (
            f"{self.FAMILY.name}/{self.MODE}: lost {sorted(lost)[:10]} ({sum(lost.values())}), "
            f"doubled or invented {sorted(extra)[:10]} ({sum(extra.values())})"
        )


def machine(family: str, mode: str, examples: int, steps: int = 30) -> type[RuleBasedStateMachine]:
    """The state machine for one format family and one way of watching, with its settings."""
    cls = type(
        f"ExactlyOnce_{family}_{mode}", (ExactlyOnce,), {"FAMILY": FAMILIES[family], "MODE": mode}
    )
    cls.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    return cls


CI_EXAMPLES = 17  # x 6 families x 2 modes: about 200
SLOW_EXAMPLES = 834  # about 10,000


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exactly_once_model(family, mode):
    machine(family, mode, CI_EXAMPLES).TestCase("runTest").runTest()


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exactly_once_model_10k(family, mode):
    machine(family, mode, SLOW_EXAMPLES).TestCase("runTest").runTest()

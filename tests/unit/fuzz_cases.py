"""Fuzz cases shared by tests/unit/test_fuzz_parsers.py (a few hundred per parser, in CI) and
benchmarks/fuzz.py (the long run): for each parser, well-formed records with one bad record in
the middle, written as the real files, and fed to the real Source class through a Store whole
or in three torn chunks.

A case is (good records before, the bad record, good records after). `check(case)` returns an
Outcome: the exception that escaped (if any), and the good records that were not read back with
their values. For TensorBoard the bad record is corrupt framing or payload (a flipped bit, junk,
a malformed tensor), which must add nothing at all: there `extra` counts points that are not
good ones (a silently wrong value, an invented series).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sqlite3
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2

from watchrun.sources.base import Source
from watchrun.sources.console import ConsoleSource
from watchrun.sources.dvclive import DvcliveSource
from watchrun.sources.hf import HfTrainerSource
from watchrun.sources.keras import KerasCsvSource
from watchrun.sources.lightning import LightningCsvSource
from watchrun.sources.mlflow import MlflowFileSource, MlflowSqliteSource
from watchrun.sources.runcard import RunCardSource
from watchrun.sources.table import JsonlSource, TableSource
from watchrun.sources.tensorboard import TensorBoardSource, frame
from watchrun.sources.trackio import TrackioSource
from watchrun.store import Store

KEY = "run"

# -- what a bad record can be ---------------------------------------------------------------
HOSTILE_TEXT = [
    "",
    "\r",
    "a\rb",
    "\x00\x00",
    '"unterminated, quote',
    "x" * (128 * 1024 + 16),  # over the csv module's field limit
    "a" * 40_000,  # one long word: quadratic for a backtracking `name: value` pattern
    "1" * 45_000,
    "epoch 1 " + "a" * 40_000 + "=",
    "[" * 100_000,
    "{" * 100_000,
    "epoch " + " " * 50_000 + "x",
    "Monitored metric " * 2000,
]
numbers = st.one_of(
    st.sampled_from(
        [2**63, -(2**63) - 1, 10**400, 1e19, -1e19, "nan", "inf", "1e999", "", None, True]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
)
junk_text = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _any_finite(rng: random.Random) -> float:
    """A finite float64 from random bits: subnormals, huge exponents, -0.0 included."""
    while True:
        v = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(v):
            return v if rng.random() < 0.7 else round(v, rng.randrange(8)) if abs(v) < 1e15 else v


def _any_finite32(rng: random.Random) -> float:
    while True:
        v = struct.unpack("<f", rng.getrandbits(32).to_bytes(4, "little"))[0]
        if math.isfinite(v):
            return v


def _sqlite_exact(rng: random.Random) -> float:
    """Values SQLite's own literal parser reads exactly (it may round extreme ones by an ulp)."""
    return rng.randint(-(10**9), 10**9) / 1024


@st.composite
def goods(
    draw: Any, value: Callable[[random.Random], float] = _any_finite, n: int = 30
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """Good (step, value) records: rising steps, some before the bad record (at least one),
    some after. Values come from a seeded generator (drawing hundreds of floats one by one
    through hypothesis is slow, and their shrinking is of no use here)."""
    before = draw(st.integers(1, n))
    after = draw(st.integers(0, n))
    rng = random.Random(draw(st.integers(0, 2**32)))
    steps, s = [], draw(st.integers(1, 10**6))
    for _ in range(before + after):
        steps.append(s)
        s += rng.choice((1, 1, 1, 2, 10, 1000))
    recs = [(step, value(rng)) for step in steps]
    return recs[:before], recs[before:]


@dataclass
class Case:
    """One parser's fuzz case: files from (good before, bad, good after); the source reading
    them; the points each good record must give."""

    name: str
    strategy: Any  # -> (before, bad, after)
    files: Callable[[list, Any, list], list[tuple[str, bytes]]]  # relpath, bytes (in order)
    source: Callable[[Store, str], Source]
    expected: Callable[[list], dict[str, list[tuple[int, float]]]]
    exact: Callable[[Any], bool] = lambda bad: False  # the bad record must add no point at all
    sqlite: bool = False  # files() gives SQL statements: executed in three transactions
    run: str = KEY  # the run the good points land in (a database holds runs under its own key)


@dataclass
class Outcome:
    crash: str | None = None
    lost: int = 0  # good points not read back with their value
    extra: int = 0  # points that are no good record's (counted where the case is exact)
    skipped: int = 0  # bad records the source counted
    details: list[str] = field(default_factory=list)


# -- the parsers ------------------------------------------------------------------------------
def _lines(
    recs: list, bad: str, fmt: Callable[[int, float], str], header: str = "", eol: str = "\n"
) -> bytes:
    rows = [header] if header else []
    rows += [fmt(s, v) for s, v in recs[0]] + [bad] + [fmt(s, v) for s, v in recs[1]]
    return (eol.join(rows) + eol).encode("utf-8", "surrogatepass")


def _by_name(*names: str) -> Callable[[list], dict[str, list[tuple[int, float]]]]:
    def expected(recs: list) -> dict[str, list[tuple[int, float]]]:
        return {n: [(s, v) for s, v in recs] for n in names}

    return expected


def _csv_case(name: str, cls: type[TableSource], step_col: str, eol: str = "\n") -> Case:
    bad_rows = st.one_of(
        junk_text,
        st.builds(lambda a, b: f"{a},{b},1", numbers, numbers),
        st.sampled_from(
            [
                f"{2**63},1,2",
                "1e19,1,2",
                "nan,1,2",
                f"5,{10**400},1",
                '7,"0.5,1',
                "8,0.5\r9",
                "9," + "y" * 131_100 + ",1",
                ",,",
                "a,b,c",
            ]
        ),
    )
    return Case(
        name,
        st.tuples(goods(), bad_rows).map(lambda t: (t[0][0], t[1], t[0][1])),
        lambda before, bad, after: [
            (
                "metrics.csv",
                _lines(
                    (before, after),
                    bad,
                    lambda s, v: f"{s},{v!r},{-v!r}",
                    f"{step_col},loss,acc",
                    eol,
                ),
            )
        ],
        lambda store, root: _add(cls(store, KEY), root, "metrics.csv"),
        lambda recs: {"loss": list(recs), "acc": [(s, -v) for s, v in recs]},
    )


def _jsonl_bad() -> Any:
    return st.one_of(
        junk_text,
        st.builds(lambda s, v: json.dumps({"step": s, "loss": v}), numbers, numbers),
        st.builds(
            lambda d: json.dumps({"step": 3, "loss": 1.0, "deep": json.loads(deep(d))}),
            st.integers(1, 60),
        ),
        st.builds(json.dumps, json_values),
        st.sampled_from(
            [
                deep(100_000),
                '{"step": 1e19, "loss": 1}',
                '{"step": "nan", "loss": 1}',
                f'{{"step": {2**63}, "loss": 1}}',
                f'{{"step": 4, "loss": {10**400}}}',
            ]
        ),
    )


def _console_bad() -> Any:
    return st.one_of(
        junk_text,
        st.builds(lambda s, v: repr({"step": s, "loss": v}), numbers, numbers),
        st.sampled_from(
            [
                "{'step': 'nan', 'loss': 1.0}",
                "{'step': 1e19, 'loss': 1.0}",
                "{" * 60_000,
                "epoch 99999999999999999999999 loss=1",
                "Train Epoch: 3 [99999999999/99999999999 (1%)]",
                "x" * (1 << 20),
                "{[1]: 2}",
                "{'a': 1" + "0" * 5000 + "}",
            ]
        ),
    )


def _tb_event(step: int, value: float, tag: str = "loss") -> bytes:
    ev = event_pb2.Event(
        wall_time=1.7e9 + step,
        step=step,
        summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]),
    )
    return frame(ev.SerializeToString())


def _tb_odd_tensor() -> bytes:
    from tensorboard.compat.proto import tensor_pb2

    tensor = tensor_pb2.TensorProto(dtype=1, tensor_content=b"\x01\x02\x03")
    ev = event_pb2.Event(
        wall_time=1.7e9,
        step=5,
        summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", tensor=tensor)]),
    )
    return frame(ev.SerializeToString())


@st.composite
def _tb_bad(draw: Any) -> tuple[str, bytes]:
    """(kind, bytes): a record with one bit flipped anywhere (framing or payload), junk bytes,
    or a record whose tensor_content is not a whole number of floats."""
    kind = draw(st.sampled_from(["flip", "flip", "flip", "junk", "odd-tensor"]))
    if kind == "flip":
        rec = bytearray(
            _tb_event(
                draw(st.integers(0, 10**9)),
                draw(st.floats(width=32)),
                draw(st.sampled_from(["val_loss", "loss"])),
            )
        )
        bit = draw(st.integers(0, len(rec) * 8 - 1))
        rec[bit // 8] ^= 1 << (bit % 8)
        return kind, bytes(rec)
    if kind == "junk":
        return kind, draw(st.binary(min_size=1, max_size=200))
    return kind, _tb_odd_tensor()


def _hf_bad() -> Any:
    return st.one_of(
        json_values,
        st.builds(lambda s, v: {"step": s, "loss": v}, numbers, numbers),
        st.sampled_from(
            [
                {"step": 1e19, "loss": 1.0},
                {"step": "nan", "loss": 1.0},
                {"step": 2**63, "loss": 1.0},
                {"step": 3, "loss": 10**400},
                {"step": [1], "loss": 1.0},
            ]
        ),
    )


def _hf_files(before: list, bad: Any, after: list) -> list[tuple[str, bytes]]:
    history = (
        [{"loss": v, "step": s} for s, v in before]
        + [bad]
        + [{"loss": v, "step": s} for s, v in after]
    )
    doc = {"global_step": after[-1][0] if after else before[-1][0], "log_history": history}
    return [("trainer_state.json", json.dumps(doc).encode())]


def _mlflow_bad() -> Any:
    return st.one_of(
        junk_text,
        st.builds(lambda a, b, c: f"{a} {b} {c}", numbers, numbers, numbers),
        st.sampled_from([f"1 2 {2**63}", "1 2 1e19", "1 2 nan", f"1 {10**400} 3", "1700000000000"]),
    )


def _dvclive_bad() -> Any:
    return st.one_of(
        junk_text,
        st.builds(lambda a, b, c: f"{a}\t{b}\t{c}", numbers, numbers, numbers),
        st.sampled_from([f"1\t{2**63}\t1", "1\t1e19\t1", "1\tnan\t1", "\t\t"]),
    )


_BAD_SQL = [
    "INSERT INTO metrics VALUES (CAST(x'ff' AS TEXT), 'loss', 1.0, 0, 3, 0)",
    "INSERT INTO metrics VALUES ('r1', CAST(x'fffe41' AS TEXT), 1.0, 0, 3, 0)",
    "INSERT INTO metrics VALUES ('r1', 'loss', 'abc', 0, 3, 0)",
    "INSERT INTO metrics VALUES ('r1', 'loss', 1.0, 0, 'x', 0)",
    "INSERT INTO metrics VALUES ('r1', 'loss', 1.0, 0, '9223372036854775808', 0)",
    "INSERT INTO metrics VALUES ('r1', 'loss', x'00ff', 0, 3, 0)",
    "INSERT INTO metrics VALUES ('r1', NULL, 1.0, 'ts', 3, 0)",
    "INSERT INTO metrics VALUES ('r1', 'loss', 1e999, 0, 1e19, 0)",
    "INSERT INTO params VALUES ('r1', CAST(x'c3' AS TEXT), x'00')",
    "INSERT INTO runs VALUES (NULL, CAST(x'ff80' AS TEXT), 'FINISHED', 0)",
    "INSERT INTO runs VALUES ('r2', CAST(x'ff80' AS TEXT), x'01', CAST(x'fe' AS TEXT))",
    "INSERT INTO experiments VALUES (7, CAST(x'ff' AS TEXT))",
]


def _mlflow_sql(before: list, bad: str, after: list) -> list[tuple[str, bytes]]:
    schema = [
        "CREATE TABLE experiments (experiment_id INTEGER, name TEXT)",
        "CREATE TABLE runs (run_uuid TEXT, name TEXT, status TEXT, experiment_id INTEGER)",
        "CREATE TABLE params (run_uuid TEXT, key TEXT, value TEXT)",
        "CREATE TABLE metrics (run_uuid TEXT, key TEXT, value REAL, timestamp INTEGER, "
        "step INTEGER, is_nan INTEGER)",
        "INSERT INTO experiments VALUES (0, 'exp')",
        "INSERT INTO runs VALUES ('r1', 'run1', 'RUNNING', 0)",
    ]

    def rows(recs: list) -> list[str]:
        return [
            f"INSERT INTO metrics VALUES ('r1', 'loss', {v!r}, 1700000000000, {s}, 0)"
            for s, v in recs
        ]

    return [(";\n".join(schema + rows(before)), b""), (bad, b""), (";\n".join(rows(after)), b"")]


_BAD_TRACKIO = [
    "INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES ('t', 'r', 'nan', "
    "'{\"loss\": 1}')",
    "INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES ('t', 'r', "
    "'9223372036854775808', '{\"loss\": 1}')",
    "INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES ('t', 'r', 3, '"
    + deep(100_000)
    + "')",
    "INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES ('t', 'r', 3, "
    "CAST(x'ff' AS TEXT))",
    "INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES ('t', NULL, 3, "
    "'{\"loss\": 1}')",
    "INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES ('t', x'ff', x'00', x'01')",
    "INSERT INTO configs VALUES (CAST(x'ff' AS TEXT), '" + deep(100_000) + "')",
]


def _trackio_sql(before: list, bad: str, after: list) -> list[tuple[str, bytes]]:
    schema = [
        "CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT, "
        "run_name TEXT, step INTEGER, metrics TEXT)",
        "CREATE TABLE configs (run_name TEXT, config TEXT)",
        "INSERT INTO configs VALUES ('r', '{\"lr\": 0.1}')",
    ]

    def rows(recs: list) -> list[str]:
        return [
            f"INSERT INTO metrics (timestamp, run_name, step, metrics) VALUES ('t', 'r', {s}, "
            f"'{json.dumps({'loss': v})}')"
            for s, v in recs
        ]

    return [(";\n".join(schema + rows(before)), b""), (bad, b""), (";\n".join(rows(after)), b"")]


def _runcard_bad() -> Any:
    odd = st.one_of(
        json_values, st.sampled_from(["abc", -1, 1.5, 0, 1, 2**63, 10**400, [], {}, True])
    )
    return st.tuples(
        st.sampled_from(
            [
                "pid",
                "launcher_pid",
                "host",
                "cmdline",
                "started",
                "world_size",
                "max_epochs",
                "checkpoint_dir",
                "library",
            ]
        ),
        odd,
    )


def _runcard_files(before: list, bad: tuple[str, Any], after: list) -> list[tuple[str, bytes]]:
    doc = {"max_steps": before[0][0], bad[0]: bad[1]}
    try:
        text = json.dumps(doc)
    except ValueError:
        text = json.dumps({"max_steps": before[0][0]})
    return [("watchrun-run.json", text.encode())]


def _add(src: Source, root: str, *rel: str, **options: object) -> Source:
    for r in rel:
        src.add_file(os.path.join(root, r), **options)
    return src


def _dict_rows(recs: list, bad: str) -> bytes:
    return _lines(recs, bad, lambda s, v: json.dumps({"step": s, "loss": v}))


CASES: dict[str, Case] = {
    "csv": _csv_case("csv", TableSource, "step"),
    "lightning-csv": _csv_case("lightning-csv", LightningCsvSource, "step"),
    "keras-csv": _csv_case("keras-csv", KerasCsvSource, "epoch", eol="\r\n"),
    "jsonl": Case(
        "jsonl",
        st.tuples(goods(), _jsonl_bad()).map(lambda t: (t[0][0], t[1], t[0][1])),
        lambda before, bad, after: [("metrics.jsonl", _dict_rows((before, after), bad))],
        lambda store, root: _add(JsonlSource(store, KEY), root, "metrics.jsonl"),
        _by_name("loss"),
    ),
    "console": Case(
        "console",
        st.tuples(goods(), _console_bad(), st.booleans()).map(
            lambda t: (t[0][0], (t[1], t[2]), t[0][1])
        ),
        lambda before, bad, after: [
            (
                "train.log",
                _lines(
                    (before, after),
                    bad[0],
                    (lambda s, v: f"epoch {s} | train_loss={v!r}")
                    if bad[1]
                    else (lambda s, v: repr({"step": s, "train_loss": v})),
                ),
            )
        ],
        lambda store, root: _add(ConsoleSource(store, KEY), root, "train.log"),
        _by_name("train_loss"),
    ),
    "tensorboard": Case(
        "tensorboard",
        st.tuples(goods(_any_finite32, 250), _tb_bad()).map(lambda t: (t[0][0], t[1], t[0][1])),
        lambda before, bad, after: [
            (
                "events.out.tfevents.1700000000.host.1.0",
                b"".join(_tb_event(s, v) for s, v in before)
                + bad[1]
                + b"".join(_tb_event(s, v) for s, v in after),
            )
        ],
        lambda store, root: _add(
            TensorBoardSource(store, KEY), root, "events.out.tfevents.1700000000.host.1.0"
        ),
        _by_name("loss"),
        exact=lambda bad: True,
    ),
    "hf-trainer": Case(
        "hf-trainer",
        st.tuples(goods(), _hf_bad()).map(lambda t: (t[0][0], t[1], t[0][1])),
        _hf_files,
        lambda store, root: _add(HfTrainerSource(store, KEY), root, "trainer_state.json"),
        _by_name("loss"),
    ),
    "mlflow-file": Case(
        "mlflow-file",
        st.tuples(goods(), _mlflow_bad()).map(lambda t: (t[0][0], t[1], t[0][1])),
        lambda before, bad, after: [
            (
                "metrics/loss",
                _lines((before, after), bad, lambda s, v: f"{1700000000000 + s} {v!r} {s}"),
            )
        ],
        lambda store, root: _add(MlflowFileSource(store, KEY, root), root, "metrics/loss"),
        _by_name("loss"),
    ),
    "mlflow-sqlite": Case(
        "mlflow-sqlite",
        st.tuples(goods(_sqlite_exact), st.sampled_from(_BAD_SQL)).map(
            lambda t: (t[0][0], t[1], t[0][1])
        ),
        _mlflow_sql,
        lambda store, root: _add(MlflowSqliteSource(store, KEY), root, "mlflow.db"),
        lambda recs: {"loss": list(recs)},
        sqlite=True,
        run=f"{KEY}/exp/run1",
    ),
    "trackio": Case(
        "trackio",
        st.tuples(goods(), st.sampled_from(_BAD_TRACKIO)).map(lambda t: (t[0][0], t[1], t[0][1])),
        _trackio_sql,
        lambda store, root: _add(
            TrackioSource(store, KEY), root, "mlflow.db"
        ),  # the db file feed() writes
        lambda recs: {"loss": list(recs)},
        sqlite=True,
        run=f"{KEY}/r",
    ),
    "dvclive": Case(
        "dvclive",
        st.tuples(goods(), _dvclive_bad()).map(lambda t: (t[0][0], t[1], t[0][1])),
        lambda before, bad, after: [
            (
                "plots/metrics/loss.tsv",
                _lines(
                    (before, after),
                    bad,
                    lambda s, v: f"{1700000000000 + s}\t{s}\t{v!r}",
                    "timestamp\tstep\tloss",
                ),
            )
        ],
        lambda store, root: _add(DvcliveSource(store, KEY, root), root, "plots/metrics/loss.tsv"),
        _by_name("loss"),
    ),
    "run-card": Case(
        "run-card",
        st.tuples(goods(n=1), _runcard_bad()).map(lambda t: (t[0][0], t[1], t[0][1])),
        _runcard_files,
        lambda store, root: _add(RunCardSource(store, KEY), root, "watchrun-run.json"),
        lambda recs: {},
    ),
}


# -- running one case -------------------------------------------------------------------------
def feed(
    case: Case,
    before: list,
    bad: Any,
    after: list,
    torn: bool,
    cuts: tuple[float, float] = (0.3, 0.7),
) -> tuple[Store, Source]:
    """Write the case's files (whole, or in three torn chunks with a poll after each) and read
    them with the real source. Exceptions from the source propagate."""
    store = Store()
    with tempfile.TemporaryDirectory(prefix="watchrun-fuzz-") as root:
        parts = case.files(before, bad, after)
        if case.sqlite:
            db = os.path.join(root, "mlflow.db")
            src = case.source(store, root)
            con = sqlite3.connect(db)
            con.execute("PRAGMA synchronous=OFF")  # speed: no fsync per transaction
            for sql, _ in parts:
                with contextlib.suppress(sqlite3.Error):
                    con.executescript(sql)
                _bump_mtime(db)
                if torn:
                    src.poll()
            con.close()
            _bump_mtime(db)
            src.poll()
            return store, src
        for rel, _ in parts:
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            open(os.path.join(root, rel), "wb").close()
        src = case.source(store, root)
        for rel, data in parts:
            path = os.path.join(root, rel)
            chunks = [data]
            if torn:
                a, b = sorted(int(len(data) * c) for c in cuts)
                chunks = [data[:a], data[a:b], data[b:]]
            for chunk in chunks:
                with open(path, "ab") as fh:
                    fh.write(chunk)
                _bump_mtime(path)
                src.poll()
        src.poll()
    return store, src


_TICK = [0]


def _bump_mtime(path: str) -> None:
    """Every write gets a distinct mtime, as it would a moment later (a cursor compares them)."""
    _TICK[0] += 1
    t = 1_700_000_000_000_000_000 + _TICK[0] * 1_000_000
    os.utime(path, ns=(t, t))


def check(
    case: Case,
    before: list,
    bad: Any,
    after: list,
    torn: bool,
    cuts: tuple[float, float] = (0.3, 0.7),
) -> Outcome:
    out = Outcome()
    try:
        store, src = feed(case, before, bad, after, torn, cuts)
    except Exception as exc:  # noqa: BLE001 - the fuzzer reports it
        out.crash = f"{type(exc).__name__}: {str(exc)[:200]}"
        return out
    out.skipped = sum(getattr(src, "skipped", {}).values())
    run = store.runs.get(case.run)
    got = {
        n: list(zip(s.steps.tolist(), s.values.tolist(), strict=True))
        for n, s in (run.series if run else {}).items()
    }
    for name, points in case.expected(before + after).items():
        have = set(got.get(name, []))
        for p in points:
            if p not in have and not _same_nan(p, have):
                out.lost += 1
                out.details.append(f"{name} {p} not read")
    if case.name == "run-card":
        meta = run.meta if run else {}
        if meta.get("max_steps") != before[0][0]:
            out.lost += 1
            out.details.append(f"max_steps {meta.get('max_steps')} != {before[0][0]}")
    if case.exact(bad):
        wanted = {n: set(p) for n, p in case.expected(before + after).items()}
        for name, points in got.items():
            out.extra += sum(1 for p in points if p not in wanted.get(name, set()))
    return out


def _same_nan(p: tuple[int, float], have: set) -> bool:
    return (
        isinstance(p[1], float)
        and math.isnan(p[1])
        and any(s == p[0] and math.isnan(v) for s, v in have)
    )

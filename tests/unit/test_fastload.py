"""The faster first load computes what the plain code did (issue 13): batched fingerprints,
reads into a reused scratch buffer."""

from __future__ import annotations

import math
import os

import numpy as np

from watchrun import merge
from watchrun.model import Series
from watchrun.tail import PREFETCH, Change, FileCursor


def test_fingerprints_of_many_samples_is_the_union_of_each():
    rng = np.random.default_rng(3)
    samples = [
        rng.normal(size=64),
        np.round(rng.normal(size=64), 2),  # simple fractions: none count
        np.array([0.25, 0.3333, 1.0, np.nan, 0.123456]),  # a few: checked one by one
        np.concatenate([rng.random(40), [np.inf, -np.inf, np.nan], np.arange(10) / 4]),
        np.empty(0),
        np.array([1e39, 0.1234567, 3.0] * 5),  # past float32's range
    ]
    union: set[bytes] = set()
    for s in samples:
        union |= merge._fingerprints(s)
    assert merge._fingerprints_of(samples) == union
    assert union  # the test compares something


def _cursor_on(path: str) -> FileCursor:
    cursor = FileCursor(path)
    cursor.scratch = True
    return cursor


def test_read_view_gives_the_bytes_read_gives(tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(os.urandom(5000))
    big.write_bytes(os.urandom(PREFETCH + 12345))  # past what check() reads ahead
    for path in (small, big):
        cursor = _cursor_on(str(path))
        assert cursor.check() is Change.GREW
        assert bytes(cursor.read_view()) == path.read_bytes()
        cursor.advance(100)
        assert bytes(cursor.read_view(1000)) == path.read_bytes()[100:1100]


def test_a_prefetch_overwritten_by_another_read_is_read_again(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a" * 3000)
    b.write_bytes(b"b" * 4000)
    first, second = _cursor_on(str(a)), _cursor_on(str(b))
    assert first.check() is Change.GREW  # read ahead into the scratch buffer
    assert second.check() is Change.GREW  # ... which this one's look overwrote
    assert bytes(first.read_view()) == b"a" * 3000
    assert bytes(second.read_view()) == b"b" * 4000
    plain = FileCursor(str(a))
    plain.check()
    assert plain.read() == b"a" * 3000  # read() gives bytes, whichever way it was read


def _extended_as_before(chunks):  # type: ignore[no-untyped-def]
    """Series.extend's arrays and segments as computed before (a reference)."""
    wall0, last, n = math.nan, None, 0
    out_steps, out_walls, segments = [], [], [0]
    for steps, walls in chunks:
        if math.isnan(wall0):
            finite = walls[np.isfinite(walls)]
            wall0 = float(finite[0]) if len(finite) else 0.0
        out_steps.append(steps)
        out_walls.append((walls - wall0).astype(np.float32))
        prev = np.empty(len(steps), dtype=np.int64)
        prev[0] = last if last is not None else np.iinfo(np.int64).min
        prev[1:] = steps[:-1]
        segments += [n + int(i) for i in np.flatnonzero(steps < prev)]
        n += len(steps)
        last = int(steps[-1])
    return np.concatenate(out_steps), np.concatenate(out_walls), segments, wall0


def test_series_extend_gives_what_it_gave():
    rng = np.random.default_rng(11)
    for trial in range(50):
        chunks = []
        for _ in range(rng.integers(1, 5)):
            k = int(rng.integers(5, 300))
            steps = np.cumsum(rng.integers(-3, 10, k)).astype(np.int64) + int(rng.integers(-50, 50))
            walls = 1.7e9 + rng.random(k) * 1e5
            if trial % 3 == 0:
                walls[: int(rng.integers(0, k + 1))] = np.nan  # no wall time for a while
            chunks.append((steps, walls))
        series = Series("m")
        for steps, walls in chunks:
            series.extend(steps, rng.random(len(steps)), walls)
        steps, walls32, segments, wall0 = _extended_as_before(chunks)
        assert (series.steps == steps).all()
        assert series.segments == segments
        assert series.wall0 == wall0 or (math.isnan(series.wall0) and math.isnan(wall0))
        assert np.array_equal(series._walls[: series.n], walls32, equal_nan=True)


def test_run_facts_points_are_the_fingerprints_of_its_comparable_series():
    from watchrun.model import Run

    rng = np.random.default_rng(5)
    run = Run(key="r", root="/x/r")
    for name in ("loss", "val_acc", "lr", "epoch", "train/epoch_loss"):
        s = run.series[name] = Series(name)
        n = int(rng.integers(3, 200))
        s.extend(np.arange(n), np.round(rng.random(n), int(rng.integers(1, 6))), np.ones(n))
    f = merge.facts(run, "/x", False, lambda name: {"tb"})
    expected: set[bytes] = set()
    for name, s in run.series.items():
        if merge.comparable(name):
            expected |= merge._fingerprints(s.values[: merge.SAMPLE])
    assert f.points == expected and expected


def test_runs_whose_writers_overlap_need_no_fingerprints():
    tb, csv, both = frozenset({"tb"}), frozenset({"csv"}), frozenset({"tb", "csv"})
    assert not merge._writers_apart([tb] * 1000)
    assert not merge._writers_apart([tb, both, both])  # every two share a writer
    assert merge._writers_apart([tb, both, csv])  # tb and csv do not
    assert merge._writers_apart([frozenset(), frozenset()])
    assert not merge._writers_apart([frozenset()])
    assert merge._writers_apart([frozenset()] + [tb])


def test_best_points_with_and_without_nonfinite_values():
    from watchrun.snapshot import _best

    def by_masking(steps, values):  # type: ignore[no-untyped-def]
        finite = np.isfinite(values)
        if not finite.any():
            return None, None
        i = int(np.where(finite, values, np.inf).argmin())
        j = int(np.where(finite, values, -np.inf).argmax())
        return (float(steps[i]), float(values[i])), (float(steps[j]), float(values[j]))

    rng = np.random.default_rng(2)
    steps = np.arange(50)
    for values in (
        rng.random(50),
        np.repeat(rng.random(5), 10),  # ties: the first of them, both ways
        np.where(rng.random(50) < 0.3, np.nan, rng.random(50)),
        np.full(50, np.inf),
        np.array([]),
    ):
        assert _best(steps[: len(values)], values) == by_masking(steps[: len(values)], values)


def test_a_prefetch_of_another_thread_is_not_taken(tmp_path):
    import threading

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a" * 3000)
    b.write_bytes(b"b" * 3000)
    first = _cursor_on(str(a))
    assert first.check() is Change.GREW  # read ahead into this thread's scratch buffer
    got: list[bytes] = []

    def elsewhere() -> None:
        other = _cursor_on(str(b))
        other.check()  # that thread's buffer, at the same count of fills
        got.append(bytes(first.read_view()))

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert got == [b"a" * 3000]


FREEZE_PROBE = """
import gc, json, sys
from watchrun.engine import Engine
Engine([sys.argv[1]], use_watchdog=False, bounded=True).check()  # what a read imports, once
unasked = gc.get_freeze_count()  # `check` and a library's engines freeze nothing
gc.collect()
gc.set_threshold(10**9)  # no collection but the one below (the read pauses it anyway)
e = Engine([sys.argv[1]], use_watchdog=False, bounded=True)
e.detectors
e.load(freeze=True)
frozen = gc.get_freeze_count()
gc.unfreeze()
print(json.dumps({"frozen": frozen, "unasked": unasked, "garbage": gc.collect(),
                  "runs": len(e.store.runs)}))
"""


def test_a_first_read_leaves_no_cyclic_garbage_and_is_frozen(tmp_path):
    """The objects of a bounded first read are frozen for the cyclic collector (never walked
    again): that keeps nothing that should go only if the read makes no garbage cycles. In a
    fresh interpreter, as the app and `check` run (no other test's threads making garbage),
    once the modules a read imports are in (importing them, and glibc's handle for
    keep_freed_heap, leave a few hundred objects of cyclic garbage, once: that much is kept)."""
    import json
    import subprocess
    import sys

    from tests.unit.test_scenarios import HEALTHY, finish, write

    from watchrun.demo import TensorBoardWriter

    for name, (gen, kind) in sorted(HEALTHY.items())[:4]:
        write(tmp_path / name, gen, kind, seed=2)
    tb = TensorBoardWriter(str(tmp_path / "tb"))
    for step in range(300):
        tb.write(step, {"train/loss": 2.0 / (1 + step / 50)})
    tb.close()
    finish(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", FREEZE_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["runs"] == 5
    assert got["unasked"] == 0
    assert got["frozen"] > 1000  # the read's objects were frozen
    assert got["garbage"] == 0  # ... and none of them was garbage

"""The faster first load computes what the plain code did (issue 13): batched fingerprints,
reads into a reused scratch buffer."""

from __future__ import annotations

import os

import numpy as np

from watchrun import merge
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

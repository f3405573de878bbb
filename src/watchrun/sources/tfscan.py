"""The compiled TFRecord scanner, when it was built (the `_tfscan` C extension, see setup.py).

One pass over a buffer in C: framing, both masked CRC32Cs of every record (SSE4.2 when the CPU
has it), decoding of the common scalar event and grouping by tag. Records of any other layout
(file version, tensors, text, hparams) go to tensorboard.py's protobuf decoder by record index,
so the result is the same `Decoded` the numpy path (`walk_records` + `decode_records`) gives.
Without the extension (no compiler at install time), or with WATCHRUN_NO_COMPILED=1 set,
`available()` is False and the numpy path is used.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

import numpy as np


def _load() -> ModuleType | None:
    if os.environ.get("WATCHRUN_NO_COMPILED") or sys.byteorder != "little":
        return None
    try:
        from watchrun.sources import _tfscan  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _tfscan


compiled: ModuleType | None = _load()


def available() -> bool:
    return compiled is not None


def scan_records(
    buf: bytes | memoryview, module: ModuleType | None = None
) -> tuple[dict[int, int], int, list[int], Any]:
    """Walk and decode `buf` with the compiled scanner (`module` overrides the built one).

    Return (payload offset by record index, for the records `Decoded.bad` names; bytes consumed;
    positions where a record whose length CRC fails starts; Decoded): as `walk_records` then
    `decode_records` give them. After a bad length CRC the walk resynchronises; a record whose
    payload CRC fails is skipped and counted in `Decoded.bad`; a record cut by the end of `buf`
    is not consumed."""
    from watchrun.sources import tensorboard as tb

    scanner = module or compiled
    if scanner is None:
        raise RuntimeError("the compiled TFRecord scanner is not built")
    consumed, corrupt, bad, bad_at, misfits_b, groups = scanner.scan(buf)
    out = tb.Decoded()
    for tag, idx, steps, values, walls in groups:
        out.add(
            tag,
            np.frombuffer(idx, dtype=np.int64),
            np.frombuffer(steps, dtype=np.int64),
            np.frombuffer(values, dtype=np.float64),
            np.frombuffer(walls, dtype=np.float64),
        )
    offsets = dict(zip(bad, bad_at, strict=True))
    misfits = np.frombuffer(misfits_b, dtype=np.int64).reshape(-1, 3).tolist()
    for i, off, length in misfits:
        bad_before = _bad_count(out)
        tb._decode_proto(buf, off, length, i, out)
        if _bad_count(out) != bad_before:
            offsets[i] = off
    _mark_bad(out, bad)
    return offsets, consumed, corrupt, out


def _bad_count(out: Any) -> int:
    return len(out.bad) if isinstance(out.bad, list) else out.bad


def _mark_bad(out: Any, bad: list[int]) -> None:
    """Decoded.bad is a count, or the list of bad record indices: add the payload-CRC failures."""
    if isinstance(out.bad, list):
        out.bad.extend(bad)
    else:
        out.bad += len(bad)

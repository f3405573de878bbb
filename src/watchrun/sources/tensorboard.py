"""TensorBoard event files (torch SummaryWriter, tensorboardX, TF2, Lightning, HF, RL libraries).

Record framing (TFRecord): u64 length, u32 masked CRC32C of the length, payload, u32 masked
CRC32C of the payload. Both CRCs are checked on every record, in both paths below. The length
CRC tells a torn last record (valid length, bytes missing: wait for them) from a corrupt one
(skip it, resynchronise on the next valid header, count it); the payload CRC catches a flipped
bit in a record whose framing is intact (a wrong value, or a tag like `val_moss` that was never
logged): that record is skipped and counted. The payload is an `Event` proto.

Speed: the common event is one scalar, `Event{wall_time, step, summary{value{tag, simple_value}}}`.
All such records of one buffer are decoded at once with numpy (grouped by record length and step
varint width, every byte of the fixed layout checked); their CRCs are checked with numpy too,
from per-byte-position CRC32C tables (CRC32C is linear: see `_crc_tables`). Any record that does
not fit the layout goes to the protobuf parser of the tensorboard package (its CRC checked with
the C `crc32c`), which handles tensor scalars, text, hparams, and skips histograms and images.
"""

from __future__ import annotations

import math
import os
import struct
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from watchrun.lazy import lazy
from watchrun.model import pid_problem
from watchrun.sources import tfscan
from watchrun.sources.base import Source
from watchrun.sources.layout import tensorboard_root
from watchrun.tail import MAX_READ, FileCursor

# loaded when first needed: the compiled scanner checks CRCs itself and decodes scalar events
if TYPE_CHECKING:
    import crc32c
    from google.protobuf import message as protobuf_message
    from tensorboard.compat.proto import event_pb2
else:
    crc32c = lazy("crc32c")
    event_pb2 = lazy("tensorboard.compat.proto.event_pb2")
    protobuf_message = lazy("google.protobuf.message")

_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")
MAX_RECORD = 256 * 1024 * 1024
SMALL_BUFFER = 4096
SMALL_BATCH = 32
MAX_FAST_RESTARTS = 16  # after that many corrupt stretches in one buffer, walk the rest slowly
SLOW_RUN = 64  # records walked one by one past a place the fast walk could not prove
_MASK_DELTA = 0xA282EAD8

# DataType enum values of tensor_pb2
_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_STRING, _DT_INT64, _DT_HALF = 1, 2, 3, 7, 9, 19
_SKIP_PLUGINS = {"histograms", "images", "audio", "pr_curves", "graph", "projector", "mesh"}


def masked_crc(data: bytes | memoryview) -> int:
    if tfscan.compiled is not None:
        return tfscan.compiled.masked_crc32c(data)
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _crc_tables(depth: int) -> np.ndarray:
    """CRC32C is linear: the CRC of an L-byte payload is crc(L zero bytes) XOR, over every byte
    position i, T[L-1-i][byte] (the byte's contribution with L-1-i bytes after it). Row d of
    the result is that table for d bytes after; rows are derived from the byte table by
    feeding zero bytes. This lets numpy check the CRC of many same-layout records at once."""
    table = np.zeros(256, dtype=np.uint32)
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table[b] = c
    rows = np.empty((depth, 256), dtype=np.uint32)
    rows[0] = table
    for d in range(1, depth):
        prev = rows[d - 1]
        rows[d] = (prev >> np.uint32(8)) ^ table[prev & np.uint32(0xFF)]
    return rows


_CRC_ROWS = _crc_tables(520)  # payloads of the fixed scalar layout are at most 512 bytes
_PAIR_ROWS: dict[int, np.ndarray] = {}


def _pair_table(d: int) -> np.ndarray:
    """Contribution of a little-endian u16 whose high byte has `d` bytes after it."""
    table = _PAIR_ROWS.get(d)
    if table is None:
        word = np.arange(65536, dtype=np.uint32)
        table = _CRC_ROWS[d + 1][word & np.uint32(0xFF)] ^ _CRC_ROWS[d][word >> np.uint32(8)]
        _PAIR_ROWS[d] = table
    return table


def _masked(c: np.ndarray) -> np.ndarray:
    c = c.astype(np.uint32, copy=False)
    return ((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(_MASK_DELTA)


_LENGTH_CRCS: np.ndarray | None = None  # made at the first check: importing needs no crc32c


def _length_crcs() -> np.ndarray:
    """The masked CRC of every length under 4096, as its 8 little-endian bytes."""
    global _LENGTH_CRCS
    if _LENGTH_CRCS is None:
        _LENGTH_CRCS = np.array(
            [masked_crc(struct.pack("<Q", n)) for n in range(4096)], dtype=np.uint32
        )
    return _LENGTH_CRCS


def _length_crcs_ok(arr: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Whether each record's length CRC holds: looked up for the usual lengths (< 4096),
    computed with the tables for longer ones (< 2**24: bytes 3..7 are zero, and a zero byte
    contributes nothing)."""
    expected = _length_crcs()[np.minimum(lengths, 4095)]
    long = np.flatnonzero(lengths >= 4096)
    if len(long):
        lens = lengths[long].astype(np.uint32)
        c = np.full(len(long), crc32c.crc32c(bytes(8)), dtype=np.uint32)
        for i in range(3):
            c ^= _CRC_ROWS[7 - i][(lens >> np.uint32(8 * i)) & np.uint32(0xFF)]
        expected[long] = _masked(c)
    return expected == _gather(arr, starts + 8, "<u4")


def frame(payload: bytes) -> bytes:
    """Frame one payload as a TFRecord (used by tests and the demo's torn-write writer)."""
    length = struct.pack("<Q", len(payload))
    return (
        length
        + struct.pack("<I", masked_crc(length))
        + payload
        + struct.pack("<I", masked_crc(payload))
    )


def parse_filename(name: str) -> dict[str, Any]:
    """pid and host from `events.out.tfevents.<secs>.<host>[.<pid>.<n>|.<pid>.<uid>.v2]`. Only
    plain ASCII numbers count, and a pid only in the kernel's range: the name is anyone's."""
    rest = name.split("events.out.tfevents.", 1)[-1]
    parts = rest.split(".")
    info: dict[str, Any] = {}
    if not parts or not _number(parts[0]):
        return info
    info["created"] = int(parts[0])
    tail = parts[1:]
    if tail and tail[-1] == "v2":
        tail = tail[:-1]
        if len(tail) >= 3 and _number(tail[-1]) and _pid(tail[-2]):
            info["pid"], info["host"] = int(tail[-2]), ".".join(tail[:-2])
            return info
    if len(tail) >= 3 and _number(tail[-1]) and _pid(tail[-2]):
        info["pid"], info["counter"] = int(tail[-2]), int(tail[-1])
        info["host"] = ".".join(tail[:-2])
    elif tail:
        info["host"] = ".".join(tail)
    return info


def _number(text: str) -> bool:
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


def _pid(text: str) -> bool:
    return _number(text) and 1 < int(text) <= 1 << 22


def walk_records(
    buf: bytes | memoryview, start: int = 0
) -> tuple[list[int] | np.ndarray, list[int] | np.ndarray, int, list[int]]:
    """Find complete records whose length CRC holds. Return (payload offsets, lengths, bytes
    consumed, where each corrupt stretch starts). A record cut by the end of the buffer is not
    consumed (its rest comes later); a corrupt one is counted and skipped (the walk
    resynchronises after it).

    Long stretches go through `_walk_fast` (numpy, whole buffer at once); where it cannot prove
    the next record (corruption, a record it does not recognise, a torn tail) a few records are
    walked one by one, then the fast walk resumes.
    """
    n = len(buf)
    if n - start < SMALL_BUFFER:  # a few appended records: numpy's fixed costs would dominate
        return _walk_slow(buf, start)
    arr = np.frombuffer(buf, dtype=np.uint8)
    offs: list[Any] = []
    lens: list[Any] = []
    corrupt: list[int] = []
    pos = start
    for _ in range(MAX_FAST_RESTARTS):
        if n - pos < SMALL_BUFFER:
            break
        o, ln, pos, done = _walk_fast(arr, pos)
        offs.append(o)
        lens.append(ln)
        if done:
            return _joined(offs), _joined(lens), pos, corrupt
        o2, l2, after, bad = _walk_slow(buf, pos, limit=SLOW_RUN)
        offs.append(np.asarray(o2, dtype=np.int64))
        lens.append(np.asarray(l2, dtype=np.int64))
        corrupt += bad
        if len(o2) < SLOW_RUN:  # the slow walk reached the end (or a torn record): done
            return _joined(offs), _joined(lens), after, corrupt
        pos = after
    o2, l2, pos, bad = _walk_slow(buf, pos)
    offs.append(np.asarray(o2, dtype=np.int64))
    lens.append(np.asarray(l2, dtype=np.int64))
    return _joined(offs), _joined(lens), pos, corrupt + bad


def _joined(parts: list[Any]) -> np.ndarray:
    return np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0], dtype=np.int64)


def _walk_fast(arr: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """The records from `start` that numpy can prove at once. Return (payload offsets, lengths,
    where the proof stops, whether that is the end of the buffer).

    Every position whose payload would start with the wall_time field and whose length is
    < 16 MiB is a candidate; a candidate that another candidate points to is kept; the kept
    positions must form one unbroken chain from `start` (each one's end is the next one's
    start), and every length CRC in it must hold: that proves they are exactly the records."""
    n = len(arr)
    empty = np.empty(0, np.int64)
    cand = np.flatnonzero(arr[start + 12 : n] == 0x09) + start
    if len(cand) == 0 or cand[0] != start:
        return empty, empty, start, False
    lens = _gather(arr, cand, "<u8")
    small = lens < (1 << 24)
    cand, lens = cand[small], lens[small].astype(np.int64)
    if len(cand) == 0 or cand[0] != start:
        return empty, empty, start, False
    nxt = cand + 16 + lens - start
    pointed = np.zeros(n - start + 1, dtype=bool)
    pointed[nxt[nxt <= n - start]] = True
    keep = pointed[cand - start]
    keep[0] = True
    chain, chain_lens = cand[keep], lens[keep]
    ends = chain + 16 + chain_lens
    good = len(chain)
    broken = np.flatnonzero(ends[:-1] != chain[1:])
    if len(broken):
        good = int(broken[0]) + 1
    if ends[good - 1] > n:  # torn last record, or a corrupt length: the slow walk tells which
        good -= 1
    bad = np.flatnonzero(~_length_crcs_ok(arr, chain[:good], chain_lens[:good]))
    if len(bad):
        good = int(bad[0])
    stop = int(ends[good - 1]) if good else start
    return chain[:good] + 12, chain_lens[:good], stop, n - stop < 12 and good == len(chain)


def _walk_slow(
    buf: bytes | memoryview, start: int = 0, limit: int = -1
) -> tuple[list[int], list[int], int, list[int]]:
    """Record by record, checking each length CRC; resynchronise after corruption. Stops after
    `limit` records when given."""
    offsets: list[int] = []
    lengths: list[int] = []
    corrupt: list[int] = []
    pos = start
    n = len(buf)
    unpack = _HEADER.unpack_from
    crc = crc32c.crc32c
    mv = memoryview(buf)
    while pos + 12 <= n and len(offsets) != limit:
        length, len_crc = unpack(buf, pos)
        c = crc(mv[pos : pos + 8])
        if ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF) != len_crc or length > MAX_RECORD:
            corrupt.append(pos)
            nxt = _resync(buf, pos + 1)
            if nxt < 0:
                # no valid header after the bad bytes yet: keep the tail unless it is long
                return offsets, lengths, (pos if n - pos < 1 << 16 else n - 12), corrupt
            pos = nxt
            continue
        end = pos + 12 + length + 4
        if end > n:
            break
        offsets.append(pos + 12)
        lengths.append(length)
        pos = end
    return offsets, lengths, pos, corrupt


def _resync(buf: bytes | memoryview, pos: int) -> int:
    n = len(buf)
    mv = memoryview(buf)
    while pos + 12 <= n:
        length, len_crc = _HEADER.unpack_from(buf, pos)
        if length <= MAX_RECORD and masked_crc(mv[pos : pos + 8]) == len_crc:
            return pos
        pos += 1
    return -1


class Decoded:
    """Scalar points of one buffer, grouped by tag, in record order."""

    def __init__(self) -> None:
        self.scalars: dict[str, tuple[list, list, list, list]] = defaultdict(
            lambda: ([], [], [], [])
        )  # tag -> (record idx arrays, steps, values, walls)
        self.texts: list[tuple[int, str, str, float]] = []
        self.hparams: dict[str, Any] = {}
        self.session_status: int | None = None
        self.bad: list[int] = []  # indices of records whose payload is corrupt or unreadable
        self.singles: dict[str, tuple[list, list, list, list]] = {}

    def add_one(self, tag: str, idx: int, step: int, value: float, wall: float) -> None:
        """One point from the protobuf path: kept as Python numbers until `series()`."""
        entry = self.singles.get(tag)
        if entry is None:
            entry = self.singles[tag] = ([], [], [], [])
        entry[0].append(idx)
        entry[1].append(step)
        entry[2].append(value)
        entry[3].append(wall)

    def add(self, tag: str, idx: Any, steps: Any, values: Any, walls: Any) -> None:
        entry = self.scalars[tag]
        entry[0].append(np.atleast_1d(np.asarray(idx, dtype=np.int64)))
        entry[1].append(np.atleast_1d(np.asarray(steps, dtype=np.int64)))
        entry[2].append(np.atleast_1d(np.asarray(values, dtype=np.float64)))
        entry[3].append(np.atleast_1d(np.asarray(walls, dtype=np.float64)))

    def series(self) -> dict[str, tuple[Any, Any, Any]]:
        """tag -> (steps, values, walls): numpy arrays, or lists for points that came only from
        the protobuf path (a few appended records: converting them would cost more than it
        saves)."""
        for tag, (idx, steps, values, walls) in self.singles.items():
            if tag not in self.scalars:  # protobuf points only (live tailing): no sort needed
                continue
            self.add(tag, idx, steps, values, walls)
        out: dict[str, tuple[Any, Any, Any]] = {
            tag: (s, v, w) for tag, (_, s, v, w) in self.singles.items() if tag not in self.scalars
        }
        for tag, (idx, steps, values, walls) in self.scalars.items():
            if len(idx) == 1:
                out[tag] = (steps[0], values[0], walls[0])
                continue
            order = np.argsort(np.concatenate(idx), kind="stable")
            out[tag] = (
                np.concatenate(steps)[order],
                np.concatenate(values)[order],
                np.concatenate(walls)[order],
            )
        return out


def decode_records(
    buf: bytes | memoryview,
    offsets: Sequence[int] | np.ndarray,
    lengths: Sequence[int] | np.ndarray,
) -> Decoded:
    out = Decoded()
    if len(offsets) == 0:
        return out
    if len(offsets) <= SMALL_BATCH:  # live tailing: one protobuf parse each is cheaper
        for i, (off, length) in enumerate(zip(offsets, lengths, strict=True)):
            _decode_proto(buf, int(off), int(length), i, out)
        return out
    arr = np.frombuffer(buf, dtype=np.uint8)
    offs = np.asarray(offsets, dtype=np.int64)
    lens = np.asarray(lengths, dtype=np.int64)
    leftovers: list[np.ndarray] = []
    order = np.argsort(lens, kind="stable")
    bounds = np.flatnonzero(np.diff(lens[order])) + 1
    for sel in np.split(order, bounds):
        length = int(lens[sel[0]])
        if length < 22 or length > 512:
            leftovers.append(sel)
            continue
        leftovers.append(_decode_fixed(arr, offs, sel, int(length), out))
    rest = np.sort(np.concatenate(leftovers)) if leftovers else np.empty(0, np.int64)
    for i in rest.tolist():
        _decode_proto(buf, int(offs[i]), int(lens[i]), i, out)
    return out


def _decode_fixed(
    arr: np.ndarray, offs: np.ndarray, sel: np.ndarray, length: int, out: Decoded
) -> np.ndarray:
    """Decode the simple-scalar layout for records `sel` (all of `length`); return the misfits.

    Bytes are gathered one column at a time (arr[offsets + j]), never as an n x length matrix.
    """
    base = offs[sel]

    def col(j: int, where: np.ndarray | None = None) -> np.ndarray:
        return arr[(base if where is None else base[where]) + j]

    ok = (col(0) == 0x09) & (col(9) == 0x10)
    width = np.zeros(len(sel), dtype=np.int64)
    done = np.zeros(len(sel), dtype=bool)
    for k in range(min(10, length - 10)):
        last = (col(10 + k) & 0x80) == 0
        width[last & ~done] = k + 1
        done |= last
        if done.all():
            break
    ok &= done
    misfit = [sel[~ok]]
    for w in np.unique(width[ok]):
        sub = np.flatnonzero(ok & (width == w))
        p = 10 + int(w)
        tag_len = length - 5 - (p + 6)
        if tag_len <= 0 or tag_len > 127 or length - (p + 2) > 127:
            misfit.append(sel[sub])
            continue
        bsub = base[sub]
        # bytes p..p+5 in one word: 0x2A, summary length, 0x0A, value length, 0x0A, tag length
        expected = bytes([0x2A, length - (p + 2), 0x0A, length - (p + 4), 0x0A, tag_len, 0, 0])
        head = _gather(arr, bsub + p, "<u8") & np.uint64(0xFFFFFFFFFFFF)
        good = (head == np.uint64(int.from_bytes(expected, "little"))) & (
            arr[bsub + (length - 5)] == 0x15
        )
        misfit.append(sel[sub[~good]])
        if not good.any():
            continue
        sub, bsub = sub[good], bsub[good]
        idx = sel[sub]
        walls = _gather_f64(arr, bsub + 1)
        steps = np.zeros(len(sub), dtype=np.int64)
        # the payload CRC: constant bytes once, the varying ones per record, the tag per tag
        crcs = np.full(len(sub), _fixed_crc_constant(length, p, expected[:6]), dtype=np.uint32)
        _crc_words(crcs, walls.view(np.uint64), length - 3)  # wall_time, bytes 1..8
        for k in range(int(w)):
            byte = arr[bsub + 10 + k]
            steps |= (byte.astype(np.int64) & 0x7F) << (7 * k)
            crcs ^= _CRC_ROWS[length - 11 - k][byte]
        values = _gather(arr, bsub + (length - 4), "<f4")
        _crc_words(crcs, values.view(np.uint32), 2)  # simple_value, the last 4 bytes
        words = _tag_words(arr, bsub + p + 6, tag_len)
        groups: list[tuple[bytes, np.ndarray]] = []
        remaining = np.ones(len(sub), dtype=bool)
        while remaining.any():
            first = int(np.argmax(remaining))
            m = remaining & np.all(words == words[first], axis=1)
            remaining &= ~m
            tag = bytes(arr[bsub[first] + p + 6 : bsub[first] + p + 6 + tag_len])
            crcs[m] ^= np.uint32(_bytes_crc(tag, length - 1 - (p + 6)))
            groups.append((tag, m))
        crc_ok = _masked(crcs) == _gather(arr, bsub + length, "<u4")
        out.bad.extend(idx[~crc_ok].tolist())  # a flipped bit: skipped
        for tag, m in groups:
            m &= crc_ok
            if m.any():
                out.add(tag.decode("utf-8", "replace"), idx[m], steps[m], values[m], walls[m])
    return np.concatenate(misfit) if misfit else np.empty(0, np.int64)


def _fixed_crc_constant(length: int, p: int, header: bytes) -> int:
    """The CRC contribution of the bytes every record of one fixed layout shares (and of the
    CRC's own init/final constants): the field keys 0x09, 0x10, 0x15 and the 6 header bytes."""
    c = crc32c.crc32c(bytes(length))
    c ^= (
        int(_CRC_ROWS[length - 1][0x09])
        ^ int(_CRC_ROWS[length - 10][0x10])
        ^ int(_CRC_ROWS[4][0x15])
    )
    return c ^ _bytes_crc(header, length - 1 - p)


def _bytes_crc(data: bytes, first_distance: int) -> int:
    """Contribution of `data` whose first byte has `first_distance` bytes after it."""
    c = 0
    for j, b in enumerate(data):
        c ^= int(_CRC_ROWS[first_distance - j][b])
    return c


def _crc_words(crcs: np.ndarray, words: np.ndarray, top: int) -> None:
    """XOR into `crcs` the contribution of little-endian `words` (a contiguous uint64 or
    uint32 array, one per record) read as u16 pieces; the first piece's high byte has `top`
    bytes after it."""
    pieces = words.view(np.uint16).reshape(len(words), -1)
    for k in range(pieces.shape[1]):
        crcs ^= _pair_table(top - 2 * k)[pieces[:, k]]


def _gather(arr: np.ndarray, offsets: np.ndarray, dtype: str) -> np.ndarray:
    """Little-endian values of `dtype` at arbitrary (unaligned) byte offsets, in one gather:
    through a view of the buffer that starts a value at every byte (stride 1, unaligned)."""
    size = np.dtype(dtype).itemsize
    every = np.ndarray(shape=(max(0, len(arr) - size + 1),), dtype=dtype, buffer=arr, strides=(1,))
    return every[offsets]


def _gather_f64(arr: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return _gather(arr, offsets, "<f8")


def _tag_words(arr: np.ndarray, starts: np.ndarray, tag_len: int) -> np.ndarray:
    """Each record's tag bytes as uint64 words (n x ceil(len/8)); the last word is masked to the
    tag's own bytes, so the words identify the tag exactly."""
    nwords = (tag_len + 7) // 8
    words = np.empty((len(starts), nwords), dtype=np.uint64)
    for j in range(nwords):
        words[:, j] = _gather(arr, starts + 8 * j, "<u8")
    tail = tag_len - 8 * (nwords - 1)
    if tail < 8:
        words[:, -1] &= np.uint64((1 << (8 * tail)) - 1)
    return words


def _decode_proto(buf: bytes | memoryview, off: int, length: int, idx: int, out: Decoded) -> None:
    payload = bytes(buf[off : off + length])  # a view's bytes may be overwritten later
    if masked_crc(payload) != _U32.unpack_from(buf, off + length)[0]:
        out.bad.append(idx)  # a flipped bit: wrong numbers, or a tag that was never logged
        return
    try:
        _decode_event(event_pb2.Event.FromString(payload), idx, out)
    except (protobuf_message.DecodeError, RuntimeError, ValueError, OverflowError):
        out.bad.append(idx)


def _decode_event(event: Any, idx: int, out: Decoded) -> None:
    if not event.HasField("summary"):
        return
    for value in event.summary.value:
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            out.add_one(value.tag, idx, event.step, value.simple_value, event.wall_time)
            continue
        plugin = value.metadata.plugin_data.plugin_name if value.HasField("metadata") else ""
        if plugin == "hparams":
            _decode_hparams(value, out, idx)
            continue
        if kind != "tensor" or plugin in _SKIP_PLUGINS:
            continue
        tensor = value.tensor
        if tensor.dtype == _DT_STRING:
            if plugin in ("text", "") and tensor.string_val:
                text = "\n".join(s.decode("utf-8", "replace") for s in tensor.string_val)
                tag = value.tag.removesuffix("/text_summary")
                out.texts.append((event.step, tag, text, event.wall_time))
            continue
        scalar = _tensor_scalar(tensor)
        if scalar is not None:
            out.add_one(value.tag, idx, event.step, scalar, event.wall_time)


def _tensor_scalar(tensor: Any) -> float | None:
    """The value of a one-element tensor; ValueError for a malformed one (its content not a
    whole number of elements)."""
    dims = [d.size for d in tensor.tensor_shape.dim]
    if dims and math.prod(dims) != 1:
        return None
    dtype = tensor.dtype
    if tensor.tensor_content:
        np_type = {
            _DT_FLOAT: "<f4",
            _DT_DOUBLE: "<f8",
            _DT_INT32: "<i4",
            _DT_INT64: "<i8",
            _DT_HALF: "<f2",
        }.get(dtype)
        if np_type is None:
            return None
        size = np.dtype(np_type).itemsize
        if len(tensor.tensor_content) % size:
            raise ValueError(f"tensor_content of {len(tensor.tensor_content)} bytes for {np_type}")
        return float(np.frombuffer(tensor.tensor_content, dtype=np_type, count=1)[0])
    for field in ("float_val", "double_val", "int_val", "int64_val", "half_val"):
        vals = getattr(tensor, field)
        if len(vals):
            if field == "half_val":
                return float(np.array([vals[0]], dtype=np.uint16).view(np.float16)[0])
            return float(vals[0])
    return None


def _decode_hparams(value: Any, out: Decoded, idx: int) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    try:
        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    except Exception:  # noqa: BLE001 - foreign bytes: skip, never crash
        out.bad.append(idx)
        return
    which = data.WhichOneof("data")
    if which == "session_start_info":
        for name, v in data.session_start_info.hparams.items():
            kind = v.WhichOneof("kind")
            value = getattr(v, kind) if kind else None
            out.hparams[name] = (
                value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
            )
    elif which == "session_end_info":
        out.session_status = int(data.session_end_info.status)


class TensorBoardSource(Source):
    """All event files of one run. Options per file: prefix (tag prefix), hf (rename HF tags)."""

    format = "tensorboard"
    stream = "tensorboard"
    richness = 2

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """TFRecord framing whose first record is an Event (`brain.Event:N`); a file named as
        the writers name them may also be empty yet (just created) or unreadable."""
        name = os.path.basename(path)
        if name.endswith(".profile-empty"):
            return False
        named = "tfevents" in name
        if not head:
            return named
        if len(head) < 12:
            return False
        length, crc = _HEADER.unpack_from(head)
        if masked_crc(head[:8]) != crc:
            return False
        return named or b"brain.Event" in head[12 : 12 + min(length, 64)]

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        root, prefix, hf = tensorboard_root(os.path.dirname(path), dirs)
        return root, {"prefix": prefix, "hf": hf}

    def __init__(self, store: Any, key: str) -> None:
        super().__init__(store, key)
        self._corrupt_at: dict[str, set[int]] = defaultdict(set)  # file offsets counted
        self._order: dict[str, tuple] = {}

    def ordered_paths(self, among: set[str] | None = None) -> list[str]:
        """Oldest file first (creation time and counter from the file name)."""
        paths = self.cursors if among is None else [p for p in among if p in self.cursors]
        return sorted(paths, key=self._order_key)

    def _order_key(self, path: str) -> tuple:
        key = self._order.get(path)
        if key is None:
            info = parse_filename(path.rsplit("/", 1)[-1])
            key = self._order[path] = (info.get("created", 0), info.get("counter", 0), path)
        return key

    def add_file(self, path: str, **options: object) -> bool:
        added = super().add_file(path, **options)
        if added:
            self.cursors[path].scratch = True  # read() decodes each buffer before the next
            info = parse_filename(path.rsplit("/", 1)[-1])
            if "pid" in info and pid_problem(info["pid"]) is None:
                self.store.update(self.key, pid=info["pid"], host=info.get("host"))
            elif info.get("host"):
                self.store.update(self.key, host=info["host"])
        return added

    def read(self, cursor: FileCursor) -> int:
        opts = self.options[cursor.key]
        total = 0
        while True:
            buf = cursor.read_view(MAX_READ)  # everything kept from it is copied (Decoded)
            if not buf:
                break
            offsets: dict[int, int] | list[int] | np.ndarray  # indexed by a record's index
            if tfscan.available():  # the compiled scanner: same records, one pass
                offsets, consumed, corrupt, decoded = tfscan.scan_records(buf)
            else:
                offsets, lengths, consumed, corrupt = walk_records(buf)
                decoded = decode_records(buf, offsets, lengths)
            total += self._emit(decoded, opts)
            self._count_corrupt(cursor, corrupt + [int(offsets[i]) - 12 for i in decoded.bad])
            cursor.advance(consumed)
            if consumed == 0 or len(buf) < MAX_READ:
                break
        return total

    def on_reset(self, cursor: FileCursor) -> None:
        self._corrupt_at.pop(cursor.key, None)

    def _count_corrupt(self, cursor: FileCursor, starts: list[int]) -> None:
        """Count each corrupt record once, by its place in the file: a corrupt tail with no
        record after it yet is walked again at the next read, and must not count twice."""
        seen = self._corrupt_at[cursor.key]
        if len(seen) > 1024:  # only the unconsumed tail is ever walked again
            seen.difference_update([w for w in seen if w < cursor.offset])
        for start in sorted(starts):
            where = cursor.offset + start
            if where not in seen:
                seen.add(where)
                self.skip(
                    cursor.path, f"byte {where}", "corrupt record (CRC or payload)", "corrupt"
                )

    def _emit(self, decoded: Decoded, opts: dict) -> int:
        prefix = str(opts.get("prefix", ""))
        hf = bool(opts.get("hf"))
        total = 0
        for tag, (steps, values, walls) in decoded.series().items():
            name = prefix + (hf_untag(tag) if hf else tag)
            total += self.store.add_points(self.key, self.stream, name, steps, values, walls)
        for step, tag, text, wall in decoded.texts:
            self.store.add_text(self.key, step, prefix + tag, text, wall)
        if decoded.hparams:
            self.store.update(self.key, hparams=decoded.hparams)
        if decoded.session_status is not None:
            from watchrun.model import RunStatus

            status = {1: RunStatus.FINISHED, 2: RunStatus.FAILED}.get(decoded.session_status)
            if status is not None:
                self.store.update(self.key, explicit_status=status)
        return total


def hf_untag(tag: str) -> str:
    """HF TensorBoardCallback writes `eval_loss` as `eval/loss`, `loss` as `train/loss`: undo it so
    the TensorBoard copy and the trainer_state.json copy of a metric share one name."""
    if tag.startswith("train/"):
        return tag[6:]
    for split in ("eval", "test", "predict"):
        if tag.startswith(split + "/"):
            return f"{split}_{tag[len(split) + 1 :]}"
    return tag

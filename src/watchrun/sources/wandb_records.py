"""The records of a W&B transaction log (`run-<id>.wandb`): framing and two protobuf decoders.

Framing is the LevelDB log format as wandb writes it: a 7-byte file header (`:W&B`, magic
0xBEE1 little-endian, version 0), then 32 KiB blocks of records, each with a 7-byte header
(u32 checksum, u16 length, u8 type FULL=1/FIRST=2/MIDDLE=3/LAST=4) and a block tail shorter than
a header left as zeros. The checksum is zlib's CRC-32 of the type byte and the data, unmasked
(not LevelDB's masked CRC32C: measured on files of wandb 0.22 and 0.31).

A logical record is a `wandb.proto.wandb_internal_pb2.Record`. Two decoders turn it into the same
plain tuple `(kind, body)`: the wandb package's own message classes when it is importable, else a
small wire-format reader that knows only the fields watchrun uses (history, summary, config, run,
environment, exit). Kinds: `history`, `summary`, `config`, `run`, `environment`, `exit`, `known`
(a record type watchrun does not use: stats, output, telemetry...), `unknown` (a record type
newer than this reader).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FILE_MAGIC = b":W&B"
FILE_HEADER = 7
BLOCK = 32 * 1024
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_HEADER = struct.Struct("<IHB")

Decoded = tuple[str, Any]


class WireError(ValueError):
    """A payload that is not a well-formed protobuf message."""


# -- framing ------------------------------------------------------------------------------------
def record_checksum(rtype: int, data: bytes | memoryview) -> int:
    return zlib.crc32(data, zlib.crc32(bytes([rtype]))) & 0xFFFFFFFF


def frame_records(payloads: list[bytes], start: int = FILE_HEADER) -> bytes:
    """Frame payloads as wandb does, from file offset `start` (tests write torn and corrupt
    files with it)."""
    out = bytearray()
    pos = start
    for payload in payloads:
        rest = memoryview(payload)
        first = True
        while True:
            left = BLOCK - pos % BLOCK
            if left < RECORD_HEADER:
                out += b"\x00" * left
                pos += left
                left = BLOCK
            chunk = rest[: left - RECORD_HEADER]
            rest = rest[len(chunk) :]
            last = len(rest) == 0
            rtype = FULL if first and last else FIRST if first else LAST if last else MIDDLE
            out += _HEADER.pack(record_checksum(rtype, chunk), len(chunk), rtype) + chunk
            pos += RECORD_HEADER + len(chunk)
            first = False
            if last:
                break
    return bytes(out)


@dataclass
class Framing:
    """What one pass over new bytes found: whole logical records, how far the reader may move
    its offset (the start of a torn record stays unread), and the damage skipped."""

    records: list[bytes] = field(default_factory=list)
    consumed: int = 0
    corrupt: int = 0  # damaged stretches skipped (bad checksum, impossible header, orphan parts)
    bad_file: bool = False
    stuck: bool = False  # damage at `consumed` with no valid record after it yet (junk at the end)


def split_records(data: bytes, offset: int) -> Framing:
    """The complete records in `data`, which holds the file from byte `offset` on. A record
    cut by the end of `data` waits: `consumed` stops at its start."""
    out = Framing()
    pos = 0
    if offset == 0:
        if len(data) < FILE_HEADER:
            return out
        if data[:4] != FILE_MAGIC:
            out.bad_file = True
            return out
        pos = FILE_HEADER
    out.consumed = pos
    parts: list[bytes] = []
    n = len(data)
    while True:
        absolute = offset + pos
        left = BLOCK - absolute % BLOCK
        if left < RECORD_HEADER:  # zero-filled block tail
            if pos + left > n:
                break
            pos += left
            if not parts:
                out.consumed = pos
            continue
        if pos + RECORD_HEADER > n:
            break
        crc, length, rtype = _HEADER.unpack_from(data, pos)
        end = pos + RECORD_HEADER + length
        plausible = 1 <= rtype <= 4 and RECORD_HEADER + length <= left
        if plausible and end > n:
            break  # torn: the rest has not been written yet
        chunk = data[pos + RECORD_HEADER : end] if plausible else b""
        if not plausible or record_checksum(rtype, chunk) != crc:
            resume = _resync(data, offset, pos + 1)
            if resume is None:
                out.stuck = not parts  # nothing valid after the damage yet: look again later
                break
            out.corrupt += 1
            parts = []
            pos = out.consumed = resume
            continue
        pos = end
        if rtype in (FULL, FIRST):
            if parts:
                out.corrupt += 1  # a record whose last part never came
            parts = [chunk]
        elif not parts:
            out.corrupt += 1  # the middle or end of a record whose start was lost
            out.consumed = pos
            continue
        else:
            parts.append(chunk)
        if rtype in (FULL, LAST):
            out.records.append(b"".join(parts))
            parts = []
            out.consumed = pos
    return out


def _resync(data: bytes, offset: int, start: int) -> int | None:
    """The next position at or after `start` holding a whole record with a valid checksum
    that begins a logical record (FULL or FIRST); None when there is none in `data` yet."""
    n = len(data)
    for pos in range(start, n - RECORD_HEADER + 1):
        rtype = data[pos + 6]
        if rtype != FULL and rtype != FIRST:
            continue
        left = BLOCK - (offset + pos) % BLOCK
        crc, length, _ = _HEADER.unpack_from(data, pos)
        end = pos + RECORD_HEADER + length
        if RECORD_HEADER + length > left or end > n:
            continue
        if record_checksum(rtype, data[pos + RECORD_HEADER : end]) == crc:
            return pos
    return None


# -- values -------------------------------------------------------------------------------------
def item_key(key: str, nested: list[str]) -> str:
    """wandb writes a logged key either in `key` or split in `nested_key` (`val.acc` ->
    ['val', 'acc']); watchrun names it with `/`."""
    return "/".join(nested) if nested else key


# -- decoder 1: the wandb package ---------------------------------------------------------------
def wandb_decoder() -> Callable[[bytes], Decoded] | None:
    """A decoder built on wandb's message classes, or None when wandb is not importable."""
    try:
        from google.protobuf.message import DecodeError
        from wandb.proto import wandb_internal_pb2 as pb
    except Exception:  # noqa: BLE001 - any failure to import means: use the wire reader
        return None

    def items(entries: Any) -> dict[str, str]:
        return {item_key(e.key, list(e.nested_key)): e.value_json for e in entries}

    def decode(payload: bytes) -> Decoded:
        try:
            # wandb's _pb2 modules make their classes at import time (no stubs): Record is there
            rec = pb.Record.FromString(payload)  # type: ignore[attr-defined]
        except DecodeError as exc:
            raise WireError(str(exc)) from exc
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            h = rec.history
            return "history", {
                "items": items(h.item),
                "step": h.step.num if h.HasField("step") else None,
            }
        if kind in ("summary", "config"):
            msg = getattr(rec, kind)
            return kind, {"update": items(msg.update), "remove": list(items(msg.remove))}
        if kind == "run":
            r = rec.run
            body = {
                "run_id": r.run_id,
                "entity": r.entity,
                "project": r.project,
                "display_name": r.display_name,
                "group": r.run_group,
                "host": r.host,
                "starting_step": r.starting_step,
                "resumed": r.resumed,
                "start_time": _seconds(r.start_time.seconds, r.start_time.nanos)
                if r.HasField("start_time")
                else None,
                "config": items(r.config.update),
                "summary": items(r.summary.update),
            }
            return "run", body
        if kind == "environment":
            e = rec.environment
            body = {
                "host": e.host,
                "program": e.program,
                "args": list(e.args),
                "executable": e.executable,
                "python": e.python,
                "gpu_type": e.gpu_type,
                "gpu_count": e.gpu_count,
                "gpus": [g.name for g in e.gpu_nvidia],
                "started_at": _seconds(e.started_at.seconds, e.started_at.nanos)
                if e.HasField("started_at")
                else None,
            }
            return "environment", body
        if kind == "exit":
            return "exit", {"exit_code": rec.exit.exit_code, "runtime": rec.exit.runtime}
        if kind is None:
            return "unknown", None
        return "known", None

    return decode


def _seconds(seconds: int, nanos: int) -> float:
    return seconds + nanos / 1e9


# -- decoder 2: the wire format, by hand --------------------------------------------------------
# Field numbers of wandb_internal.proto (read from wandb's descriptors).
_RECORD_HISTORY, _RECORD_SUMMARY, _RECORD_CONFIG, _RECORD_RUN, _RECORD_EXIT = 2, 3, 5, 17, 18
_RECORD_ENVIRONMENT = 26
# every `record_type` member of Record in wandb 0.31 (anything else is a newer record type)
_RECORD_TYPES = frozenset(
    {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 18, 20, 21, 22, 23, 24, 25, 26, 27, 100}
)
_ITEM_KEY, _ITEM_NESTED, _ITEM_VALUE_JSON = 1, 2, 16


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: ints for varints and fixed widths,
    bytes for length-delimited fields."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    n = len(buf)
    value: int | bytes
    while pos < n:
        tag, pos = read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            if pos + length > n:
                raise WireError("truncated field")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 1:
            if pos + 8 > n:
                raise WireError("truncated fixed64")
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            if pos + 4 > n:
                raise WireError("truncated fixed32")
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise WireError(f"wire type {wire}")
        out.append((number, wire, value))
    return out


def _int32(value: int) -> int:
    """A varint holding a (possibly negative) int32."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _items(buf: bytes, number: int) -> dict[str, str]:
    """The HistoryItem / SummaryItem / ConfigItem entries in field `number` of a message."""
    out: dict[str, str] = {}
    for num, wire, value in fields(buf):
        if num != number or wire != 2:
            continue
        key, nested, value_json = "", [], ""
        for n2, w2, v2 in fields(value):
            if w2 != 2:
                continue
            if n2 == _ITEM_KEY:
                key = _text(v2)
            elif n2 == _ITEM_NESTED:
                nested.append(_text(v2))
            elif n2 == _ITEM_VALUE_JSON:
                value_json = _text(v2)
        out[item_key(key, nested)] = value_json
    return out


def _timestamp(buf: bytes) -> float:
    seconds = nanos = 0
    for num, wire, value in fields(buf):
        if wire == 0 and num == 1:
            seconds = _int32(value)
        elif wire == 0 and num == 2:
            nanos = _int32(value)
    return _seconds(seconds, nanos)


def _scalar_fields(buf: bytes, strings: dict[int, str], ints: dict[int, str]) -> dict[str, Any]:
    body: dict[str, Any] = {name: "" for name in strings.values()}
    body.update({name: 0 for name in ints.values()})
    for num, wire, value in fields(buf):
        if wire == 2 and num in strings:
            body[strings[num]] = _text(value)
        elif wire == 0 and num in ints:
            body[ints[num]] = _int32(value)
    return body


def _run(buf: bytes) -> dict[str, Any]:
    strings = {1: "run_id", 2: "entity", 3: "project", 6: "group", 8: "display_name", 13: "host"}
    body = _scalar_fields(buf, strings, {14: "starting_step", 18: "resumed"})
    body["resumed"] = bool(body["resumed"])
    body["start_time"] = None
    body["config"], body["summary"] = {}, {}
    for num, wire, value in fields(buf):
        if wire != 2:
            continue
        if num == 17:
            body["start_time"] = _timestamp(value)
        elif num == 4:
            body["config"] = _items(value, 1)
        elif num == 5:
            body["summary"] = _items(value, 1)
    return body


def _environment(buf: bytes) -> dict[str, Any]:
    strings = {12: "host", 6: "program", 14: "executable", 2: "python", 18: "gpu_type"}
    body = _scalar_fields(buf, strings, {19: "gpu_count"})
    body["args"], body["gpus"], body["started_at"] = [], [], None
    for num, wire, value in fields(buf):
        if wire != 2:
            continue
        if num == 5:
            body["args"].append(_text(value))
        elif num == 3:
            body["started_at"] = _timestamp(value)
        elif num == 24:
            body["gpus"].append(
                next((_text(v) for n, w, v in fields(value) if n == 1 and w == 2), "")
            )
    return body


def decode_wire(payload: bytes) -> Decoded:
    """Decode one Record without the wandb package."""
    kind_field = None
    for num, wire, value in fields(payload):
        if num in _RECORD_TYPES and wire == 2:
            kind_field = (num, value)
        elif num not in (1, 16, 19, 200) and num not in _RECORD_TYPES:
            kind_field = kind_field or (-1, b"")
    if kind_field is None or kind_field[0] == -1:
        return "unknown", None
    num, body = kind_field
    if num == _RECORD_HISTORY:
        step = None
        for n, w, v in fields(body):
            if n == 2 and w == 2:
                step = next((x for n2, w2, x in fields(v) if n2 == 1 and w2 == 0), 0)
        return "history", {"items": _items(body, 1), "step": step}
    if num in (_RECORD_SUMMARY, _RECORD_CONFIG):
        kind = "summary" if num == _RECORD_SUMMARY else "config"
        return kind, {"update": _items(body, 1), "remove": list(_items(body, 2))}
    if num == _RECORD_RUN:
        return "run", _run(body)
    if num == _RECORD_ENVIRONMENT:
        return "environment", _environment(body)
    if num == _RECORD_EXIT:
        exit_code = runtime = 0
        for n, w, v in fields(body):
            if w == 0 and n == 1:
                exit_code = _int32(v)
            elif w == 0 and n == 2:
                runtime = _int32(v)
        return "exit", {"exit_code": exit_code, "runtime": runtime}
    return "known", None


def best_decoder() -> Callable[[bytes], Decoded]:
    return wandb_decoder() or decode_wire

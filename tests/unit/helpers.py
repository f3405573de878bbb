"""Small writers for tests: every test states what it wrote, then checks what was read."""

from __future__ import annotations

import struct
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2

from watchrun.engine import Engine
from watchrun.sources.tensorboard import frame


def scalar_event(step: int, tag: str, value: float, wall: float = 1.7e9) -> bytes:
    ev = event_pb2.Event(
        wall_time=wall,
        step=step,
        summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]),
    )
    return frame(ev.SerializeToString())


def file_version_event() -> bytes:
    return frame(event_pb2.Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString())


def points(engine: Engine, key: str | None = None) -> dict[str, list[tuple[int, float]]]:
    """Every series of a run as (step, value) lists."""
    runs = engine.store.runs
    run = runs[key] if key else next(iter(runs.values()))
    return {
        n: list(zip(s.steps.tolist(), s.values.tolist(), strict=False))
        for n, s in run.series.items()
    }


def loaded(path) -> Engine:
    e = Engine([str(path)], use_watchdog=False)
    e.load()
    return e


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def follow_in_chunks(source_csv: Path, live_root: Path, chunks: int, bounded: bool) -> Engine:
    """`check --follow` on a Lightning CSV run as its metrics.csv grows in `chunks` reads (a copy
    of `source_csv` under `live_root`): the detectors are attached before the first read and
    run after each. The caller ends the run (verdict, or a final detect)."""
    lines = source_csv.read_bytes().splitlines(keepends=True)
    target = live_root / "lightning_logs" / "version_0" / "metrics.csv"
    target.parent.mkdir(parents=True)
    e = Engine([str(live_root)], use_watchdog=False, bounded=bounded)
    e.detectors  # noqa: B018 - attached before the first read, as `check --follow` does
    for k in range(chunks):
        with open(target, "ab") as fh:
            fh.writelines(lines[len(lines) * k // chunks : len(lines) * (k + 1) // chunks])
        if k == 0:
            e.load()
        else:
            e.poll()
        e.detect()
    return e

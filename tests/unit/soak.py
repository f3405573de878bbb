"""FAULTS L3 soak, shared by tests/unit/test_soak.py and benchmarks/soak.py.

One writer process writes four streams at once (TFRecord, CSV, JSONL, console lines), each at
`rate` events/s in bursts every 10 ms with a line or record cut in half at a random byte, and
each, at random moments (its own random stream, about once every 0.2-1 s), does one of:
rotate by rename with a new file made at once, rotate by rename with the file made again only
by the next write (logrotate `nocreate`, WatchedFileHandler), atomic replace by a longer copy,
copytruncate. Rotated files are kept (`.1`, `.2`, ... shifted, as logrotate does). The writer
logs every step it wrote; the engine follows (file events, or polling); at the end each stream
must hold exactly the writer's steps: `lost` and `doubled` count the difference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

from watchrun.engine import Engine

KINDS = {  # stream kind -> (file, run key)
    "tfrecord": ("tb/events.out.tfevents.1700000000.soak.1.0", "tb"),
    "csv": ("version_0/metrics.csv", "version_0"),
    "jsonl": ("run/train.jsonl", "run/train.jsonl"),
    "console": ("crun/train.log", "crun/train.log"),
}

WRITER = textwrap.dedent("""\
    import json, os, random, shutil, sys, time
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from watchrun.sources.tensorboard import frame

    root, seconds, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    kinds = json.loads(sys.argv[4])

    def value(step):
        return step * 0.25

    def header(kind):
        if kind == "tfrecord":
            ev = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
            return frame(ev.SerializeToString())
        return b"step,loss\\n" if kind == "csv" else b""

    def record(kind, step):
        if kind == "tfrecord":
            ev = event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag="loss", simple_value=value(step))]))
            return frame(ev.SerializeToString())
        if kind == "csv":
            return f"{step},{value(step)}\\n".encode()
        if kind == "jsonl":
            return (json.dumps({"step": step, "loss": value(step)}) + "\\n").encode()
        return f"step {step} | loss={value(step)}\\n".encode()

    class Stream:
        def __init__(self, kind, rel, seed):
            self.kind, self.path = kind, os.path.join(root, rel)
            self.rng = random.Random(seed)          # where bursts are cut
            self.faults = random.Random(seed + 1)   # when faults come, and which
            self.written, self.step, self.rotated = [], 0, 0
            self.counts = {"rotate": 0, "nocreate": 0, "replace": 0, "copytruncate": 0}
            self.log = []  # (fault, the next step then)
            self.fh = None
            self.open()
            self.next_fault = time.monotonic() + self.faults.uniform(0.2, 1.0)

        def open(self):
            self.fh = open(self.path, "ab")
            if self.fh.tell() == 0 and os.fstat(self.fh.fileno()).st_size == 0:
                self.fh.write(header(self.kind)); self.fh.flush()

        def burst(self, n):
            if self.fh is None:          # WatchedFileHandler: the next write makes the file
                self.open()
            data = b"".join(record(self.kind, s) for s in range(self.step, self.step + n))
            self.written.extend(range(self.step, self.step + n))
            self.step += n
            cut = self.rng.randrange(len(data))
            self.fh.write(data[:cut]); self.fh.flush()   # a record cut in half,
            self.fh.write(data[cut:]); self.fh.flush()   # finished a moment later

        def shift(self):
            for k in range(self.rotated, 0, -1):
                os.rename(f"{self.path}.{k}", f"{self.path}.{k + 1}")
            self.rotated += 1

        def fault(self):
            kind = self.faults.choice(sorted(self.counts))
            self.counts[kind] += 1
            self.log.append((kind, self.step))
            if kind in ("rotate", "nocreate"):
                if self.fh is None:
                    self.open()
                self.shift()
                os.rename(self.path, self.path + ".1")
                self.fh.close(); self.fh = None
                if kind == "rotate":
                    self.open()
            elif kind == "replace":    # a longer copy renamed over the file
                if self.fh is None:
                    self.open()
                with open(self.path, "rb") as f:
                    data = f.read()
                n = 50
                data += b"".join(record(self.kind, s) for s in range(self.step, self.step + n))
                self.written.extend(range(self.step, self.step + n)); self.step += n
                tmp = os.path.join(os.path.dirname(self.path), ".replace.tmp")
                with open(tmp, "wb") as f:
                    f.write(data)
                self.fh.close()
                os.replace(tmp, self.path)
                self.open()
            else:                      # copytruncate: the writer goes on, O_APPEND, no header
                if self.fh is None:
                    self.open()
                self.shift()
                shutil.copyfile(self.path, self.path + ".1")
                os.truncate(self.path, 0)

    streams = [Stream(kind, rel, 11 + 2 * i) for i, (kind, rel) in enumerate(kinds)]
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for s in streams:
            s.burst(max(1, rate // 100))
            if time.monotonic() >= s.next_fault:
                s.next_fault = time.monotonic() + s.faults.uniform(0.2, 1.0)
                s.fault()
        time.sleep(0.01)
    for s in streams:
        if s.fh is not None:
            s.fh.close()
    print(json.dumps({
        s.kind: {"steps": s.written, "faults": s.counts, "log": s.log} for s in streams
    }))
""")


def run_soak(
    root: str, seconds: float, rate: int, polling: bool, kinds: list[str] | None = None
) -> dict:
    """Run the writer under a following engine; per kind: written, read, lost, doubled, and
    the faults done."""
    kinds = kinds or list(KINDS)
    for kind in kinds:
        os.makedirs(os.path.dirname(os.path.join(root, KINDS[kind][0])), exist_ok=True)
    engine = Engine([root], poll_seconds=0.5 if polling else None)
    engine.load()
    stop = threading.Event()
    follower = threading.Thread(
        target=engine.run_forever, args=(stop, lambda alerts: None), daemon=True
    )
    follower.start()
    try:
        spec = json.dumps([(k, KINDS[k][0]) for k in kinds])
        out = subprocess.run(
            [sys.executable, "-c", WRITER, root, str(seconds), str(rate), spec],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=True,
        )
        log = json.loads(out.stdout)
        want = {k: len(log[k]["steps"]) for k in kinds}
        # the engine catches up: until it has every point, or reads nothing more for 10 s
        last, idle_since = -1, time.time()
        while (
            any(_count(engine, KINDS[k][1]) < want[k] for k in kinds)
            and time.time() - idle_since < 10
        ):
            time.sleep(0.2)
            now = sum(_count(engine, KINDS[k][1]) for k in kinds)
            if now != last:
                last, idle_since = now, time.time()
        time.sleep(1.5)  # anything read twice would arrive now
    finally:
        stop.set()
        follower.join(30)
    result = {}
    for kind in kinds:
        expected = Counter((s, s * 0.25) for s in log[kind]["steps"])
        got = Counter(_points(engine, KINDS[kind][1]))
        result[kind] = {
            "written": sum(expected.values()),
            "read": sum(got.values()),
            "lost": sum((expected - got).values()),
            "doubled": sum((got - expected).values()),
            "faults": log[kind]["faults"],
            "lost_steps": sorted(s for s, _ in expected - got)[:20],
            "doubled_steps": sorted(s for s, _ in got - expected)[:20],
            "fault_log": log[kind]["log"],
        }
    return result


def _points(engine: Engine, key: str) -> list[tuple[int, float]]:
    with engine.store.lock:
        run = engine.store.runs.get(key)
        if run is None or "loss" not in run.series:
            return []
        series = run.series["loss"]
        return list(zip(series.steps.tolist(), series.values.tolist(), strict=True))


def _count(engine: Engine, key: str) -> int:
    with engine.store.lock:
        run = engine.store.runs.get(key)
        return len(run.series["loss"].steps) if run is not None and "loss" in run.series else 0

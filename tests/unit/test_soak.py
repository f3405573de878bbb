"""FAULTS L3: a writer process logs fast for several seconds while it rotates and atomically
replaces its file at random moments and cuts lines in half; the engine follows it with file
events. At the end the engine holds exactly the writer's points: none lost, none doubled.

The writer logs every point it wrote, and the test compares against that log, not against a
formula. Truncation is not among the faults here: bytes that a writer destroys before anyone
read them are gone for every reader (F1 covers what truncation must and must not do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from tests.unit.helpers import points

from watchrun.engine import Engine

SECONDS = float(os.environ.get("WATCHRUN_SOAK_SECONDS", "6"))  # FAULTS L3 says 60: set it so

WRITER = textwrap.dedent("""\
    import json, os, random, sys, time
    path, seconds, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(11)        # where lines are cut
    faults = random.Random(12)     # when the faults come: its own stream, so machine speed
                                   # (how many bursts ran) does not change the schedule
    folder = os.path.dirname(path)
    current = []          # the lines of the file now at `path`
    written = []          # every step, in order
    rotations = replaces = 0
    fh = open(path, "a")
    start = time.monotonic()
    next_fault = start + faults.uniform(0.2, 1.0)
    step = 0
    while time.monotonic() - start < seconds:
        burst = []
        for _ in range(rate // 100):
            line = json.dumps({"step": step, "loss": round(1.0 / (1 + step), 9)}) + "\\n"
            burst.append(line)
            written.append(step)
            step += 1
        data = "".join(burst)
        cut = rng.randrange(len(data))
        fh.write(data[:cut]); fh.flush()   # a line cut in half, finished a moment later
        fh.write(data[cut:]); fh.flush()
        current += burst
        now = time.monotonic()
        if now >= next_fault:
            next_fault = now + faults.uniform(0.2, 1.0)
            if (rotations + replaces) % 2 == 0:  # rotate and replace take turns: at least one
                # fault per second, so two of each in any run of 4 s or more.
                # rotate: the old file keeps its name.N, a new file starts
                fh.close()
                rotations += 1
                os.rename(path, f"{path}.{rotations}")
                fh = open(path, "a")
                current = []
            else:                     # atomic replace by a longer copy (same head, more lines)
                extra = []
                for _ in range(50):
                    extra.append(json.dumps({"step": step, "loss": round(1.0 / (1 + step), 9)}) + "\\n")
                    written.append(step)
                    step += 1
                current += extra
                tmp = os.path.join(folder, ".train.tmp")
                with open(tmp, "w") as t:
                    t.write("".join(current))
                fh.close()
                os.replace(tmp, path)
                fh = open(path, "a")
                replaces += 1
        time.sleep(0.01)
    fh.close()
    print(json.dumps({"steps": written, "rotations": rotations, "replaces": replaces}))
""")


@pytest.mark.parametrize("mode", ["file-events", "polling"])
def test_l3_soak_rotate_replace_and_torn_lines_lose_and_double_nothing(tmp_path, mode):
    """With file events, and with polling every 0.5 s (NFS): there, two faults often fall
    between two looks, and the generations in between must still be read, once."""
    run = tmp_path / "soak"
    run.mkdir()
    path = run / "train.jsonl"
    path.write_text("")
    engine = Engine([str(tmp_path)], poll_seconds=0.5 if mode == "polling" else None)
    engine.load()
    engine.start_watching()
    assert engine.watching == (mode == "file-events")
    engine.stop_watching()
    stop = threading.Event()
    follower = threading.Thread(target=engine.run_forever, args=(stop, lambda alerts: None), daemon=True)
    follower.start()
    try:
        out = subprocess.run([sys.executable, "-c", WRITER, str(path), str(SECONDS), "10000"],
                             capture_output=True, text=True, timeout=SECONDS + 60, check=True)
        log = json.loads(out.stdout)
        assert log["rotations"] >= 2 and log["replaces"] >= 2  # the faults did happen
        expected = [(s, round(1.0 / (1 + s), 9)) for s in log["steps"]]
        deadline = time.time() + 15
        while time.time() < deadline and len(points(engine, "soak/train.jsonl").get("loss", [])) < len(expected):
            time.sleep(0.1)
        time.sleep(1.0)  # anything doubled would arrive now
    finally:
        stop.set()
        follower.join(10)
    got = points(engine, "soak/train.jsonl")["loss"]
    assert len(got) == len(expected) > SECONDS * 1000  # a busy writer, even on a slow machine
    assert got == expected

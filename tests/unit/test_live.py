"""A writer appends while the engine tails (including a record cut in half): the final data
equals a one-shot read of the finished files."""

from __future__ import annotations

import threading
import time

from tests.unit.helpers import file_version_event, loaded, points, scalar_event

from watchrun.demo import write_all
from watchrun.engine import Engine


def test_live_tail_equals_one_shot_read(tmp_path):
    live = tmp_path / "live"
    tb = live / "tb"
    tb.mkdir(parents=True)
    csv = live / "v" / "metrics.csv"
    csv.parent.mkdir()
    f = tb / "events.out.tfevents.1700000000.host.7.0"
    f.write_bytes(file_version_event())
    csv.write_text("step,loss\n")
    engine = Engine([str(live)], poll_seconds=0.05)
    engine.load()
    stop = threading.Event()
    t = threading.Thread(target=engine.run_forever, args=(stop, lambda alerts: None), daemon=True)
    t.start()
    try:
        for i in range(300):
            rec = scalar_event(i, "loss", i * 0.1)
            with open(f, "ab") as fh:
                fh.write(rec[:9])  # half a record: the engine must wait for the rest
                fh.flush()
                if i % 50 == 0:
                    time.sleep(0.06)
                fh.write(rec[9:])
            with open(csv, "a") as fh:
                fh.write(f"{i},{i}.")
                fh.flush()
                fh.write("5\n")
        deadline = time.time() + 10
        while time.time() < deadline:
            p = points(engine, "tb")
            if len(p.get("loss", [])) == 300 and len(points(engine, "v").get("loss", [])) == 300:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(5)
    once = loaded(live)
    assert points(engine, "tb") == points(once, "tb")
    assert points(engine, "v") == points(once, "v")
    assert [s for s, _ in points(engine, "tb")["loss"]] == list(range(300))


def test_new_run_appearing_while_watching_is_picked_up(tmp_path):
    engine = Engine([str(tmp_path)], poll_seconds=0.05)
    engine.load()
    assert not engine.visible_keys()
    write_all(str(tmp_path / "demo"))
    engine.tick()
    engine.rescan_needed = True
    engine.tick()
    assert len(engine.visible_keys()) == 5

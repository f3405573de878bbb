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


def test_a_console_opened_before_the_runs_files_joins_that_run_live(tmp_path):
    """`python train.py > exp1/train.log`: the shell creates the log before the script has
    imported torch and written its first event file. Watched live, the console found alone joins
    the run of its folder once that run appears, as a scan of the finished folder attaches it."""
    exp = tmp_path / "exp1"
    exp.mkdir()
    (exp / "train.log").write_text("loading data...\n")
    engine = Engine([str(tmp_path)], poll_seconds=0.05)
    engine.load()
    assert engine.visible_keys() == [] or engine.visible_keys() == ["exp1/train.log"]
    with open(exp / "events.out.tfevents.1700000000.host.7.0", "wb") as fh:
        fh.write(file_version_event())
        for i in range(20):
            fh.write(scalar_event(i, "loss", 1.0 / (i + 1)))
    with open(exp / "train.log", "a") as fh:
        fh.write("epoch 1 done\n")
    deadline = time.time() + 20
    while time.time() < deadline:
        engine.tick()
        run = engine.store.runs.get("exp1")
        if (
            run is not None
            and "console" in run.formats
            and len(points(engine, "exp1")["loss"]) == 20
        ):
            break
        time.sleep(0.1)
    assert engine.visible_keys() == ["exp1"]
    assert {"console", "tensorboard"} <= engine.store.runs["exp1"].formats
    assert engine.visible_keys() == loaded(tmp_path).visible_keys()

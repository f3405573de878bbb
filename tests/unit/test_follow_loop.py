"""The follow loop's pace without file events (polling: NFS, sshfs, --poll): fast while files
grow, back to the slow poll once they are quiet, never more than 2% of the time polling."""

from __future__ import annotations

import time
from pathlib import Path

from watchrun.engine import FAST_POLL_HOLD, FAST_POLL_SECONDS, Engine


def test_polling_is_fast_while_files_grow_and_slow_once_quiet(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    log = tmp_path / "run" / "metrics.csv"
    log.write_text("step,train_loss\n0,1.0\n")
    e = Engine([str(tmp_path)], poll_seconds=2.0, use_watchdog=False)
    e.load()
    e.tick()
    e._last_data = time.monotonic() - FAST_POLL_HOLD  # nothing new for a while: quiet
    assert e.poll_interval() == 2.0
    with open(log, "a") as fh:
        fh.write("1,0.9\n")
    e._last_full_poll -= 2.0  # the slow poll is due
    e.tick()  # and finds the new row
    assert e.store.runs[next(iter(e.store.runs))].points() == 2
    assert e.poll_interval() == FAST_POLL_SECONDS
    e._poll_cost, e._folders_cost = 0.008, 0.002  # a costly poll (thousands of files)
    assert e.poll_interval() == 0.5  # at most 2% of the time polling
    e._last_data = time.monotonic() - FAST_POLL_HOLD  # quiet for a while: slow again
    assert e.poll_interval() == 2.0


def test_a_poll_interval_below_the_fast_one_is_kept(tmp_path: Path) -> None:
    e = Engine([str(tmp_path)], poll_seconds=0.02, use_watchdog=False)
    assert e.poll_interval() == 0.02

"""A training-like process for the process-view tests, started for real: a writer holding its
metrics.jsonl open (as CSVLogger does), with worker children, allocating memory epoch by epoch
as the test asks; and a real `watchrun check --follow --json` beside it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from watchrun.engine import Engine
from watchrun.gpu import Sampler

TRAINER = textwrap.dedent(
    """
    import json, subprocess, sys
    out, grow_mb, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            for _ in range(workers)]
    hoard = []
    with open(out, "a", buffering=1) as fh:  # held open for writing, like CSVLogger
        for line in sys.stdin:  # one epoch per line the test sends
            epoch = int(line)
            hoard.append(bytearray(b"\\x01") * (grow_mb << 20))  # touched: resident
            fh.write(json.dumps({"step": 100 * (epoch + 1), "loss": 1.0 / (epoch + 1),
                                 "val_loss": 1.2 / (epoch + 1)}) + "\\n")
            print("done", flush=True)
    for k in kids:
        k.kill()
        k.wait()
    """
)


class Trainer:
    def __init__(self, tmp_path, grow_mb: int, workers: int = 2) -> None:
        run = tmp_path / "runs" / "exp"
        run.mkdir(parents=True)
        self.log = run / "metrics.jsonl"
        self.log.write_text("")
        script = tmp_path / "trainer.py"
        script.write_text(TRAINER)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(self.log), str(grow_mb), str(workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def epoch(self, n: int) -> None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"

    def finish(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(20)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def follow(tmp_path, trainer: Trainer, epochs: int) -> tuple[Engine, Sampler, list]:
    """Drive `epochs` epochs; after each, read the log, sample once, run the detectors."""
    engine = Engine([str(tmp_path / "runs")], use_watchdog=False)
    engine.load()
    sampler = Sampler(engine.store, path=str(tmp_path / "samples.jsonl"), interval=0.2)
    alerts = []
    for n in range(epochs):
        trainer.epoch(n)
        engine.poll()
        engine.update_statuses()
        time.sleep(0.2)  # the process view samples at most once per interval
        sampler.sample_once()
        alerts += engine.detect()
    return engine, sampler, alerts


def check_follow(root: Path, **popen: Any) -> subprocess.Popen[str]:
    """`watchrun check --follow --json` over `root`, polling every 0.2 s; alerts on stdout."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchrun.cli",
            "check",
            "--follow",
            "--json",
            "--poll",
            "0.2",
            str(root),
        ],
        stdout=subprocess.PIPE,
        text=True,
        **popen,
    )

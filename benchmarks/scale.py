"""Discovery at scale (issue 9 section 4): the first load of 10,000 files in one directory, and
the CPU that `watchrun check --follow` uses over 5,000 idle run directories with file events.

    python benchmarks/scale.py [FILES] [RUN_DIRS] [IDLE_SECONDS]

Prints figures, asserts nothing (targets: first load < 3 s, idle < 2% CPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

SRC = str(Path(__file__).resolve().parent.parent / "src")


def ten_thousand_files(root: Path, n: int) -> None:
    """One flat directory: n/2 small CSV histories, n/4 JSONL logs and n/4 files that are no log."""
    for i in range(n):
        kind = i % 4
        if kind in (0, 1):
            (root / f"run{i:05d}.csv").write_text(
                f"step,loss,acc\n1,{0.5 + i / 1e5},{0.1 + i / 1e6}\n"
            )
        elif kind == 2:
            (root / f"log{i:05d}.jsonl").write_text(f'{{"step": 1, "loss": {0.4 + i / 1e5}}}\n')
        else:
            (root / f"note{i:05d}.txt").write_text("nothing to see here\n")


def run_dirs(root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"exp{i // 100:02d}" / f"version_{i % 100}"
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text(
            f"step,epoch,loss\n1,0,{0.5 + i / 1e5}\n2,0,{0.4 + i / 1e5}\n"
        )
        (d / "hparams.yaml").write_text("lr: 0.001\n")


def first_load(root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "watchrun", "ls", "--json", str(root)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - t0
    runs = len(out.stdout.splitlines())
    sys.path.insert(0, SRC)
    from watchrun.engine import Engine

    e = Engine([str(root)], use_watchdog=False)
    t0 = time.perf_counter()
    e.load()
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    e.scan()
    rescan = time.perf_counter() - t0
    print(
        f"first load, {len(os.listdir(root))} files in one dir: `watchrun ls` {wall:.2f} s "
        f"(engine load {load:.2f} s, {e.discovery.sniffed} heads read, {runs} runs); "
        f"rescan of the unchanged tree {rescan:.2f} s"
    )


def idle_cpu(root: Path, seconds: float) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchrun", "check", "--follow", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    p = psutil.Process(proc.pid)
    try:
        t0 = time.perf_counter()
        # the first load is busy; idle starts when a whole second passes with little CPU
        while time.perf_counter() - t0 < 300:
            before = p.cpu_times()
            time.sleep(1.0)
            after = p.cpu_times()
            if (after.user + after.system) - (before.user + before.system) < 0.1:
                break
        loaded = time.perf_counter() - t0
        before = p.cpu_times()
        start = time.perf_counter()
        time.sleep(seconds)
        after = p.cpu_times()
        used = (after.user + after.system) - (before.user + before.system)
        share = 100 * used / (time.perf_counter() - start)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    overflows = err.decode("utf-8", "replace").count("overflow")
    print(
        f"idle, {sum(1 for _ in root.glob('*/*'))} run dirs, `check --follow` with file events: "
        f"{share:.2f}% CPU over {seconds:g} s (loaded and settled after {loaded:.1f} s; "
        f"{overflows} overflow messages)"
    )


def main() -> None:
    n_files = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_dirs = int(sys.argv[2]) if len(sys.argv) > 2 else 5_000
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    with tempfile.TemporaryDirectory() as tmp:
        flat = Path(tmp) / "flat"
        flat.mkdir()
        ten_thousand_files(flat, n_files)
        first_load(flat)
        many = Path(tmp) / "many"
        many.mkdir()
        run_dirs(many, n_dirs)
        idle_cpu(many, seconds)


if __name__ == "__main__":
    main()

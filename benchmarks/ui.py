"""UI costs: plot redraw time for 1k / 100k / 1M points (watchrun's braille plot vs plotext on
the same data, same size), and idle CPU of the app over 20 s watching 100 quiet runs, headless
(Textual's test driver) and in a real terminal (tmux). Usage: python benchmarks/ui.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from watchrun.app.widgets.plot import Curve, PlotData, render

WIDTH, HEIGHT = 120, 20


def redraw_ms(n: int, repeat: int = 20) -> float:
    x = np.arange(n, dtype=np.float64)
    y = 2 * np.exp(-x / (n / 5)) + 0.3 + np.random.default_rng(0).normal(0, 0.02, n)
    y2 = y + 0.05
    data = PlotData([Curve("train", x, y, "cyan"), Curve("val", x, y2, "magenta")])
    render(data, WIDTH, HEIGHT)
    t = time.perf_counter()
    for _ in range(repeat):
        render(data, WIDTH, HEIGHT)
    return (time.perf_counter() - t) / repeat * 1000


def plotext_ms(n: int, repeat: int = 3) -> float:
    try:
        import plotext as plt
    except ImportError:
        return float("nan")
    x = np.arange(n, dtype=np.float64)
    y = 2 * np.exp(-x / (n / 5)) + 0.3
    t = time.perf_counter()
    for _ in range(repeat):
        plt.clf()
        plt.plotsize(WIDTH, HEIGHT)
        plt.plot(x.tolist(), y.tolist(), marker="braille")
        plt.plot(x.tolist(), (y + 0.05).tolist(), marker="braille")
        plt.build()
    return (time.perf_counter() - t) / repeat * 1000


def make_runs(root: str, n: int = 100) -> None:
    from watchrun.demo import CsvWriter

    for r in range(n):
        w = CsvWriter(os.path.join(root, f"run{r:03d}", "lightning_logs", "version_0", "metrics.csv"),
                      ["train_loss", "val_loss"])
        for s in range(200):
            w.write(s, {"train_loss": 1 / (s + 1), "val_loss": 1.1 / (s + 1)})
        w.close()
    quiet = time.time() - 3600  # quiet runs: nothing written for an hour
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), (quiet, quiet))


def idle_headless(root: str, seconds: float) -> float:
    from watchrun.app.app import WatchrunApp
    from watchrun.config import Config

    async def go() -> float:
        app = WatchrunApp([root], Config())
        async with app.run_test(size=(120, 40)) as pilot:
            while len(app.row_keys) < 100:
                await pilot.pause(0.2)
            await pilot.pause(3)
            c0, t0 = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            return (time.process_time() - c0) / (time.monotonic() - t0) * 100

    return asyncio.run(go())


def idle_tmux(root: str, seconds: float) -> float:
    import psutil

    if not shutil.which("tmux"):
        return float("nan")
    session = "watchrun-bench-ui"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                    f"{sys.executable} -m watchrun.cli {root}"], check=True)
    try:
        time.sleep(8)
        proc = next(p for p in psutil.process_iter(["cmdline"])
                    if (p.info["cmdline"] or [])[1:3] == ["-m", "watchrun.cli"] and root in " ".join(p.info["cmdline"]))
        c0 = sum(proc.cpu_times()[:2])
        t0 = time.monotonic()
        time.sleep(seconds)
        return (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0) * 100
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def main() -> None:
    quick = "--quick" in sys.argv
    seconds = 5.0 if quick else 20.0
    print(f"plot redraw, {WIDTH}x{HEIGHT} cells, two curves")
    for n in (1_000, 100_000, 1_000_000):
        ours, ref = redraw_ms(n), plotext_ms(n)
        print(f"  {n:>9,} points: watchrun {ours:7.2f} ms   plotext {ref:9.1f} ms   ratio x{ref / ours:6.1f}")
    root = tempfile.mkdtemp(prefix="watchrun-ui-bench-")
    try:
        make_runs(root)
        print(f"idle CPU with 100 quiet runs over {seconds:g} s:")
        print(f"  headless (Textual test driver): {idle_headless(root, seconds):5.2f} % of a core")
        print(f"  in tmux (real terminal):        {idle_tmux(root, seconds):5.2f} % of a core")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

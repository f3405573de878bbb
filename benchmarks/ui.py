"""UI costs, printed (never asserted):

- plot redraw per series length: the plotext figure fed with min/max-decimated points (what the
  app draws), plotext fed with every point (what decimation saves), and the hand-written braille
  renderer this replaced (its figures measured on this machine class before it was removed);
- the snapshot the engine publishes per tick (plot-sized slices) against a whole-run copy;
- first frame and full load with many runs, and idle CPU with 100 quiet runs (headless Textual
  driver and a real terminal in tmux).

Usage: python benchmarks/ui.py [--quick]
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

from watchrun.app.plotting import Curve, Figure, new_figure, render

WIDTH, HEIGHT = 120, 20
# the removed hand-written renderer at 120x20, two curves (benchmarks/ui.py before the rebuild)
OLD_RENDERER_MS = {1_000: 1.94, 100_000: 2.07, 1_000_000: 5.5}


def _curves(n: int) -> tuple[Curve, Curve]:
    x = np.arange(n, dtype=np.float64)
    y = 2 * np.exp(-x / (n / 5)) + 0.3 + np.random.default_rng(0).normal(0, 0.02, n)
    return Curve("train", x, y, "#5fafff"), Curve("val", x, y + 0.05, "#ff87d7")


def redraw_ms(n: int, repeat: int = 10) -> float:
    """What the app does per redraw: decimate to the plot's columns, build the figure."""
    fig = Figure(_curves(n), marks=(n / 2,))
    plot = new_figure()
    render(fig, WIDTH, HEIGHT, plot)
    t = time.perf_counter()
    for _ in range(repeat):
        render(fig, WIDTH, HEIGHT, plot)
    return (time.perf_counter() - t) / repeat * 1000


def app_redraw_ms(n: int, repeat: int = 10) -> float:
    """The app's path at any length: the engine has already reduced each series to its
    plot-sized slice (snapshot.reduce_series), the widget renders that."""
    from watchrun.snapshot import reduce_series

    curves = []
    for c in _curves(n):
        x, y, _ = reduce_series(c.x, c.y, c.x)
        curves.append(Curve(c.name, x, y, c.color))
    fig = Figure(tuple(curves), marks=(n / 2,))
    plot = new_figure()
    render(fig, WIDTH, HEIGHT, plot)
    t = time.perf_counter()
    for _ in range(repeat):
        render(fig, WIDTH, HEIGHT, plot)
    return (time.perf_counter() - t) / repeat * 1000


def engine_alone_s(root: str) -> float:
    """The same first read and detection without the UI (what the app waits for)."""
    from watchrun.engine import Engine

    t = time.monotonic()
    engine = Engine([root])
    engine.load()
    engine.detect()
    engine.detect(final=True)
    return time.monotonic() - t


def plotext_undecimated_ms(n: int, repeat: int = 2) -> float:
    import plotext

    curves = _curves(n)
    t = time.perf_counter()
    for _ in range(repeat):
        f = new_figure()
        f.plot_size(WIDTH, HEIGHT)
        for c in curves:
            s = f.signal(c.x.tolist(), c.y.tolist(), marker=plotext.marker("braille"))
            s.lines(True)
            f.draw(s)
        f.build().string()
    return (time.perf_counter() - t) / repeat * 1000


def snapshot_ms(n: int) -> tuple[float, float]:
    """(publish after one new point, a whole-run copy) for one run of 4 series x n points."""
    from watchrun.engine import Engine

    engine = Engine([tempfile.gettempdir()])
    steps = np.arange(n)
    for name in ("loss", "val_loss", "lr", "grad_norm"):
        engine.store.add_points(
            "run", "bench", name, steps, np.sin(steps / 1000.0), np.full(n, 1.7e9)
        )
    engine.publish()
    engine.store.add_points("run", "bench", "loss", [n], [0.1], [1.7e9])
    t = time.perf_counter()
    engine.publish()
    publish = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    engine.store.snapshot("run")
    return publish, (time.perf_counter() - t) * 1000


def make_runs(root: str, n: int, steps: int = 200) -> None:
    from watchrun.demo import CsvWriter

    for r in range(n):
        w = CsvWriter(
            os.path.join(root, f"run{r:04d}", "lightning_logs", "version_0", "metrics.csv"),
            ["train_loss", "val_loss"],
        )
        for s in range(steps):
            w.write(s, {"train_loss": 1 / (s + 1), "val_loss": 1.1 / (s + 1)})
        w.close()
    quiet = time.time() - 3600  # quiet runs: nothing written for an hour
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), (quiet, quiet))


def load_times(root: str, runs: int) -> tuple[float, float]:
    """(first frame with a run listed, every run listed and detected) in seconds."""
    from watchrun.app.app import WatchrunApp
    from watchrun.config import Config

    async def go() -> tuple[float, float]:
        t0 = time.monotonic()
        app = WatchrunApp([root], Config(), quiet=True)
        first = full = float("nan")
        async with app.run_test(size=(120, 40)) as pilot:
            while time.monotonic() - t0 < 120:
                if first != first and app.snapshot.runs:
                    first = time.monotonic() - t0
                if app.ready and len(app.snapshot.runs) == runs:
                    full = time.monotonic() - t0
                    break
                await pilot.pause(0.02)
        return first, full

    return asyncio.run(go())


def idle_headless(root: str, seconds: float) -> float:
    from watchrun.app.app import WatchrunApp
    from watchrun.config import Config

    async def go() -> float:
        app = WatchrunApp([root], Config(), quiet=True)
        async with app.run_test(size=(120, 40)) as pilot:
            while not (app.ready and len(app.snapshot.runs) == 100):
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
    session = f"watchrun-bench-ui-{os.getpid()}"
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "120",
            "-y",
            "40",
            f"{sys.executable} -m watchrun.cli {root}",
        ],
        check=True,
    )
    try:
        time.sleep(8)
        proc = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[1:3] == ["-m", "watchrun.cli"]
            and root in " ".join(p.info["cmdline"])
        )
        c0 = sum(proc.cpu_times()[:2])
        t0 = time.monotonic()
        time.sleep(seconds)
        return (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0) * 100
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def main() -> None:
    quick = "--quick" in sys.argv
    seconds = 5.0 if quick else 20.0
    print(f"plot redraw, {WIDTH}x{HEIGHT} cells, two curves (ms)")
    print(
        f"  {'points':>10}  {'app (snapshot slice)':>20}  {'plotext+decimation':>18}  "
        f"{'plotext, all points':>19}  {'old renderer':>12}"
    )
    for n in (1_000, 100_000, 1_000_000):
        app, ours = app_redraw_ms(n), redraw_ms(n)
        full = plotext_undecimated_ms(n) if n <= 100_000 else float("nan")
        print(
            f"  {n:>10,}  {app:>20.1f}  {ours:>18.1f}  {full:>19.1f}  {OLD_RENDERER_MS[n]:>12.2f}"
        )
    print(
        "snapshot per tick, one run of 4 series (ms): "
        "publish after one new point vs a whole-run copy"
    )
    for n in (10_000, 1_000_000):
        pub, copy = snapshot_ms(n)
        print(f"  {n:>10,} points/series: publish {pub:6.2f}   store.snapshot copy {copy:7.2f}")
    root = tempfile.mkdtemp(prefix="watchrun-ui-bench-")
    try:
        big = 200 if quick else 1000
        make_runs(os.path.join(root, "many"), big, steps=100 if quick else 2000)
        first, full = load_times(os.path.join(root, "many"), big)
        alone = engine_alone_s(os.path.join(root, "many"))
        print(
            f"{big} runs: first run listed {first:.2f} s, all listed and detected {full:.2f} s "
            f"(the engine alone, same read and detection: {alone:.2f} s)"
        )
        make_runs(os.path.join(root, "quiet"), 100)
        print(f"idle CPU with 100 quiet runs over {seconds:g} s:")
        headless = idle_headless(os.path.join(root, "quiet"), seconds)
        print(f"  headless (Textual test driver): {headless:5.2f} % of a core")
        in_tmux = idle_tmux(os.path.join(root, "quiet"), seconds)
        print(f"  in tmux (real terminal):        {in_tmux:5.2f} % of a core")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

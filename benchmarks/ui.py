"""UI costs, printed (never asserted). Run it alone: on a shared machine every figure stretches
with the load: redraws are the best of several tries in CPU time, the load average is printed.

- plot redraw per series length (1k, 100k, 1M, 10M points): what the app does when a plotted
  series gets a point (the engine's plot-sized slice -> figure -> plotext with min/max
  decimation to the plot's columns -> Rich lines), plotext with decimation fed the raw arrays
  (a first draw, and a redraw of the same version: decimation remembered), plotext fed every
  point, and the hand-written renderer that plotext replaced (figures measured before it went);
- the snapshot the engine publishes per tick (plot-sized slices) against a whole-run copy;
- 1,000 runs x 10 tags x 2k steps (TensorBoard event files written by tensorboard's own
  EventFileWriter): first frame (runs listed) and full load (all read, detected, listed), with
  the CPU split between the engine's thread and the UI's, and the engine alone for reference,
  each in a fresh interpreter;
- idle CPU with 100 quiet runs (headless Textual driver and a real terminal in tmux).

Usage: python benchmarks/ui.py [--quick]   (WATCHRUN_BENCH_DIR: where the 1,000 runs are kept)
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from rich.console import Console

from watchrun.app.plotting import Curve, Figure, new_figure, render

WIDTH, HEIGHT = 120, 20
LENGTHS = (1_000, 100_000, 1_000_000, 10_000_000)
# the removed hand-written renderer at 120x20, two curves (benchmarks/ui.py before the rebuild)
OLD_RENDERER_MS = {1_000: 1.94, 100_000: 2.07, 1_000_000: 5.5}
CACHE = os.environ.get("WATCHRUN_BENCH_DIR", "/tmp/watchrun-bench2")
CONSOLE = Console(width=WIDTH, file=io.StringIO(), color_system="truecolor")


def best_ms(fn, repeat: int = 7) -> float:  # type: ignore[no-untyped-def]
    """The best of `repeat` calls, in ms of this thread's CPU time: on a shared machine the
    wall clock also counts the time spent waiting for a core (printed apart, see main)."""
    times = []
    for _ in range(repeat):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return min(times) * 1000


def _xy(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.arange(n, dtype=np.float64)
    y = 2 * np.exp(-x / (n / 5)) + 0.3 + np.random.default_rng(0).normal(0, 0.02, n)
    return x, y, y + 0.05


def _curves(n: int) -> tuple[Curve, Curve]:
    x, train, val = _xy(n)
    return Curve("train", x, train, "#5fafff"), Curve("val", x, val, "#ff87d7")


def app_redraw_ms(n: int) -> float:
    """A plotted series of n points gets one more: the app receives the engine's new slice
    (new arrays: nothing remembered) and draws it: figure, plotext, Rich lines."""
    from watchrun.app.theme import Palette
    from watchrun.app.widgets.curves import figure_for
    from watchrun.engine import Engine

    engine = Engine([tempfile.gettempdir()], bounded=True)
    x, train, val = _xy(n)
    walls = np.full(n, 1.7e9)
    engine.store.add_points("run", "bench", "train_loss", x.astype(np.int64), train, walls)
    engine.store.add_points("run", "bench", "val_loss", x.astype(np.int64), val, walls)
    del x, train, val, walls
    run = engine.publish().runs["run"]
    palette, plot = Palette(), new_figure()
    names = ["train_loss", "val_loss"]

    def redraw() -> None:
        views = {k: _copy_view(v) for k, v in run.series.items()}  # a new version's arrays
        fig = figure_for(_with_series(run, views), names, palette)
        CONSOLE.render_lines(render(fig, WIDTH, HEIGHT, plot), CONSOLE.options)

    return best_ms(redraw)


def _copy_view(view):  # type: ignore[no-untyped-def]
    import dataclasses

    arrays = {k: getattr(view, k).copy() for k in ("steps", "values", "wall_offsets")}
    for a in arrays.values():
        a.flags.writeable = False
    return dataclasses.replace(view, **arrays)


def _with_series(run, series):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(run, series=series)


def raw_ms(n: int) -> tuple[float, float]:
    """plotext with decimation fed the raw arrays: (a first draw, a redraw of that version)."""
    train, val = _curves(n)
    plot = new_figure()
    first = best_ms(lambda: render(Figure((train, val)), WIDTH, HEIGHT, plot), repeat=3)
    for c in (train, val):
        c.x.flags.writeable = c.y.flags.writeable = False
    fig = Figure((train, val))
    render(fig, WIDTH, HEIGHT, plot)
    return first, best_ms(lambda: render(fig, WIDTH, HEIGHT, plot))


def plotext_undecimated_ms(n: int) -> float:
    import plotext

    curves = _curves(n)

    def draw() -> None:
        f = new_figure()
        f.plot_size(WIDTH, HEIGHT)
        for c in curves:
            s = f.signal(c.x.tolist(), c.y.tolist(), marker=plotext.marker("braille"))
            s.lines(True)
            f.draw(s)
        f.build().string()

    return best_ms(draw, repeat=2)


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


def make_tb_runs(root: str, runs: int, steps: int = 2_000) -> None:
    """`runs` runs of 10 tags x `steps` steps: ten written by tensorboard's EventFileWriter,
    their event files copied to make the rest (kept in CACHE for the next time), all quiet."""
    if os.path.exists(os.path.join(root, ".done")):
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from ingest import write_run

    protos = root + "-written"
    for i in range(10):
        if not os.path.isdir(os.path.join(protos, f"p{i}")):
            write_run(os.path.join(protos, f"p{i}"), steps)
    for r in range(runs):
        src = os.path.join(protos, f"p{r % 10}")
        name = os.listdir(src)[0]
        os.makedirs(os.path.join(root, f"run_{r:04d}"), exist_ok=True)
        shutil.copyfile(os.path.join(src, name), os.path.join(root, f"run_{r:04d}", name))
    quiet = time.time() - 3600
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f), (quiet, quiet))
    open(os.path.join(root, ".done"), "w").close()


def load_times(root: str, runs: int) -> dict[str, float]:
    """First frame (runs listed) and full load (every run read, detected and listed), in
    seconds from the app's start; the CPU seconds of the UI thread and of the engine's steps."""
    from watchrun.app.app import WatchrunApp
    from watchrun.config import Config
    from watchrun.engine import Engine

    cpu: dict[str, float] = {}

    def timed(name: str):  # type: ignore[no-untyped-def]
        method = getattr(Engine, name)

        @functools.wraps(method)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            c = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                cpu[name] = cpu.get(name, 0.0) + time.thread_time() - c

        return method, wrapper

    saved = {}
    for name in ("load", "detect", "publish"):
        saved[name], wrapper = timed(name)
        setattr(Engine, name, wrapper)

    async def go() -> dict[str, float]:
        t0, c0 = time.monotonic(), time.process_time()
        app = WatchrunApp([root], Config(), quiet=True)
        out = {"first": float("nan"), "full": float("nan")}
        async with app.run_test(size=(120, 40)):
            ui0 = time.thread_time()
            while time.monotonic() - t0 < 600:
                if out["first"] != out["first"] and app.main.query_one("#runs").row_count:
                    out["first"] = time.monotonic() - t0
                    out["first_cpu"] = time.process_time() - c0
                if app.ready and len(app.snapshot.runs) == runs:
                    out["full"] = time.monotonic() - t0
                    out["full_cpu"] = time.process_time() - c0
                    break
                await asyncio.sleep(0.05)  # not pilot.pause: it wakes every widget
            out["ui_cpu"] = time.thread_time() - ui0
        return out

    try:
        out = asyncio.run(go())
    finally:
        for name, method in saved.items():
            setattr(Engine, name, method)
    out.update({f"engine_{k}_cpu": v for k, v in cpu.items()})
    return out


def engine_alone_s(root: str) -> tuple[float, float]:
    """(wall, CPU) seconds of the same first read and detection without the UI."""
    from watchrun.engine import Engine

    t, c = time.monotonic(), time.process_time()
    engine = Engine([root], bounded=True)
    engine.detectors  # noqa: B018 - made before the read, as the app does: detection per run
    engine.load()
    engine.detect()
    engine.detect(final=True)
    engine.publish()
    return time.monotonic() - t, time.process_time() - c


def load_in_fresh_processes(root: str, runs: int) -> tuple[dict[str, float], float, float]:
    """load_times and engine_alone_s, each in a new interpreter, as a user starts the app: in
    this one, the plot figures above leave 10M-point arrays and a heap that slow a load 2x.
    The event files are read once before (the page cache warm for both)."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass
    here = os.path.abspath(__file__)
    out = []
    for what in ("--app-load", "--engine-load"):
        done = subprocess.run(
            [sys.executable, here, what, root, str(runs)],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out[0], out[1]["wall"], out[1]["cpu"]


def main() -> None:
    if sys.argv[1:2] == ["--app-load"]:
        print(json.dumps(load_times(sys.argv[2], int(sys.argv[3]))))
        return
    if sys.argv[1:2] == ["--engine-load"]:
        wall, cpu = engine_alone_s(sys.argv[2])
        print(json.dumps({"wall": wall, "cpu": cpu}))
        return
    quick = "--quick" in sys.argv
    seconds = 5.0 if quick else 20.0
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"plot redraw, {WIDTH}x{HEIGHT} cells, two curves, best of several (ms of CPU)")
    print(
        f"  {'points':>10}  {'app: new point':>14}  {'decimated, 1st':>14}  "
        f"{'same version':>12}  {'all points':>10}  {'old renderer':>12}"
    )
    for n in LENGTHS[:3] if quick else LENGTHS:
        app = app_redraw_ms(n)
        first, again = raw_ms(n)
        full = plotext_undecimated_ms(n) if n <= 100_000 else float("nan")
        old = OLD_RENDERER_MS.get(n, float("nan"))
        print(
            f"  {n:>10,}  {app:>14.1f}  {first:>14.1f}  {again:>12.1f}  {full:>10.1f}  {old:>12.2f}"
        )
    print("  app: the engine's slice (<= 4096 points) -> figure -> plotext -> Rich lines;")
    print("  decimated: plotext fed the raw arrays, min/max per column first (a first draw, and")
    print("  a redraw of the same version, decimation remembered); all points: no decimation")
    print(
        "snapshot per tick, one run of 4 series (ms): publish after one new point, whole-run copy"
    )
    for n in (10_000, 1_000_000):
        pub, copy = snapshot_ms(n)
        print(f"  {n:>10,} points/series: publish {pub:6.2f}   store.snapshot copy {copy:7.2f}")
    big = 200 if quick else 1000
    many = os.path.join(CACHE, f"ui-tb-{big}")
    make_tb_runs(many, big)
    t, alone, alone_cpu = load_in_fresh_processes(many, big)
    print(
        f"{big} runs x 10 tags x 2k steps (TensorBoard): first frame {t['first']:.2f} s "
        f"({t.get('first_cpu', 0):.2f} s CPU; target <= 1), full load {t['full']:.2f} s "
        f"({t.get('full_cpu', 0):.2f} s CPU; target <= 5)"
    )
    print(
        f"  CPU s: UI thread {t['ui_cpu']:.2f}; engine load {t.get('engine_load_cpu', 0):.2f} "
        f"(read + per-run detection), detect {t.get('engine_detect_cpu', 0):.2f}, "
        f"publish {t.get('engine_publish_cpu', 0):.2f}"
    )
    print(f"  the engine alone, same read and detection: {alone:.2f} s ({alone_cpu:.2f} s CPU)")
    root = tempfile.mkdtemp(prefix="watchrun-ui-bench-")
    try:
        make_runs(os.path.join(root, "quiet"), 100)
        print(f"idle CPU with 100 quiet runs over {seconds:g} s (target < 0.5 %):")
        headless = idle_headless(os.path.join(root, "quiet"), seconds)
        print(f"  headless (Textual test driver): {headless:5.2f} % of a core")
        tmux = idle_tmux(os.path.join(root, "quiet"), seconds)
        print(f"  in tmux (real terminal):        {tmux:5.2f} % of a core")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

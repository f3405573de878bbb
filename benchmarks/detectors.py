"""Detector cost (issue 13): what `check` adds to `ls`, on long runs with faults, and per
appended event as a run grows.

(a) 100 runs with the tags real libraries write (HF Trainer's TensorBoard callback: train/loss,
    train/learning_rate, train/grad_norm, eval/* every few hundred steps; Lightning: *_step and
    *_epoch losses, lr-AdamW, per-class validation accuracy): `watchrun ls` and `watchrun check`
    timed from spawn, imports included (target: check < 2x ls).
(b) 6 runs of 400k points each with a fault (a loss that diverges in mid-run, a NaN loss,
    overfitting, gradient spikes, a loss stuck at chance, frozen eval metrics): `check` on
    each run alone and `ls` of the same run (target: all six in a few seconds).
(c) the cost of one appended TensorBoard event in follow mode, by run length (1k ... 1M points):
    the run is loaded and judged, then events are appended one at a time, each followed by a
    read of the file and a detector pass, as `check --follow` does on a file event (target:
    <= 0.5 ms per event, flat in the run's length).

Event files are framed by watchrun's TFRecord `frame` from tensorboard's Event protos (the bytes
tensorboard's EventFileWriter writes; its pure-Python CRC would make writing 5M events slow) into
a cache directory, written once.

    python benchmarks/detectors.py [--quick] [--only a,b,c]
"""

from __future__ import annotations

import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = str(ROOT / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

CACHE = Path(os.environ.get("WATCHRUN_BENCH_DIR", "/tmp/watchrun-bench2")) / "detectors"
Rows = Iterator[tuple[int, dict[str, float]]]  # (step, {tag: value}) in the order written


# -- writing ---------------------------------------------------------------------------------------
def event_bytes(step: int, tag: str, value: float, wall: float) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    from watchrun.sources.tensorboard import frame

    ev = event_pb2.Event(
        wall_time=wall,
        step=step,
        summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]),
    )
    return frame(ev.SerializeToString())


def write_events(logdir: Path, rows: Rows, name: str = "") -> Path:
    """One event file in `logdir` (named as tensorboard's EventFileWriter names it, with this
    process's pid), a file version event first as tensorboard's writers do."""
    from tensorboard.compat.proto import event_pb2

    from watchrun.sources.tensorboard import frame

    logdir.mkdir(parents=True, exist_ok=True)
    path = logdir / (name or f"events.out.tfevents.1700000000.benchhost.{os.getpid()}.0")
    with open(path, "wb") as fh:
        head = event_pb2.Event(wall_time=1.7e9, file_version="brain.Event:2")
        fh.write(frame(head.SerializeToString()))
        chunk: list[bytes] = []
        for step, values in rows:
            for tag, v in values.items():
                chunk.append(event_bytes(step, tag, v, 1.7e9 + step))
            if len(chunk) > 10_000:
                fh.write(b"".join(chunk))
                chunk.clear()
        fh.write(b"".join(chunk))
    return path


def _cached(folder: Path, make: Callable[[Path], None]) -> Path:
    done = folder / ".done"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        make(folder)
        done.touch()
    return folder


def hf_rows(steps: int, rng: random.Random, every: int = 5, eval_every: int = 500) -> Rows:
    """HF Trainer's TensorBoard callback: the train tags every `every` steps, eval/* at evals."""
    for s in range(every, steps + 1, every):
        p = 1 - math.exp(-s / (steps / 4))
        yield (
            s,
            {
                "train/loss": 2.2 * (1 - p) + 0.25 + rng.gauss(0, 0.03),
                "train/learning_rate": 5e-5 * (1 - s / steps),
                "train/grad_norm": abs(rng.lognormvariate(0.5, 0.3)),
                "train/epoch": 3 * s / steps,
            },
        )
        if s % eval_every == 0:
            yield (
                s,
                {
                    "eval/loss": 2.2 * (1 - p) + 0.3 + rng.gauss(0, 0.01),
                    "eval/accuracy": 0.3 + 0.6 * p + rng.gauss(0, 0.005),
                    "eval/f1": 0.25 + 0.62 * p + rng.gauss(0, 0.005),
                    "eval/precision": 0.3 + 0.6 * p + rng.gauss(0, 0.005),
                    "eval/recall": 0.28 + 0.6 * p + rng.gauss(0, 0.005),
                    "eval/runtime": 12.0 + rng.gauss(0, 0.3),
                    "eval/samples_per_second": 410 + rng.gauss(0, 5),
                    "eval/steps_per_second": 51 + rng.gauss(0, 0.6),
                    "train/epoch": 3 * s / steps,
                },
            )


def lightning_rows(steps: int, rng: random.Random, every: int = 5, epoch_len: int = 500) -> Rows:
    """Lightning's TensorBoardLogger: *_step every few steps, *_epoch and per-class val metrics
    at each epoch's end, lr-AdamW from LearningRateMonitor."""
    for s in range(every, steps + 1, every):
        p = 1 - math.exp(-s / (steps / 4))
        epoch = s // epoch_len
        yield (
            s,
            {
                "train_loss_step": 2.3 * (1 - p) + 0.2 + rng.gauss(0, 0.05),
                "train_acc_step": 0.1 + 0.8 * p + rng.gauss(0, 0.02),
                "lr-AdamW": 1e-3 * 0.5 * (1 + math.cos(math.pi * s / steps)),
                "epoch": float(epoch),
            },
        )
        if s % epoch_len == 0:
            row = {
                "train_loss_epoch": 2.3 * (1 - p) + 0.2 + rng.gauss(0, 0.01),
                "train_acc_epoch": 0.1 + 0.8 * p + rng.gauss(0, 0.005),
                "val_loss": 2.3 * (1 - p) + 0.25 + rng.gauss(0, 0.01),
                "val_acc": 0.1 + 0.78 * p + rng.gauss(0, 0.005),
                "val_f1": 0.08 + 0.78 * p + rng.gauss(0, 0.005),
            }
            for c in range(10):
                row[f"val_acc_class_{c}"] = 0.1 + (0.7 + c / 50) * p + rng.gauss(0, 0.01)
            yield s, row


def realistic_runs(n: int, steps: int) -> Path:
    def make(folder: Path) -> None:
        for i in range(n):
            rng = random.Random(i)
            rows = hf_rows(steps, rng) if i % 2 == 0 else lightning_rows(steps, rng)
            name = f"hf-{i:03d}/runs" if i % 2 == 0 else f"lightning_logs/version_{i}"
            write_events(folder / name, rows)

    return _cached(CACHE / f"realistic-{n}x{steps}", make)


# -- (b) long runs with faults ------------------------------------------------------------------
def fault_rows(kind: str, steps: int, rng: random.Random) -> Rows:
    """4 tags a step and 3 eval tags every 500 steps: about 4 x `steps` points."""
    for s in range(1, steps + 1):
        p = 1 - math.exp(-s / (steps / 5))
        loss = 2.0 * (1 - p) + 0.3 + rng.gauss(0, 0.02)
        grad = abs(rng.lognormvariate(0.0, 0.2))
        if kind == "divergence" and s > steps * 0.6:
            loss *= math.exp(min(30.0, (s - steps * 0.6) / (steps * 0.01)))
        if kind == "nan" and s > steps * 0.7:
            loss = math.nan
        if kind == "grad_spikes" and s % (steps // 7) == 0:
            grad *= 200
        if kind == "at_chance":
            loss = math.log(10) + rng.gauss(0, 0.01)
        yield (
            s,
            {
                "train/loss": loss,
                "train/learning_rate": 1e-3 * min(1.0, s / 1000) * (1 - s / (steps + 1)),
                "train/grad_norm": grad,
                "train/epoch": 20 * s / steps,
            },
        )
        if s % 500 == 0:
            val = 2.0 * (1 - p) + 0.35 + rng.gauss(0, 0.005)
            acc = 0.3 + 0.6 * p + rng.gauss(0, 0.003)
            if kind == "overfitting" and s > steps * 0.3:
                val += 0.8 * (s - steps * 0.3) / steps
            if kind == "at_chance":
                val, acc = math.log(10) + rng.gauss(0, 0.005), 0.1 + rng.gauss(0, 0.003)
            if kind == "frozen" and s > steps * 0.4:
                val, acc = 0.61234, 0.80125
            yield s, {"eval/loss": val, "eval/accuracy": acc}


FAULTS = ["divergence", "nan", "overfitting", "grad_spikes", "at_chance", "frozen"]


def fault_runs(steps: int) -> Path:
    def make(folder: Path) -> None:
        for i, kind in enumerate(FAULTS):
            write_events(folder / kind, fault_rows(kind, steps, random.Random(i)))

    return _cached(CACHE / f"faults-{steps}", make)


# -- timing from spawn ---------------------------------------------------------------------------
def cli_seconds(command: str, path: Path, tries: int) -> float:
    """The best of `tries` fresh `watchrun COMMAND PATH` processes, imports included."""
    best = math.inf
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(tries):
        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "watchrun", command, str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
        best = min(best, time.perf_counter() - t)
        if out.returncode not in (0, 1):
            raise SystemExit(f"watchrun {command} {path} failed: {out.stderr[-500:]}")
    return best


def check_vs_ls(path: Path, tries: int) -> tuple[float, float]:
    return cli_seconds("ls", path, tries), cli_seconds("check", path, tries)


def alerts_of(path: Path) -> str:
    from watchrun.engine import Engine

    e = Engine([str(path)], use_watchdog=False, bounded=True)
    e.detectors.watch_roots = e.roots  # attached before the load, as `watchrun check` does
    e.check()
    alerts = [a for key in e.store.runs for a in e.store.alerts_for(key)]
    return ", ".join(sorted({f"{a.detector}@{a.step}" for a in alerts})) or "-"


# -- (c) one appended event ----------------------------------------------------------------------
TAGS = ["train/loss", "train/learning_rate", "train/grad_norm", "train/epoch"]


def grown_run(points: int) -> Path:
    steps = points // 4

    def make(folder: Path) -> None:
        write_events(folder / "run", fault_rows("healthy", steps, random.Random(7)))

    return _cached(CACHE / f"grown-{points}", make)


def append_cost(src: Path, events: int) -> tuple[float, float, float, float]:
    """Median and p95 microseconds per appended event (read + detectors), the detectors'
    median share, and the median of the events that settle a step (the first event of a step
    settles the previous one: the detectors judge its points), on a copy of the run `src`
    loaded and judged in follow mode."""
    from watchrun.engine import Engine

    tmp = Path(tempfile.mkdtemp(prefix="watchrun-append-"))
    try:
        shutil.copytree(src / "run", tmp / "run")
        f = next((tmp / "run").glob("events.out.tfevents.*"))
        e = Engine([str(tmp)], use_watchdog=False, bounded=True)
        e.detectors.watch_roots = e.roots  # attached before the load, as `watchrun check` does
        e.load()
        e.detect()
        first = (e.store.runs[next(iter(e.store.runs))].last_step() or 0) + 1
        rng = random.Random(1)
        totals, detects = [], []
        for i in range(events):
            step = first + i // len(TAGS)
            tag = TAGS[i % len(TAGS)]
            value = {"train/loss": 0.3 + rng.gauss(0, 0.02), "train/epoch": 20.0}.get(tag, 1e-6)
            with open(f, "ab") as fh:
                fh.write(event_bytes(step, tag, value, 2e9 + i))
            t0 = time.perf_counter()
            e.poll(paths={str(f)})
            t1 = time.perf_counter()
            e.detect()
            t2 = time.perf_counter()
            totals.append(t2 - t0)
            detects.append(t2 - t1)
    finally:
        shutil.rmtree(tmp)
    settling = statistics.median(totals[len(TAGS) :: len(TAGS)])
    totals.sort()
    p95 = totals[int(0.95 * (len(totals) - 1))]
    median = statistics.median(totals)
    return median * 1e6, p95 * 1e6, statistics.median(detects) * 1e6, settling * 1e6


def main() -> None:
    quick = "--quick" in sys.argv
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else "abc"
    tries = 1 if quick else 2
    if "a" in only:
        n, steps = (20, 20_000) if quick else (100, 20_000)
        path = realistic_runs(n, steps)
        ls, check = check_vs_ls(path, tries)
        print(f"(a) {n} realistic runs (HF + Lightning tags), {path}")
        print(
            f"    ls {ls:6.2f} s   check {check:6.2f} s   check/ls x{check / ls:.2f} (target < 2)"
        )
    if "b" in only:
        steps = 20_000 if quick else 100_000
        path = fault_runs(steps)
        print(f"(b) 6 runs x ~{4 * steps // 1000}k points with a fault, {path}")
        total = 0.0
        for kind in FAULTS:
            ls, check = check_vs_ls(path / kind, 1)
            total += check
            print(
                f"    {kind:<12} ls {ls:6.2f} s   check {check:6.2f} s   x{check / ls:5.2f}"
                f"   alerts: {alerts_of(path / kind)}"
            )
        print(f"    all six: check {total:.2f} s (target: a few seconds)")
    if "c" in only:
        print("(c) one appended event, read + detectors, by run length (target <= 500 us, flat)")
        sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 400_000, 1_000_000]
        for points in sizes:
            med, p95, det, settle = append_cost(grown_run(points), 400)
            print(
                f"    {points:>9,} points: median {med:5.0f} us  p95 {p95:6.0f} us  "
                f"(detectors {det:4.0f} us)  an event that settles a step {settle:5.0f} us"
            )


if __name__ == "__main__":
    main()

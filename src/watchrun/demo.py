"""Simulated training runs that write real log files at a chosen pace.

Five runs, each through a real writer: TensorBoard event files via the tensorboard package's
EventFileWriter (what torch's SummaryWriter uses), an HF-style trainer_state.json rewritten at each
save, a Lightning-style metrics.csv, a Keras-style CSVLogger file, and a watchrun.jsonl.
Used by `watchrun demo`, the tests and the benchmarks.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

Point = tuple[int, dict[str, float]]  # (step, metrics)


# -- scenarios: (step, metrics) streams --------------------------------------------------------
def healthy(steps: int = 600, eval_every: int = 50, seed: int = 0) -> Iterator[Point]:
    rng = random.Random(seed)
    for s in range(1, steps + 1):
        loss = 0.25 + 2.0 * math.exp(-s / 120) + rng.gauss(0, 0.03)
        row = {"train/loss": loss, "train/lr": 1e-3 * min(1, s / 50) * (1 - s / (steps + 1))}
        if s % eval_every == 0:
            row["val/loss"] = 0.3 + 2.0 * math.exp(-s / 130) + rng.gauss(0, 0.01)
            row["val/accuracy"] = 0.95 - 0.6 * math.exp(-s / 120)
        yield s, row


def overfitting(steps: int = 1500, eval_every: int = 50, seed: int = 1) -> Iterator[Point]:
    rng = random.Random(seed)
    for s in range(25, steps + 1, 25):
        row = {
            "loss": 0.08 + 0.25 * math.exp(-s / 500) + rng.gauss(0, 0.005),
            "learning_rate": 5e-5 * (1 - s / steps),
            "grad_norm": 2 + rng.random(),
        }
        if s % eval_every == 0:
            row["eval_loss"] = (
                0.216
                + 0.09 * ((s - 450) / 1000) ** 2 * (1 if s > 450 else 0.6)
                + rng.gauss(0, 0.002)
            )
            row["eval_f1"] = 0.86 + rng.gauss(0, 0.005)
        yield s, row


def ctc_blank(epochs: int = 30, seed: int = 2) -> Iterator[Point]:
    rng = random.Random(seed)
    for e in range(epochs):
        yield (
            e,
            {
                "train_loss": 2.6 - 0.6 * (1 - math.exp(-e / 5)) + rng.gauss(0, 0.01),
                "val_loss": 2.55 - 0.5 * (1 - math.exp(-e / 5)) + rng.gauss(0, 0.01),
                "val_wer": 1.0,
                "val_cer": 0.91 + rng.random() * 0.05,
                "val_blank_ratio": min(1.0, 0.9 + e * 0.02),
            },
        )


def nan_divergence(steps: int = 200, seed: int = 3) -> Iterator[Point]:
    rng = random.Random(seed)
    for s in range(1, steps + 1):
        loss = 2.0 * math.exp(-s / 30) + 0.3 + rng.gauss(0, 0.02)
        grad = 1.0 + rng.random() * 0.2
        if s > 60:
            loss *= math.exp((s - 60) / 4)
            grad *= math.exp((s - 60) / 3)
        if s >= 79:
            loss, grad = float("nan"), float("nan")
        yield s, {"train/loss": loss, "train/grad_norm": grad}
        if s >= 85:
            return


def imbalanced(epochs: int = 12, seed: int = 4) -> Iterator[Point]:
    rng = random.Random(seed)
    for e in range(epochs):
        c1 = 0.85 + 0.04 * (1 - math.exp(-e / 3)) + rng.gauss(0, 0.005)
        c0 = 0.2 + 0.05 * (1 - math.exp(-e / 3)) + rng.gauss(0, 0.01)
        yield (
            e,
            {
                "train_loss": 0.5 * math.exp(-e / 4) + 0.1,
                "val_loss": 0.3 + rng.gauss(0, 0.005),
                "val_f1": c1,
                "val_f1_class_0": c0,
                "val_f1_class_1": c1,
                "val_recall_class_0": c0 * 0.8,
                "val_recall_class_1": 0.93 + rng.gauss(0, 0.004),
                "val_macro_f1": (c0 + c1) / 2,
                "val_accuracy": 0.8 + rng.gauss(0, 0.005),
            },
        )


# -- writers -----------------------------------------------------------------------------------
class TensorBoardWriter:
    """Scalars through tensorboard's EventFileWriter, as torch's SummaryWriter writes them."""

    def __init__(self, logdir: str, flush_every: int = 1) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        os.makedirs(logdir, exist_ok=True)
        self.writer = EventFileWriter(logdir, max_queue_size=1000, flush_secs=1)
        self.n = 0
        self.flush_every = flush_every

    def write(self, step: int, row: dict[str, float]) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        now = time.time()
        for tag, value in row.items():
            value_pb = summary_pb2.Summary.Value(tag=tag, simple_value=value)
            self.writer.add_event(
                event_pb2.Event(
                    wall_time=now, step=step, summary=summary_pb2.Summary(value=[value_pb])
                )
            )
        self.n += 1
        if self.n % self.flush_every == 0:
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class TrainerStateWriter:
    """trainer_state.json rewritten at each save (open "w" + json.dump, like HF), into the output
    dir and a checkpoint-N/ copy; eval entries are separate log_history entries."""

    def __init__(self, outdir: str, max_steps: int, eval_steps: int, save_every: int = 4) -> None:
        self.outdir = outdir
        os.makedirs(outdir, exist_ok=True)
        self.state: dict[str, Any] = {
            "best_metric": None,
            "best_model_checkpoint": None,
            "epoch": 0.0,
            "eval_steps": eval_steps,
            "global_step": 0,
            "logging_steps": 25,
            "max_steps": max_steps,
            "save_steps": eval_steps * save_every,
            "log_history": [],
        }
        self.save_every = save_every

    def write(self, step: int, row: dict[str, float]) -> None:
        train = {k: v for k, v in row.items() if not k.startswith("eval_")}
        evals = {k: v for k, v in row.items() if k.startswith("eval_")}
        epoch = round(step / 147, 4)
        if train:
            self.state["log_history"].append({"epoch": epoch, **train, "step": step})
        if evals:
            self.state["log_history"].append({"epoch": epoch, **evals, "step": step})
            best = self.state["best_metric"]
            if best is None or evals.get("eval_loss", math.inf) < best:
                self.state["best_metric"] = evals.get("eval_loss")
                self.state["best_model_checkpoint"] = os.path.join(
                    self.outdir, f"checkpoint-{step}"
                )
                self.state["best_global_step"] = step
        self.state["global_step"], self.state["epoch"] = step, epoch
        if evals:
            self.save(step)

    def save(self, step: int) -> None:
        with open(os.path.join(self.outdir, "trainer_state.json"), "w") as fh:
            json.dump(self.state, fh, indent=2)
        ckpt = os.path.join(self.outdir, f"checkpoint-{step}")
        os.makedirs(ckpt, exist_ok=True)
        with open(os.path.join(ckpt, "trainer_state.json"), "w") as fh:
            json.dump(self.state, fh, indent=2)

    def close(self) -> None:
        self.save(self.state["global_step"])


class CsvWriter:
    """A CSV with a fixed header written first (Keras CSVLogger style when step_col='epoch')."""

    def __init__(
        self, path: str, columns: list[str], step_col: str = "step", crlf: bool = False
    ) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fh = open(path, "w", newline="")  # noqa: SIM115 - kept open while the run writes
        self.writer = csv.writer(self.fh, lineterminator="\r\n" if crlf else "\n")
        self.columns = columns
        self.step_col = step_col
        self.writer.writerow([step_col] + columns)
        self.fh.flush()

    def write(self, step: int, row: dict[str, float]) -> None:
        self.writer.writerow([step] + [_cell(row.get(c)) for c in self.columns])
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class JsonlWriter:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fh = open(path, "a")  # noqa: SIM115

    def write(self, step: int, row: dict[str, float]) -> None:
        self.fh.write(json.dumps({"step": step, **row}) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _cell(v: float | None) -> str:
    return "" if v is None else repr(float(v))


# -- the demo set --------------------------------------------------------------------------------
def demo_runs(root: str) -> list[tuple[str, Callable[[], Iterator[Point]], Any, float]]:
    """(name, scenario, writer, seconds between points)."""
    return [
        ("healthy-resnet", healthy, TensorBoardWriter(os.path.join(root, "healthy-resnet")), 0.05),
        (
            "whisper-finetune-overfit",
            overfitting,
            TrainerStateWriter(os.path.join(root, "whisper-finetune-overfit"), 1500, 50),
            0.08,
        ),
        (
            "ctc-asr",
            ctc_blank,
            CsvWriter(
                os.path.join(root, "ctc-asr", "lightning_logs", "version_0", "metrics.csv"),
                ["train_loss", "val_loss", "val_wer", "val_cer", "val_blank_ratio"],
            ),
            0.6,
        ),
        ("lm-nan", nan_divergence, TensorBoardWriter(os.path.join(root, "lm-nan")), 0.15),
        (
            "turn-classifier",
            imbalanced,
            JsonlWriter(os.path.join(root, "turn-classifier", "watchrun.jsonl")),
            1.0,
        ),
    ]


def write_all(root: str) -> None:
    """Write every demo run completely, at once."""
    for _name, scenario, writer, _pace in demo_runs(root):
        for step, row in scenario():
            writer.write(step, row)
        writer.close()


def simulate(root: str, stop: threading.Event, speed: float = 1.0) -> list[threading.Thread]:
    """Write the demo runs at a realistic pace in background threads."""
    threads = []
    for name, scenario, writer, pace in demo_runs(root):

        def work(scenario=scenario, writer=writer, pace=pace) -> None:  # type: ignore[no-untyped-def]
            try:
                for step, row in scenario():
                    if stop.is_set():
                        break
                    writer.write(step, row)
                    stop.wait(pace / max(speed, 1e-3))
            finally:
                writer.close()

        t = threading.Thread(target=work, name=f"demo-{name}", daemon=True)
        t.start()
        threads.append(t)
    return threads


def run_demo(config: Any, args: argparse.Namespace) -> int:
    root = args.dir or tempfile.mkdtemp(prefix="watchrun-demo-")
    os.makedirs(root, exist_ok=True)
    stop = threading.Event()
    threads = simulate(root, stop, args.speed)
    try:
        if args.headless:
            print(f"writing demo runs into {root} (Ctrl-C to stop)", flush=True)
            while any(t.is_alive() for t in threads):
                time.sleep(0.2)
            return 0
        from watchrun.app.app import run_app

        return run_app([root], config, poll=args.poll, quiet=args.quiet)
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=2)
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)

"""Latency from a written record to the alert on stdout, per log format.

One `watchrun check --follow --json` process watches a folder; for each format, a real writer
(tensorboard's SummaryWriter via torch, Lightning's CSVLogger, keras.callbacks.CSVLogger on the
torch backend, watchrun's own JSON-lines RunLogger,
transformers' TrainerState.save_to_json rewriting trainer_state.json, and a console log of HF
Trainer dict lines) starts a new run, logs a few healthy points, and then a NaN loss. The time
from the NaN's flush to the `nan_loss` alert line read from the follower's stdout is one trial.

    python benchmarks/latency.py [TRIALS_PER_FORMAT [FORMAT ...]] [--poll SECONDS] [--store]
    (20 trials of every format by default; --poll: the follower polls instead of file events;
    --store: the time from the write to the value in the store of a follower in this process)

Prints p50/p95/max per format, in seconds. The target is p95 <= 1 s.
"""

from __future__ import annotations

import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HEALTHY = 6  # points before the NaN
# a train loss NaN at two logs in a row is what nan_loss calls critical (one alone may be an fp16
# overflow that the loss scaler skips): both are written at once; a validation loss NaN at the
# same step (Keras) is enough on one log
NAN_STEPS = (HEALTHY, HEALTHY + 1)
Writer = Callable[[Path, int], Callable[[], None]]  # (run dir, trial) -> write-the-NaN function


def tensorboard(run: Path, _trial: int) -> Callable[[], None]:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(run))
    for step in range(HEALTHY):
        w.add_scalar("train/loss", 1.0 / (step + 1), step)
    w.flush()

    def nan() -> None:
        for step in NAN_STEPS:
            w.add_scalar("train/loss", math.nan, step)
        w.flush()

    return nan


def lightning_csv(run: Path, _trial: int) -> Callable[[], None]:
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(run), name="", version=0)
    for step in range(HEALTHY):
        logger.log_metrics({"train_loss": 1.0 / (step + 1), "epoch": step}, step)
    logger.save()

    def nan() -> None:
        for step in NAN_STEPS:
            logger.log_metrics({"train_loss": math.nan, "epoch": step}, step)
        logger.save()

    return nan


def keras_csv(run: Path, _trial: int) -> Callable[[], None]:
    """keras.callbacks.CSVLogger itself (Keras 3 on the installed torch backend), driven through
    its callback hooks as fit() drives them: the file stays open, one row per epoch, flushed."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    run.mkdir(parents=True, exist_ok=True)
    logger = keras.callbacks.CSVLogger(str(run / "training_log.csv"))
    logger.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    logger.on_train_begin()
    for epoch in range(HEALTHY):
        logger.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 1.1 / (epoch + 1)})

    def nan() -> None:
        logger.on_epoch_end(HEALTHY, {"loss": math.nan, "val_loss": math.nan})

    return nan


def jsonl(run: Path, _trial: int) -> Callable[[], None]:
    from watchrun.integrations import RunLogger

    log = RunLogger(str(run), max_steps=100)
    for step in range(HEALTHY):
        log.log(step, {"loss": 1.0 / (step + 1)})

    def nan() -> None:
        for step in NAN_STEPS:
            log.log(step, {"loss": math.nan})

    return nan


def hf_state(run: Path, _trial: int) -> Callable[[], None]:
    from transformers import TrainerState

    run.mkdir(parents=True, exist_ok=True)
    state = TrainerState(max_steps=100, logging_steps=1)
    for step in range(1, HEALTHY + 1):
        state.log_history.append({"loss": 1.0 / step, "step": step, "epoch": step / 100})
        state.global_step = step
    state.save_to_json(str(run / "trainer_state.json"))

    def nan() -> None:
        for step in NAN_STEPS:
            state.log_history.append({"loss": math.nan, "step": step + 1, "epoch": step / 100})
        state.global_step = NAN_STEPS[-1] + 1
        state.save_to_json(str(run / "trainer_state.json"))

    return nan


def console(run: Path, _trial: int) -> Callable[[], None]:
    """A training script's stdout redirected to a file (nohup, tee): HF Trainer's dict lines."""
    run.mkdir(parents=True, exist_ok=True)
    fh = open(run / "train.log", "a")  # noqa: SIM115 - a redirected stdout stays open
    for step in range(1, HEALTHY + 1):
        fh.write(f"{{'loss': {1.0 / step:.4f}, 'step': {step}, 'epoch': {step / 100}}}\n")
    fh.flush()

    def nan() -> None:
        for step in NAN_STEPS:
            fh.write(f"{{'loss': nan, 'step': {step + 1}, 'epoch': {step / 100}}}\n")
        fh.flush()

    return nan


FORMATS: dict[str, Writer] = {
    "tensorboard": tensorboard,
    "lightning-csv": lightning_csv,
    "keras-csv": keras_csv,
    "jsonl": jsonl,
    "hf-trainer_state": hf_state,
    "console": console,
}


def _reader(proc: subprocess.Popen, out: queue.Queue) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        out.put((time.time(), line))


def measure(name: str, make: Writer, trials: int, root: Path, extra: list[str]) -> list[float]:
    folder = root / name
    folder.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from watchrun.cli import main; sys.exit(main())",
            "check",
            "--follow",
            "--json",
            *extra,
            str(folder),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc, lines), daemon=True).start()
    time.sleep(2.0)  # the follower has loaded and watches
    out: list[float] = []
    try:
        for trial in range(trials):
            run = folder / f"run{trial:03d}"
            write_nan = make(run, trial)
            time.sleep(0.7)  # the run has been discovered and its healthy points read
            t0 = time.time()
            write_nan()
            out.append(_wait_alert(lines, f"run{trial:03d}", t0, t0 + 15))
    finally:
        proc.terminate()
        proc.wait(5)
    return out


def _wait_alert(lines: queue.Queue, run: str, t0: float, deadline: float) -> float:
    """Seconds from t0 to the run's nan_loss line (inf if none came before the deadline)."""
    while time.time() < deadline:
        try:
            at, line = lines.get(timeout=max(0.01, deadline - time.time()))
        except queue.Empty:
            break
        alert = json.loads(line)
        if alert.get("detector") == "nan_loss" and run in alert.get("run", ""):
            return at - t0
    return math.inf


def store_latency(
    name: str, make: Writer, trials: int, root: Path, poll: float | None
) -> list[float]:
    """Seconds from a written NaN to the NaN in the store of an Engine following the folder in
    this process (its follow loop in a thread, as `check --follow` and the app run it): the
    tick that read it ends with an `on_tick` that looks for it."""
    from watchrun.engine import Engine

    folder = root / f"store-{name}"
    folder.mkdir()
    engine = Engine([str(folder)], poll_seconds=poll, bounded=True)
    engine.detectors  # noqa: B018 - attached before the load, as `check --follow` does
    engine.load()
    stop, pending, out = threading.Event(), {}, []

    def on_tick() -> None:
        with engine.store.lock:
            for run, t0 in list(pending.items()):
                r = next((r for k, r in engine.store.runs.items() if run in k), None)
                if r and any(len(x) and math.isnan(x.values[-1]) for x in r.series.values()):
                    out.append(time.time() - t0)
                    del pending[run]

    loop = threading.Thread(
        target=engine.run_forever, args=(stop, lambda alerts: None), kwargs={"on_tick": on_tick}
    )
    loop.start()
    time.sleep(1.0)
    try:
        for trial in range(trials):
            run = folder / f"run{trial:03d}"
            write_nan = make(run, trial)
            time.sleep(0.7)  # the run has been discovered and its healthy points read
            pending[run.name] = time.time()
            write_nan()
            deadline = time.time() + 10
            while run.name in pending and time.time() < deadline:
                time.sleep(0.005)
            if pending.pop(run.name, None) is not None:
                out.append(math.inf)
    finally:
        stop.set()
        engine.wake.set()
        loop.join(10)
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(math.ceil(q * len(s))) - 1)]


def main() -> None:
    args = sys.argv[1:]
    extra: list[str] = []
    if "--poll" in args:
        i = args.index("--poll")
        extra, args = args[i : i + 2], args[:i] + args[i + 2 :]
    to_store = "--store" in args
    args = [a for a in args if a != "--store"]
    trials = int(args[0]) if args else 20
    only = args[1:] or list(FORMATS)
    what = "write -> value in the store (target <= 20 ms)" if to_store else "write -> alert"
    print(f"{what}, {'polling every ' + extra[1] + ' s' if extra else 'file events'}")
    unit = "ms" if to_store else "s"
    print(f"{'format':<18} {'trials':>6} {'p50 ' + unit:>7} {'p95 ' + unit:>7} {'max ' + unit:>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in only:
            if to_store:
                poll = float(extra[1]) if extra else None
                got = store_latency(name, FORMATS[name], trials, Path(tmp), poll)
            else:
                got = measure(name, FORMATS[name], trials, Path(tmp), extra)
            scale, d = (1000, 1) if to_store else (1, 2)  # the store: milliseconds
            print(
                f"{name:<18} {len(got):>6} {scale * pct(got, 0.5):>7.{d}f} "
                f"{scale * pct(got, 0.95):>7.{d}f} {scale * max(got):>7.{d}f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

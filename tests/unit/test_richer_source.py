"""The same metric from two sources of one run is kept once, from the richer source, whatever
the order the sources are read in (issue 11 section 3, and live = batch: issue 10 section 4)."""

from __future__ import annotations

import json
import math
import time

import pytest

from watchrun.config import Config
from watchrun.engine import Engine
from watchrun.sources.console import ConsoleSource
from watchrun.sources.hf import HfTrainerSource
from watchrun.sources.tensorboard import TensorBoardSource
from watchrun.store import Store

LIVE = Config(stale_seconds=0.5, settle_seconds=0.1)


def _store(order: list[str]) -> Store:
    """One run's `loss` from a console (rounded, one step more) and from trainer_state.json."""
    store = Store()
    for cls in (ConsoleSource, HfTrainerSource, TensorBoardSource):
        cls(store, "run")  # each source tells the store how rich its stream is
    given = {
        "console": ([10, 20, 30, 40], [0.5, 0.25, 0.125, 0.0625]),
        "trainer_state": ([10, 20, 30], [0.50001, 0.25001, 0.12501]),
    }
    for stream in order:
        steps, values = given[stream]
        store.add_points("run", stream, "loss", steps, values, [0.0] * len(steps))
    return store


@pytest.mark.parametrize("order", [["console", "trainer_state"], ["trainer_state", "console"]])
def test_the_richer_stream_is_kept_whichever_is_read_first(order):
    store = _store(order)
    loss = store.runs["run"].series["loss"]
    assert loss.steps.tolist() == [10, 20, 30]
    assert loss.values.tolist() == [0.50001, 0.25001, 0.12501]
    assert store.runs["run"].origins["loss"] == [(0, "trainer_state")]
    assert store.streams_of("run", "loss") == {"trainer_state"}
    # the detectors must start again only where the poorer stream's points were there first
    assert store.take_retaken() == ({"run"} if order[0] == "console" else set())
    # later points of the poorer stream are not kept either
    assert store.add_points("run", "console", "loss", [50], [0.03], [0.0]) == 0
    assert store.add_points("run", "trainer_state", "loss", [40], [0.06], [0.0]) == 1


@pytest.mark.parametrize("order", [["tensorboard", "table"], ["table", "tensorboard"]])
def test_a_richer_stream_that_misses_the_start_of_the_run_does_not_take_it(order):
    """A resumed Lightning run: its TensorBoard file holds both parts (steps 0-250), its CSV
    logger only the resumed one (from 129). The CSV is the richer format, but keeping it would
    drop the first part: the stream that starts clearly earlier is kept, whichever is read
    first."""
    from watchrun.sources.table import TableSource

    store = Store()
    for cls in (TableSource, TensorBoardSource):
        cls(store, "run")
    given = {
        "tensorboard": (list(range(0, 251, 10)), [1.0 / (s + 10) for s in range(0, 251, 10)]),
        "table": (list(range(130, 251, 10)), [1.0 / (s + 10) for s in range(130, 251, 10)]),
    }
    for stream in order:
        steps, values = given[stream]
        store.add_points("run", stream, "train_loss", steps, values, [0.0] * len(steps))
    assert store.streams_of("run", "train_loss") == {"tensorboard"}
    assert store.runs["run"].series["train_loss"].steps.tolist() == list(range(0, 251, 10))


def test_epochs_counted_from_0_and_from_1_are_the_same_start():
    """Ultralytics' results.csv counts epochs from 1, its MLflow copy from 0: one step apart is
    the same start, and the richer (the CSV) is kept."""
    from watchrun.sources.mlflow import MlflowFileSource
    from watchrun.sources.table import TableSource

    store = Store()
    TableSource(store, "run")
    store.rank_stream(MlflowFileSource.stream, MlflowFileSource.richness)
    store.add_points("run", "mlflow", "val/box_loss", [0, 1, 2], [3.0, 2.0, 1.5], [0.0] * 3)
    store.add_points("run", "table", "val/box_loss", [1, 2, 3], [3.0, 2.0, 1.5], [0.0] * 3)
    assert store.streams_of("run", "val/box_loss") == {"table"}


def test_a_console_never_wins_a_metric_by_its_start():
    """A console's steps are inferred (Lightning's progress bar prints the epoch, 7, next to
    val_loss): the CSV logger's val_loss from step 562 is kept, not one console point at 7."""
    from watchrun.sources.table import TableSource

    store = Store()
    for cls in (TableSource, ConsoleSource):
        cls(store, "run")
    store.add_points("run", "console", "val_loss", [7], [0.5], [0.0])
    store.add_points("run", "table", "val_loss", [562, 1125], [0.5, 0.4], [0.0, 0.0])
    assert store.streams_of("run", "val_loss") == {"table"}
    assert store.runs["run"].series["val_loss"].steps.tolist() == [562, 1125]


def test_a_metric_only_the_poorer_stream_gives_stays_its_own():
    store = _store(["trainer_state", "console"])
    store.add_points("run", "console", "grad_norm", [10, 20], [1.0, 2.0], [0.0, 0.0])
    assert store.runs["run"].series["grad_norm"].values.tolist() == [1.0, 2.0]
    store.add_points("run", "tensorboard", "loss", [10, 20], [0.5, 0.25], [0.0, 0.0])
    assert store.runs["run"].origins["loss"] == [(0, "tensorboard")]  # richer than both
    assert store.runs["run"].series["loss"].steps.tolist() == [10, 20]


def _loss(step: int) -> float:
    return math.nan if step >= 70 else 1.0 / step + 0.001234567


def _console(steps) -> str:
    """What HF Trainer prints: a progress bar, then the logged dict (rounded for print)."""
    return "".join(
        f"\r {s}/100 [00:01<00:10,  3.1it/s]\n"
        f"{{'loss': {round(_loss(s), 4)}, 'grad_norm': 0.5, 'epoch': {s / 100}}}\n"
        for s in steps
    )


def _state(steps) -> str:
    history = [{"loss": _loss(s), "step": s, "epoch": s / 100} for s in steps]
    return json.dumps(
        {"global_step": max(steps, default=0), "max_steps": 100, "log_history": history}
    )


def _ticks(engine: Engine, n: int) -> list:
    alerts = []
    for _ in range(n):
        alerts += engine.tick()
        time.sleep(0.12)
    return alerts


def test_a_richer_source_that_shows_up_later_takes_over_live_as_batch_reads_it(tmp_path):
    """The console prints the run from its start; trainer_state.json holds no history until the
    first save. At the save it takes the loss over: the run then holds exactly its points, the
    detectors judge them once (the NaN found in the console's copy is not announced again) and
    the alerts are those of `check` on the finished files."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "trainer_state.json").write_text(_state([]))
    (out / "train.log").write_text("")
    engine = Engine([str(tmp_path)], config=LIVE)
    engine.load()
    with open(out / "train.log", "a") as fh:
        fh.write(_console(range(10, 90, 10)))
    announced = _ticks(engine, 4)
    run = engine.store.runs["out"]
    assert run.origins["loss"] == [(0, "console")]
    assert [(a.detector, a.step) for a in announced] == [("nan_loss", 70)]

    (out / "trainer_state.json").write_text(_state(range(10, 110, 10)))
    with open(out / "train.log", "a") as fh:
        fh.write(_console(range(90, 110, 10)))
    announced += _ticks(engine, 8)

    run = engine.store.runs["out"]
    assert not run.joined  # one run from the start: the takeover happened within it
    assert run.origins["loss"] == [(0, "trainer_state")]
    loss = run.series["loss"]
    assert loss.steps.tolist() == list(range(10, 110, 10))
    expected = [_loss(s) for s in range(10, 110, 10)]
    assert [v if v == v else "nan" for v in loss.values.tolist()] == [
        v if v == v else "nan" for v in expected
    ]
    assert run.origins["grad_norm"] == [(0, "console")]  # printed by the console alone
    assert [(a.detector, a.step) for a in announced] == [("nan_loss", 70)]

    batch = Engine([str(tmp_path)], use_watchdog=False)
    batch.check()
    assert {(a.detector, a.severity, a.step) for a in engine.store.alerts_for("out")} == {
        (a.detector, a.severity, a.step) for a in batch.store.alerts_for("out")
    }
    assert batch.store.runs["out"].series["loss"].steps.tolist() == loss.steps.tolist()

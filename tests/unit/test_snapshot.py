"""The immutable Snapshot the engine publishes: plot-sized, read-only, reused when unchanged."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from watchrun.engine import Engine
from watchrun.snapshot import PLOT_POINTS, reduce_series
from watchrun.store import MAX_CONSOLE_LINES


def test_reduce_series_keeps_extremes_and_every_nan_within_the_limit():
    n = 1_000_000
    steps = np.arange(n)
    values = np.sin(np.arange(n) / 5000.0)
    values[123_457] = 9.0  # a spike
    values[777_777] = np.nan
    values[900_001] = np.inf
    xs, ys, _ = reduce_series(steps, values, steps.astype(float))
    assert len(xs) <= PLOT_POINTS + 3
    assert 123_457 in xs and 9.0 in ys
    assert 777_777 in xs and 900_001 in xs
    assert np.nanmin(ys[np.isfinite(ys)]) == pytest.approx(values[np.isfinite(values)].min())
    assert xs[-1] == n - 1 and np.all(np.diff(xs) > 0)


def test_short_series_are_kept_whole():
    steps = np.arange(100)
    xs, ys, _ = reduce_series(steps, steps * 2.0, steps.astype(float))
    assert list(xs) == list(range(100)) and list(ys) == [2.0 * i for i in range(100)]


def _run_dir(tmp_path, lines: int):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        "".join(f'{{"step": {i}, "loss": {1 / (i + 1)}}}\n' for i in range(lines))
    )
    return run


def test_publish_reuses_unchanged_runs_and_arrays_are_read_only(tmp_path):
    run = _run_dir(tmp_path, 50)
    engine = Engine([str(tmp_path)], poll_seconds=0.1)
    engine.load()
    first = engine.publish()
    assert engine.publish() is first  # nothing changed: the same snapshot
    view = next(iter(first.runs.values()))
    series = view.series["loss"]
    assert series.length == 50 and series.last == pytest.approx(1 / 50)
    with pytest.raises(ValueError):
        series.values[0] = 5.0
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 50, "loss": 0.001}\n')
    engine.poll()
    second = engine.publish()
    assert second is not first and second.version > first.version
    assert second.runs[view.key].series["loss"].length == 51
    assert first.runs[view.key].series["loss"].length == 50  # the old snapshot did not move


def test_console_ring_is_bounded_and_keeps_the_last_lines(tmp_path):
    run = _run_dir(tmp_path, 5)
    (run / "train.log").write_text("".join(f"line {i}\n" for i in range(MAX_CONSOLE_LINES + 50)))
    engine = Engine([str(tmp_path)])
    engine.load()
    console = next(iter(engine.publish().runs.values())).console
    assert len(console) == MAX_CONSOLE_LINES
    assert console[-1] == f"line {MAX_CONSOLE_LINES + 49}" and console[0] == "line 50"


def test_a_stop_outcome_reaches_the_store_through_the_follow_loop(tmp_path):
    _run_dir(tmp_path, 5)
    engine = Engine([str(tmp_path)], poll_seconds=0.1)
    engine.load()
    key = engine.store.keys()[0]
    stop = threading.Event()
    seen = []

    def on_tick() -> None:
        snap = engine.publish()
        if any(a.detector == "stopped" for a in snap.runs[key].alerts):
            seen.append(snap)
            stop.set()

    engine.record_stop(key, "SIGINT sent to pid 1234", "stopped")
    loop = threading.Thread(
        target=engine.run_forever, args=(stop, lambda a: None), kwargs={"on_tick": on_tick}
    )
    loop.start()
    loop.join(timeout=20)
    assert seen, "the outcome never reached a snapshot"
    view = seen[0].runs[key]
    assert view.status.value == "stopped"
    assert [a.message for a in view.alerts if a.detector == "stopped"] == [
        "SIGINT sent to pid 1234"
    ]


def test_a_growing_series_is_reduced_incrementally_and_keeps_its_extremes(tmp_path):
    """Tick after tick of appended points: the slice stays bounded, the spike and the NaN stay,
    and best/last match the whole history."""
    engine = Engine([str(tmp_path)])
    rng = np.random.default_rng(0)
    every = []
    for tick in range(60):
        steps = np.arange(tick * 500, (tick + 1) * 500)
        values = rng.normal(1.0, 0.1, 500)
        if tick == 7:
            values[3] = 50.0
        if tick == 33:
            values[10] = np.nan
        every.append(values)
        engine.store.add_points("run", "s", "loss", steps, values, np.full(500, 1.7e9))
        view = engine.publish().runs["run"].series["loss"]
    whole = np.concatenate(every)
    assert view.length == len(whole) == 30_000
    assert len(view.steps) <= 2 * PLOT_POINTS
    assert 50.0 in view.values and np.isnan(view.values).any()
    assert view.best_high == (7 * 500 + 3, 50.0)
    assert view.best_low[1] == np.nanmin(whole) and view.last == whole[-1]
    assert np.all(np.diff(view.steps) > 0)


def test_publish_carries_the_samplers_latest_machine_picture(tmp_path):
    from watchrun.gpu import Sampler

    _run_dir(tmp_path, 5)
    engine = Engine([str(tmp_path)], poll_seconds=0.1)
    engine.load()
    assert engine.publish().machine is None  # no sampler: no machine picture
    engine.sampler = Sampler(engine.store, path=str(tmp_path / "samples.jsonl"))
    try:
        first = engine.sampler.sample_once()  # real: processes, and GPUs if this host has any
        snap = engine.publish()
        assert snap.machine is first
        assert engine.publish() is snap  # the same look: the same snapshot
        second = engine.sampler.sample_once()
        again = engine.publish()
        assert again is not snap and again.machine is second
        key = next(iter(snap.runs))
        assert again.runs[key] is snap.runs[key]  # the runs did not change: shared
    finally:
        engine.sampler.stop()


def test_a_shared_slice_does_not_move_as_the_store_appends_and_bounds():
    """A short series' view shares the store's arrays: appends (one by one and in bulk) and a
    bounded store's reduction must leave a published view's points as they were."""
    from watchrun.model import HISTORY, RECENT, Series
    from watchrun.snapshot import series_view

    s = Series("loss")
    s.extend(np.arange(1000), np.linspace(2.0, 1.0, 1000), np.arange(1000) + 1e9)
    view = series_view(s)
    assert np.shares_memory(view.values, s.values)  # shared, not copied
    kept = (view.steps.copy(), view.values.copy(), view.walls.copy())
    s.append(1000, 0.5, 1e9 + 1000)  # written in place after the view's points
    s.extend(np.arange(1001, 20_000), np.full(18_999, 0.25), np.arange(1001, 20_000) + 1e9)
    assert s.bound() > 0 and s.dropped > 0  # the history was reduced
    assert len(s) < 3 * HISTORY + RECENT + 1000
    for got, want in zip((view.steps, view.values, view.walls), kept, strict=True):
        assert np.array_equal(got, want)
    again = series_view(s, view)  # the store reduced its history: read anew, a reduced copy
    assert again.length == len(s) and not np.shares_memory(again.values, s.values)


def test_a_followed_short_series_keeps_its_best_points():
    from watchrun.model import Series
    from watchrun.snapshot import series_view

    s = Series("val_acc")
    s.extend(
        np.arange(10), np.array([0.1, 0.5, 0.3, 0.2, 0.6, 0.4, 0.7, 0.1, 0.2, 0.3]), np.zeros(10)
    )
    first = series_view(s)
    s.extend(np.arange(10, 15), np.array([0.05, 0.9, 0.2, 0.2, 0.2]), np.zeros(5))
    nxt = series_view(s, first)
    whole = series_view(s)
    assert nxt.best_low == whole.best_low == (10.0, 0.05)
    assert nxt.best_high == whole.best_high == (11.0, 0.9)
    assert np.array_equal(nxt.values, whole.values) and nxt.length == 15


def test_the_views_of_runs_no_longer_shown_are_let_go():
    """The builder keeps each shown run's view to reuse it; a run dropped, joined into another
    or filtered out must not keep its view (and the store arrays it shares) alive."""
    from watchrun.snapshot import SnapshotBuilder
    from watchrun.store import Store

    store = Store()
    for key in ("a", "b"):
        store.add_points(key, "s", "loss", np.arange(100), np.linspace(2, 1, 100), np.zeros(100))
    shown = ["a", "b"]
    builder = SnapshotBuilder(store, lambda: list(shown))
    assert set(builder.build(ready=True).runs) == {"a", "b"}
    shown.remove("b")
    store.touch("a")
    assert set(builder.build(ready=True).runs) == {"a"}
    assert set(builder._views) == {"a"}


def test_a_series_taken_over_by_a_richer_writer_is_read_anew():
    """Another writer's series replacing a metric with as many points (a TensorBoard copy of a
    CSV's loss) is another series: its view is made from it, not reused from the old one."""
    from watchrun.snapshot import SnapshotBuilder
    from watchrun.store import Store

    store = Store()
    store.rank_stream("csv", 1)
    store.rank_stream("tb", 3)
    steps = np.arange(100)
    store.add_points("run", "csv", "loss", steps, np.round(np.linspace(2, 1, 100), 1), steps * 1.0)
    builder = SnapshotBuilder(store, lambda: ["run"])
    before = builder.build(ready=True).runs["run"].series["loss"]
    exact = np.linspace(2, 1, 100)
    store.add_points("run", "tb", "loss", steps, exact, steps * 1.0)  # richer: takes it over
    after = builder.build(ready=True).runs["run"].series["loss"]
    assert before.length == after.length == 100
    assert np.array_equal(after.values, exact) and not np.array_equal(before.values, exact)

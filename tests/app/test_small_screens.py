"""Pilot: what a new user hit at 80 columns and on odd runs: a long run name no longer hides
the run's status and plot settings, a one-file run lists its file by name, and the console
hint is readable without scrolling sideways."""

from __future__ import annotations

import json

from tests.app.helpers import make_app, screen_text, wait_for

from watchrun.app.widgets.info import info_text

LONG = "console-slurm-cifar100-nan-cosine-lr-warmup-2048-batch-bf16"


def jsonl_run(root, name: str) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "watchrun.jsonl").write_text(
        "".join(json.dumps({"step": i, "loss": 1 / (i + 1)}) + "\n" for i in range(30))
    )


async def test_a_long_run_name_is_cut_in_the_middle_so_status_and_x_axis_stay(tmp_path):
    jsonl_run(tmp_path, LONG)
    app = make_app(tmp_path / LONG)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.ready and app.selected is not None)
        await pilot.pause(0.2)
        status = app.snapshot.runs[app.selected].status.value
        title = str(app.main.query_one("#run-title").render())
        assert "…" in title and f"{status}   x: step" in title, title
        assert LONG[:6] in title and LONG[-4:] in title
        await pilot.press("w")  # the setting shown follows the key
        assert await wait_for(
            pilot, lambda: "x: epoch" in str(app.main.query_one("#run-title").render())
        )


async def test_a_run_that_is_one_file_lists_it_by_name(tmp_path):
    (tmp_path / "job").mkdir()
    log = tmp_path / "job" / "slurm-4242.out"
    log.write_text("".join(f"epoch {e} loss={1 / (e + 1):.3f}\n" for e in range(12)))
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        assert await wait_for(pilot, lambda: app.ready and app.selected is not None)
        run = app.snapshot.runs[app.selected]
        assert run.root == str(log)  # the run is the file itself
        text = info_text(run).plain
        files = text.split("files (1)\n", 1)[1]
        assert files.startswith("  slurm-4242.out\n"), text


async def test_the_no_console_hint_fits_80_columns(tmp_path):
    jsonl_run(tmp_path, "run")
    app = make_app(tmp_path / "run")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.ready and app.selected is not None)
        await pilot.press("5")
        await pilot.pause(0.3)
        screen = screen_text(app)
        assert "(no console log found for this run)" in screen
        assert "python train.py 2>&1 | tee train.log" in screen, screen


def test_the_readout_breaks_between_entries_never_inside_one():
    import numpy as np

    from watchrun.app.plotting import Curve, Figure
    from watchrun.app.widgets.plot import Plot

    x = np.arange(30.0)
    plot = Plot()
    plot.show(
        Figure(
            (
                Curve("train_loss", x, 2 - x / 30, "#ff0000", best_step=(26.0, 1.98)),
                Curve("val_loss", x, 2.1 - x / 30, "#00ff00", best_step=(20.0, 2.048)),
            )
        )
    )
    lines = plot.readout_text(52).plain.split("\n")
    assert lines == ["● train_loss 1.033  best 1.98 @26", "● val_loss 1.133  best 2.048 @20"]
    assert "\n" not in plot.readout_text(120).plain  # one line when it fits


def test_a_log_axis_within_one_decade_still_reads_two_labels():
    """eval_loss 0.09..0.32 on a log axis had one label (0.1): 1-2-5 steps fill the decade."""
    import numpy as np

    from watchrun.app.plotting import Curve, Figure, log_ticks, render, y_label

    ticks = log_ticks(np.log10(0.0887), np.log10(0.3152), 5)
    assert [y_label(t, True) for t in ticks] == ["0.1", "0.2"]
    wide = log_ticks(-5.0, 2.0, 5)  # seven decades: powers of ten, every other one
    assert [y_label(t, True) for t in wide] == ["1.00e-05", "0.001", "0.1", "10"]
    x = np.arange(100.0)
    y = 0.0887 + (0.3152 - 0.0887) * np.exp(-x / 20)
    text = render(Figure((Curve("eval_loss", x, y, "#ff0000"),), log_y=True), 70, 16).plain
    labels = [line.split("┤")[0].strip() for line in text.splitlines() if "┤" in line]
    assert labels == ["0.2", "0.1"], text


def _run_with_epochs():
    """Train loss every step from t=1000 s, val loss every 10 steps from t=1050 s, 20 steps an
    epoch, an overfitting warning at step 60."""
    from watchrun.model import Alert, Run, Series, Severity
    from watchrun.snapshot import run_view

    run = Run("r", "/r")
    for name in ("train_loss", "val_loss", "epoch"):
        run.series[name] = Series(name)
    for step in range(100):
        run.series["train_loss"].append(step, 1 / (step + 1), 1000.0 + 5 * step)
        run.series["epoch"].append(step, step / 20, 1000.0 + 5 * step)
        if step % 10 == 0 and step:
            run.series["val_loss"].append(step, 0.5 + abs(step - 40) / 200, 1000.0 + 5 * step)
    alert = Alert("r", "overfitting", Severity.WARNING, 60, ["val_loss"], "up", {}, "stop")
    return run_view(run, [alert], ())


def test_alert_lines_and_best_stars_stay_on_epoch_and_time_axes():
    """`w` to epoch or time dropped the alert lines and the best-point stars: they are placed
    on that axis now (step 60 = epoch 3 = 300 s; the val best at step 40 = epoch 2 = 200 s)."""
    from watchrun.app.theme import Palette
    from watchrun.app.widgets.curves import figure_for

    view = _run_with_epochs()
    names = ["train_loss", "val_loss"]
    expected = {"step": (60.0, 40.0), "epoch": (3.0, 2.0), "time": (300.0, 200.0)}
    for kind, (mark, best) in expected.items():
        fig = figure_for(view, names, Palette(), x_kind=kind)
        assert fig.marks == (mark,), kind
        val = next(c for c in fig.curves if c.name == "val_loss")
        assert val.best is not None and val.best[0] == best, kind
        assert val.best_step == (40.0, 0.5)  # the readout still names the step


def test_the_time_axis_starts_at_the_runs_first_point_for_every_curve():
    """The first val loss was logged 50 s after the first train loss: it is drawn at 50 s,
    not at 0 beside the first train loss."""
    from watchrun.app.theme import Palette
    from watchrun.app.widgets.curves import figure_for

    fig = figure_for(_run_with_epochs(), ["train_loss", "val_loss"], Palette(), x_kind="time")
    first = {c.name: float(c.x[0]) for c in fig.curves}
    assert first == {"train_loss": 0.0, "val_loss": 50.0}


def test_process_samples_are_not_drawn_as_task_metrics():
    """A live run with only train/val loss and a learning rate had `proc/rss` and `proc/cpu`
    (the sampler's series) in its metrics plot, on a second axis beside the learning rate."""
    from watchrun.app.widgets.curves import loss_names, metric_names

    names = ["train/loss", "val/loss", "train/lr", "proc/rss", "proc/cpu", "gpu0/util"]
    losses = loss_names(names, {})
    assert losses == ["train/loss", "val/loss"]
    assert metric_names(names, losses, {}) == ["train/lr"]


def test_with_ascii_the_best_point_is_not_drawn_like_the_curve():
    """--ascii drew the curve's points and its best-point star both as `*`."""
    import numpy as np

    from watchrun.app.plotting import Curve, Figure, render

    x = np.arange(50.0)
    y = 1 + (x - 30) ** 2 / 400
    curve = Curve("val_loss", x, y, "#ff0000", best=(30.0, 1.0))
    text = render(Figure((curve,), ascii_only=True), 60, 14).plain
    assert text.isascii() and text.count("@") == 1 and "*" in text, text


async def test_a_filter_that_hides_every_run_leaves_none_selected(tmp_path):
    """Typing a filter nothing matches kept the last run selected and its panes shown: `x`
    then opened the stop dialog for a run the list no longer showed."""
    from watchrun.app.screens import StopScreen

    jsonl_run(tmp_path, "alpha")
    jsonl_run(tmp_path, "beta")
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        assert await wait_for(pilot, lambda: app.ready and app.selected is not None)
        await pilot.press("slash", "q", "t", "enter")
        assert await wait_for(pilot, lambda: app.selected is None)
        assert "no run matches 'qt'" in str(app.main.query_one("#run-title").render())
        assert not app.main.query_one("#tabs").display
        await pilot.press("x")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, StopScreen)
        await pilot.press("escape")  # the filter cleared: a run is chosen again
        assert await wait_for(pilot, lambda: app.selected is not None)
        assert app.main.query_one("#tabs").display


async def test_j_and_k_scroll_the_help_at_80x24(tmp_path):
    from watchrun.app.screens import HelpScreen

    jsonl_run(tmp_path, "run")
    app = make_app(tmp_path / "run")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.ready and app.selected is not None)
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        box = app.screen.query_one("#help")
        assert box.max_scroll_y > 0  # taller than the screen
        await pilot.press(*"jjjj")
        assert await wait_for(pilot, lambda: box.scroll_y == 4)
        await pilot.press("k")
        assert await wait_for(pilot, lambda: box.scroll_y == 3)


async def test_every_tab_label_shows_whole_at_80_columns_and_long_again_when_wider(tmp_path):
    jsonl_run(tmp_path, "run")
    app = make_app(tmp_path / "run")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.ready and app.selected is not None)
        assert await wait_for(pilot, lambda: "6 Proc" in screen_text(app))
        line = next(row for row in screen_text(app).splitlines() if "1 Curves" in row)
        assert line.rstrip().endswith("6 Proc"), line
        await pilot.resize_terminal(200, 50)
        assert await wait_for(pilot, lambda: "6 Process" in screen_text(app))
        assert "5 Console" in screen_text(app)

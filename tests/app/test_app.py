"""Pilot tests: every key and view of the app, on the demo runs written by the real writers."""

from __future__ import annotations

import dataclasses

from tests.app.helpers import CONSOLE_LINES, loaded, make_app, screen_text, select, wait_for
from textual.widgets import TabbedContent

from watchrun.app.plotting import Figure
from watchrun.app.screens import AlertDetailScreen, CompareScreen, HelpScreen, OverviewScreen
from watchrun.app.screens.compare import role_groups
from watchrun.app.screens.overview import Tile
from watchrun.app.widgets.alerts import AlertsTable
from watchrun.app.widgets.banner import AlertBanner, action_text
from watchrun.app.widgets.console import ConsolePane
from watchrun.app.widgets.curves import CurvesPane
from watchrun.app.widgets.plot import Plot
from watchrun.app.widgets.run_list import RunList
from watchrun.config import Config
from watchrun.model import RunStatus


async def test_cursor_starts_on_the_worst_run_and_jk_move_it(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        runs = app.main.query_one(RunList)
        first = app.snapshot.runs[runs.keys[0]]
        assert first.worst is not None and first.worst.severity.value == "critical"
        assert app.selected == runs.keys[0] and runs.cursor_row == 0
        assert "CRITICAL" in str(app.main.query_one(AlertBanner).render())
        await pilot.press("j")
        assert await wait_for(pilot, lambda: app.selected == runs.keys[1])
        assert runs.keys[1] in str(app.main.query_one("#run-title").render())
        await pilot.press("k")
        assert await wait_for(pilot, lambda: app.selected == runs.keys[0])


async def test_number_keys_switch_tabs_and_focus_their_pane(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        tabs = app.main.query_one(TabbedContent)
        for key, tab in zip(
            "23451", ("classes", "alerts", "info", "console", "curves"), strict=True
        ):
            await pilot.press(key)
            assert await wait_for(pilot, lambda tab=tab: tabs.active == f"tab-{tab}")
        assert isinstance(app.focused, RunList)


async def test_enter_on_an_alert_opens_its_detail_and_jk_move_the_alerts(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        selected = app.selected
        await pilot.press("3")
        table = app.main.query_one(AlertsTable)
        assert await wait_for(pilot, lambda: app.focused is table and table.row_count >= 2)
        await pilot.press("j")
        assert await wait_for(pilot, lambda: table.cursor_row == 1)
        assert app.selected == selected  # j moved the alert cursor, not the run list
        chosen = table.selected_alert()
        assert chosen is not None
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, AlertDetailScreen))
        text = str(app.screen.query_one("#detail-text").render())
        assert chosen.message[:40] in text and "what to do" in text and "checkpoint" in text
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: not isinstance(app.screen, AlertDetailScreen))


async def test_filter_and_escape(demo):
    app = make_app(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        runs = app.main.query_one(RunList)
        await pilot.press("slash", "h", "e", "a", "l")
        assert await wait_for(pilot, lambda: runs.row_count == 1)
        assert await wait_for(pilot, lambda: app.selected == "healthy-resnet")
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: runs.row_count == 5)


async def test_plot_keys_change_the_figure(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        plot = app.main.query_one("#loss-plot", Plot)
        assert plot.figure.x_kind == "step" and not plot.figure.faint
        await pilot.press("s")
        assert await wait_for(pilot, lambda: len(plot.figure.faint) == len(plot.figure.curves) > 0)
        await pilot.press("l")
        assert await wait_for(pilot, lambda: plot.figure.log_y)
        await pilot.press("w")
        assert await wait_for(pilot, lambda: plot.figure.x_kind == "epoch")
        await pilot.press("w")  # the CTC run's Lightning CSV records no times: steps
        title = app.main.query_one("#run-title")
        assert await wait_for(pilot, lambda: "x: step (no times)" in str(title.render()))
        assert plot.figure.x_kind == "step"
        await select(pilot, "healthy-resnet")  # TensorBoard records each point's time
        assert await wait_for(pilot, lambda: plot.figure.x_kind == "time")
        assert "x: time" in str(title.render())


async def test_a_time_axis_for_a_run_without_wall_times_draws_steps_and_says_so(tmp_path):
    """A Lightning CSV read whole records no times (every point gets the time it was read): a
    time axis would draw the whole run at one instant, labelled 0s. Steps, and the title says
    why."""
    from watchrun.demo import CsvWriter

    w = CsvWriter(str(tmp_path / "lightning_logs" / "version_0" / "metrics.csv"), ["train_loss"])
    for step in range(200):
        w.write(step, {"train_loss": 2.0 / (1 + step / 20)})
    w.close()
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot, runs=1)
        plot = app.main.query_one("#loss-plot", Plot)
        await pilot.press("w", "w")
        title = app.main.query_one("#run-title")
        assert await wait_for(pilot, lambda: "x: step (no times)" in str(title.render()))
        assert plot.figure.x_kind == "step"
        assert max(float(c.x.max()) for c in plot.figure.curves) == 199.0


async def test_theme_key_changes_the_palette(demo):
    app = make_app(demo)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        assert app.theme == "watchrun-dark"
        dark = app.main.query_one(CurvesPane).palette
        await pilot.press("t")
        assert await wait_for(pilot, lambda: app.theme != "watchrun-dark")
        assert app.main.query_one(CurvesPane).palette != dark
        assert app.main.query_one("#loss-plot", Plot).figure.curves[0].color in app.palette().plot


async def test_overview_tiles_worst_first_and_enter_opens_a_run(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("o")
        assert await wait_for(pilot, lambda: isinstance(app.screen, OverviewScreen))
        tiles = list(app.screen.query(Tile))
        assert [t.key for t in tiles] == list(app.snapshot.runs)
        assert tiles[0].has_class("critical") and not tiles[-1].has_class("critical")
        assert isinstance(app.screen.focused, Tile)
        await pilot.press("down", "down")
        target = app.screen.focused
        assert isinstance(target, Tile) and target is tiles[2]
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: app.screen is app.main and app.selected == target.key)


async def test_compare_matches_metrics_by_role(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("space")  # mark the worst run
        await pilot.press("j", "space")
        await pilot.press("c")
        assert await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        assert len(screen.runs) == 2
        title = str(screen.query_one("#compare-title").render())
        first = screen.index
        await pilot.press("n")
        assert screen.index == (first + 1) % len(screen.groups)
        assert title != str(screen.query_one("#compare-title").render())
        await pilot.press("p", "escape")
        assert await wait_for(pilot, lambda: app.screen is app.main)


def test_role_groups_put_val_loss_and_val_slash_loss_together(demo):
    from watchrun.engine import Engine

    engine = Engine([str(demo)])
    engine.load()
    snap = engine.publish()
    runs = [snap.runs["healthy-resnet"], snap.runs["ctc-asr/lightning_logs/version_0"]]
    assert "val/loss" in runs[0].series and "val_loss" in runs[1].series
    groups = dict(role_groups(runs, {}))
    assert groups["val loss"] == {
        "healthy-resnet": "val/loss",
        "ctc-asr/lightning_logs/version_0": "val_loss",
    }


async def test_help_lists_live_bindings_with_readable_keys_and_remaps(demo):
    app = make_app(demo, Config(keys={"stop_run": "ctrl+k", "overview": "O"}))
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = str(app.screen.query_one("#help-text").render())
        assert "question_mark" not in text and "slash" not in text
        stop = next(line for line in text.splitlines() if "(stop_run)" in line)
        assert "^k" in stop and " x " not in stop
        assert any("?" in line and "(help)" in line for line in text.splitlines())
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: app.screen is app.main)


async def test_console_pane_shows_the_log_and_f_toggles_following(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        await select(pilot, "lm-nan")
        await pilot.press("5")
        console = app.main.query_one(ConsolePane)
        assert await wait_for(pilot, lambda: console.line_count >= len(CONSOLE_LINES))
        assert "RuntimeError" in "\n".join(console.lines)
        assert console.following
        await pilot.press("f")
        assert not console.following
        await pilot.press("f")
        assert console.following


async def test_banner_on_an_ended_run_does_not_say_stop_training(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        run = app.snapshot.runs[app.selected]
        assert run.worst is not None and "stop training" in run.worst.action.lower()
        ended = dataclasses.replace(run, status=RunStatus.FINISHED)
        banner = app.main.query_one(AlertBanner)
        banner.show(ended)
        await pilot.pause(0.1)
        shown = str(banner.render())
        assert "stop training" not in shown.lower() and "run finished" in shown
        assert "stop training" not in action_text(run.worst, ended).lower()


async def test_tiny_terminal_shows_notice(demo):
    app = make_app(demo)
    async with app.run_test(size=(30, 8)) as pilot:
        await pilot.pause(0.3)
        notice = app.main.query_one("#too-small")
        assert notice.display and "too small" in str(notice.render())


async def test_ascii_draws_only_ascii(demo):
    app = make_app(demo, Config(ascii=True))
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        assert "lm-nan" in text and "CRITICAL" in text
        assert text.isascii(), sorted({c for c in text if not c.isascii()})
        await pilot.press("o")
        assert await wait_for(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.pause(0.3)
        assert screen_text(app).isascii()


async def test_no_color_keeps_severity_readable(demo, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        assert app.no_color
        runs = app.main.query_one(RunList)
        cell = runs.get_cell(runs.keys[0], "mark")
        sev = next(span.style for span in cell.spans if "!!" in cell.plain[span.start : span.end])
        assert sev.reverse and sev.bold
        assert "!!" in screen_text(app)


async def test_x_axis_ticks_and_readout_are_drawn(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        await select(pilot, "healthy-resnet")  # 600 steps
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "└" in text and "┬" in text  # the x axis line with its ticks
        assert any(tick in text for tick in (" 200 ", " 400 ")), text
        assert "best" in text and "val/loss" in text


def test_figure_defaults_are_empty():
    assert Figure().curves == ()


async def test_toasts_do_not_cover_the_curves(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await loaded(pilot)
        app.notify("lm-nan: train/loss is NaN at step 79 " * 3, severity="error")
        assert await wait_for(pilot, lambda: len(app.screen.query("Toast")) > 0)
        await pilot.pause(0.3)
        curves = app.main.query_one(CurvesPane).region
        for toast in app.screen.query("Toast"):
            assert not toast.region.overlaps(curves), (toast.region, curves)


async def test_resizing_refits_the_run_list_columns(demo):
    app = make_app(demo)
    async with app.run_test(size=(200, 50)) as pilot:
        await loaded(pilot)
        runs = app.main.query_one(RunList)
        assert [c.value for c in runs.columns] == ["mark", "run", "step", "age", "n"]
        assert "1h" in screen_text(app)  # the age column, from the frozen clock
        await pilot.resize_terminal(80, 24)
        assert await wait_for(
            pilot, lambda: [c.value for c in runs.columns] == ["mark", "run", "n"]
        )
        width = runs.columns["run"].width
        assert all(len(runs.get_cell(k, "run").plain) <= width for k in runs.keys)
        await pilot.resize_terminal(200, 50)
        assert await wait_for(pilot, lambda: "age" in [c.value for c in runs.columns])
        assert "1h" in screen_text(app)


async def test_overview_follows_runs_that_appear_while_it_is_open(demo):
    from watchrun.demo import CsvWriter

    app = make_app(demo, poll=0.2)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("o")
        assert await wait_for(pilot, lambda: isinstance(app.screen, OverviewScreen))
        before = [t.key for t in app.screen.query(Tile)]
        writer = CsvWriter(
            str(demo / "late" / "lightning_logs" / "version_0" / "metrics.csv"),
            ["train_loss", "val_loss"],
        )
        for step in range(20):
            writer.write(step, {"train_loss": 1 / (step + 1), "val_loss": 1.2 / (step + 1)})
        writer.close()
        assert await wait_for(pilot, lambda: len(app.snapshot.runs) == len(before) + 1)
        late = next(k for k in app.snapshot.runs if k not in before)
        assert await wait_for(pilot, lambda: late in [t.key for t in app.screen.query(Tile)])
        tile = next(t for t in app.screen.query(Tile) if t.key == late)
        assert await wait_for(pilot, lambda: tile.view is app.snapshot.runs[late])
        assert "train_loss" in str(tile.render())
        assert sorted(t.key for t in app.screen.query(Tile)) == sorted(app.snapshot.runs)


def _too_long_to_read(root) -> str:
    """A directory nested past PATH_MAX: even root cannot list it by its path (ENAMETOOLONG),
    a real error of the scan that no mode bit is needed for."""
    import os

    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    depth = 0
    try:
        while len(str(root)) + depth * 201 < 4300:
            os.mkdir("d" * 200, dir_fd=fd)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
            depth += 1
    finally:
        os.close(fd)
    return os.path.join(str(root), *(["d" * 200] * depth))


async def test_scan_errors_show_in_the_status_line_and_a_notice(demo):
    deep = _too_long_to_read(demo / "deep")
    app = make_app(demo)
    async with app.run_test(size=(160, 36)) as pilot:
        await loaded(pilot)
        assert app.snapshot.scan_errors and app.snapshot.scan_error_count >= 1
        status = app.main.query_one("#status")
        assert status.display
        text = str(status.render())
        assert "cannot be read" in text and "File name too long" in text
        notices = [n.message for n in app._notifications]
        assert any("File name too long" in m and deep[:40] in m for m in notices), notices
        assert len(app.snapshot.runs) == 5  # the rest is read all the same


async def test_no_status_line_when_everything_can_be_read(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        assert not app.snapshot.scan_errors
        assert not app.main.query_one("#status").display


async def test_follow_symlinks_reaches_runs_outside_the_path(demo, tmp_path_factory):
    from watchrun.demo import CsvWriter

    outside = tmp_path_factory.mktemp("outside")
    writer = CsvWriter(str(outside / "ext" / "metrics.csv"), ["train_loss", "val_loss"])
    for step in range(10):
        writer.write(step, {"train_loss": 1 / (step + 1), "val_loss": 1.2 / (step + 1)})
    writer.close()
    (demo / "linked").symlink_to(outside / "ext")
    for follow, runs in ((False, 5), (True, 6)):
        app = make_app(demo, follow_symlinks=follow)
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot, runs)
            assert any("linked" in k for k in app.snapshot.runs) is follow


def test_the_app_command_takes_follow_symlinks():
    from watchrun.cli import _parser

    assert _parser("app").parse_args(["--follow-symlinks", "x"]).follow_symlinks is True
    assert _parser("app").parse_args(["x"]).follow_symlinks is False


async def test_plots_are_not_rebuilt_while_their_series_do_not_change(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        curves = app.main.query_one(CurvesPane)
        loss_plot = app.main.query_one("#loss-plot", Plot)
        run = curves.run
        figure = loss_plot.figure
        assert figure.curves
        # a new version of the run (another metric moved): the plotted series are the same
        curves.show(dataclasses.replace(run, version=run.version + 1))
        assert loss_plot.figure is figure
        # a plotted series with a new point: a new figure
        name = figure.curves[0].name
        old = run.series[name]
        grown = dataclasses.replace(old, length=old.length + 1)
        series = {**run.series, name: grown}
        curves.show(dataclasses.replace(run, series=series, version=run.version + 2))
        assert loss_plot.figure is not figure


async def test_the_other_keys_f1_4_overview_and_compare_back_and_q(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        await pilot.press("f1")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: app.screen is app.main)
        await pilot.press("4")
        tabs = app.main.query_one(TabbedContent)
        assert await wait_for(pilot, lambda: tabs.active == "tab-info")
        run = app.snapshot.runs[app.selected]
        assert run.root in str(app.main.query_one("#info-text").render())
        await pilot.press("o")
        assert await wait_for(pilot, lambda: isinstance(app.screen, OverviewScreen))
        tiles = list(app.screen.query(Tile))
        assert await wait_for(pilot, lambda: app.screen.focused is tiles[0])
        await pilot.press("j", "j", "k")
        assert await wait_for(pilot, lambda: app.screen.focused is tiles[1])
        await pilot.press("down", "up", "up")
        assert await wait_for(pilot, lambda: app.screen.focused is tiles[0])
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: app.screen is app.main)
        await pilot.press("c")
        assert await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: app.screen is app.main)
        await pilot.press("q")
        assert await wait_for(pilot, lambda: not app.is_running)


async def test_a_long_run_list_fills_a_screen_first_then_the_rest_in_batches(tmp_path):
    from watchrun.app.widgets.run_list import FIRST_ROWS
    from watchrun.demo import CsvWriter

    for i in range(130):
        writer = CsvWriter(str(tmp_path / f"exp{i:03d}" / "metrics.csv"), ["train_loss"])
        for step in range(3):
            writer.write(step, {"train_loss": 1.0 / (step + 1 + i)})
        writer.close()
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 36)) as pilot:
        assert await wait_for(pilot, lambda: app.ready and len(app.snapshot.runs) == 130)
        runs = app.main.query_one(RunList)
        assert await wait_for(pilot, lambda: runs.row_count == 130)
        assert runs.keys == list(app.snapshot.runs)  # every row, worst first
        runs.reset()
        runs.show(app.snapshot, app.clock())
        assert runs.row_count == FIRST_ROWS  # what fills a screen, at once
        assert runs.keys == list(app.snapshot.runs)[:FIRST_ROWS]
        assert await wait_for(pilot, lambda: runs.row_count == 130)
        assert runs.keys == list(app.snapshot.runs)


async def test_the_banner_says_reading_during_the_first_read(demo):
    app = make_app(demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        banner = app.main.query_one(AlertBanner)
        app.main.show(dataclasses.replace(app.snapshot, ready=False), app.clock())
        await pilot.pause(0.1)
        text = str(banner.render())
        assert "reading 5 run(s)" in text and "no run selected" not in text
        app.main.show(app.snapshot, app.clock())
        await pilot.pause(0.1)
        assert "CRITICAL" in str(banner.render())

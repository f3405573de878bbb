"""The Textual app. The engine runs in a thread worker; widgets only read snapshots of the store."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from typing import Any

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from watchrun.app.screens import CompareScreen, HelpScreen, OverviewScreen, StopScreen
from watchrun.app.themes import register_themes
from watchrun.app.widgets.plot import COLORS, Curve, Plot, PlotData
from watchrun.config import Config
from watchrun.engine import Engine
from watchrun.model import Alert, Run, RunStatus, Severity
from watchrun.notify import notify_terminal, run_hook
from watchrun.semantics import pick, role_of
from watchrun.textsafe import printable

STATUS_GLYPH = {
    RunStatus.RUNNING: ("▶", ">"), RunStatus.FINISHED: ("✔", "v"), RunStatus.FAILED: ("✖", "x"),
    RunStatus.STALE: ("⏸", "="), RunStatus.STOPPED: ("■", "#"), RunStatus.GONE: ("∅", "0"),
    RunStatus.UNKNOWN: ("?", "?"),
}
SEV_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "cyan"}


class StoreUpdated(Message):
    """The store changed; carries only a version so a newer one supersedes a queued one."""

    def __init__(self, version: int) -> None:
        super().__init__()
        self.version = version

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StoreUpdated)


class EngineReady(Message):
    """The first full read and detection are done."""


class EngineTrouble(Message):
    """watchrun's own trouble: a detector or a follow tick that raised (the rest goes on)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class NewAlerts(Message):
    def __init__(self, alerts: list[Alert]) -> None:
        super().__init__()
        self.alerts = alerts


class WatchrunApp(App):
    CSS_PATH = "watchrun.tcss"
    TITLE = "watchrun"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark,f1", "help", "Help", id="help"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("x", "stop_run", "Stop run", id="stop_run"),
        Binding("o", "overview", "Overview", id="overview"),
        Binding("c", "compare", "Compare", id="compare"),
        Binding("space", "mark", "Mark", id="mark"),
        Binding("l", "toggle_log", "Log y", id="toggle_log"),
        Binding("s", "toggle_smooth", "Smooth", id="toggle_smooth"),
        Binding("w", "toggle_x", "x: step/epoch/time", id="toggle_x"),
        Binding("t", "next_theme", "Theme", id="next_theme"),
        Binding("j,down", "cursor_down", "Down", show=False, id="cursor_down", priority=True),
        Binding("k,up", "cursor_up", "Up", show=False, id="cursor_up", priority=True),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear_filter"),
    ]

    def __init__(self, paths: list[str], config: Config, poll: float | None = None, quiet: bool = False) -> None:
        super().__init__()
        self.quiet = quiet  # no toasts, bell or desktop notifications
        self.ready = False
        self.config = config
        self.engine = Engine(paths, config, poll_seconds=poll, bounded=True)
        self.engine.detectors.watch_roots = self.engine.roots
        self.stop_event = threading.Event()
        self.selected: str | None = None
        self.filter_text = ""
        self.log_y = False
        self.smooth = False
        self.x_axis = "step"  # step | epoch | time
        self.marked: set[str] = set()
        self.clock = time.time  # tests freeze it for stable snapshots
        self.ascii_only = config.ascii
        self.seen_version = -1
        self.row_keys: list[str] = []
        self._cells: dict[str, tuple] = {}
        if config.keys:
            self.set_keymap({k: v for k, v in config.keys.items()})

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="banner")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Input(placeholder="filter runs…", id="filter")
                yield DataTable(id="runs", cursor_type="row", zebra_stripes=False)
            with Vertical(id="right"):
                yield Static("", id="run-title")
                with TabbedContent(id="tabs"):
                    with TabPane("Curves", id="tab-curves"):
                        yield Plot(id="loss-plot", ascii_only=self.ascii_only)
                        yield Plot(id="metric-plot", ascii_only=self.ascii_only)
                    with TabPane("Classes", id="tab-classes"):
                        yield DataTable(id="classes", cursor_type="row")
                    with TabPane("Alerts", id="tab-alerts"):
                        yield DataTable(id="alerts", cursor_type="row")
                    with TabPane("Info", id="tab-info"):
                        yield Static("", id="info")
        yield Static("", id="too-small")
        yield Footer()

    def on_mount(self) -> None:
        register_themes(self)
        try:
            self.theme = self.config.theme
        except Exception:  # noqa: BLE001 - unknown theme name: keep the default
            self.theme = "watchrun-dark"
        runs = self.query_one("#runs", DataTable)
        runs.add_columns("", "run", "step", "age", "!")
        self.query_one("#classes", DataTable).add_columns("class", "precision", "recall", "f1", "support", "best f1", "trend")
        self.query_one("#alerts", DataTable).add_columns("sev", "step", "detector", "message")
        self.query_one("#filter", Input).display = False
        runs.focus()
        self.run_engine()
        self.set_interval(5.0, self._refresh_ages)

    # -- the engine thread ----------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def run_engine(self) -> None:
        engine = self.engine

        def progress(_key: str) -> None:
            self.post_message(StoreUpdated(engine.store.version))

        engine.load(on_progress=progress, stop=self.stop_event)
        if self.stop_event.is_set():  # quit (or the SSH link dropped) during the first read
            return
        engine.detect(final=False)
        first = engine.detect(final=True)
        self.post_message(StoreUpdated(engine.store.version))
        self.post_message(EngineReady())
        if first:
            self.post_message(NewAlerts([a for a in first if a.severity is Severity.CRITICAL][-3:]))
        engine.start_watching()

        def trouble(text: str) -> None:
            self.post_message(EngineTrouble(text))

        try:
            while not self.stop_event.is_set():
                for text in engine.detectors.take_failures():
                    trouble(text)
                alerts = engine.tick_safely(trouble)
                if alerts:
                    self.post_message(NewAlerts(alerts))
                self.post_message(StoreUpdated(engine.store.version))
                engine.wake.wait(timeout=engine.poll_seconds if not engine.watching else 2.0)
                engine.wake.clear()
                time.sleep(0.05)
        finally:
            engine.stop_watching()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.notify(printable(f"engine error: {event.worker.error}"), severity="error", timeout=10, markup=False)

    def on_unmount(self) -> None:
        self.stop_event.set()
        self.engine.wake.set()

    # -- updates ------------------------------------------------------------------------------
    def on_store_updated(self, message: StoreUpdated) -> None:
        if message.version == self.seen_version:
            return
        self.seen_version = message.version
        self._refresh_runs()
        self._refresh_run_view()

    def on_engine_ready(self, message: EngineReady) -> None:
        self.ready = True

    def on_engine_trouble(self, message: EngineTrouble) -> None:
        self.notify(printable(message.text), severity="warning", timeout=10, markup=False)

    def on_new_alerts(self, message: NewAlerts) -> None:
        if self.quiet:
            return
        for alert in message.alerts:
            if alert.severity is Severity.CRITICAL:
                self.bell()
                notify_terminal(self, f"watchrun: {printable(alert.run)}", printable(alert.message))
                if self.config.on_alert:
                    run_hook(self.config.on_alert, alert)
            if alert.severity is not Severity.INFO:
                self.notify(printable(f"{alert.run}: {alert.message}"), markup=False,
                            severity="error" if alert.severity is Severity.CRITICAL else "warning", timeout=6)

    def _worst(self, key: str) -> tuple[Alert | None, int]:
        alerts = self.engine.store.alerts_for(key)
        open_ = [a for a in alerts if a.open and a.detector != "restarted"]
        worst = max(open_, key=lambda a: (a.severity.rank, a.step), default=None)
        return worst, len([a for a in alerts if a.severity is not Severity.INFO])

    def _refresh_runs(self) -> None:
        table = self.query_one("#runs", DataTable)
        keys = [k for k in self.engine.visible_keys() if self.filter_text.lower() in k.lower()]
        rows = []
        for k in keys:
            run = self.engine.store.runs[k]
            worst, n = self._worst(k)
            rows.append((-(worst.severity.rank + 1) if worst else 0, -run.last_write, k, run, worst, n))
        rows.sort(key=lambda r: r[:3])
        order = [r[2] for r in rows]
        with self.batch_update():
            if order != self.row_keys:
                table.clear()
                self._cells = {}
                for _, _, k, run, worst, n in rows:
                    cells = self._run_cells(run, worst, n)
                    self._cells[k] = cells
                    table.add_row(*cells, key=k)
                self.row_keys = order
            else:  # diff by row key: touch only the cells whose text changed
                for _, _, k, run, worst, n in rows:
                    cells = self._run_cells(run, worst, n)
                    old = self._cells.get(k, ())
                    for c, (col, cell) in enumerate(zip(table.columns, cells, strict=True)):
                        if c >= len(old) or str(old[c]) != str(cell) or getattr(old[c], "style", None) != getattr(cell, "style", None):
                            table.update_cell(k, col, cell)
                    self._cells[k] = cells
        if self.selected is None and order:
            self.selected = order[0]
        if self.selected in order:
            idx = order.index(self.selected)
            if table.cursor_row != idx:
                table.move_cursor(row=idx)

    def _run_cells(self, run: Run, worst: Alert | None, n: int) -> tuple:
        glyph = STATUS_GLYPH[run.status][1 if self.ascii_only else 0]
        style = SEV_STYLE[worst.severity] if worst else "green"
        step = run.last_step()
        mark = "+" if run.key in self.marked else " "
        return (
            Text(glyph + mark, style=style),
            Text(printable(run.key), style=style if worst and worst.severity is Severity.CRITICAL else ""),
            "" if step is None else str(step),
            _age(run.last_write, self.clock()),
            Text(str(n) if n else "", style=style),
        )

    def _refresh_ages(self) -> None:
        self._refresh_runs()

    @on(DataTable.RowHighlighted, "#runs")
    def _select(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key else None
        if event.cursor_row != event.data_table.cursor_row:
            return  # a stale event from before a programmatic move
        if key and key != self.selected:
            self.selected = key
            self._refresh_run_view()

    def _refresh_run_view(self) -> None:
        if not self.selected:
            return
        run = self.engine.store.snapshot(self.selected)
        if run is None:
            return
        alerts = self.engine.store.alerts_for(run.key)
        self._show_banner(run, alerts)
        title = printable(f"{run.display_name or run.key}  [{', '.join(sorted(run.formats))}]  {run.status.value}")
        self.query_one("#run-title", Static).update(Text(title, style="bold"))
        self._show_plots(run, alerts)
        self._show_classes(run)
        self._show_alerts(alerts, run.events)
        self._show_info(run)

    def _show_banner(self, run: Run, alerts: list[Alert]) -> None:
        banner = self.query_one("#banner", Static)
        worst, _ = self._worst(run.key)
        banner.remove_class("critical", "warning", "ok")
        if worst is None or worst.severity is Severity.INFO:
            banner.add_class("ok")
            banner.update(Text(f" {printable(run.key)}: no open warning", style="bold"))
            return
        banner.add_class("critical" if worst.severity is Severity.CRITICAL else "warning")
        t = Text()
        t.append(f" {worst.severity.value.upper()} ", style="bold reverse")
        t.append(f" {printable(worst.message)}\n", style="bold")
        arrow = "->" if self.ascii_only else "→"
        t.append(printable(f" {arrow} {worst.action}   ({worst.detector}, step {worst.step}, {run.key})"))
        banner.update(t)

    def _show_plots(self, run: Run, alerts: list[Alert]) -> None:
        names = list(run.series)
        aliases = self.config.aliases
        losses = [n for n in (pick(names, "train", "loss", aliases), pick(names, "val", "loss", aliases)) if n]
        if not losses:
            losses = [n for n in names if role_of(n, aliases).kind == "loss"][:2]
        key = [n for n in names if role_of(n, aliases).split in ("val", "test") and role_of(n, aliases).is_quality
               and role_of(n, aliases).kind != "loss"][:3]
        if not key:
            key = [n for n in names if n not in losses and role_of(n, aliases).kind not in ("runtime", "epoch")][:3]
        marks = [float(a.step) for a in alerts if a.severity is not Severity.INFO]
        self.query_one("#loss-plot", Plot).show(self._plot_data(run, losses, marks))
        self.query_one("#metric-plot", Plot).show(self._plot_data(run, key, marks))

    def _plot_data(self, run: Run, names: list[str], marks: list[float]) -> PlotData:
        curves = []
        for i, n in enumerate(names):
            s = run.series[n]
            seg = s.segments[-1]
            x = self._x(run, s, seg)
            y = s.values[seg:]
            if self.smooth and len(y) > 3:
                y = _ema(y, 0.9)
            best = None
            fin = np.isfinite(y)
            if fin.any():
                hb = role_of(n, self.config.aliases).higher_better
                j = int(np.nanargmax(np.where(fin, y, np.nan)) if hb else np.nanargmin(np.where(fin, y, np.nan)))
                best = (float(x[j]), float(y[j])) if hb is not None else None
            curves.append(Curve(n, x, y, COLORS[i % len(COLORS)], best))
        label = {"time": "seconds", "epoch": "epoch"}.get(self.x_axis, run.step_unit)
        return PlotData(curves, self.log_y, marks if self.x_axis == "step" else [], label)

    def _x(self, run: Run, s, seg: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        steps = s.steps[seg:].astype(np.float64)
        if self.x_axis == "time":
            walls = s.walls[seg:]
            return walls - walls.min() if len(walls) else walls
        epoch = run.series.get("epoch")
        if self.x_axis == "epoch" and epoch is not None and len(epoch) > 1 and run.step_unit != "epoch":
            order = np.argsort(epoch.steps, kind="stable")
            return np.interp(steps, epoch.steps[order].astype(np.float64), epoch.values[order])
        return steps

    def _show_classes(self, run: Run) -> None:
        table = self.query_one("#classes", DataTable)
        fam: dict[str, dict[str, Any]] = {}
        averages: dict[str, dict[str, Any]] = {}
        for n, s in run.series.items():
            r = role_of(n, self.config.aliases)
            if r.split not in ("val", "test", "") or r.kind not in ("precision", "recall", "f1", "support", "accuracy"):
                continue
            label = r.cls if r.cls is not None else (r.avg or "binary/headline")
            target = fam if r.cls is not None else averages
            row = target.setdefault(label, {})
            row[r.kind] = s
        with self.batch_update():
            table.clear()
            if not fam:
                table.add_row(Text("no per-class metrics logged (see README: make your run watchable)", style="dim"))
                return
            worst = min(fam, key=lambda c: _last(fam[c].get("f1") or fam[c].get("recall")))
            for label, row in sorted(fam.items()) + sorted(averages.items()):
                style = "bold red" if label == worst else ("italic" if label in averages else "")
                f1 = row.get("f1")
                table.add_row(
                    Text(printable(label), style=style), _cell(row.get("precision")), _cell(row.get("recall")),
                    _cell(f1), _cell(row.get("support"), digits=0),
                    _cell_best(f1), _trend(f1),
                )

    def _show_alerts(self, alerts: list[Alert], events: list[tuple[int, str]]) -> None:
        table = self.query_one("#alerts", DataTable)
        with self.batch_update():
            table.clear()
            for step, message in reversed(events):  # early stopping, stop requests and their outcome
                table.add_row(Text("event", style="cyan"), str(step), "run", Text(printable(message)))
            for a in reversed(alerts):
                table.add_row(Text(a.severity.value, style=SEV_STYLE[a.severity]), str(a.step),
                              Text(printable(a.detector)),
                              Text(printable(a.message) + ("" if a.open else "  (closed)")))

    def _show_info(self, run: Run) -> None:
        lines = [f"root: {run.root}", f"status: {run.status.value}   step unit: {run.step_unit}"]
        if run.pid:
            lines.append(f"writer: pid {run.pid} on {run.host}")
        for k in ("max_steps", "eval_steps", "best_metric", "best_model_checkpoint"):
            if k in run.meta:
                lines.append(f"{k}: {run.meta[k]}")
        if run.hparams:
            lines.append("hparams: " + ", ".join(f"{k}={v}" for k, v in list(run.hparams.items())[:30]))
        if run.summary:
            lines.append("summary: " + ", ".join(f"{k}={_fmt(v)}" for k, v in list(run.summary.items())[:20]))
        lines.append("files:")
        lines += [f"  {f}" for f in sorted(run.files)[:20]]
        if run.warnings:
            lines.append("warnings:")
            lines += [f"  {w}" for w in run.warnings]
        # plain Text, never markup: a name with "[/x]" in it must not be read as a style
        self.query_one("#info", Static).update(Text("\n".join(printable(line) for line in lines)))

    # -- actions ------------------------------------------------------------------------------
    def action_help(self) -> None:
        self.push_screen(HelpScreen(self))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self._refresh_runs()
        self.query_one("#runs", DataTable).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self._refresh_runs()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#runs", DataTable).focus()

    def action_cursor_down(self) -> None:
        self._move(+1)

    def action_cursor_up(self) -> None:
        self._move(-1)

    def _move(self, delta: int) -> None:
        """Select by run key, so a re-sort of the list does not move the user's selection."""
        if not self.row_keys:
            return
        i = self.row_keys.index(self.selected) if self.selected in self.row_keys else 0
        self.selected = self.row_keys[max(0, min(len(self.row_keys) - 1, i + delta))]
        self._refresh_runs()
        self._refresh_run_view()

    def action_toggle_log(self) -> None:
        self.log_y = not self.log_y
        self._refresh_run_view()

    def action_toggle_smooth(self) -> None:
        self.smooth = not self.smooth
        self._refresh_run_view()

    def action_toggle_x(self) -> None:
        order = ["step", "epoch", "time"]
        self.x_axis = order[(order.index(self.x_axis) + 1) % 3]
        self.notify(f"x axis: {self.x_axis}", timeout=2)
        self._refresh_run_view()

    def action_mark(self) -> None:
        if self.selected:
            self.marked ^= {self.selected}
            self._refresh_runs()

    def action_compare(self) -> None:
        keys = [k for k in self.row_keys if k in self.marked] or list(self.row_keys)
        metric = None
        if self.selected:
            run = self.engine.store.snapshot(self.selected)
            if run is not None:
                metric = pick(list(run.series), "val", "loss", self.config.aliases)
        self.push_screen(CompareScreen(self, keys, metric))

    def action_next_theme(self) -> None:
        names = ["watchrun-dark", "watchrun-light", "watchrun-contrast"]
        self.theme = names[(names.index(self.theme) + 1) % len(names)] if self.theme in names else names[0]
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_overview(self) -> None:
        self.push_screen(OverviewScreen(self))

    def action_stop_run(self) -> None:
        if not self.selected:
            return
        run = self.engine.store.snapshot(self.selected)
        if run is not None:
            self.push_screen(StopScreen(run, self._worst(run.key)[0], self.config.allow_other_users), self._stopped)

    def _stopped(self, result: str | None) -> None:
        if not result or not self.selected:
            return
        store = self.engine.store
        with store.lock:
            run = store.runs[self.selected]
            requested = result.startswith("stop requested")
            if not requested and not result.startswith("could not"):
                run.stopped = True  # signalled; a request is only marked once its outcome arrives
            store.add_alert(Alert(run.key, "stop_requested" if requested else "stopped", Severity.INFO,
                                  run.last_step() or 0, [], result, {}, ""))
        self.notify(printable(result), timeout=5, markup=False)
        self._refresh_run_view()

    def on_resize(self, event) -> None:  # type: ignore[no-untyped-def]
        small = event.size.width < 40 or event.size.height < 10
        self.query_one("#too-small", Static).update("terminal too small for watchrun\n(40x10 at least)" if small else "")
        self.query_one("#too-small").display = small
        self.query_one("#main").display = not small
        self.query_one("#banner").display = not small


def _ema(y: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty_like(y, dtype=np.float64)
    acc = math.nan
    for i, v in enumerate(y):
        acc = v if math.isnan(acc) or not math.isfinite(v) else alpha * acc + (1 - alpha) * v
        out[i] = acc
    return out


def _last(s) -> float:  # type: ignore[no-untyped-def]
    return float(s.values[-1]) if s is not None and len(s) else math.inf


def _cell(s, digits: int = 3) -> str:  # type: ignore[no-untyped-def]
    if s is None or not len(s):
        return ""
    v = float(s.values[-1])
    return f"{v:.{digits}f}" if math.isfinite(v) else str(v)


def _cell_best(s) -> str:  # type: ignore[no-untyped-def]
    if s is None or not len(s):
        return ""
    return f"{float(np.nanmax(s.values)):.3f}"


def _trend(s) -> Text:  # type: ignore[no-untyped-def]
    if s is None or len(s) < 2:
        return Text("")
    d = float(s.values[-1] - s.values[-2])
    return Text("↑" if d > 0 else "↓" if d < 0 else "→", style="green" if d > 0 else "red" if d < 0 else "dim")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _age(t: float, now: float) -> str:
    if not t:
        return ""
    s = now - t
    if s < 60:  # 10 s steps: a redraw of the table every few seconds costs more than it tells
        return f"{int(s // 10) * 10}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


def run_app(paths: list[str], config: Config, poll: float | None = None, quiet: bool = False) -> int:
    app = WatchrunApp(paths, config, poll, quiet)

    def on_hup(signum: int, frame: Any) -> None:
        """The SSH link dropped: leave now. A clean exit normally; a hard one if it takes > 1.5 s
        (nothing is left to save: watchrun only reads)."""
        app.stop_event.set()
        app.engine.wake.set()
        hard = threading.Timer(1.5, lambda: os._exit(0))
        hard.daemon = True
        hard.start()
        app.exit()

    signal.signal(signal.SIGHUP, on_hup)
    if os.environ.get("NO_COLOR"):
        os.environ.setdefault("TEXTUAL_COLOR_SYSTEM", "standard")
    app.run()
    return 0


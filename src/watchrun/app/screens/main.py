"""The main screen: the banner, the run list on the left, the selected run's tabs on the right."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from watchrun.app.messages import AlertChosen, RunChosen
from watchrun.app.theme import Palette
from watchrun.app.widgets.alerts import AlertsTable
from watchrun.app.widgets.banner import AlertBanner
from watchrun.app.widgets.classes import ClassesTable
from watchrun.app.widgets.console import ConsolePane
from watchrun.app.widgets.curves import X_KINDS, CurvesPane, x_kind_for
from watchrun.app.widgets.gpu import MachineStrip, ProcessPane
from watchrun.app.widgets.info import InfoPane
from watchrun.app.widgets.run_list import RunList
from watchrun.app.widgets.run_title import RunTitle
from watchrun.app.widgets.status import StatusLine
from watchrun.snapshot import EMPTY, Snapshot

TABS = ("curves", "classes", "alerts", "info", "console", "process")
MIN_SIZE = (40, 10)
# the tabs' labels, and shorter ones for a narrow right pane (80 columns: the last tab was cut)
TAB_LABELS = {
    "tab-curves": ("1 Curves", "1 Curves"),
    "tab-classes": ("2 Classes", "2 Class"),
    "tab-alerts": ("3 Alerts", "3 Alerts"),
    "tab-info": ("4 Info", "4 Info"),
    "tab-console": ("5 Console", "5 Log"),
    "tab-process": ("6 Process", "6 Proc"),
}


class MainScreen(Screen[None]):
    DEFAULT_CSS = """
    MainScreen { layout: vertical; }
    MainScreen #main { height: 1fr; }
    MainScreen #left {
        width: 36%; min-width: 27; max-width: 60; border-right: vkey $panel-lighten-1;
    }
    MainScreen #filter { height: 3; display: none; }
    MainScreen #filter.shown { display: block; }
    MainScreen #right { width: 1fr; }
    MainScreen #tabs { height: 1fr; }
    MainScreen TabPane { padding: 0; }
    MainScreen #too-small {
        display: none; content-align: center middle; height: 1fr; color: $error;
    }
    """
    BINDINGS = [
        Binding("1", "tab('curves')", "Curves", show=False, id="tab_curves"),
        Binding("2", "tab('classes')", "Classes", show=False, id="tab_classes"),
        Binding("3", "tab('alerts')", "Alerts", show=False, id="tab_alerts"),
        Binding("4", "tab('info')", "Info", show=False, id="tab_info"),
        Binding("5", "tab('console')", "Console", show=False, id="tab_console"),
        Binding("6", "tab('process')", "Process", show=False, id="tab_process"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("x", "stop_run", "Stop", id="stop_run"),
        Binding("o", "overview", "Overview", id="overview"),
        Binding("c", "compare", "Compare", id="compare"),
        Binding("space", "mark", "Mark", id="mark"),
        Binding("l", "toggle_log", "Log y", id="toggle_log"),
        Binding("s", "toggle_smooth", "Smooth", id="toggle_smooth"),
        Binding("w", "toggle_x", "x axis", id="toggle_x"),
        Binding("f", "follow", "Follow console", show=False, id="follow"),
        Binding("escape", "back", "Back to runs", show=False, id="back"),
    ]

    def __init__(self, palette: Palette, ascii_only: bool, aliases: dict[str, str]) -> None:
        super().__init__()
        self.palette = palette
        self.ascii_only = ascii_only
        self.aliases = aliases
        self.snapshot: Snapshot = EMPTY
        self.selected: str | None = None
        self.marked: set[str] = set()
        self.now = 0.0

    def compose(self) -> ComposeResult:
        yield MachineStrip(id="machine")
        yield AlertBanner(id="banner")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Input(
                    placeholder="filter runs…" if not self.ascii_only else "filter runs",
                    id="filter",
                )
                yield RunList(id="runs")
            with Vertical(id="right"):
                yield RunTitle(id="run-title")
                with TabbedContent(id="tabs", initial="tab-curves"):
                    with TabPane(TAB_LABELS["tab-curves"][0], id="tab-curves"):
                        yield CurvesPane(id="curves")
                    with TabPane(TAB_LABELS["tab-classes"][0], id="tab-classes"):
                        yield ClassesTable(id="classes")
                    with TabPane(TAB_LABELS["tab-alerts"][0], id="tab-alerts"):
                        yield AlertsTable(id="alerts")
                    with TabPane(TAB_LABELS["tab-info"][0], id="tab-info"):
                        yield InfoPane(id="info")
                    with TabPane(TAB_LABELS["tab-console"][0], id="tab-console"):
                        yield ConsolePane(id="console")
                    with TabPane(TAB_LABELS["tab-process"][0], id="tab-process"):
                        yield ProcessPane(id="process")
        yield Static("terminal too small for watchrun\n(40x10 at least)", id="too-small")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.apply_palette(self.palette)
        self.query_one(RunList).focus()

    # -- data ---------------------------------------------------------------------------------
    def apply_palette(self, palette: Palette) -> None:
        self.palette = palette
        for pane in (
            self.query_one(RunList),
            self.query_one(AlertBanner),
            self.query_one(CurvesPane),
            self.query_one(ClassesTable),
            self.query_one(AlertsTable),
        ):
            pane.palette = palette
            if hasattr(pane, "ascii_only"):
                pane.ascii_only = self.ascii_only
            if hasattr(pane, "aliases"):
                pane.aliases = self.aliases
        self.query_one(MachineStrip).ascii_only = self.ascii_only
        self.query_one(AlertBanner).run = None
        self.query_one(ClassesTable).run = None
        self.query_one(AlertsTable).run = None
        self.query_one(RunList).reset()
        self.show(self.snapshot, self.now, force=True)

    def show(self, snapshot: Snapshot, now: float, force: bool = False) -> None:
        self.snapshot = snapshot
        self.now = now
        runs = self.query_one(RunList)
        runs.marked = self.marked
        runs.show(snapshot, now)
        self.query_one(MachineStrip).show(snapshot.machine)
        self.query_one(StatusLine).show(snapshot)
        if runs.filter_text and not runs.keys:  # the filter hides every run: none is chosen
            self.selected = None  # (`x` must not stop a run the list does not show)
        elif not runs.user_moved and runs.keys:
            self.selected = runs.keys[0]  # the worst run, until the user moves
        elif self.selected not in runs.keys and runs.keys:  # filtered out, or gone
            self.selected = runs.keys[0]
        runs.select(self.selected)
        if not snapshot.ready and not force:  # the first read: list the runs, draw plots once done
            self.query_one(RunTitle).say(
                Text(f"reading… {len(snapshot.runs)} run(s) so far", style="dim")
            )
            self.query_one(AlertBanner).reading(len(snapshot.runs))
            return
        self.show_run(force)

    def show_run(self, force: bool = False) -> None:
        run = self.snapshot.run(self.selected)
        self.query_one(AlertBanner).show(run)
        hidden = self.query_one(RunList).filter_text if run is None else ""
        self.query_one("#tabs").display = not hidden  # no run's panes under "no run matches"
        if hidden:
            self.query_one(RunTitle).say(Text(f"no run matches {hidden!r}", style="dim"))
        if run is None:
            return
        curves = self.query_one(CurvesPane)
        x_axis = curves.x_kind
        if x_kind_for(run, x_axis) != x_axis:  # a time axis for a run that records no times
            x_axis = "step (no times)"
        self.query_one(RunTitle).show(
            run.display_name or run.key,
            f"  [{', '.join(sorted(run.formats))}]  {run.status.value}",
            f"   x: {x_axis}"
            + ("  smooth" if curves.smooth else "")
            + ("  log y" if curves.log_y else ""),
        )
        curves.show(run, force)
        self.query_one(ClassesTable).show(run)
        self.query_one(AlertsTable).show(run)
        self.query_one(InfoPane).show(run)
        self.query_one(ConsolePane).show(run)
        self.query_one(ProcessPane).show(run, self.snapshot.machine)

    @on(RunChosen)
    def _run_chosen(self, event: RunChosen) -> None:
        if event.key != self.selected and event.key in self.snapshot.runs:
            self.selected = event.key
            self.show_run()

    def choose(self, key: str) -> None:
        """Select `key` as the user would (from the overview)."""
        runs = self.query_one(RunList)
        runs.user_moved = True
        self.selected = key
        runs.select(key)
        self.show_run()

    @on(AlertChosen)
    def _alert_chosen(self, event: AlertChosen) -> None:
        self.app.open_alert(event.alert, self.snapshot.run(self.selected))  # type: ignore[attr-defined]

    # -- actions ------------------------------------------------------------------------------
    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = f"tab-{name}"
        target = {"classes": ClassesTable, "alerts": AlertsTable, "console": ConsolePane}.get(name)
        (self.query_one(target) if target else self.query_one(RunList)).focus()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("shown"):
            box.value = ""
            box.remove_class("shown")
            self._set_filter("")
        self.query_one(RunList).focus()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(RunList).focus()

    def _set_filter(self, text: str) -> None:
        runs = self.query_one(RunList)
        runs.filter_text = text
        runs.user_moved = bool(text) or runs.user_moved
        self.show(self.snapshot, self.now)

    def action_mark(self) -> None:
        if self.selected:
            self.marked ^= {self.selected}
            self.show(self.snapshot, self.now)

    def action_toggle_log(self) -> None:
        curves = self.query_one(CurvesPane)
        curves.log_y = not curves.log_y
        self.show_run(force=True)

    def action_toggle_smooth(self) -> None:
        curves = self.query_one(CurvesPane)
        curves.smooth = not curves.smooth
        self.show_run(force=True)

    def action_toggle_x(self) -> None:
        curves = self.query_one(CurvesPane)
        curves.x_kind = X_KINDS[(X_KINDS.index(curves.x_kind) + 1) % len(X_KINDS)]
        self.show_run(force=True)

    def action_follow(self) -> None:
        console = self.query_one(ConsolePane)
        self.action_tab("console")
        console.follow(not console.following)
        self.notify(
            "console: following the tail" if console.following else "console: paused", timeout=2
        )

    def action_stop_run(self) -> None:
        if self.selected:
            self.app.open_stop(self.selected)  # type: ignore[attr-defined]

    def action_overview(self) -> None:
        self.app.open_overview()  # type: ignore[attr-defined]

    def action_compare(self) -> None:
        keys = [k for k in self.snapshot.runs if k in self.marked] or list(self.snapshot.runs)
        if self.selected in keys:  # the selected run first
            keys.remove(self.selected)
            keys.insert(0, self.selected)
        self.app.open_compare(keys, self.selected)  # type: ignore[attr-defined]

    def on_resize(self, event) -> None:  # type: ignore[no-untyped-def]
        small = event.size.width < MIN_SIZE[0] or event.size.height < MIN_SIZE[1]
        self.query_one("#too-small").display = small
        self.query_one("#main").display = not small
        self.query_one(AlertBanner).display = not small
        self.call_after_refresh(self._fit_tab_labels)

    def _fit_tab_labels(self) -> None:
        """The short labels when the long ones (each with its padding) do not fit the pane."""
        width = self.query_one("#right").size.width
        long_width = sum(len(long) + 2 for long, _ in TAB_LABELS.values())
        tabs = self.query_one("#tabs", TabbedContent)
        for pane_id, (long, short) in TAB_LABELS.items():
            tabs.get_tab(pane_id).label = long if long_width <= width else short

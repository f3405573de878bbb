"""The Textual app: runs the engine's follow loop in a thread worker and hands each published
Snapshot to the screens. It never reads a Run the engine is writing and never writes into the
store: a stop goes through control, and its outcome to the engine (Engine.record_stop)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import psutil
from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.filter import LineFilter
from textual.worker import Worker, WorkerState

from watchrun import control
from watchrun.app.messages import EngineTrouble, NewAlerts, RunChosen, SnapshotReady
from watchrun.app.screens.alert_detail import AlertDetailScreen
from watchrun.app.screens.compare import CompareScreen
from watchrun.app.screens.help import HelpScreen, key_help
from watchrun.app.screens.main import MainScreen
from watchrun.app.screens.overview import OverviewScreen
from watchrun.app.screens.stop import StopChoice, StopScreen
from watchrun.app.text import AsciiFilter
from watchrun.app.theme import Palette, load_all, palette_from
from watchrun.config import Config
from watchrun.engine import Engine
from watchrun.model import Alert, Severity
from watchrun.notify import notify_terminal, run_hook
from watchrun.snapshot import EMPTY, RunView, Snapshot
from watchrun.textsafe import printable

DEFAULT_THEME = "watchrun-dark"
LOAD_PUBLISH_EVERY = 1.0  # seconds between snapshots while the first read is under way
EXIT_WAIT = 12.0  # seconds a signalled process is given to exit (kill escalates after 10)
MAX_TOLD_ERRORS = 3  # unreadable paths named in the notice (the status line counts them all)
AGE_REFRESH = 60.0  # ages are shown in minutes: refresh them once a minute


class WatchrunApp(App[None]):
    CSS_PATH = "watchrun.tcss"
    TITLE = "watchrun"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark,f1", "help", "Help", id="help"),
        Binding("t", "next_theme", "Theme", id="next_theme"),
    ]

    @classmethod
    def binding_ids(cls) -> list[str]:
        """Every binding id `[keys]` may remap: the app's and its screens'."""
        screens = (MainScreen, OverviewScreen, CompareScreen)
        return sorted({b.id for c in (cls, *screens) for b in c.BINDINGS if getattr(b, "id", None)})

    def __init__(
        self,
        paths: list[str],
        config: Config,
        poll: float | None = None,
        quiet: bool = False,
        follow_symlinks: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.quiet = quiet  # no toasts, bell or desktop notifications
        self.ascii_only = config.ascii
        self.engine = Engine(
            paths, config, poll_seconds=poll, bounded=True, follow_symlinks=follow_symlinks
        )
        self.engine.detectors.watch_roots = self.engine.roots
        self.stop_event = threading.Event()
        self.snapshot: Snapshot = EMPTY
        self.clock = time.time  # tests freeze it for stable pictures
        self.main = MainScreen(Palette(), self.ascii_only, dict(config.aliases))
        self._themes, self._palettes, self._theme_problems = load_all()
        self._posted: Snapshot | None = None
        self._last_load_publish = 0.0
        self._told_errors: set[str] = set()
        if config.keys:
            self.set_keymap(dict(config.keys))

    @property
    def ready(self) -> bool:
        return self.snapshot.ready

    @property
    def selected(self) -> str | None:
        return self.main.selected

    def get_line_filters(self) -> list[LineFilter]:
        filters = list(super().get_line_filters())
        if self.ascii_only:
            filters.append(AsciiFilter())
        return filters

    # -- start --------------------------------------------------------------------------------
    def on_mount(self) -> None:
        for theme in self._themes.values():
            self.register_theme(theme)
        wanted = self.config.theme or DEFAULT_THEME
        try:
            self.theme = wanted
        except Exception:  # noqa: BLE001 - an unknown theme name: say so, keep the default
            self.theme = DEFAULT_THEME if DEFAULT_THEME in self._themes else "textual-dark"
            self._theme_problems.append(f"unknown theme {wanted!r}")
        self.theme_changed_signal.subscribe(self, lambda _theme: self._apply_palette())
        self.push_screen(self.main)
        self._apply_palette()
        for problem in self._theme_problems:
            self.notify(problem, severity="warning", timeout=8)
        self.run_engine()
        self.set_interval(AGE_REFRESH, self._refresh_ages)

    def palette(self) -> Palette:
        if self.theme in self._palettes:
            return self._palettes[self.theme]
        return palette_from(self.current_theme)

    def _apply_palette(self) -> None:
        if self.main.is_mounted:
            self.main.apply_palette(self.palette())

    # -- the engine thread --------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def run_engine(self) -> None:
        engine = self.engine
        engine.load(
            on_progress=self._publish_while_loading,
            stop=self.stop_event,
            on_scanned=self._publish,
            freeze=True,  # one engine for the life of the app: its read's objects stay
        )
        if self.stop_event.is_set():  # quit (or the SSH link dropped) during the first read
            return
        first = engine.detect(final=False)
        first += engine.detect(final=True)
        self._publish()
        critical = [a for a in first if a.severity is Severity.CRITICAL]
        if critical:
            self.post_message(NewAlerts(critical[-3:]))
        for text in engine.detectors.take_failures():
            self.post_message(EngineTrouble(text))
        engine.run_forever(
            self.stop_event,
            lambda alerts: self.post_message(NewAlerts(alerts)),
            on_error=lambda text: self.post_message(EngineTrouble(text)),
            on_tick=self._publish,
        )

    def _publish(self) -> None:
        snapshot = self.engine.publish()
        if snapshot is not self._posted:
            self._posted = snapshot
            self.post_message(SnapshotReady(snapshot))

    def _publish_while_loading(self, _key: str) -> None:
        """Throttled: every redraw of a long list holds the GIL the reading thread needs, so
        the interval grows with the runs already listed (1 s, +1 s per 250 runs)."""
        now = time.monotonic()
        every = LOAD_PUBLISH_EVERY * (1 + len(self.snapshot.runs) / 250)
        if now - self._last_load_publish >= every:
            self._last_load_publish = now
            self._publish()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.notify(
                printable(f"{event.worker.name}: {event.worker.error}"),
                severity="error",
                timeout=10,
                markup=False,
            )

    def on_engine_trouble(self, message: EngineTrouble) -> None:
        """watchrun's own trouble (a detector or a follow tick that raised): said, not fatal."""
        self.notify(printable(message.text), severity="warning", timeout=10, markup=False)

    def on_unmount(self) -> None:
        self.stop_event.set()
        self.engine.wake.set()

    # -- updates ------------------------------------------------------------------------------
    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if not self.is_running:  # quitting: the screens' widgets are being removed
            return
        self.snapshot = message.snapshot
        self._tell_scan_errors(self.snapshot)
        now = self.clock()
        if self.main.is_mounted:
            self.main.show(self.snapshot, now)
        for screen in self.screen_stack:
            if isinstance(screen, OverviewScreen):
                screen.show(self.snapshot)

    def _tell_scan_errors(self, snapshot: Snapshot) -> None:
        """A notice when the scan finds paths it cannot read that it had not reported yet (the
        status line keeps saying it while it lasts)."""
        new = [e for e in snapshot.scan_errors if e not in self._told_errors]
        if not new:
            return
        self._told_errors |= set(new)
        more = max(snapshot.scan_error_count, len(snapshot.scan_errors)) - len(snapshot.scan_errors)
        lines = [printable(e) for e in new[:MAX_TOLD_ERRORS]]
        hidden = len(new) - len(lines) + max(0, more)
        if hidden > 0:
            lines.append(f"... and {hidden} more")
        self.notify(
            "\n".join(lines), title="cannot read", severity="warning", timeout=10, markup=False
        )

    def _refresh_ages(self) -> None:
        if self.main.is_mounted:
            self.main.show(self.snapshot, self.clock())

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
                self.notify(
                    printable(f"{alert.run}: {alert.message}"),
                    markup=False,
                    timeout=6,
                    severity="error" if alert.severity is Severity.CRITICAL else "warning",
                )

    @on(RunChosen)
    def _run_from_overview(self, event: RunChosen) -> None:
        if isinstance(self.screen, OverviewScreen):
            self.pop_screen()
            self.main.choose(event.key)

    # -- screens ------------------------------------------------------------------------------
    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(key_help(self.screen, self)))

    def action_next_theme(self) -> None:
        names = sorted(self._themes)
        current = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(current + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def open_alert(self, alert: Alert, run: RunView | None) -> None:
        self.push_screen(AlertDetailScreen(alert, run))

    def open_overview(self) -> None:
        self.push_screen(
            OverviewScreen(
                self.snapshot, self.palette(), self.ascii_only, dict(self.config.aliases)
            )
        )

    def open_compare(self, keys: list[str], selected: str | None) -> None:
        start = None
        run = self.snapshot.run(selected)
        if run is not None:
            from watchrun.semantics import pick

            start = pick(list(run.series), "val", "loss", self.config.aliases)
        self.push_screen(
            CompareScreen(
                self.snapshot,
                keys,
                start,
                self.palette(),
                self.ascii_only,
                self.main.query_one("CurvesPane").log_y,
                dict(self.config.aliases),
            )
        )

    def open_stop(self, key: str) -> None:
        self._find_target(key)

    @work(thread=True, exclusive=True, group="stop", exit_on_error=False)
    def _find_target(self, key: str) -> None:
        """Find and verify the run's process off the UI thread (it reads /proc), then ask."""
        run = self.engine.store.snapshot(key)  # a copy taken under the store's lock
        if run is None:
            return
        target = control.find_process(run, self.config.allow_other_users)
        view = self.snapshot.run(key)
        alert = view.worst if view is not None else None
        self.call_from_thread(self.push_screen, StopScreen(run, target, alert), self._stop_chosen)

    def _stop_chosen(self, choice: StopChoice | None) -> None:
        if choice is not None:
            self._stop(choice)

    @work(thread=True, exclusive=True, group="stop", exit_on_error=False)
    def _stop(self, choice: StopChoice) -> None:
        """Signal or write the request file (control.stop may wait for the process to end)."""
        kind = "stopped"
        try:
            if choice.mode == "request":
                outcome = f"stop requested: {control.request_stop(choice.run, choice.reason)}"
                kind = "stop_requested"
            elif choice.target.to_signal is None:
                outcome, kind = "could not stop: no verified process", "stop_failed"
            else:
                process = choice.target.to_signal
                outcome = control.stop(process, choice.mode)
                if not process_exited(process, EXIT_WAIT):
                    outcome += f"; pid {process.pid} still runs {EXIT_WAIT:g}s later" + (
                        " (it caught SIGINT and went on, or is still saving: Kill stops it)"
                        if choice.mode == "graceful"
                        else ""
                    )
                    kind = "stop_failed"
        except OSError as exc:
            outcome, kind = f"could not stop: {exc}", "stop_failed"
        self.engine.record_stop(choice.run.key, outcome, kind)
        self.call_from_thread(self.notify, outcome, timeout=5)


def process_exited(process: control.VerifiedProcess, timeout: float) -> bool:
    """Whether the signalled process has exited within `timeout` seconds: a run is marked
    stopped only then (a process may ignore SIGINT, or take long to save)."""
    try:
        proc = psutil.Process(process.pid)
        if proc.create_time() != process.started:
            return True  # the pid names another process now: ours has gone
        proc.wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def run_app(
    paths: list[str],
    config: Config,
    poll: float | None = None,
    quiet: bool = False,
    follow_symlinks: bool = False,
) -> int:
    app = WatchrunApp(paths, config, poll, quiet, follow_symlinks)

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
    app.run()
    return 0

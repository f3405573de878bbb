"""Modal screens: help, stop a run, overview of all runs."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Static

from watchrun import control
from watchrun.app.widgets.plot import COLORS, Curve, Plot, PlotData
from watchrun.model import Alert, Run
from watchrun.semantics import pick
from watchrun.textsafe import printable


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.owner = app

    def compose(self) -> ComposeResult:
        lines = ["watchrun — keys", ""]
        for b in self.owner.BINDINGS:
            lines.append(f"  {b.key:<22} {b.description}   (id: {b.id})")
        lines += ["", "Remap in watchrun.toml:  [keys]  stop_run = \"x,ctrl+k\"", "Esc closes this help."]
        with Vertical(id="dialog"):
            yield Static("\n".join(lines))


class StopScreen(ModalScreen[str | None]):
    """Shows the verified process that would be signalled, then does it; when none passed the
    checks, says why and offers only the stop-request file."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run: Run, alert: Alert | None, allow_other_users: bool = False) -> None:
        super().__init__()
        self.run = run
        self.alert = alert
        self.target = control.find_process(run, allow_other_users)

    def compose(self) -> ComposeResult:
        t = self.target
        lines = [f"Stop run {self.run.key}?", ""]
        if t.process:
            p = t.process
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.started))
            lines += [f"process  pid {p.pid}  user {p.user}  started {started}", f"command  {p.cmdline[:200]}",
                      f"verified {p.evidence}"]
            if t.launcher:
                lines.append(f"launcher pid {t.launcher.pid} (distributed): the launcher is signalled, not one rank")
            lines += [f"not used: {n}" for n in t.notes]
        else:
            lines += [f"will not signal any process: {t.reason}", f"by hand:  {t.command}"]
        lines += ["", t.library_note]
        if "run-card" in self.run.formats:
            lines.append("This run has watchrun's callback: 'Save & stop' saves a checkpoint, then stops.")
        elif not t.process:
            lines.append("A stop request file is read only by a training loop with watchrun's callback.")
        if self.alert:
            lines.append(f"why: {self.alert.message}")
        ckpt = self.run.meta.get("best_model_checkpoint")
        if ckpt:
            lines.append(f"best checkpoint so far: {ckpt}")
        with Vertical(id="dialog"):
            yield Static("\n".join(printable(line) for line in lines), markup=False)
            with Horizontal():
                if t.process:
                    yield Button("Graceful stop (SIGINT)", id="graceful", variant="warning")
                    yield Button("Kill (SIGTERM, then SIGKILL)", id="kill", variant="error")
                if "run-card" in self.run.formats or not t.process:
                    yield Button("Save & stop (request file)", id="request", variant="success")
                yield Button("Cancel", id="cancel", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id
        if bid == "cancel":
            self.dismiss(None)
            return
        try:
            if bid == "request":
                path = control.request_stop(self.run, self.alert.message if self.alert else "")
                self.dismiss(f"stop requested: {path}")
                return
            target = self.target.to_signal
            if target is None:
                self.dismiss("could not stop: no verified process")
                return
            self.dismiss(control.stop(target, "graceful" if bid == "graceful" else "kill"))
        except OSError as exc:
            self.dismiss(f"could not stop: {exc}")

    def action_cancel(self) -> None:
        self.dismiss(None)


class OverviewScreen(Screen):
    """A grid of small loss curves, worst runs first."""

    BINDINGS = [Binding("escape,o,q", "app.pop_screen", "Back")]

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.owner = app

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            with Grid():
                keys = self.owner.engine.visible_keys()
                ranked = sorted(keys, key=lambda k: -(self.owner._worst(k)[0].severity.rank + 1 if self.owner._worst(k)[0] else 0))
                for key in ranked[:40]:
                    run = self.owner.engine.store.snapshot(key)
                    worst = self.owner._worst(key)[0]
                    names = list(run.series)
                    curves = []
                    for i, n in enumerate([pick(names, "train", "loss"), pick(names, "val", "loss")]):
                        if n:
                            s = run.series[n]
                            curves.append(Curve(n, s.steps.astype(float), s.values, ["cyan", "magenta"][i]))
                    plot = Plot(classes="mini " + (worst.severity.value if worst else ""), ascii_only=self.owner.ascii_only)
                    plot.border_title = Text(printable(key))
                    plot.data = PlotData(curves)
                    yield plot
        yield Footer()


class CompareScreen(Screen):
    """One metric overlaid across runs (the marked ones, or all); n/p cycle the metric."""

    BINDINGS = [
        Binding("escape,c,q", "app.pop_screen", "Back"),
        Binding("n", "next_metric", "Next metric"),
        Binding("p", "prev_metric", "Prev metric"),
    ]

    def __init__(self, app: Any, keys: list[str], metric: str | None) -> None:
        super().__init__()
        self.owner = app
        self.keys = keys[:7]
        runs = [app.engine.store.snapshot(k) for k in self.keys]
        self.runs = [r for r in runs if r is not None]
        counts: dict[str, int] = {}
        for r in self.runs:
            for n in r.series:
                counts[n] = counts.get(n, 0) + 1
        self.metrics = sorted(counts, key=lambda n: (-counts[n], n))
        self.index = self.metrics.index(metric) if metric in self.metrics else 0

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-title")
        yield Plot(id="compare-plot", ascii_only=self.owner.ascii_only)
        yield Footer()

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        if not self.metrics:
            self.query_one("#compare-title", Static).update("no metrics to compare")
            return
        metric = self.metrics[self.index]
        curves = []
        for i, r in enumerate(self.runs):
            s = r.series.get(metric)
            if s is not None and len(s):
                curves.append(Curve(r.key, s.steps.astype(float), s.values, COLORS[i % len(COLORS)]))
        self.query_one("#compare-title", Static).update(
            Text(printable(f" compare {metric} across {len(curves)} run(s)   n/p: metric"))
        )
        self.query_one("#compare-plot", Plot).show(PlotData(curves, self.owner.log_y))

    def action_next_metric(self) -> None:
        self.index = (self.index + 1) % max(1, len(self.metrics))
        self._show()

    def action_prev_metric(self) -> None:
        self.index = (self.index - 1) % max(1, len(self.metrics))
        self._show()

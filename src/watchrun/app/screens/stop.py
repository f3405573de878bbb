"""Stop a run: shows the verified process that would be signalled (found by control, in a
worker, before this screen opens), then says which way the user chose. Signalling and the
request file are done by the app in a worker (control.stop may wait for the process to end);
when no process passed the checks, the screen says why and offers only the stop-request file."""

from __future__ import annotations

import time
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from watchrun.control import Target
from watchrun.model import Alert, Run
from watchrun.snapshot import ENDED
from watchrun.textsafe import printable


@dataclass(frozen=True)
class StopChoice:
    run: Run
    target: Target
    mode: str  # graceful | kill | request
    reason: str


def has_ended(run: Run, target: Target) -> bool:
    """The run has ended (finished, failed, stopped, gone) and no process of it was verified:
    there is nothing to stop, and a stop-request file would never be read."""
    return target.to_signal is None and run.status in ENDED


def dialog_text(run: Run, target: Target, alert: Alert | None) -> str:
    if has_ended(run, target):
        lines = [
            f"Run {run.key} has already ended ({run.status.value}): there is nothing to stop.",
            "",
            f"no process to signal: {target.reason}",
        ]
        return "\n".join(printable(line) for line in lines)
    lines = [f"Stop run {run.key}?", ""]
    if target.process:
        p = target.process
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.started))
        lines += [
            f"process  pid {p.pid}  user {p.user}  started {started}",
            f"command  {p.cmdline[:300]}",
            f"verified {p.evidence}",
        ]
        if target.launcher:
            lines.append(
                f"launcher pid {target.launcher.pid} (distributed): the launcher is "
                "signalled, not one rank"
            )
        lines += [f"not used: {n}" for n in target.notes]
        signalled = target.to_signal
        if signalled is not None and signalled.ignores_sigint:
            lines.append(
                f"pid {signalled.pid} ignores SIGINT (started with `&` from a script, or it set "
                "SIG_IGN): a graceful stop would do nothing, only Kill stops it"
            )
    else:
        lines += [f"will not signal any process: {target.reason}", f"by hand:  {target.command}"]
    lines += ["", target.library_note]
    if "run-card" in run.formats:
        lines.append(
            "This run has watchrun's callback: 'Save & stop' saves a checkpoint, then stops."
        )
    elif not target.process:
        lines.append(
            "A stop request file is read only by a training loop with watchrun's callback."
        )
    if alert:
        lines.append(f"why: {alert.message}")
    ckpt = run.meta.get("best_model_checkpoint")
    if ckpt:
        lines.append(f"best checkpoint so far: {ckpt}")
    return "\n".join(printable(line) for line in lines)


class StopScreen(ModalScreen["StopChoice | None"]):
    DEFAULT_CSS = """
    StopScreen { align: center middle; }
    StopScreen > #dialog { width: 100; max-width: 96%; height: auto; max-height: 90%;
        border: thick $error; background: $surface; padding: 0 1; }
    StopScreen #dialog-text { width: 100%; height: auto; }
    StopScreen #buttons { height: auto; width: 100%; layout: grid; grid-size: 2;
        grid-gutter: 0 1; grid-rows: 3; }
    StopScreen #buttons Button { width: 100%; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("left", "app.focus_previous", "Previous button", show=False),
        Binding("right", "app.focus_next", "Next button", show=False),
    ]

    def __init__(self, run: Run, target: Target, alert: Alert | None) -> None:
        super().__init__()
        self.run = run
        self.target = target
        self.alert = alert

    def compose(self) -> ComposeResult:
        t = self.target
        with VerticalScroll(id="dialog"):
            yield Static(dialog_text(self.run, t, self.alert), id="dialog-text", markup=False)
            with Horizontal(id="buttons"):
                if has_ended(self.run, t):
                    yield Button("Close", id="cancel", variant="primary")
                    return
                if t.process and t.to_signal is not None and not t.to_signal.ignores_sigint:
                    yield Button("Graceful stop (SIGINT)", id="graceful", variant="warning")
                if t.process:
                    yield Button("Kill (SIGTERM, then SIGKILL)", id="kill", variant="error")
                if "run-card" in self.run.formats or not t.process:
                    yield Button("Save & stop (request file)", id="request", variant="success")
                yield Button("Cancel", id="cancel", variant="primary")

    def on_mount(self) -> None:
        """Cancel has the focus (Enter at once stops nothing); Tab or the arrows reach the
        others."""
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id or "cancel"
        if bid == "cancel":
            self.dismiss(None)
            return
        reason = self.alert.message if self.alert else ""
        self.dismiss(StopChoice(self.run, self.target, bid, reason))

    def action_cancel(self) -> None:
        self.dismiss(None)

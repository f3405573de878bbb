"""The banner: the selected run's worst open alert and what to do about it."""

from __future__ import annotations

import re

from rich.text import Text
from textual.widgets import Static

from watchrun.app.theme import Palette
from watchrun.model import Alert
from watchrun.snapshot import RunView
from watchrun.textsafe import printable

# "stop training: lower the LR", "stop training and keep the best checkpoint", "... — stop training"
_STOP = re.compile(
    r"(?i)^\s*stop(?: the)? training(?: before [^:]*)?(?::\s*|\s+and\s+|\s*$)"
    r"|\s*[—-]+\s*stop(?: the)? training\s*$"
)


def message_text(alert: Alert, run: RunView) -> str:
    """The alert's message, without a closing "— stop training" once the run has ended."""
    message = _STOP.sub("", alert.message).strip() if run.ended else alert.message
    return printable(message)


def action_text(alert: Alert, run: RunView) -> str:
    """The alert's action, except that a run that has already ended is not told to stop."""
    if not run.ended:
        return printable(alert.action)
    rest = _STOP.sub("", alert.action).strip()
    prefix = f"run {run.status.value}"
    return printable(f"{prefix}; next time: {rest}" if rest else prefix)


class AlertBanner(Static):
    DEFAULT_CSS = """
    AlertBanner { height: auto; max-height: 2; padding: 0 1; background: $panel;
        text-wrap: nowrap; text-overflow: ellipsis; }
    AlertBanner.critical { background: $error 35%; }
    AlertBanner.warning { background: $warning 25%; }
    AlertBanner.ok { background: $success 15%; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.palette = Palette()
        self.ascii_only = False
        self.run: RunView | None = None

    def reading(self, found: int) -> None:
        """The first read is under way: no alert can be told yet."""
        self.run = None
        self.remove_class("critical", "warning", "ok")
        self.update(Text(f" reading {found} run(s)… alerts show once each is read", style="bold"))

    def show(self, run: RunView | None) -> None:
        if run is self.run and run is not None:
            return
        self.run = run
        self.remove_class("critical", "warning", "ok")
        if run is None:
            self.add_class("ok")
            self.update(Text(" no run selected", style="bold"))
            return
        worst = run.worst
        if worst is None or worst.severity.value == "info":
            self.add_class("ok")
            self.update(
                Text(f" {printable(run.key)}: no open warning ({run.status.value})", style="bold")
            )
            return
        sev = worst.severity.value
        self.add_class(sev)
        text = Text(no_wrap=True, overflow="ellipsis")  # all of it: Enter on the alert
        text.append(f" {sev.upper()} ", style="bold reverse")
        text.append(f" {message_text(worst, run)}\n", style="bold")
        arrow = "->" if self.ascii_only else "→"
        text.append(f" {arrow} {action_text(worst, run)}")
        text.append(f"   ({worst.detector}, step {worst.step})", style="dim")
        self.update(text)

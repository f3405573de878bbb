"""One alert in full: message, evidence, what to do, the checkpoint to keep."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from watchrun.app.text import num
from watchrun.app.widgets.banner import action_text, message_text
from watchrun.model import Alert
from watchrun.snapshot import RunView


def detail_text(alert: Alert, run: RunView | None) -> Text:
    t = Text()
    t.append(f" {alert.severity.value.upper()} ", style="bold reverse")
    t.append(
        f"  {alert.detector}  step {alert.step}" + ("" if alert.open else "  (closed)") + "\n\n",
        style="bold",
    )
    t.append((message_text(alert, run) if run is not None else alert.message) + "\n\n")
    action = action_text(alert, run) if run is not None else alert.action
    if action:
        t.append("what to do\n", style="bold")
        t.append(f"  {action}\n\n")
    if alert.metrics:
        t.append("metrics  ", style="bold")
        t.append(", ".join(alert.metrics) + "\n")
    if alert.evidence:
        t.append("evidence\n", style="bold")
        for k, v in alert.evidence.items():
            value = num(v) if isinstance(v, float) else str(v)
            t.append(f"  {k}: {value[:400]}\n")
    if run is not None:
        ckpt = run.meta.get("best_model_checkpoint")
        t.append("\ncheckpoint  ", style="bold")
        t.append(str(ckpt) if ckpt else "none recorded by this run's logs")
        t.append(f"\nrun  {run.key}  ({run.status.value})\n", style="dim")
    return t


class AlertDetailScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    AlertDetailScreen { align: center middle; }
    AlertDetailScreen > #detail { width: 100; max-width: 96%; height: auto; max-height: 90%;
        border: round $warning; background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, alert: Alert, run: RunView | None) -> None:
        super().__init__()
        self.alert = alert
        self.run = run

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(detail_text(self.alert, self.run), id="detail-text")

    def action_close(self) -> None:
        self.dismiss(None)

"""Help: the keys as they are bound now (remaps from [keys] included), with readable names."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


@dataclass(frozen=True)
class KeyHelp:
    keys: str  # "j, ↓"
    description: str
    binding_id: str


def key_help(screen, app) -> list[KeyHelp]:  # type: ignore[no-untyped-def]
    """One line per action (with a binding id, so remappable) that `screen` answers now, its
    keys shown the way the footer shows them (? and F1, not question_mark,f1)."""
    seen: dict[tuple[str, str], list[str]] = {}
    order: list[tuple[str, str]] = []
    ids: dict[tuple[str, str], str] = {}
    for active in screen.active_bindings.values():
        b = active.binding
        if not b.description or not b.id:  # widgets' own navigation: one line below
            continue
        ident = (b.action, b.description)
        if ident not in seen:
            seen[ident] = []
            order.append(ident)
            ids[ident] = b.id or ""
        shown = app.get_key_display(b)
        if shown not in seen[ident]:
            seen[ident].append(shown)
    return [KeyHelp(", ".join(seen[i]), i[1], ids[i]) for i in order]


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > #help { width: 80; max-width: 96%; height: auto; max-height: 90%;
        border: round $primary; background: $surface; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close", show=False),
        Binding("j", "scroll_help(1)", "Scroll down", show=False),
        Binding("k", "scroll_help(-1)", "Scroll up", show=False),
    ]

    def __init__(self, entries: list[KeyHelp]) -> None:
        super().__init__()
        self.entries = entries

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("watchrun: keys\n\n", style="bold")
        width = max([len(e.keys) for e in self.entries] + [4])
        for e in self.entries:
            text.append(f"  {e.keys:<{width}}  ", style="bold")
            text.append(f"{e.description}")
            if e.binding_id:
                text.append(f"  ({e.binding_id})", style="dim")
            text.append("\n")
        text.append("\n  ↑ ↓ j k, ⏎, tab  move in the focused list, open, next pane\n")
        text.append(
            '\nRemap in watchrun.toml:  [keys]  stop_run = "x,ctrl+k"   (ids in brackets)\n'
        )
        text.append("Esc closes this help.", style="dim")
        with VerticalScroll(id="help"):
            yield Static(text, id="help-text")

    def action_scroll_help(self, lines: int) -> None:
        """j/k scroll a help taller than the terminal (80x24), as the arrows do."""
        self.query_one("#help", VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_close(self) -> None:
        self.dismiss(None)

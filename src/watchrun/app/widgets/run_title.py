"""The line above the tabs: the selected run's name, formats, status and the plot settings.
A long name is cut in the middle so that its status and the settings stay in sight."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from watchrun.app.text import middle


class RunTitle(Widget):
    DEFAULT_CSS = """
    RunTitle { height: 1; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.name_text = ""
        self.detail = ""  # formats and status
        self.settings = ""  # x axis, smoothing, log y
        self.note: Text | None = None  # said instead of a run (the first read)

    def show(self, name: str, detail: str, settings: str) -> None:
        self.name_text, self.detail, self.settings, self.note = name, detail, settings, None
        self.refresh()

    def say(self, note: Text) -> None:
        self.note = note
        self.refresh()

    def render(self) -> Text:
        if self.note is not None:
            return self.note
        rest = len(self.detail) + len(self.settings)
        room = max(self.content_size.width - rest, min(12, len(self.name_text)))
        text = Text(middle(self.name_text, room), style="bold", no_wrap=True, overflow="ellipsis")
        text.append(self.detail)
        text.append(self.settings, style="dim")
        return text

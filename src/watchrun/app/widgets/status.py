"""The status line: what watchrun itself cannot do right now (paths the scan could not read,
file events unavailable), one line above the footer, hidden while there is nothing to say."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from watchrun.snapshot import Snapshot
from watchrun.textsafe import printable


def status_text(snapshot: Snapshot) -> Text | None:
    """`! 3 paths cannot be read: permission denied: /runs/a (+2 more)  ·  <notice>`, or None."""
    parts: list[Text] = []
    if snapshot.scan_errors:
        count = max(snapshot.scan_error_count, len(snapshot.scan_errors))
        part = Text("! ", style="bold")
        noun = "path" if count == 1 else "paths"
        part.append(f"{count} {noun} cannot be read: ", style="bold")
        part.append(printable(snapshot.scan_errors[0]))
        if count > 1:
            part.append(f" (+{count - 1} more)", style="dim")
        parts.append(part)
    if snapshot.notice:
        parts.append(Text(printable(snapshot.notice)))
    if not parts:
        return None
    return Text("  ·  ").join(parts)


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; display: none; background: $warning 25%;
        text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self._shown: tuple[tuple[str, ...], int, str | None] | None = None

    def show(self, snapshot: Snapshot) -> None:
        stamp = (snapshot.scan_errors, snapshot.scan_error_count, snapshot.notice)
        if stamp == self._shown:
            return
        self._shown = stamp
        text = status_text(snapshot)
        self.display = text is not None
        self.update(text or "")

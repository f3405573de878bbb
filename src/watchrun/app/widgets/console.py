"""The Console tab: the last lines a run printed (its console log), following the tail."""

from __future__ import annotations

from textual.widgets import Log

from watchrun.snapshot import RunView
from watchrun.textsafe import printable

NO_CONSOLE = (
    "(no console log found for this run)",
    "To see its output here, tee it into a file in the run directory:",
    "  python train.py 2>&1 | tee train.log",
)


class ConsolePane(Log):
    DEFAULT_CSS = """
    ConsolePane { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, highlight=False, auto_scroll=True, max_lines=2000)
        self.key: str | None = None
        self.shown: tuple[str, ...] = ()

    @property
    def following(self) -> bool:
        return self.auto_scroll

    def follow(self, on: bool) -> None:
        self.auto_scroll = on
        if on:
            self.scroll_end(animate=False)

    def show(self, run: RunView | None) -> None:
        lines = run.console if run is not None else ()
        key = run.key if run is not None else None
        if key == self.key and lines is self.shown:
            return
        fresh = key != self.key or not self.shown or lines[: len(self.shown)] != self.shown
        if fresh:  # another run, or the ring dropped its oldest lines: draw it again
            self.clear()
            new = lines
        else:
            new = lines[len(self.shown) :]
        if not lines and run is not None:
            new = NO_CONSOLE  # short lines: a Log does not wrap
        self.key, self.shown = key, lines
        if new:
            shown = [printable(line.expandtabs()) for line in new]  # a log may hold escapes
            self.write_lines(shown, scroll_end=self.auto_scroll)

"""One plot: a readout line (latest and best value per series) over a plotext figure."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.widget import Widget

from watchrun.app.plotting import Figure, new_figure, render
from watchrun.app.text import num


class Plot(Widget):
    DEFAULT_CSS = """
    Plot { height: 1fr; min-height: 7; }
    """

    def __init__(
        self,
        *,
        id: str | None = None,
        classes: str | None = None,  # noqa: A002
        readout: bool = True,
        compact: bool = False,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.figure = Figure()
        self.readout = readout
        self.compact = compact  # the readout without the best values (small tiles)
        self._plotext = new_figure()  # this widget's own plotext figure
        self._cache: tuple[Figure, int, int, Text] | None = None
        self._key: tuple[Any, ...] | None = None

    def show(self, figure: Figure) -> None:
        if figure is not self.figure:
            self.figure = figure
            self._key = None
            self.refresh()

    def show_for(self, key: tuple[Any, ...], build: Callable[[], Figure]) -> None:
        """Show build()'s figure unless `key` (what that figure is made of: series views, which
        a snapshot shares while they do not change, and options) is the one shown: a run whose
        plotted series did not change is neither rebuilt nor drawn again."""
        if self._key is not None and key == self._key:
            return
        self.show(build())
        self._key = key

    def readout_text(self, width: int = 0) -> Text:
        """`● val_loss 0.312  best 0.298 @1.2k` per curve; in `width` cells, a line breaks
        between two curves' entries, never inside one (an entry wider than a line folds)."""
        out = Text(no_wrap=False, overflow="fold")
        if not self.figure.curves:
            out.append("no series for this plot yet", style="dim")
            return out
        used = 0
        for entry in self._readout_entries():
            if used and width and used + 3 + entry.cell_len > width:
                out.append("\n")
                used = 0
            elif used:
                out.append("   ")
                used += 3
            out.append_text(entry)
            used += entry.cell_len
        return out

    def _readout_entries(self) -> list[Text]:
        entries = []
        dot = "o" if self.figure.ascii_only else "●"
        for c in self.figure.curves:
            last = c.last if c.last is not None else (float(c.y[-1]) if len(c.y) else math.nan)
            entry = Text()
            entry.append(f"{dot} ", style=c.color)
            entry.append(f"{c.name} ", style="bold")
            entry.append(
                num(last), style=f"bold {self.figure.nan_color}" if not math.isfinite(last) else ""
            )
            best = c.best_step or c.best
            if best is not None and not self.compact:
                entry.append(f"  best {num(best[1])} @{num(best[0])}", style="dim")
            entries.append(entry)
        return entries

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        head = self.readout_text(width) if self.readout else Text("")
        head_lines = len(head.wrap(self.app.console, max(1, width))) if self.readout else 0
        body_h = height - head_lines
        cache = self._cache
        if cache is not None and cache[0] is self.figure and cache[1:3] == (width, body_h):
            body = cache[3]
        else:
            body = render(self.figure, width, body_h, self._plotext)
            self._cache = (self.figure, width, body_h, body)
        if not self.readout:
            return body
        return Text.assemble(head, "\n", body)

"""A DataTable updated by row key: rows that went are removed, changed cells rewritten, the rest
left alone (no clear-and-refill, so the cursor and the scroll stay where the user put them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.widgets import DataTable


def cell_stamp(cells: Sequence[Text]) -> tuple[str, ...]:
    """What a row shows, comparable: its texts and their styles."""
    return tuple(c.plain + str(c.style) for c in cells)


class KeyedTable(DataTable):
    """A table whose rows are set as a whole by `set_rows` and diffed by key."""

    def __init__(self, *, id: str | None = None, cursor_type: str = "row") -> None:  # noqa: A002
        super().__init__(id=id, cursor_type=cursor_type)  # type: ignore[arg-type]
        self._cells: dict[str, tuple[str, ...]] = {}

    def set_rows(self, rows: Mapping[str, Sequence[Text]], columns: Sequence[str]) -> None:
        """Make the table hold `rows` (key -> one cell per column of `columns`); new rows are
        added at the end in the order of `rows`."""
        for key in [k for k in self._cells if k not in rows]:
            self.remove_row(key)
            del self._cells[key]
        for key, cells in rows.items():
            stamp = cell_stamp(cells)
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
            else:
                for col, cell, before, after in zip(columns, cells, old, stamp, strict=True):
                    if before != after:
                        self.update_cell(key, col, cell)
            self._cells[key] = stamp

    def forget_rows(self) -> None:
        """After a clear(): no row is shown any more."""
        self._cells.clear()

"""The list of runs, worst first: status and severity glyphs, the name cut in the middle, and
under the name of a run whose process is known a one-line strip (GPU util and memory, or the
writer's CPU % and RSS) when the list is wide enough."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from watchrun.app.messages import RunChosen
from watchrun.app.text import (
    SEVERITY_GLYPH,
    STATUS_GLYPH,
    Ranked,
    age,
    middle,
    severity_style,
    short_names,
)
from watchrun.app.theme import Palette
from watchrun.app.widgets.gpu import run_strip
from watchrun.snapshot import RunView, Snapshot

FIXED = {"mark": 3, "step": 5, "age": 3, "n": 2}
COLUMNS = ("mark", "run", "step", "age", "n")
# DataTable measures every cell of a new row: a thousand rows at once would hold up the first
# frame, so the first show adds what fills a screen and the rest follow in batches
FIRST_ROWS = 60
MORE_ROWS = 250
MORE_ROWS_AFTER = 0.05  # seconds between batches: the screen is drawn in between
MIN_NAME = 16  # below this, the age and then the step column give their room to the name


class RunList(DataTable):
    DEFAULT_CSS = """
    RunList { height: 1fr; scrollbar-size-horizontal: 0; }
    """
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.palette = Palette()
        self.ascii_only = False
        self.keys: list[str] = []
        self.marked: set[str] = set()
        self.filter_text = ""
        self._snapshot: Snapshot | None = None
        self._now = 0.0  # the clock of the last show(): a resize redraws with the same ages
        self._cells: dict[str, tuple[str, ...]] = {}
        self._name_width = 0
        self._names: dict[str, str] = {}
        self._names_for: dict[str, str] = {}
        self._names_stamp: tuple[tuple[str, ...], int] = ((), 0)
        self._seen: dict[str, tuple[RunView, int, str, bool, str | None, str | None]] = {}
        self._heights: dict[str, int] = {}
        self._shown_layout: tuple[int, tuple[str, ...]] = (0, ())
        self.user_moved = False  # until the user moves, the cursor stays on the worst run
        self._more_pending = False

    # -- data ---------------------------------------------------------------------------------
    def show(self, snapshot: Snapshot, now: float) -> None:
        """Diff the rows against `snapshot` by run key (add, remove, update changed cells, sort)."""
        self._snapshot = snapshot
        self._now = now
        keys = [k for k in snapshot.runs if self.filter_text.lower() in k.lower()]
        layout = self._layout()
        with self.app.batch_update():
            if layout != self._shown_layout or not self.columns:
                self._shown_layout = layout
                self._name_width = layout[0]
                self.clear(columns=True)
                self._cells.clear()
                self._seen.clear()
                self._heights.clear()
                self.keys = []
                labels = {"mark": " ", "run": "run", "step": "step", "age": "age", "n": "!"}
                for col in layout[1]:
                    width = layout[0] if col == "run" else FIXED[col]
                    self.add_column(labels[col], width=width, key=col)
            self._names = self._short_names(snapshot, keys)
            wanted = set(keys)
            for key in [k for k in self._cells if k not in wanted]:
                self._remove(key)
            readded = False
            budget = FIRST_ROWS if not self._cells else MORE_ROWS
            for rank, key in enumerate(keys):
                if key not in self._cells:
                    if budget <= 0:
                        continue
                    budget -= 1
                readded |= self._put_row(key, snapshot.runs[key], rank, now, self._strip(key))
            shown = [k for k in keys if k in self._cells]
            if shown != self.keys or readded:
                self.sort("mark", key=lambda cell: cell.rank)
                self.keys = shown
        if len(shown) < len(keys) and not self._more_pending:
            self._more_pending = True
            self.set_timer(MORE_ROWS_AFTER, self._more_rows)

    def _more_rows(self) -> None:
        """The next batch of rows that did not fit in the last show()."""
        self._more_pending = False
        if self._snapshot is not None:
            self.show(self._snapshot, self._now)

    def _short_names(self, snapshot: Snapshot, keys: list[str]) -> dict[str, str]:
        labels = {k: snapshot.runs[k].display_name or k for k in keys}
        stamp = (tuple(labels.values()), self._name_width)
        if stamp != self._names_stamp:
            short = short_names(list(set(labels.values())), self._name_width)
            self._names_for = {k: short[label] for k, label in labels.items()}
            self._names_stamp = stamp
        return self._names_for

    def _strip(self, key: str) -> Text | None:
        """The run's process/GPU line, when the name column has room for one."""
        machine = self._snapshot.machine if self._snapshot is not None else None
        if machine is None or self._name_width < MIN_NAME:
            return None
        return run_strip(machine.runs.get(key), self._name_width, self.ascii_only)

    def _remove(self, key: str) -> None:
        self.remove_row(key)
        del self._cells[key]
        self._seen.pop(key, None)
        self._heights.pop(key, None)

    def _put_row(self, key: str, run: RunView, rank: int, now: float, strip: Text | None) -> bool:
        """Add or update the row; True when it was added anew (the table must be sorted)."""
        seen = (
            run,
            rank,
            age(run.last_write, now),
            run.key in self.marked,
            self._names.get(key),
            strip.plain if strip is not None else None,
        )
        if self._seen.get(key) == seen and key in self._cells:
            return False  # the same view at the same place: nothing to redraw
        height = 1 if strip is None else 2
        if key in self._cells and self._heights.get(key) != height:
            self._remove(key)  # a row's height is fixed when it is added
        self._seen[key] = seen
        columns = self._shown_layout[1]
        every = dict(zip(COLUMNS, self._row(run, rank, now), strict=True))
        if strip is not None:
            every["run"] = every["run"] + Text("\n") + strip
        cells = tuple(every[c] for c in columns)
        plain = tuple(c.plain + str(c.style) for c in cells)
        old = self._cells.get(key)
        if old is None:
            self.add_row(*cells, key=key, height=height)
            self._heights[key] = height
            self._cells[key] = plain
            return True
        else:
            for col, cell, before, after in zip(columns, cells, old, plain, strict=True):
                if before != after or col == "mark":  # the mark cell carries the row's rank
                    self.update_cell(key, col, cell)
        self._cells[key] = plain
        return False

    def _row(self, run: RunView, rank: int, now: float) -> tuple[Text, ...]:
        worst = run.worst
        sev = worst.severity.value if worst else ""
        color = self.palette.severity(sev) if worst else self.palette.ok
        style = severity_style(sev, color)
        glyph = STATUS_GLYPH[run.status][1 if self.ascii_only else 0]
        first = Ranked(glyph, style=f"{color}")
        first.append(SEVERITY_GLYPH[sev].strip() or " ", style=style)
        first.rank = rank
        name_style = style if sev == "critical" else ("bold" if sev == "warning" else "")
        if sev == "critical":
            name_style = f"bold {color}"
        label = self._names.get(run.key) or middle(run.key, self._name_width)
        if run.key in self.marked:
            label = "+" + middle(label, self._name_width - 1)
        name = Text(label, style=name_style)
        step = "" if run.last_step is None else _short(run.last_step)
        return (
            first,
            name,
            Text(step, justify="right"),
            Text(age(run.last_write, now)),
            Text(str(run.problems) if run.problems else "", style=style),
        )

    def reset(self) -> None:
        """Forget the rows (a new palette): the next show() draws them all again."""
        self.clear()
        self._cells.clear()
        self._seen.clear()
        self._heights.clear()
        self.keys = []

    def refresh_ages(self, now: float) -> None:
        if self._snapshot is not None:
            self.show(self._snapshot, now)

    def _layout(self) -> tuple[int, tuple[str, ...]]:
        """(name width, columns): the name gets what the others leave, and the age and step
        columns go when the name would be shorter than MIN_NAME."""
        total = (self.size.width or 40) - 1  # the vertical scrollbar's column, when it shows
        columns = list(COLUMNS)
        for optional in ("age", "step", None):
            others = [c for c in columns if c != "run"]
            name = total - sum(FIXED[c] for c in others) - 2 * self.cell_padding * len(columns)
            if name >= MIN_NAME or optional is None:
                return max(4, name), tuple(columns)
            columns.remove(optional)
        raise AssertionError("unreachable")

    def on_resize(self) -> None:
        if self._snapshot is not None and self._layout() != self._shown_layout:
            self.show(self._snapshot, self._now)

    # -- cursor -------------------------------------------------------------------------------
    def select(self, key: str | None) -> None:
        if key is None or key not in self._cells:
            return
        row = self.get_row_index(key)
        if self.cursor_row != row:
            self.move_cursor(row=row, animate=False)

    def action_cursor_down(self) -> None:
        self.user_moved = True
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        self.user_moved = True
        super().action_cursor_up()

    def on_click(self) -> None:
        self.user_moved = True

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key is not None and event.row_key.value is not None:
            self.post_message(RunChosen(event.row_key.value))


def _short(step: int) -> str:
    if step >= 1_000_000:
        return f"{step / 1e6:.3g}M"
    if step >= 100_000:
        return f"{step / 1e3:.0f}k"
    return str(step)

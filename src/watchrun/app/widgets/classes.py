"""The Classes tab: per-class precision/recall/F1 of the selected run, the worst class first."""

from __future__ import annotations

import math

from rich.text import Text

from watchrun.app.text import middle
from watchrun.app.theme import Palette
from watchrun.app.widgets.keyed_table import KeyedTable
from watchrun.semantics import role_of
from watchrun.snapshot import RunView, SeriesView

KINDS = ("precision", "recall", "f1", "support", "accuracy")
COLUMNS = ("class", "precision", "recall", "f1", "support", "best f1", "trend")
MAX_LABEL = 28
EMPTY_KEY = "-empty-"
NO_CLASSES = "no per-class metrics logged (README: make your run watchable)"


def class_rows(
    run: RunView, aliases: dict[str, str]
) -> list[tuple[str, dict[str, SeriesView], bool]]:
    """(label, kind -> series, is an average row) for each class, then the averages."""
    fam: dict[str, dict[str, SeriesView]] = {}
    averages: dict[str, dict[str, SeriesView]] = {}
    for name, s in run.series.items():
        r = role_of(name, aliases)
        if r.split not in ("val", "test", "") or r.kind not in KINDS:
            continue
        target = fam if r.cls is not None else averages
        label = r.cls if r.cls is not None else (r.avg or "binary/headline")
        target.setdefault(str(label), {})[r.kind] = s
    if not fam:
        return []
    return [(k, v, False) for k, v in sorted(fam.items())] + [
        (k, v, True) for k, v in sorted(averages.items())
    ]


def _value(s: SeriesView | None, digits: int = 3) -> str:
    if s is None or not len(s):
        return ""
    return f"{s.last:.{digits}f}" if math.isfinite(s.last) else str(s.last)


class ClassesTable(KeyedTable):
    DEFAULT_CSS = """
    ClassesTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.palette = Palette()
        self.ascii_only = False
        self.aliases: dict[str, str] = {}
        self.run: RunView | None = None

    def show(self, run: RunView | None) -> None:
        if run is self.run:
            return
        self.run = run
        rows = class_rows(run, self.aliases) if run is not None else []
        label_w = min(MAX_LABEL, max([len("class")] + [len(r[0]) for r in rows]))
        columns = COLUMNS if rows else COLUMNS[:1]  # nothing to show: one column, the note
        if not rows:
            label_w = len(NO_CLASSES)
        with self.app.batch_update():
            if (
                len(self.columns) != len(columns)
                or self.columns.get("class") is None
                or self.columns["class"].width != label_w
            ):
                self.clear(columns=True)
                self.forget_rows()
                self.add_column("class" if rows else "", key="class", width=label_w)
                for name in columns[1:]:
                    self.add_column(name, key=name)
            if not rows:
                self.set_rows({EMPTY_KEY: (Text(NO_CLASSES, style="dim"),)}, columns)
                return
            worst = min(
                (r for r in rows if not r[2]),
                key=lambda r: _last(r[1].get("f1") or r[1].get("recall")),
            )[0]
            cells = {}
            for label, kinds, is_avg in rows:
                style = (
                    f"bold {self.palette.critical}"
                    if label == worst
                    else ("italic" if is_avg else "")
                )
                f1 = kinds.get("f1")
                cells[label] = (
                    Text(middle(label, label_w), style=style),
                    Text(_value(kinds.get("precision"))),
                    Text(_value(kinds.get("recall"))),
                    Text(_value(f1)),
                    Text(_value(kinds.get("support"), 0)),
                    Text(f"{f1.best_high[1]:.3f}" if f1 is not None and f1.best_high else ""),
                    self._trend(f1),
                )
            self.set_rows(cells, COLUMNS)

    def _trend(self, s: SeriesView | None) -> Text:
        if s is None or not math.isfinite(s.previous) or not math.isfinite(s.last):
            return Text("")
        d = s.last - s.previous
        up, down, flat = ("^", "v", "=") if self.ascii_only else ("↑", "↓", "→")
        if d > 0:
            return Text(up, style=self.palette.ok)
        if d < 0:
            return Text(down, style=self.palette.critical)
        return Text(flat, style="dim")


def _last(s: SeriesView | None) -> float:
    return s.last if s is not None and len(s) and math.isfinite(s.last) else math.inf

"""The Alerts tab: every alert and run event of the selected run, newest first; Enter opens one."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from watchrun.app.messages import AlertChosen
from watchrun.app.text import ranked, severity_style
from watchrun.app.theme import Palette
from watchrun.app.widgets.keyed_table import KeyedTable
from watchrun.model import Alert, Severity
from watchrun.snapshot import RunView
from watchrun.textsafe import printable

COLUMNS = ("sev", "step", "detector", "message")


def alert_key(alert: Alert, index: int) -> str:
    return f"{alert.detector}@{alert.step}#{index}"


class AlertsTable(KeyedTable):
    DEFAULT_CSS = """
    AlertsTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.palette = Palette()
        self.run: RunView | None = None
        self.by_key: dict[str, Alert] = {}

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    def show(self, run: RunView | None) -> None:
        if run is self.run:
            return
        self.run = run
        rows: dict[str, tuple[Text, ...]] = {}
        by_key: dict[str, Alert] = {}
        if run is not None:
            for i, (step, message) in enumerate(run.events):
                rows[f"event#{i}"] = (
                    Text("event", style=self.palette.info),
                    Text("end" if step is None else str(step)),  # None: at the run's end
                    Text("run"),
                    Text(printable(message)),
                )
            for i, a in enumerate(run.alerts):
                key = alert_key(a, i)
                by_key[key] = a
                sev = a.severity.value
                rows[key] = (
                    Text(sev, style=severity_style(sev, self.palette.severity(sev))),
                    Text(str(a.step)),
                    Text(printable(a.detector)),
                    Text(
                        printable(a.message) + ("" if a.open else "  (closed)"),
                        style="" if a.open or a.severity is Severity.INFO else "dim",
                    ),
                )
        self.by_key = by_key
        # the loudest first (an info never buries a critical), newest first within a severity
        loudness = {"critical": 0, "warning": 1, "info": 2}
        order = sorted(
            reversed(list(rows)),
            key=lambda k: loudness.get(by_key[k].severity.value, 2) if k in by_key else 3,
        )
        with self.app.batch_update():
            self.set_rows({key: rows[key] for key in order}, COLUMNS)
            current = [r.value for r in self.rows]
            if current != order:  # a new alert arrived: it goes on top
                for rank, key in enumerate(order):
                    self.update_cell(key, "sev", ranked(rows[key][0], rank))
                self.sort("sev", key=lambda cell: getattr(cell, "rank", 0))

    def selected_alert(self) -> Alert | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.by_key.get(key or "")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        alert = self.by_key.get(event.row_key.value or "")
        if alert is not None:
            self.post_message(AlertChosen(alert))

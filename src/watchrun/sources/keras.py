"""Keras CSVLogger: `epoch` then the metric keys (sorted), `\\r\\n` line ends, "NA" for a key a
row lacks. With append=True across fit() calls the header is written once and the epoch restarts
at 0: the store starts a new segment of the same run there."""

from __future__ import annotations

from watchrun.sources.probe import history_table
from watchrun.sources.table import TableSource


class KerasCsvSource(TableSource):
    format = "keras-csv"
    step_columns = ("epoch",)
    step_unit = "epoch"

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """A history table whose first column is `epoch` (CSVLogger's layout; Ultralytics'
        results.csv pads it with spaces) and that has no `step` column."""
        if head is None:
            return False
        header = history_table(head)
        if not header:
            return False
        return header[0].strip() == "epoch" and "step" not in header

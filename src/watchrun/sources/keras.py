"""Keras CSVLogger: `epoch` then the metric keys (sorted), `\\r\\n` line ends, "NA" for a key a
row lacks. With append=True across fit() calls the header is written once and the epoch restarts
at 0: the store starts a new segment of the same run there."""

from __future__ import annotations

from watchrun.sources.table import TableSource, looks_like_table


class KerasCsvSource(TableSource):
    format = "keras-csv"
    step_columns = ("epoch",)
    step_unit = "epoch"

    @staticmethod
    def claims(path: str, head: bytes) -> bool:
        """CSVLogger's content, whatever the file is called (`training_logs(2).log`)."""
        return looks_like_table(head, first_column="epoch")

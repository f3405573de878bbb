"""Keras CSVLogger: `epoch` then the metric keys (sorted), `\\r\\n` line ends, "NA" for a key a
row lacks. With append=True across fit() calls the header is written once and the epoch restarts
at 0: the store starts a new segment of the same run there."""

from __future__ import annotations

from watchrun.sources.table import TableSource


class KerasCsvSource(TableSource):
    format = "keras-csv"
    step_columns = ("epoch",)

"""PyTorch Lightning: CSVLogger metrics.csv, hparams.yaml, ModelCheckpoint file names."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from watchrun.lazy import lazy
from watchrun.sources.base import Source, flatten, to_float
from watchrun.sources.probe import history_table
from watchrun.sources.table import TableSource
from watchrun.tail import FileCursor

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy("yaml")  # PyYAML loads when a YAML file is read

_CKPT_FIELD = re.compile(r"([A-Za-z_][\w/.]*?)=(-?[\d.]+(?:e[+-]?\d+)?)")


class LightningCsvSource(TableSource):
    """metrics.csv: sparse rows keyed by `step` (val and train-epoch rows share a step); the
    header is sorted (2.x) or in insertion order (1.x) and grows when a new metric appears."""

    format = "lightning-csv"
    step_columns = ("step",)

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """A history table with both `step` and `epoch` columns, as Lightning always logs (or a
        `step` column in a file named as CSVLogger names it)."""
        if head is None:
            return os.path.basename(path) == "metrics.csv"
        header = history_table(head)
        named = os.path.basename(path) == "metrics.csv"
        if not header:
            return False
        return "step" in header and ("epoch" in header or named)

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        return os.path.dirname(path), {}


class HparamsYamlSource(Source):
    format = "hparams-yaml"
    stream = "hparams"
    listed_when_empty = False
    attaches = 1  # a config: it describes the run in its directory, it is never a run itself
    standalone = False

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        return os.path.basename(path) == "hparams.yaml"

    def read(self, cursor: FileCursor) -> int:
        try:
            doc = yaml.safe_load(cursor.read_all())
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError, ValueError):
            cursor.mtime_ns = -1
            return 0
        if isinstance(doc, dict):
            self.store.update(self.key, hparams=flatten(doc))
        return 0


class CheckpointSource(Source):
    """`epoch=17-val_loss=0.0768.ckpt`: the monitored value of each saved checkpoint."""

    format = "checkpoint"
    stream = "checkpoint"
    listed_when_empty = False
    attaches = 2
    standalone = False

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """ModelCheckpoint's `*.ckpt` (a torch zip or pickle): its name carries the metric."""
        if not path.endswith(".ckpt"):
            return False
        return not head or head[:2] in (b"PK", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")

    def read(self, cursor: FileCursor) -> int:
        name = os.path.basename(cursor.path)
        fields = {k: to_float(v) for k, v in _CKPT_FIELD.findall(name.removesuffix(".ckpt"))}
        run = self.store.run(self.key)
        ckpts: list[dict[str, Any]] = list(run.meta.get("checkpoints", []))
        if not any(c["path"] == cursor.path for c in ckpts):
            ckpts.append(
                {"path": cursor.path, **{k: v for k, v in fields.items() if v is not None}}
            )
            self.store.update(self.key, meta={"checkpoints": ckpts})
        return 0

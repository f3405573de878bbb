"""PyTorch Lightning: CSVLogger metrics.csv, hparams.yaml, ModelCheckpoint file names."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from watchrun.lazy import lazy
from watchrun.sources.base import Source, flatten, to_float
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


class HparamsYamlSource(Source):
    format = "hparams-yaml"
    stream = "hparams"

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

    def read(self, cursor: FileCursor) -> int:
        name = os.path.basename(cursor.path)
        fields = {k: to_float(v) for k, v in _CKPT_FIELD.findall(name.removesuffix(".ckpt"))}
        run = self.store.run(self.key)
        ckpts: list[dict[str, Any]] = list(run.meta.get("checkpoints", []))
        if not any(c["path"] == cursor.path for c in ckpts):
            ckpts.append({"path": cursor.path, **{k: v for k, v in fields.items() if v is not None}})
            self.store.update(self.key, meta={"checkpoints": ckpts})
        return 0

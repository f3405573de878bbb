"""Ultralytics (YOLOv5/v8/11) run directories: `args.yaml`, written once when training starts,
next to `results.csv` (one row per epoch, read as a Keras-style CSV).

args.yaml is the run's own record of its schedule: `epochs` (the planned length) and `patience`
(EarlyStopping's epochs without a better fitness). Kept as the run's meta (`max_epochs`,
`patience`, `library`) so that early stopping is read from the library's rule, and the numeric
and text settings as hparams.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from watchrun.lazy import lazy
from watchrun.sources.base import Source, flatten
from watchrun.tail import FileCursor

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy("yaml")  # PyYAML loads when a YAML file is read

# the settings every Ultralytics args.yaml starts with (`task: detect`, `mode: train`)
_ARGS_KEYS = (re.compile(rb"^task: ", re.M), re.compile(rb"^epochs: ", re.M))


class UltralyticsArgsSource(Source):
    format = "ultralytics-args"
    stream = "ultralytics-args"
    listed_when_empty = False  # a config: it describes the training of its results.csv

    @classmethod
    def claims(cls, path: str, head: bytes | None) -> bool:
        """`args.yaml` holding Ultralytics' settings (its results.csv may not exist yet: it is
        written after the first epoch)."""
        if os.path.basename(path) != "args.yaml":
            return False
        return head is not None and all(p.search(head) for p in _ARGS_KEYS)

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        """The run of the results.csv beside it (a history file is a run of its own)."""
        return os.path.join(os.path.dirname(path), "results.csv"), {}

    def read(self, cursor: FileCursor) -> int:
        try:
            doc = yaml.safe_load(cursor.read_all())
        except (yaml.YAMLError, UnicodeDecodeError):
            cursor.mtime_ns = -1  # being written: look again at the next poll
            return 0
        except FileNotFoundError:
            return 0
        if not isinstance(doc, dict):
            return 0
        meta: dict[str, object] = {"library": "ultralytics"}
        for key, meta_key in (("epochs", "max_epochs"), ("patience", "patience")):
            value = doc.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                meta[meta_key] = value
        self.store.update(self.key, meta=meta, hparams=flatten(doc))
        return 0

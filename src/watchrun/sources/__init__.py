"""The registry: every log format watchrun reads, listed once.

Discovery shows each file's head to these classes in this order and the first whose
`claims(path, head)` says yes reads it (specific formats before the generic tables and JSON lines,
consoles last). Adding a format is one module with a Source subclass (`format`, `stream`,
`step_unit`, `claims`, and `by_name`/`place`/`create` where the defaults do not fit) plus one
line here.
"""

from __future__ import annotations

from watchrun.sources.base import Head, Source
from watchrun.sources.console import ConsoleSource
from watchrun.sources.dvclive import DvcliveSource
from watchrun.sources.hf import HfTrainerSource
from watchrun.sources.history_json import JsonHistorySource
from watchrun.sources.keras import KerasCsvSource
from watchrun.sources.lightning import CheckpointSource, HparamsYamlSource, LightningCsvSource
from watchrun.sources.mlflow import MlflowFileSource, MlflowSqliteSource
from watchrun.sources.runcard import RunCardSource
from watchrun.sources.table import JsonlSource, TableSource
from watchrun.sources.tensorboard import TensorBoardSource
from watchrun.sources.trackio import TrackioSource
from watchrun.sources.ultralytics import UltralyticsArgsSource
from watchrun.sources.wandbrun import WandbFolderFile, WandbSource

SOURCES: tuple[type[Source], ...] = (
    RunCardSource,
    WandbFolderFile,  # a W&B run folder is one run, whatever its files look like
    WandbSource,
    TensorBoardSource,
    MlflowFileSource,
    MlflowSqliteSource,
    TrackioSource,
    DvcliveSource,
    HfTrainerSource,
    JsonHistorySource,  # after HF: trainer_state.json holds a history too
    CheckpointSource,
    HparamsYamlSource,
    UltralyticsArgsSource,
    LightningCsvSource,
    KerasCsvSource,
    TableSource,
    JsonlSource,
    ConsoleSource,
)

BY_FORMAT: dict[str, type[Source]] = {cls.format: cls for cls in SOURCES}
assert len(BY_FORMAT) == len(SOURCES), "two sources declare the same format id"


def claim(path: str, head: Head | None) -> type[Source] | None:
    """The source class that claims this file (one with `reads` False: a known file that is no
    log), or None: not a file watchrun knows."""
    for test in ("claims", "by_name"):  # content first; a name alone only when nothing claims it
        for cls in SOURCES:
            try:
                if getattr(cls, test)(path, head):
                    return cls
            except Exception:  # noqa: BLE001 - a sniffing bug must not hide the other formats
                continue
    return None


def source_class(fmt: str) -> type[Source]:
    return BY_FORMAT[fmt]


__all__ = ["BY_FORMAT", "SOURCES", "Head", "Source", "claim", "source_class"]

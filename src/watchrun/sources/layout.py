"""Where libraries put the files of one run: the run root a file belongs to.

Whether a file is a source at all is decided by its content (each source's `claims`); this module
only knows how writers lay out the files they make, so that the files of one run land in one
place before the evidence of merge.py joins what a layout cannot tell:
- TensorBoard: the directory of the event files; torch's add_hparams subfolder (`<float>/`) and
  Keras' train/ and validation/ subfolders belong to the parent (the subfolder becomes a prefix);
  HF Trainer's runs/<MonDD_HH-MM-SS>_<host>/ belongs to the output dir.
- HF Trainer: checkpoint-N/trainer_state.json belongs to the output dir.
- MLflow: mlruns/<exp>/<run>/ (files under its metrics/, params/, tags/, artifacts/).
- dvclive: <live>/plots/metrics/**.tsv, <live>/metrics.json, <live>/params.yaml.
- logs that tools write one per run directory (SB3/baselines progress.csv, Lightning-style
  metrics.csv, Ray Tune result.json,
  detectron2 metrics.json, mmdetection *.log.json, watchrun.jsonl): the directory.
"""

from __future__ import annotations

import os
import re

_HF_RUNS_SUBDIR = re.compile(r"^[A-Z][a-z]{2}\d{2}_\d{2}-\d{2}-\d{2}_")
_FLOAT_DIR = re.compile(r"^\d{9,}\.\d+$")
CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")
_SPLIT_DIRS = {"train", "validation", "eval", "val", "test", "valid"}
_DIR_LOGS = {
    "progress.csv",
    "metrics.csv",
    "result.json",
    "watchrun.jsonl",
    "metrics.jsonl",
    "progress.txt",
    "metrics.json",
}
MLFLOW_KINDS = ("metrics", "params", "tags", "artifacts")
# what logrotate and RotatingFileHandler append to a rotated log (`train.log.1`, `-20261123`,
# `.old`)
_ROTATED = re.compile(
    r"^[.\-_](?:\d{1,4}|\d{4}-?\d{2}-?\d{2}(?:[_T\-]?\d{2}(?:-?\d{2}){0,2})?|old|bak)(?:\.gz)?$"
)


class Dirs:
    """Directory listings, memoised for one scan (placing 10,000 files lists each dir once)."""

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str]] = {}
        self._mlflow: dict[tuple[str, tuple[str, ...]], str | None] = {}
        self._hf: dict[str, bool] = {}  # a folder of 1,000 runs is asked once, not once per run

    def names(self, d: str) -> frozenset[str]:
        got = self._names.get(d)
        if got is None:
            try:
                got = frozenset(os.listdir(d))
            except OSError:
                got = frozenset()
            self._names[d] = got
        return got

    def has(self, d: str, name: str) -> bool:
        return name in self.names(d)

    def isdir(self, d: str, name: str) -> bool:
        return name in self.names(d) and os.path.isdir(os.path.join(d, name))

    def mlflow_run_of(self, dirpath: str, kinds: tuple[str, ...] = MLFLOW_KINDS) -> str | None:
        key = (dirpath, kinds)
        if key not in self._mlflow:
            self._mlflow[key] = mlflow_run_of(dirpath, kinds, self)
        return self._mlflow[key]


def rotated_copy(path: str, dirs: Dirs) -> bool:
    """`train.log.1` next to `train.log`: an older generation of that log, which its source reads
    when it sees the rotation (tail.py), never a run of its own."""
    d, name = os.path.split(path)
    names = dirs.names(d)
    for i in range(len(name) - 1, 0, -1):
        if name[i] in ".-_" and name[:i] in names and _ROTATED.match(name[i:]):
            return True
    return False


def dir_log_root(path: str) -> str:
    """A log that its tool writes once per run directory makes the directory the run; any other
    history file is a run of its own until evidence joins it to its neighbours."""
    name = os.path.basename(path)
    return os.path.dirname(path) if name in _DIR_LOGS or name.endswith(".log.json") else path


def tensorboard_root(dirpath: str, dirs: Dirs) -> tuple[str, str, bool]:
    """(run root, tag prefix, is an HF runs/ dir) for a directory holding event files."""
    prefix = ""
    d = dirpath
    if _FLOAT_DIR.match(os.path.basename(d)):  # torch add_hparams subfolder
        d = os.path.dirname(d)
    parent = os.path.dirname(d)
    if os.path.basename(parent) == "runs" and _HF_RUNS_SUBDIR.match(os.path.basename(d)):
        return os.path.dirname(parent), "", True
    for up in (parent, os.path.dirname(parent)):  # HF with a custom logging_dir (./logs)
        if is_hf_root(up, dirs):
            return up, "", True
    if os.path.basename(d) in _SPLIT_DIRS and _has_event_sibling_split(parent, d, dirs):
        prefix = os.path.basename(d) + "/"
        d = parent
    mlflow_run = dirs.mlflow_run_of(d)
    if mlflow_run:
        return mlflow_run, prefix, False
    return d, prefix, False


def is_hf_root(d: str, dirs: Dirs) -> bool:
    known = dirs._hf.get(d)
    if known is None:
        names = dirs.names(d)
        known = dirs._hf[d] = "trainer_state.json" in names or any(
            CHECKPOINT_DIR.match(n) for n in names
        )
    return known


def _has_event_sibling_split(parent: str, d: str, dirs: Dirs) -> bool:
    """Keras' TensorBoard callback writes train/ and validation/ next to each other."""
    names = dirs.names(parent)
    return len(names & _SPLIT_DIRS) >= 2 or os.path.basename(d) in ("train", "validation")


def mlflow_run_of(
    dirpath: str, kinds: tuple[str, ...] = MLFLOW_KINDS, dirs: Dirs | None = None
) -> str | None:
    """The MLflow run dir that `dirpath` lies inside (metrics/, params/, tags/, artifacts/)."""
    parts = dirpath.split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in kinds:
            run = os.sep.join(parts[:i])
            has_meta = (
                dirs.has(run, "meta.yaml")
                if dirs
                else os.path.isfile(os.path.join(run, "meta.yaml"))
            )
            if has_meta:
                return run
    return None


def is_mlflow_run(dirpath: str, dirs: Dirs) -> bool:
    return any(dirs.isdir(dirpath, d) for d in ("metrics", "params", "tags"))


def dvclive_root(path: str) -> str | None:
    """<live>/plots/metrics/...: the live dir."""
    parts = path.split(os.sep)
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "plots" and parts[i + 1] == "metrics":
            return os.sep.join(parts[:i])
    return None

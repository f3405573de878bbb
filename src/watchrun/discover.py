"""A directory tree -> runs. One run is what one training library writes for one job.

Grouping rules, by library:
- HF Trainer: the output dir holding trainer_state.json and/or checkpoint-N/trainer_state.json,
  *_results.json, and runs/<MonDD_HH-MM-SS>_<host>/events* (TensorBoardCallback), console logs.
- Lightning: version_N/ with metrics.csv (CSVLogger) or events* (TensorBoardLogger), hparams.yaml.
- TensorBoard: the directory of the event files; torch's add_hparams subfolder (`<float>/`) and
  Keras' train/ and validation/ subfolders belong to the parent (the subfolder becomes a prefix).
- MLflow: mlruns/<exp>/<run>/ (TensorBoard files under its artifacts/ join it); mlflow.db holds many.
- dvclive: the dvclive/ directory. Keras CSVLogger and other tables: the file itself, except
  progress.csv / result.json (SB3, Ray Tune), which make their directory a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from watchrun.lazy import lazy
from watchrun.sources.console import ConsoleSource
from watchrun.sources.history_json import JsonHistorySource
from watchrun.sources.keras import KerasCsvSource
from watchrun.sources.table import STEP_COLUMNS, JsonlSource, TableSource
from watchrun.sources.wandbrun import run_folder_member

if TYPE_CHECKING:
    import sqlite3
else:
    sqlite3 = lazy("sqlite3")  # loaded when a database file is met

# formats decided by a file's content, whatever its name (issue 11 §2): first claim wins
CONTENT_CLAIMS = (
    (KerasCsvSource.format, KerasCsvSource.claims),
    (TableSource.format, TableSource.claims),
    (JsonHistorySource.format, JsonHistorySource.claims),
    (JsonlSource.format, JsonlSource.claims),
    (ConsoleSource.format, ConsoleSource.claims),
)
SNIFF_BYTES = 64 * 1024

PRUNE_DIRS = {".git", "__pycache__", "node_modules", ".venv", "venv", "site-packages", ".cache",
              ".ipynb_checkpoints", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
HF_RESULTS = {"all_results.json", "eval_results.json", "train_results.json", "test_results.json",
              "predict_results.json"}
_HF_RUNS_SUBDIR = re.compile(r"^[A-Z][a-z]{2}\d{2}_\d{2}-\d{2}-\d{2}_")
_FLOAT_DIR = re.compile(r"^\d{9,}\.\d+$")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")
_SPLIT_DIRS = {"train", "validation", "eval", "val", "test", "valid"}
CONSOLE_SUFFIXES = (".log", ".out", ".err")
DIR_TABLES = {"progress.csv", "result.json", "watchrun.jsonl", "metrics.jsonl", "progress.txt"}
STEPLIKE = STEP_COLUMNS
SNIFFED_SUFFIXES = (".json", ".txt", ".log", ".out")


@dataclass
class RunFile:
    format: str
    path: str
    options: dict = field(default_factory=dict)


@dataclass
class RunSpec:
    root: str
    files: list[RunFile] = field(default_factory=list)
    mtime: float = 0.0

    def add(self, fmt: str, path: str, **options: object) -> None:
        self.files.append(RunFile(fmt, path, dict(options)))
        with contextlib.suppress(OSError):
            self.mtime = max(self.mtime, os.path.getmtime(path))


def run_key(root: str, watch_root: str) -> str:
    rel = os.path.relpath(root, watch_root)
    return os.path.basename(os.path.abspath(watch_root)) if rel == "." else rel


def discover(watch_root: str, folders: set[str] | None = None) -> dict[str, RunSpec]:
    """Walk `watch_root` once; return runs by absolute root path, newest first. The folders
    walked are added to `folders` when given."""
    watch_root = os.path.abspath(watch_root)
    runs: dict[str, RunSpec] = {}
    consoles: list[str] = []

    def spec(root: str) -> RunSpec:
        if root not in runs:
            runs[root] = RunSpec(root)
        return runs[root]

    if os.path.isfile(watch_root):
        _classify_file(watch_root, os.path.dirname(watch_root), spec, consoles)
    else:
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(watch_root, followlinks=True):
            try:
                st = os.stat(dirpath)
            except OSError:
                dirnames[:] = []
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen:  # a symlink loop
                dirnames[:] = []
                continue
            seen.add(ident)
            if folders is not None:
                folders.add(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in PRUNE_DIRS and not _is_alias(dirpath, d))
            for name in sorted(filenames):
                _classify_file(os.path.join(dirpath, name), dirpath, spec, consoles)
    for path in consoles:  # console logs and checkpoints join the run of their directory
        parent = os.path.dirname(path)
        owner = next((r for r in (parent, os.path.dirname(parent)) if r in runs), None)
        if path.endswith(".ckpt"):
            if owner:
                spec(owner).add("checkpoint", path)
        else:
            spec(owner or path).add("console", path)
    return dict(sorted(runs.items(), key=lambda kv: -kv[1].mtime))


def _is_alias(dirpath: str, name: str) -> bool:
    """wandb/latest-run: a symlink to a run folder walked under its own name."""
    return name == "latest-run" and os.path.islink(os.path.join(dirpath, name))


def _classify_file(path: str, dirpath: str, spec, consoles: list[str]) -> None:
    name = os.path.basename(path)
    dirname = os.path.basename(dirpath)
    wandb_file = run_folder_member(path)
    if wandb_file is not None:  # a W&B run folder: its files and nothing else of it
        if wandb_file[1]:
            spec(wandb_file[0]).add(wandb_file[1], path)
        return
    if name.startswith("events.out.tfevents."):
        if name.endswith(".profile-empty"):
            return
        root, prefix, hf = tensorboard_root(dirpath)
        spec(root).add("tensorboard", path, prefix=prefix, hf=hf)
    elif name == "trainer_state.json":
        root = os.path.dirname(dirpath) if _CHECKPOINT_DIR.match(dirname) else dirpath
        spec(root).add("hf-trainer", path)
    elif name in ("watchrun-run.json", ".watchrun-stop.done"):
        spec(dirpath).add("run-card", path)
    elif name in HF_RESULTS:
        spec(dirpath).add("hf-trainer", path)
    elif name == "metrics.csv" and _table_header_has(path, ("step", "epoch")):
        spec(dirpath).add("lightning-csv", path)
    elif name == "hparams.yaml" and (dirname.startswith("version_") or _has(dirpath, "metrics.csv")):
        spec(dirpath).add("hparams-yaml", path)
    elif name == "args.yaml" and _has(dirpath, "results.csv"):  # Ultralytics: joins its results.csv
        spec(os.path.join(dirpath, "results.csv")).add("ultralytics-args", path)
    elif name == "meta.yaml" and _is_mlflow_run(dirpath):
        spec(dirpath).add("mlflow", path)
    elif _mlflow_run_of(dirpath, ("metrics", "params", "tags")):
        spec(_mlflow_run_of(dirpath, ("metrics", "params", "tags"))).add("mlflow", path)
    elif name.endswith(".ckpt"):
        consoles.append(path)
    elif "dvclive" in dirpath.split(os.sep) and (name.endswith(".tsv") or name in ("metrics.json", "params.yaml")):
        live = dirpath[: dirpath.rindex(os.sep + "dvclive") + len(os.sep + "dvclive")]
        spec(live).add("dvclive", path)
    elif name.endswith(".db") and _sqlite_kind(path):
        spec(path).add(_sqlite_kind(path) or "mlflow-sqlite", path)
    elif (name == "metrics.json" or name.endswith(".log.json")) and _json_lines_with_steps(path):
        spec(dirpath).add("jsonl", path)  # detectron2's metrics.json, mmdetection's *.log.json
    elif name in DIR_TABLES:
        fmt = "jsonl" if name.endswith((".json", ".jsonl")) else "csv"
        if fmt == "jsonl" or _table_header_has(path, STEPLIKE):
            spec(dirpath).add(fmt, path)
    elif name.endswith((".csv", ".tsv")):
        header = _header(path)
        if header and header[0] == "epoch":
            spec(path).add("keras-csv", path)
        elif header and any(h in header for h in STEPLIKE) and len(header) >= 2:
            spec(path).add("csv", path)
    elif name.endswith(".jsonl"):
        spec(path).add("jsonl", path)
    elif name.endswith(SNIFFED_SUFFIXES) and (sniffed := _sniffed_format(path)):
        if sniffed == "console":
            consoles.append(path)
        else:
            spec(path).add(sniffed, path)
    elif name.endswith(CONSOLE_SUFFIXES) or name.startswith(("slurm-", "nohup")):
        consoles.append(path)


def tensorboard_root(dirpath: str) -> tuple[str, str, bool]:
    """(run root, tag prefix, is an HF runs/ dir) for a directory holding event files."""
    prefix = ""
    d = dirpath
    if _FLOAT_DIR.match(os.path.basename(d)):  # torch add_hparams subfolder
        d = os.path.dirname(d)
    parent = os.path.dirname(d)
    if os.path.basename(parent) == "runs" and _HF_RUNS_SUBDIR.match(os.path.basename(d)):
        return os.path.dirname(parent), "", True
    for up in (parent, os.path.dirname(parent)):  # HF with a custom logging_dir (./logs)
        if _is_hf_root(up):
            return up, "", True
    if os.path.basename(d) in _SPLIT_DIRS and _has_event_sibling_split(parent, d):
        prefix = os.path.basename(d) + "/"
        d = parent
    mlflow_run = _mlflow_run_of(d)
    if mlflow_run:
        return mlflow_run, prefix, False
    return d, prefix, False


def _is_hf_root(d: str) -> bool:
    try:
        names = os.listdir(d)
    except OSError:
        return False
    return "trainer_state.json" in names or any(_CHECKPOINT_DIR.match(n) for n in names)


def _has_event_sibling_split(parent: str, d: str) -> bool:
    """Keras' TensorBoard callback writes train/ and validation/ next to each other."""
    try:
        names = set(os.listdir(parent))
    except OSError:
        return False
    return len(names & _SPLIT_DIRS) >= 2 or os.path.basename(d) in ("train", "validation")


def _is_mlflow_run(dirpath: str) -> bool:
    return any(os.path.isdir(os.path.join(dirpath, d)) for d in ("metrics", "params", "tags"))


def _mlflow_run_of(
    dirpath: str, kinds: tuple[str, ...] = ("metrics", "params", "tags", "artifacts")
) -> str | None:
    """The MLflow run dir that `dirpath` lies inside (metrics/, params/, tags/, artifacts/)."""
    parts = dirpath.split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in kinds:
            run = os.sep.join(parts[:i])
            if os.path.isfile(os.path.join(run, "meta.yaml")):
                return run
    return None


def _has(dirpath: str, name: str) -> bool:
    return os.path.exists(os.path.join(dirpath, name))


_HEADERS: dict[str, tuple[tuple[int, int], list[str]]] = {}


def _header(path: str) -> list[str]:
    """The first line's columns, cached by (size, mtime): rescans open no unchanged file."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    if not stat.S_ISREG(st.st_mode):
        return []  # a FIFO or a device: opening it could block; its source reports it
    sig = (st.st_size, st.st_mtime_ns)
    cached = _HEADERS.get(path)
    if cached and cached[0] == sig:
        return cached[1]
    header = _read_header(path)
    if len(_HEADERS) > 100_000:
        _HEADERS.clear()
    _HEADERS[path] = (sig, header)
    return header


def _open_regular(path: str):  # type: ignore[no-untyped-def]
    """A regular file opened for reading, never blocking: a FIFO or a device under a metrics
    file's name raises OSError instead of waiting for a writer that may never come."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_header(path: str) -> list[str]:
    try:
        with _open_regular(path) as fh:
            first = fh.readline(64 * 1024).decode("utf-8", "replace").strip()
    except OSError:
        return []
    sep = "\t" if first.count("\t") > first.count(",") else ","
    return [h.strip().strip('"') for h in first.split(sep)] if first else []


_SNIFFED: dict[str, tuple[tuple[int, int], str]] = {}


def _sniffed_format(path: str) -> str:
    """The format a file's head claims ("" for none), cached by (size, mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    if not stat.S_ISREG(st.st_mode):
        return ""  # a FIFO or a device: opening it could block
    sig = (st.st_size, st.st_mtime_ns)
    cached = _SNIFFED.get(path)
    if cached and cached[0] == sig:
        return cached[1]
    try:
        with _open_regular(path) as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return ""
    fmt = next((f for f, claims in CONTENT_CLAIMS if claims(path, head)), "")
    if len(_SNIFFED) > 100_000:
        _SNIFFED.clear()
    _SNIFFED[path] = (sig, fmt)
    return fmt


def _json_lines_with_steps(path: str) -> bool:
    """One JSON object per line, one of the first three with a step-like key (or mmdetection's
    `epoch` + `iter`): a metrics log, not a config or a single JSON document."""
    try:
        with _open_regular(path) as fh:
            head = fh.read(16384).split(b"\n")[:3]
    except OSError:
        return False
    for line in head:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # deep nesting: not a metrics line
            continue
        if isinstance(obj, dict) and (any(k in obj for k in STEPLIKE) or {"epoch", "iter"} <= obj.keys()):
            return True
    return False


def _table_header_has(path: str, names: tuple[str, ...]) -> bool:
    header = _header(path)
    return not header or any(n in header for n in names)


def _sqlite_kind(path: str) -> str | None:
    try:
        with _open_regular(path) as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return None
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = {r[1] for r in con.execute("PRAGMA table_info(metrics)")} if "metrics" in tables else set()
        finally:
            con.close()
    except (OSError, sqlite3.Error):
        return None
    if {"runs", "metrics", "experiments"} <= tables:
        return "mlflow-sqlite"
    if "metrics" in tables and columns >= {"run_name", "step", "metrics"}:
        return "trackio"
    return None

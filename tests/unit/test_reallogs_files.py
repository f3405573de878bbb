"""Every run in ../shared/reallogs and reallogs2 is read, and its numbers are the files'.

Each file is read again here by a reader of its own (json, csv, tensorboard's EventAccumulator,
MLflow's `timestamp value step` lines), and every series that watchrun kept from that file's
writer holds exactly the file's points: none lost, none added, none counted twice. Where two
writers log one metric, the run keeps the richer writer's (store.py), so a series is compared
with the files of the writer it came from. Consoles are checked by their own tests
(test_formats_history.py, test_discovery.py) and W&B runs by test_formats_wandb.py."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
from tests.conftest import REALLOGS
from tests.unit.helpers import loaded

from watchrun.engine import Engine

REALLOGS2 = REALLOGS.parent / "reallogs2"
RUNS = [
    d
    for root in (REALLOGS, REALLOGS2)
    if root.is_dir()
    for d in sorted(root.iterdir())
    if d.is_dir()
]
# the columns these runs' tables count by (Ray Tune's timesteps, baselines' total/steps)
STEP_COLUMNS = ("step", "timesteps_total", "epoch", "steps", "total/steps")
SKIPPED = {"time", "timestamp"}  # a table's clock column: not a metric


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    if not RUNS:
        pytest.skip(f"real logs not present at {REALLOGS2}")
    return {}


def engine_for(engines: dict[str, Engine], d: Path) -> Engine:
    if str(d) not in engines:
        engines[str(d)] = loaded(d)
    return engines[str(d)]


def _key(value: float) -> object:
    return "nan" if math.isnan(value) else round(value, 6) if math.isfinite(value) else value


# -- the files, read again ----------------------------------------------------------------------
def trainer_state(path: Path) -> dict[str, set]:
    out: dict[str, set] = defaultdict(set)
    for entry in json.loads(path.read_text()).get("log_history", []):
        if "train_runtime" in entry or "total_flos" in entry:
            continue  # the final summary: run.summary, not a point
        for k, v in entry.items():
            if k != "step" and isinstance(v, (int, float)):
                out[k].add((entry["step"], _key(float(v))))
    return out


def table(path: Path) -> dict[str, set]:
    text = path.read_text(errors="replace")
    if not text.endswith(("\n", "\r")):  # a last row without its newline waits for it
        text = text[: max(text.rfind("\n"), text.rfind("\r")) + 1]
    delimiter = "\t" if path.suffix == ".tsv" else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header = [c.strip() for c in next(reader, [])]  # Ultralytics pads its cells with spaces
    rows = [dict(zip(header, r, strict=False)) for r in reader if r]
    out: dict[str, set] = defaultdict(set)
    if not rows:
        return out
    step_col = next((c for c in STEP_COLUMNS if c in rows[0] and rows[0][c].strip()), None)
    for i, row in enumerate(rows):
        step = int(float(row[step_col])) if step_col else i
        for k, v in row.items():
            if k == step_col or k in SKIPPED or not v.strip():
                continue
            try:
                out[k].add((step, _key(float(v))))
            except ValueError:
                continue
    return out


def json_lines(path: Path) -> dict[str, set]:
    out: dict[str, set] = defaultdict(set)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        step = row.get("iteration", row.get("step"))
        for k, v in row.items():
            if k not in ("iteration", "step") and isinstance(v, (int, float)):
                out[k].add((step, _key(float(v))))
    return out


def mlflow_metric(path: Path) -> set:
    rows = [line.split() for line in path.read_text().splitlines()]
    # a run that did not pass step= logs its points at step 0: counted in line order (told by
    # the first two, as a live reader must; this one passes the epoch later on)
    unstepped = len(rows) > 1 and int(rows[0][2]) == int(rows[1][2]) == 0
    return {
        (i if unstepped else int(step), _key(float(v))) for i, (_ts, v, step) in enumerate(rows)
    }


def event_files(paths: list[Path]) -> dict[str, set]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, set] = defaultdict(set)
    for path in paths:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out[tag] |= {(e.step, _key(e.value)) for e in acc.Scalars(tag)}
    return out


def _tags(name: str) -> tuple[str, ...]:
    """The names a metric may have in its file: HF's TensorBoard tags are `train/loss` and
    `eval/loss` for the trainer's `loss` and `eval_loss`."""
    if name.startswith("eval_"):
        return (name, "eval/" + name[5:])
    return (name, "train/" + name)


# -- what watchrun kept -------------------------------------------------------------------------
def kept(run, stream: str) -> dict[str, set]:
    """The run's series whose points came from `stream`, as (step, value) sets."""
    return {
        name: {(int(s), _key(float(v))) for s, v in zip(series.steps, series.values, strict=True)}
        for name, series in run.series.items()
        if run.origins.get(name) == [(0, stream)]
    }


def expected(run) -> dict[str, dict[str, set]]:
    """stream -> metric -> the points its files hold."""
    out: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    events = []
    for f, fmt in run.file_formats.items():
        path = Path(f)
        if fmt == "hf-trainer" and path.name == "trainer_state.json":
            for k, pts in trainer_state(path).items():
                out["trainer_state"][k] |= pts
        elif fmt in ("csv", "keras-csv", "lightning-csv"):
            for k, pts in table(path).items():
                out["table"][k] |= pts
        elif fmt == "jsonl":
            for k, pts in json_lines(path).items():
                out["jsonl"][k] |= pts
        elif fmt == "mlflow" and "/metrics/" in f:
            name = f.split("/metrics/", 1)[1]
            out["mlflow"][name] |= mlflow_metric(path)
        elif fmt == "dvclive" and path.suffix == ".tsv":
            name = f.split("/plots/metrics/", 1)[1][: -len(".tsv")]
            rows = list(csv.DictReader(path.read_text().splitlines(), delimiter="\t"))
            out["dvclive"][name] |= {
                (int(r["step"]), _key(float(r[name.split("/")[-1]]))) for r in rows
            }
        elif fmt == "tensorboard":
            events.append(path)
    if events:
        out["tensorboard"] = event_files(sorted(events))
    return out


@pytest.mark.parametrize("d", RUNS, ids=[f"{d.parent.name}/{d.name}" for d in RUNS])
def test_every_series_holds_exactly_its_files_points(engines, d):
    engine = engine_for(engines, d)
    runs = [engine.store.runs[k] for k in engine.visible_keys()]
    assert runs, "every run is read"
    compared = 0
    for run in runs:
        for stream, metrics in expected(run).items():
            for name, points in kept(run, stream).items():
                tag = next((t for t in _tags(name) if t in metrics), None)
                if tag is None:
                    continue
                assert points == metrics[tag], (run.key, stream, name)
                compared += 1
    formats = {fmt for r in runs for fmt in r.formats}
    if formats - {"console", "wandb", "hparams-yaml", "ultralytics-args"}:
        assert compared, "at least one series checked against its file"


def test_ultralytics_results_csv_and_its_mlflow_copy_give_one_point_per_epoch(engines):
    """results.csv counts epochs from 1, the MLflow callback's steps from 0 and it logs the final
    validation of best.pt again at the last epoch: merged, the run keeps results.csv's series,
    each epoch once, and the MLflow copies are dropped as the same metrics."""
    d = REALLOGS2 / "mlflow-yolo-aerial-healthy"
    engine = engine_for(engines, d)
    (key,) = engine.visible_keys()
    run = engine.store.runs[key]
    assert {"mlflow", "keras-csv", "ultralytics-args"} <= run.formats
    (results,) = d.rglob("results.csv")
    rows = list(csv.DictReader(results.read_text().splitlines()))
    assert len(rows) == 20
    epochs = [int(r["epoch"]) for r in rows]
    for name, series in run.series.items():
        assert series.steps.tolist() == epochs, name
        assert series.values.tolist() == [float(r[name]) for r in rows], name
    assert run.duplicate_of["metrics/mAP50B"] == "metrics/mAP50(B)"


def test_hand_written_console_with_its_validation_lines(engines):
    """`Epoch: N, Average Loss: .., Trn Accuracy: ..%, lr: ..` then `Average Val Loss: ..,
    Val_accuracy: ..`: the validation line names no step, it belongs to the epoch before it; a
    name of several words is one name (`Average Loss` -> loss, `Trn Accuracy` -> trn_accuracy)."""
    import re

    d = REALLOGS2 / "console-slurm-cifar100-nan-cosine"
    engine = engine_for(engines, d)
    (key,) = engine.visible_keys()
    got = {
        n: [(int(s), _key(float(v))) for s, v in zip(x.steps, x.values, strict=True)]
        for n, x in engine.store.runs[key].series.items()
    }
    text = next(d.rglob("*.log")).read_text(errors="replace")
    num = r"(-?[\d.]+(?:e-?\d+)?|nan)"
    train = re.findall(rf"Epoch: (\d+), Average Loss: {num}, Trn Accuracy: {num}%, lr: {num}", text)
    val = re.findall(rf"Average Val Loss: {num}, Val_accuracy: {num}", text)
    assert len(train) == len(val) == 200
    assert got["loss"] == [(int(e), _key(float(x))) for e, x, _, _ in train]
    assert got["trn_accuracy"] == [(int(e), _key(float(x))) for e, _, x, _ in train]
    assert got["lr"] == [(int(e), _key(float(x))) for e, _, _, x in train]
    pairs = list(zip(train, val, strict=True))
    assert got["val_loss"] == [(int(e), _key(float(x))) for (e, *_), (x, _) in pairs]
    assert got["Val_accuracy"] == [(int(e), _key(float(a))) for (e, *_), (_, a) in pairs]

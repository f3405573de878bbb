"""`watchrun.read(path)`: the runs under a path as pandas DataFrames, for every format watchrun
reads (what tbparse's SummaryReader gives for TensorBoard alone).

pandas is imported here and nowhere else: the tailing core and the app never load it.

    runs = watchrun.read("outputs/")
    runs.scalars()   # long: run, metric, step, value, wall_time, source
    runs.wide()      # one row per (run, step), one column per metric
    runs.alerts()    # what the detectors found (run on first use)
    runs["bert-base"].hparams, runs["bert-base"].texts
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from watchrun.config import Config
from watchrun.engine import Engine
from watchrun.model import Alert, Run, TextSample

SCALAR_COLUMNS = ("run", "metric", "step", "value", "wall_time", "source")
ALERT_COLUMNS = ("run", "detector", "severity", "step", "metrics", "message", "action", "open")


@dataclass
class RunData:
    """One run as read: its metrics and everything else the files say about it."""

    key: str
    root: str
    formats: list[str]
    step_unit: str
    status: str
    hparams: dict[str, Any]
    summary: dict[str, float]
    meta: dict[str, Any]
    texts: list[TextSample]
    display_name: str
    _run: Run = field(repr=False)
    _runs: Runs = field(repr=False)

    @property
    def metrics(self) -> list[str]:
        return sorted(self._run.series)

    @property
    def alerts(self) -> list[Alert]:
        return self._runs.alert_list(self.key)

    def scalars(self) -> pd.DataFrame:
        return _long_frame([self._run])

    def wide(self) -> pd.DataFrame:
        return _wide_frame([self._run])


class Runs(Sequence[RunData]):
    """The runs found under the paths given to `read`, newest first."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._detected = False
        keys = engine.visible_keys()
        self._runs = [_run_data(engine.store.runs[k], self) for k in keys]
        self._by_key = {r.key: r for r in self._runs}

    def __len__(self) -> int:
        return len(self._runs)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            return self._by_key[index]
        return self._runs[index]

    def __iter__(self) -> Iterator[RunData]:
        return iter(self._runs)

    def keys(self) -> list[str]:
        return [r.key for r in self._runs]

    def __repr__(self) -> str:
        return f"Runs({self.keys()!r})"

    def scalars(self) -> pd.DataFrame:
        """Every point of every run: run, metric, step, value, wall_time (epoch seconds),
        source (the stream that delivered it: tensorboard, trainer_state, wandb, console...)."""
        return _long_frame([r._run for r in self._runs])

    def wide(self) -> pd.DataFrame:
        """One row per (run, step), one column per metric (NaN where a metric has no point)."""
        return _wide_frame([r._run for r in self._runs])

    def hparams(self) -> pd.DataFrame:
        """One row per run, one column per hyperparameter."""
        return pd.DataFrame([{"run": r.key, **r.hparams} for r in self._runs])

    def texts(self) -> pd.DataFrame:
        rows = [(r.key, t.step, t.tag, t.text, t.wall) for r in self._runs for t in r.texts]
        return pd.DataFrame(rows, columns=["run", "step", "tag", "text", "wall_time"])

    def alerts(self) -> pd.DataFrame:
        """The detectors' alerts (the detectors run on the first call, as `watchrun check`)."""
        rows = []
        for r in self._runs:
            for a in self.alert_list(r.key):
                rows.append(
                    (
                        a.run,
                        a.detector,
                        a.severity.value,
                        a.step,
                        list(a.metrics),
                        a.message,
                        a.action,
                        a.open,
                    )
                )
        return pd.DataFrame(rows, columns=list(ALERT_COLUMNS))

    def alert_list(self, key: str) -> list[Alert]:
        if not self._detected:
            self._engine.verdict()
            self._detected = True
        return self._engine.store.alerts_for(key)


def read(path: str | Sequence[str], config: Config | None = None) -> Runs:
    """Read every run under `path` (a directory, a file, or a list of them) once."""
    paths = [path] if isinstance(path, str) else list(path)
    engine = Engine([str(p) for p in paths], config, use_watchdog=False)
    engine.load()
    engine.close()  # remote roots: read once, as local ones
    return Runs(engine)


def _run_data(run: Run, runs: Runs) -> RunData:
    return RunData(
        key=run.key,
        root=run.root,
        formats=sorted(run.formats),
        step_unit=run.step_unit,
        status=run.status.value,
        hparams=dict(run.hparams),
        summary=dict(run.summary),
        meta=dict(run.meta),
        texts=list(run.texts),
        display_name=run.display_name or run.key,
        _run=run,
        _runs=runs,
    )


def _long_frame(runs: list[Run]) -> pd.DataFrame:
    """Columns built straight from the series' arrays; run, metric and source as categoricals
    (a million points cost ~30 bytes each)."""
    run_names = [r.key for r in runs]
    metric_names: dict[str, int] = {}
    source_names: dict[str, int] = {}
    parts: dict[str, list[np.ndarray]] = {
        c: [] for c in ("run", "metric", "step", "value", "wall", "source")
    }
    for i, run in enumerate(runs):
        for name, series in run.series.items():
            n = len(series)
            if n == 0:
                continue
            code = metric_names.setdefault(name, len(metric_names))
            parts["run"].append(np.full(n, i, dtype=np.int32))
            parts["metric"].append(np.full(n, code, dtype=np.int32))
            parts["step"].append(series.steps)
            parts["value"].append(series.values)
            parts["wall"].append(series.walls)
            parts["source"].append(_source_codes(run.origins.get(name, []), n, source_names))
    if not parts["step"]:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=t)
                for c, t in zip(
                    SCALAR_COLUMNS,
                    ("object", "object", "int64", "float64", "float64", "object"),
                    strict=True,
                )
            }
        )
    cat = pd.Categorical.from_codes
    return pd.DataFrame(
        {
            "run": cat(np.concatenate(parts["run"]), categories=run_names),
            "metric": cat(np.concatenate(parts["metric"]), categories=list(metric_names)),
            "step": np.concatenate(parts["step"]),
            "value": np.concatenate(parts["value"]),
            "wall_time": np.concatenate(parts["wall"]),
            "source": cat(
                np.concatenate(parts["source"]), categories=list(source_names) or ["unknown"]
            ),
        }
    )


def _source_codes(origins: list[tuple[int, str]], n: int, names: dict[str, int]) -> np.ndarray:
    """Per point, the code of the stream that delivered it, from (first index, stream) runs."""
    if not origins:
        return np.full(n, names.setdefault("unknown", len(names)), dtype=np.int32)
    codes = np.empty(n, dtype=np.int32)
    bounds = [start for start, _ in origins[1:]] + [n]
    for (start, stream), end in zip(origins, bounds, strict=True):
        codes[start:end] = names.setdefault(stream, len(names))
    return codes


def _wide_frame(runs: list[Run]) -> pd.DataFrame:
    frames = []
    for run in runs:
        columns = {}
        for name, series in run.series.items():
            if len(series):
                s = pd.Series(series.values, index=series.steps)
                columns[name] = s[~s.index.duplicated(keep="last")]
        if columns:
            frame = pd.DataFrame(columns).sort_index()
            frame.index.name = "step"
            frame.insert(0, "run", run.key)
            frames.append(frame.reset_index())
    if not frames:
        return pd.DataFrame(columns=["run", "step"])
    wide = pd.concat(frames, ignore_index=True)
    return wide[["run", "step"] + [c for c in wide.columns if c not in ("run", "step")]]

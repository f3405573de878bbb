"""watchrun.read(): runs as DataFrames, checked against what the real writers wrote and against
tbparse on the same event files; `watchrun export`; pandas stays out of the core and the UI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")

import watchrun  # noqa: E402
from watchrun.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A TensorBoard run (tensorboardX's writer: scalars, text, hparams, a NaN at step 7), a
    Lightning CSVLogger folder and a JSON history, side by side."""
    from tensorboardX import SummaryWriter

    root = tmp_path_factory.mktemp("runs")
    w = SummaryWriter(str(root / "tb"))
    for i in range(10):
        w.add_scalar("train/loss", math.nan if i == 7 else 1.0 / (i + 1), i)
        if i % 2 == 0:
            w.add_scalar("val/acc", 0.1 * i, i)
    w.add_text("samples", "pred: cat", 9)
    w.add_hparams({"lr": 0.01, "layers": 3}, {"hparam/acc": 0.5})
    w.close()
    version = root / "lightning_logs" / "version_0"
    version.mkdir(parents=True)
    (version / "metrics.csv").write_text(
        "epoch,step,train_loss,val_loss\n0,9,0.9,\n0,9,,1.1\n1,19,0.7,\n1,19,,1.0\n"
    )
    (version / "hparams.yaml").write_text("lr: 0.001\nbatch_size: 32\n")
    (root / "history.json").write_text(
        json.dumps({"loss": [0.5, 0.4, 0.3], "val_loss": [0.6, 0.55, 0.5]})
    )
    return root


@pytest.fixture(scope="module")
def runs(tree):
    return watchrun.read(str(tree))


def test_runs_and_their_metadata(runs):
    assert sorted(runs.keys()) == ["history.json", "lightning_logs/version_0", "tb"]
    tb = runs["tb"]
    assert tb.metrics == ["hparam/acc", "train/loss", "val/acc"]  # add_hparams logs its metric
    assert tb.hparams == {"lr": 0.01, "layers": 3}
    assert [(t.step, t.tag, t.text) for t in tb.texts] == [(9, "samples", "pred: cat")]
    assert runs["lightning_logs/version_0"].hparams == {"lr": 0.001, "batch_size": 32}
    assert runs["history.json"].step_unit == "epoch"


def test_scalars_long_table_holds_every_point_written(runs):
    df = runs.scalars()
    assert list(df.columns) == ["run", "metric", "step", "value", "wall_time", "source"]
    loss = df[(df.run == "tb") & (df.metric == "train/loss")].sort_values("step")
    assert loss.step.tolist() == list(range(10))
    want = [math.nan if i == 7 else 1.0 / (i + 1) for i in range(10)]
    assert all(
        math.isnan(a) if math.isnan(b) else a == pytest.approx(b)
        for a, b in zip(loss.value, want, strict=True)
    )
    assert (loss.wall_time > time.time() - 3600).all() and (loss.wall_time <= time.time()).all()
    assert set(loss.source) == {"tensorboard"}
    val = df[(df.run == "lightning_logs/version_0") & (df.metric == "val_loss")]
    assert list(zip(val.step, val.value, strict=True)) == [(9, 1.1), (19, 1.0)]
    hist = df[df.run == "history.json"]
    assert sorted(zip(hist.metric, hist.step, hist.value, strict=True)) == sorted(
        [
            ("loss", 0, 0.5),
            ("loss", 1, 0.4),
            ("loss", 2, 0.3),
            ("val_loss", 0, 0.6),
            ("val_loss", 1, 0.55),
            ("val_loss", 2, 0.5),
        ]
    )
    assert set(hist.source) == {"json-history"}
    assert len(df) == sum(sum(len(s) for s in r._run.series.values()) for r in runs)


def test_scalars_match_tbparse_on_the_same_event_files(tree):
    tbparse = pytest.importorskip("tbparse", reason="tbparse (bench extra) is the reference")
    ours = watchrun.read(str(tree / "tb")).scalars()
    ref = tbparse.SummaryReader(str(tree / "tb"), pivot=False).scalars
    a = sorted(
        zip(ours.metric.astype(str), ours.step, ours.value.round(6).fillna(-1.0), strict=True)
    )
    b = sorted(zip(ref.tag, ref.step, ref.value.astype(float).round(6).fillna(-1.0), strict=True))
    assert a == b


def test_wide_table_one_column_per_metric(runs):
    wide = runs["tb"].wide()
    assert list(wide.columns) == ["run", "step", "hparam/acc", "train/loss", "val/acc"]
    assert wide.step.tolist() == list(range(10))
    assert wide["val/acc"].isna().tolist() == [i % 2 == 1 for i in range(10)]
    assert wide["train/loss"].isna().tolist() == [i == 7 for i in range(10)]
    everything = runs.wide()
    assert set(everything.run) == set(runs.keys())
    assert {"loss", "val_loss", "train_loss", "train/loss"} <= set(everything.columns)


def test_alerts_table_names_the_nan(runs):
    alerts = runs.alerts()
    assert list(alerts.columns) == [
        "run",
        "detector",
        "severity",
        "step",
        "metrics",
        "message",
        "action",
        "open",
    ]
    nan = alerts[(alerts.run == "tb") & (alerts.detector == "nan_loss")]
    # one NaN that the loss recovers from (an overflowed batch) is context, not "stop now"
    assert len(nan) == 1 and nan.iloc[0].severity == "info" and nan.iloc[0].step == 7
    assert [a.detector for a in runs["tb"].alerts].count("nan_loss") == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_writes_the_same_table(tree, runs, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"points.{fmt}"
    assert main(["export", str(tree), "--format", fmt, "-o", str(out)]) == 0
    if fmt == "csv":
        back = pd.read_csv(out)
    elif fmt == "jsonl":
        back = pd.read_json(out, lines=True)
    else:
        back = pd.read_parquet(out)
    want = runs.scalars()
    assert len(back) == len(want)
    back, want = (f.astype({"run": str, "metric": str}) for f in (back, want))
    for f in (back, want):  # a metric may log twice at one step (Lightning's epoch column)
        f["n"] = f.groupby(["run", "metric", "step"]).cumcount()
    merged = back.merge(want, on=["run", "metric", "step", "n"])
    assert len(merged) == len(want)
    both = merged.dropna(subset=["value_x", "value_y"])
    assert (both.value_x - both.value_y).abs().max() < 1e-9
    assert (
        merged.value_x.isna().sum() == merged.value_y.isna().sum() == 1
    )  # the NaN loss stays a NaN


def test_export_to_stdout(tree, capsys):
    assert main(["export", str(tree / "history.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run,metric,step,value,wall_time,source" and len(lines) == 7


def test_parquet_without_pyarrow_says_what_to_install(tree, tmp_path):
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from watchrun.cli import main\n"
        f"sys.exit(main(['export', {str(tree)!r}, '--format', 'parquet',"
        f" '-o', {str(tmp_path / 'x.parquet')!r}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "pip install 'watchrun[parquet]'" in out.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_pandas_is_not_imported_by_the_core_or_the_ui(tree):
    code = (
        "import sys, io, contextlib\n"
        "import watchrun, watchrun.engine, watchrun.cli, watchrun.discover, watchrun.app.app\n"
        "from watchrun.engine import Engine\n"
        f"e = Engine([{str(tree)!r}], use_watchdog=False); e.check()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    watchrun.cli.main(['ls', {str(tree)!r}])\n"
        "print('pandas' in sys.modules, 'pyarrow' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "False"]

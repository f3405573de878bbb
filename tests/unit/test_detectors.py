"""Detectors on real logs, on simulated runs, and batch == follow for every prefix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from tests.unit.helpers import loaded

from watchrun.demo import write_all
from watchrun.engine import Engine
from watchrun.model import Severity


def alerts_by_run(engine: Engine) -> dict[str, list]:
    engine.verdict()
    return {k: engine.store.alerts_for(k) for k in engine.store.runs}


def alarms(alerts) -> set[str]:
    return {a.detector for a in alerts if a.severity is not Severity.INFO}


@pytest.fixture(scope="module")
def real(request):
    from tests.conftest import REALLOGS

    if not (REALLOGS / "SOURCES.md").exists():
        pytest.skip(f"real logs not present at {REALLOGS}")
    e = loaded(REALLOGS)
    return alerts_by_run(e)


EXPECTED = {
    # failing runs: what a careful reader calls
    "hf-financial-sentiment-overfit": {"overfitting", "minority_class_hidden"},
    "hf-subjectivity-collapse/results": {"loss_at_chance", "lr_schedule"},  # one grad spike: info
    "hf-whisper-small-hi-overfit": set(),  # overfitting as info: its WER still improves
    "hf-hatespeech-state-plus-tfevents": {"perfect_validation"},
    "pl-csv-edgecases/Goreg12345/lightning_logs/version_0": {"not_learning"},
    "pl-csv-edgecases/DiogoFerreira7/lightning_logs/version_0": {"loss_at_chance"},
    "pl-csv-edgecases/DranovEgor/lightning_logs/version_0": {"overfitting"},
    "keras-csvlogger/tomato-overfit/training_log.csv": {"overfitting"},
    # healthy runs and traps: no warning, no critical
    "hf-agnews-lora-checkpoints/results": set(),
    "pl-mnist-tb-multifile-and-csv/lightning_logs/mnist_cnn/version_0": set(),
    "pl-mnist-tb-multifile-and-csv/lightning_logs/mnist_cnn/version_1": set(),
    "pl-mnist-tb-multifile-and-csv/lightning_logs/version_0": set(),
    "pl-asl-csv/lightning_logs/version_0": set(),
    "mlflow-filestore-mnist-cnn/mlruns/0/b0b3b9a1d5ae4aba891eb32484f3d897": set(),  # loss floor
    "mlflow-keras-tf2-swahili/mlruns/1/ed05f9cd599442fe9a0c9222184710b8": set(),
    "keras-csvlogger/braintumor-appended/training_log.csv": set(),
    "tb-rl-sb3-and-rllib/sb3-dqn/DQN_1": set(),
    "tb-rl-sb3-and-rllib/rllib-ppo/PPO_JBW-cycle-1e6-v3_9a92d_00000_0_2021-04-11_10-56-44": set(),
    "dvclive-hf-regressor/dvclive": set(),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_real_runs(real, key):
    assert alarms(real[key]) == EXPECTED[key]


def test_seed_numbers_in_the_messages(real):
    fin = {a.detector: a for a in real["hf-financial-sentiment-overfit"]}
    # not at the first eval (acc 0.90, macro F1 0.19: the model has not learned yet), at the
    # first eval after it where accuracy looks good again (0.78) and macro F1 is still 0.21
    assert fin["minority_class_hidden"].step == 6210
    assert "eval_macro_f1 0.2076" in fin["minority_class_hidden"].message
    over = fin["overfitting"]
    assert over.evidence["best_step"] == 3105 and over.step == 8280
    whisper = {a.detector: a for a in real["hf-whisper-small-hi-overfit"]}["overfitting"]
    assert "eval_wer still improving" in whisper.message and "checkpoint-4000" in whisper.action
    braintumor = [
        a
        for a in real["keras-csvlogger/braintumor-appended/training_log.csv"]
        if a.detector == "restarted"
    ]
    assert len(braintumor) == 3


def test_demo_runs_fire_what_they_simulate(tmp_path):
    write_all(str(tmp_path))
    got = alerts_by_run(loaded(tmp_path))
    assert {"nan_loss", "divergence"} <= alarms(got["lm-nan"])
    nan = next(a for a in got["lm-nan"] if a.detector == "nan_loss")
    div = next(a for a in got["lm-nan"] if a.detector == "divergence")
    assert nan.step == 79 and nan.severity is Severity.CRITICAL and div.step < nan.step
    blank = [a for a in got["ctc-asr/lightning_logs/version_0"] if a.severity is Severity.CRITICAL]
    assert blank and "stop training" in blank[0].message
    assert alarms(got["turn-classifier"]) == {"minority_class_hidden"}
    assert alarms(got["whisper-finetune-overfit"]) == {"overfitting"}
    assert alarms(got["healthy-resnet"]) == set()


def _copy_prefixes(src_run, dst, fractions):
    """Yield after writing growing prefixes of every file of a run (rewriting JSON whole)."""
    files = [p for p in src_run.rglob("*") if p.is_file()]
    for frac in fractions:
        for f in files:
            rel = f.relative_to(src_run.parent)
            out = dst / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            data = f.read_bytes()
            if f.suffix == ".json":
                doc = json.loads(data)
                if "log_history" in doc:
                    doc["log_history"] = doc["log_history"][
                        : max(1, int(len(doc["log_history"]) * frac))
                    ]
                out.write_text(json.dumps(doc))
            else:
                out.write_bytes(data[: int(len(data) * frac)])
        yield


def alert_keys(alerts):
    return sorted((a.detector, a.step, a.severity.value) for a in alerts)


@pytest.mark.parametrize(
    "name",
    [
        "hf-financial-sentiment-overfit",
        "hf-subjectivity-collapse",
        "hf-whisper-small-hi-overfit",
        "keras-csvlogger",
        "pl-csv-edgecases",
        "hf-hatespeech-state-plus-tfevents",
    ],
)
def test_batch_equals_follow_over_prefixes(reallogs, tmp_path, name):
    batch = loaded(reallogs / name)
    expected = {k: alert_keys(v) for k, v in alerts_by_run(batch).items()}
    live_dir = tmp_path / name
    engine = None
    for _ in _copy_prefixes(reallogs / name, tmp_path, [i / 20 for i in range(1, 21)]):
        if engine is None:
            engine = Engine([str(live_dir)], use_watchdog=False)
            engine.load()
        else:
            engine.scan()
            engine.poll()
        engine.detect(final=False)
    for f in (reallogs / name).rglob("*"):  # the copies end as old as the originals
        if f.is_file():
            st = f.stat()
            os.utime(tmp_path / f.relative_to(reallogs), (st.st_atime, st.st_mtime))
    engine.poll()
    engine.update_statuses()
    engine.detect(final=True)
    got = {k: alert_keys(engine.store.alerts_for(k)) for k in engine.store.runs}
    assert got == expected


def test_check_command_json_and_exit_codes(tmp_path):
    write_all(str(tmp_path / "runs"))
    out = subprocess.run(
        [sys.executable, "-m", "watchrun.cli", "check", str(tmp_path / "runs"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    keys = {"run", "detector", "severity", "step", "metrics", "message", "evidence", "action"}
    assert rows and all(keys <= set(r) for r in rows)
    assert any(
        r["run"] == "lm-nan" and r["detector"] == "nan_loss" and r["step"] == 79 for r in rows
    )
    shutil.rmtree(tmp_path / "runs" / "lm-nan")
    healthy = subprocess.run(
        [sys.executable, "-m", "watchrun.cli", "check", str(tmp_path / "runs" / "healthy-resnet")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert healthy.returncode == 0, healthy.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "watchrun.cli", "check", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_target_from_command_line_and_targets_json(tmp_path):
    run = tmp_path / "reg" / "metrics.csv"
    run.parent.mkdir()
    rows = "".join(
        f"{e},{e * 10 + 9},{1.0 + 0.5 / (e + 1):.4f},{1.02 + 0.3 / (e + 1) + (e % 2) * 0.001:.4f}\n"
        for e in range(18)
    )
    run.write_text("epoch,step,train_loss,val_rmse\n" + rows)
    (tmp_path / "reg" / "targets.json").write_text(json.dumps({"val_rmse": {"max": 0.15}}))
    # written a moment ago and held open by no process: the run has ended, judged as such
    out = subprocess.run(
        [sys.executable, "-m", "watchrun.cli", "check", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    miss = [r for r in rows if r["detector"] == "target_miss"]
    assert miss and "x off" in miss[0]["message"]
    assert out.returncode == 1


def test_fresh_files_nothing_writes_are_judged_ended_a_live_writer_is_not(reallogs, tmp_path):
    """Files written a moment ago (a training that has just ended, or a copy) get the end-of-run
    verdict from `check`; while a process holds a run's file open for writing (as CSVLogger
    does), the run is still in progress and end-of-run checks wait."""
    run = tmp_path / "Goreg12345"
    shutil.copytree(
        reallogs / "pl-csv-edgecases" / "Goreg12345", run, copy_function=shutil.copyfile
    )
    key = "Goreg12345/lightning_logs/version_0"
    out = subprocess.run(
        [sys.executable, "-m", "watchrun.cli", "check", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert {json.loads(line)["detector"] for line in out.stdout.splitlines()} == {"not_learning"}
    assert out.returncode == 1
    metrics = run / "lightning_logs" / "version_0" / "metrics.csv"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys,time; f=open({str(metrics)!r}, 'a'); "
            "print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        e = loaded(tmp_path)
        e.verdict()
        assert e.store.runs[key].status.value == "running"
        assert [a.detector for a in e.store.alerts_for(key)] == []
    finally:
        holder.kill()
        holder.wait()
    e = loaded(tmp_path)
    e.verdict()
    assert [a.detector for a in e.store.alerts_for(key)] == ["not_learning"]


def test_check_follow_prints_each_alert_as_it_fires_and_stops_on_sigterm(tmp_path):
    import signal
    import time

    from tests.unit.helpers import file_version_event, scalar_event

    run = tmp_path / "lm"
    run.mkdir()
    f = run / "events.out.tfevents.1700000000.host.1.0"
    f.write_bytes(
        file_version_event()
        + b"".join(scalar_event(i, "train/loss", 2.0 - i * 0.01) for i in range(1, 50))
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchrun.cli",
            "check",
            str(tmp_path),
            "--follow",
            "--json",
            "--poll",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        with open(f, "ab") as fh:
            fh.write(
                scalar_event(50, "train/loss", float("nan"))
                + scalar_event(51, "train/loss", float("nan"))
            )
        line = proc.stdout.readline()  # arrives once the engine has read and settled the NaN
        alert = json.loads(line)
        assert (
            alert["detector"] == "nan_loss"
            and alert["step"] == 50
            and alert["severity"] == "critical"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 1
    finally:
        if proc.poll() is None:
            proc.kill()


def test_tensorboard_run_is_in_progress_while_its_writer_lives(tmp_path):
    """The tensorboard package's writer (torch's SummaryWriter) does not keep its file open; the
    pid in the file name is how `check` knows the training still runs. Once it has exited, the
    same files get the end-of-run verdict."""
    script = textwrap.dedent("""\
        import sys, time
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        w = EventFileWriter(sys.argv[1])
        for s in range(60):  # a flat, noisy loss: no learning at all
            loss = 2.3 + 0.05 * ((s * 7) % 5 - 2)
            v = summary_pb2.Summary.Value(tag="train/loss", simple_value=loss)
            summary = summary_pb2.Summary(value=[v])
            w.add_event(event_pb2.Event(wall_time=time.time(), step=s * 10, summary=summary))
        w.flush()
        print("written", flush=True)
        sys.stdin.readline()
        w.close()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "runs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "written"
        e = loaded(tmp_path)
        e.verdict()
        assert e.store.runs["runs"].pid == proc.pid
        assert [a.detector for a in e.store.alerts_for("runs")] == []
    finally:
        proc.communicate("\n", timeout=30)
    e = loaded(tmp_path)
    e.verdict()
    assert [a.detector for a in e.store.alerts_for("runs")] == ["not_learning"]

"""Discovery: files are sources by their content, sniffed once per identity; unreadable paths are
reported; symlinks are followed only inside the roots; the registry lists every format once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import REALLOGS
from tests.unit.helpers import loaded, points

from watchrun.discover import Discovery
from watchrun.engine import Engine
from watchrun.sources import BY_FORMAT, SOURCES, Head, claim

REALLOGS2 = REALLOGS.parent / "reallogs2"


@pytest.fixture
def reallogs2() -> Path:
    if not (REALLOGS2 / "SOURCES.md").exists():
        pytest.skip(
            f"real logs not present at {REALLOGS2} (../shared/reallogs2 next to the project)"
        )
    return REALLOGS2


KERAS_CSV = (
    "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.61,0.93,0.66,0.85\n1,0.72,0.71,0.70,0.79\n"
)


def test_registry_lists_each_format_once_with_its_step_unit():
    assert len(BY_FORMAT) == len(SOURCES)
    assert (
        BY_FORMAT["keras-csv"].step_unit == "epoch"
        and BY_FORMAT["lightning-csv"].step_unit == "step"
    )
    for cls in SOURCES:
        assert cls.format != "unknown" and callable(cls.claims)


def test_content_decides_whatever_the_name(tmp_path):
    """Keras CSV in a `.log`, a training console in a `.txt`; a dataset, a config, predictions,
    code and prose that mentions a loss are not runs."""
    (tmp_path / "training_logs(2).log").write_text(KERAS_CSV)
    console = "".join(
        f"epoch {e} | train_loss={1 / (e + 1):.4f} val_loss={1.2 / (e + 1):.4f}\n" for e in range(4)
    )
    (tmp_path / "trainning_output.txt").write_text("Loading data...\n" + console)
    (tmp_path / "iris.csv").write_text(
        "sepal_length,sepal_width,species\n5.1,3.5,setosa\n4.9,3.0,setosa\n"
    )
    (tmp_path / "predictions.csv").write_text("id,label,prob\n0,1,0.93\n1,0,0.12\n2,1,0.77\n")
    (tmp_path / "config.yaml").write_text("lr: 0.001\nepochs: 10\n")
    (tmp_path / "results.json").write_text(
        json.dumps([{"image_id": 1, "score": 0.9, "bbox": [1, 2, 3, 4]}])
    )
    (tmp_path / "train.py").write_text(
        "for epoch in range(3):\n    print(f'epoch {epoch} loss={loss}')\n"
    )
    (tmp_path / "NOTES.md").write_text(
        "The val loss rose at epoch 14 (loss 2.9) after a minimum at step 8.\n"
    )
    e = loaded(tmp_path)
    assert sorted(e.visible_keys()) == ["training_logs(2).log", "trainning_output.txt"]
    assert e.store.runs["training_logs(2).log"].step_unit == "epoch"
    assert points(e, "training_logs(2).log")["val_loss"] == [(0, 0.85), (1, 0.79)]
    assert [s for s, _ in points(e, "trainning_output.txt")["val_loss"]] == [0, 1, 2, 3]


def test_real_logs_with_odd_names_are_read(reallogs2):
    e = loaded(reallogs2 / "keras-irfanet-appended-overfit")
    assert e.visible_keys() == ["training_logs191017(2).log"]
    rows = (
        (reallogs2 / "keras-irfanet-appended-overfit" / "training_logs191017(2).log")
        .read_text()
        .splitlines()
    )
    assert len(e.store.runs["training_logs191017(2).log"].series["val_loss"]) == len(
        rows
    ) - rows.count(rows[0])
    terminal = reallogs2 / "console-hf-xlsr-arabic-blank-phase"
    e = loaded(terminal)
    (key,) = e.visible_keys()
    assert key.endswith("trainning_output.txt") and len(e.store.runs[key].series["eval_wer"]) > 10
    d2 = loaded(
        reallogs2 / "d2-maskrcnn-many-restarts"
    )  # predictions and a .lock file beside the logs
    assert d2.visible_keys() == ["output"]


def test_each_head_is_read_once_per_identity(tmp_path):
    for i in range(300):
        (tmp_path / f"r{i:03d}.csv").write_text(f"step,loss\n1,{0.5 + i / 1000}\n")
    for i in range(100):
        (tmp_path / f"notes{i}.txt").write_text("nothing to see\n")
    e = Engine([str(tmp_path)], use_watchdog=False)
    e.load()
    assert e.discovery.sniffed == 400 and len(e.visible_keys()) == 300
    e.scan()
    e.scan()
    assert e.discovery.sniffed == 400  # unchanged files are not opened again
    with open(tmp_path / "r007.csv", "a") as fh:
        fh.write("2,0.25\n")
    e.scan()
    assert e.discovery.sniffed == 401


def test_first_load_polls_each_run_without_walking_every_source(tmp_path, monkeypatch):
    """The first load reads run after run; finding a run's sources must not walk the list of all
    sources (10,000 runs: 10^8 steps, 56 s)."""
    for i in range(200):
        (tmp_path / f"r{i:03d}.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    e = Engine([str(tmp_path)], use_watchdog=False)

    class Counting(dict):
        walks = 0

        def items(self):
            Counting.walks += 1
            return super().items()

        def values(self):
            Counting.walks += 1
            return super().values()

    e.sources = Counting()
    e.load()
    assert len(e.visible_keys()) == 200 and sum(r.points() for r in e.store.runs.values()) == 200
    assert Counting.walks <= 5


def test_a_file_named_like_a_log_but_a_fifo_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "metrics.csv")
    (tmp_path / "ok.csv").write_text("step,loss\n1,0.5\n")
    out = subprocess.run(
        [sys.executable, "-m", "watchrun", "ls", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "ok.csv" in out.stdout


def test_symlinks_are_followed_only_inside_the_roots(tmp_path):
    watched, outside = tmp_path / "w", tmp_path / "outside"
    (watched / "run").mkdir(parents=True)
    outside.mkdir()
    (watched / "run" / "m.csv").write_text("step,loss\n1,0.5\n2,0.25\n")
    (outside / "other.csv").write_text("step,loss\n1,0.7\n2,0.6\n")
    os.symlink(outside, watched / "elsewhere")  # outside the root: not walked
    os.symlink("/usr", watched / "usr")
    os.symlink(watched / "run", watched / "alias")  # inside: the same run, once
    os.symlink(watched, watched / "run" / "loop")
    e = loaded(watched)
    assert e.visible_keys() == ["run/m.csv"] or e.visible_keys() == ["alias/m.csv"]
    os.unlink(watched / "usr")
    followed = Engine([str(watched)], use_watchdog=False, follow_symlinks=True)
    followed.discovery.scan(str(watched / "elsewhere"))  # asked: the outside target is walked
    assert followed.discovery.errors == []
    specs = followed.discovery.scan(str(watched))
    assert any(p.endswith("elsewhere/other.csv") for p in specs)


def test_claims_never_raise_on_junk():
    junk = [
        b"",
        b"\x00" * 100,
        os.urandom(5000),
        b"{" * 10000,
        b"step,loss\n" + b"\xff" * 300,
        b"\r" * 500,
    ]
    for data in junk:
        for cls in SOURCES:
            cls.claims("/nonexistent/x.log", Head.of(data, len(data)))
        claim("/nonexistent/x", None)


def _privileges_can_be_dropped() -> bool:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return False
    probe = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "true"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _privileges_can_be_dropped(), reason="needs root and setpriv to drop CAP_DAC_OVERRIDE"
)
def test_unreadable_paths_say_permission_denied_and_exit_2(tmp_path):
    """As root no mode bit refuses a read, so the child runs as root without the capabilities
    that override file modes (setpriv --bounding-set); the directory and file are root's, mode 0."""
    watched = tmp_path / "w"
    (watched / "locked").mkdir(parents=True)
    (watched / "locked" / "history.csv").write_text(KERAS_CSV)

    def ls(*args: str) -> subprocess.CompletedProcess:
        cmd = [
            "setpriv",
            "--bounding-set=-dac_override,-dac_read_search",
            sys.executable,
            "-m",
            "watchrun",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    os.chmod(watched / "locked", 0)
    try:
        out = ls("ls", str(watched))
        assert out.returncode == 2, out
        assert (
            f"permission denied: {watched / 'locked'}" in out.stderr
            and "no runs found" not in out.stdout
        )
        check = ls("check", str(watched))
        assert check.returncode == 2 and f"permission denied: {watched / 'locked'}" in check.stderr
        os.chmod(watched / "locked", 0o755)
        os.chmod(watched / "locked" / "history.csv", 0)
        out = ls("ls", str(watched / "locked" / "history.csv"))
        assert (
            out.returncode == 2
            and "permission denied" in out.stderr
            and "no such file" not in out.stderr
        )
        (watched / "ok.csv").write_text(KERAS_CSV)
        out = ls("ls", str(watched))  # one readable run: listed, the unreadable file named
        assert out.returncode == 0 and "ok.csv" in out.stdout and "permission denied" in out.stderr
    finally:
        os.chmod(watched / "locked", 0o755)
        os.chmod(watched / "locked" / "history.csv", 0o644)


def test_a_log_created_empty_is_read_from_its_first_line(tmp_path):
    """Created empty (nothing says what it is yet), then written: read from the start."""
    f = tmp_path / "out.txt"
    f.write_text("")
    e = Engine([str(tmp_path)], poll_seconds=0.05)
    e.load()
    assert not e.visible_keys()
    f.write_text("".join(f"step {s}: loss={1 / s:.5f} acc={s / 10:.3f}\n" for s in range(1, 6)))
    e._last_full_poll = 0.0
    e.tick()
    e.tick()
    assert [s for s, _ in points(e, "out.txt")["loss"]] == [1, 2, 3, 4, 5]


def test_a_broken_claims_does_not_hide_other_formats(monkeypatch, tmp_path):
    from watchrun.sources.tensorboard import TensorBoardSource

    def broken(cls, path, head):  # type: ignore[no-untyped-def]
        raise RuntimeError("bug")

    monkeypatch.setattr(TensorBoardSource, "claims", classmethod(broken))
    (tmp_path / "h.csv").write_text(KERAS_CSV)
    assert Counter(
        f.format for s in Discovery([str(tmp_path)]).scan(str(tmp_path)).values() for f in s.files
    ) == {"keras-csv": 1}


def test_python_m_watchrun_runs_the_cli(tmp_path):
    (tmp_path / "h.csv").write_text(KERAS_CSV)
    code = textwrap.dedent(
        "import runpy, sys; sys.argv = ['watchrun', 'ls', '--json', sys.argv[1]]; "
        "runpy.run_module('watchrun', run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and json.loads(out.stdout)["formats"] == ["keras-csv"]


def test_the_engines_own_reads_raise_no_file_events(tmp_path):
    """Only write-type inotify events are watched: reading every file (as the engine does at each
    full poll) wakes nothing, a write does."""
    for i in range(20):
        (tmp_path / f"r{i}.csv").write_text("step,loss\n1,0.5\n")
    e = Engine([str(tmp_path)])
    e.load()
    e.start_watching()
    try:
        assert e.watching
        for _ in range(3):
            for i in range(20):
                (tmp_path / f"r{i}.csv").read_bytes()
        time.sleep(0.5)
        assert not e.dirty
        with open(tmp_path / "r3.csv", "a") as fh:
            fh.write("2,0.25\n")
        deadline = time.time() + 5
        while not e.dirty and time.time() < deadline:
            time.sleep(0.05)
        assert str(tmp_path / "r3.csv") in e.dirty
    finally:
        e.stop_watching()


def test_an_inotify_queue_overflow_rescans_and_polls_for_a_while(tmp_path):
    """A writer process floods the kernel queue (200,000 attribute changes, more than the default
    16,384 queued events): the engine notices, rescans once and trusts polling for a while."""
    for i in range(50):
        (tmp_path / f"r{i}.csv").write_text("step,loss\n1,0.5\n")
    e = Engine([str(tmp_path)])
    e.load()
    e.start_watching()
    flood = textwrap.dedent("""\
        import os, sys
        fds = [os.open(os.path.join(sys.argv[1], f"r{i}.csv"), os.O_WRONLY) for i in range(50)]
        for _ in range(4000):
            for fd in fds:
                os.utime(fd)
    """)
    try:
        subprocess.run([sys.executable, "-c", flood, str(tmp_path)], check=True, timeout=120)
        deadline = time.time() + 10
        while not e.overflows and time.time() < deadline:
            time.sleep(0.1)
        if not e.overflows:
            pytest.skip("the kernel queue did not overflow here (a larger max_queued_events)")
        seen = -1
        while seen != e.overflows and time.time() < deadline + 30:  # until the queue has drained:
            seen = e.overflows  # an overflow reported during the tick asks for one more rescan
            time.sleep(1.0)
        assert e.rescan_needed and not e.events_trusted
        e.tick()
        assert not e.rescan_needed and len(e.visible_keys()) == 50
    finally:
        e.stop_watching()


def test_runs_found_apart_while_live_are_joined_once_evidence_comes(tmp_path):
    """A job writes TensorBoard events and a CSV history of the same numbers while the engine
    follows: first two runs (nothing to tell yet), then one, with every point once; the files the
    writers add later land in the joined run."""
    from tests.unit.test_formats import scalar, tb_event_writer

    job = tmp_path / "job"
    tb = tb_event_writer(job / "tb")
    csv = job / "hist" / "log.csv"
    csv.parent.mkdir()
    csv.write_text("epoch,loss,val_loss\n")
    e = Engine([str(tmp_path)], poll_seconds=0.05)
    e.load()
    losses = [0.6931, 0.5127, 0.4473, 0.4012, 0.3777]
    for epoch, loss in enumerate(losses):
        tb.add_event(scalar(epoch, "loss", loss))
        tb.flush()
        with open(csv, "a") as fh:
            fh.write(f"{epoch},{float(__import__('numpy').float32(loss))},{loss + 0.1234}\n")
        e.rescan_needed = True
        e._last_merge = e._last_full_poll = 0.0  # due now: no waiting in a test
        e.tick()
    tb.close()
    assert e.visible_keys() == ["job"]
    run = e.store.runs["job"]
    assert run.formats == {"tensorboard", "keras-csv"} and run.joined
    assert run.series["loss"].steps.tolist() == [0, 1, 2, 3, 4] and len(run.series["val_loss"]) == 5
    (job / "hist" / "notes.txt").write_text(
        "".join(f"epoch {i} loss={v:.4f}\n" for i, v in enumerate(losses))
    )
    for _ in range(2):
        e.rescan_needed = True
        e._last_merge = e._last_full_poll = 0.0
        e.tick()
    assert e.visible_keys() == ["job"] and "console" in e.store.runs["job"].formats


def test_a_json_document_quoting_training_lines_is_no_console(tmp_path):
    """labels.json of the shared logs quotes console lines as evidence: not a run."""
    doc = {
        "runs": [
            {"name": f"run{i}", "evidence": f"epoch {i} | train_loss=0.{i} val_loss=0.{i + 1}"}
            for i in range(1, 6)
        ]
    }
    (tmp_path / "labels.json").write_text(json.dumps(doc, indent=2))
    assert Discovery([str(tmp_path)]).scan(str(tmp_path)) == {}


def test_a_wandb_run_folder_is_one_run_and_latest_run_is_not_walked_again(tmp_path):
    folder = tmp_path / "wandb" / "run-20250101_000000-abc123"
    (folder / "files" / "media" / "table").mkdir(parents=True)
    (folder / "files" / "wandb-summary.json").write_text('{"loss": 0.4, "_step": 1}')
    (folder / "files" / "output.log").write_text(
        "".join(f"epoch {i} | train_loss=0.{9 - i} val_loss=0.{9 - i}\n" for i in range(5))
    )
    (folder / "files" / "requirements.txt").write_text("torch==2.1\n")
    (folder / "files" / "media" / "table" / "t.table.json").write_text(
        '{"columns": ["epoch", "loss"], "data": [[0, 0.5], [1, 0.4], [2, 0.3]]}'
    )
    os.symlink(folder, tmp_path / "wandb" / "latest-run")
    specs = Discovery([str(tmp_path)]).scan(str(tmp_path))
    assert list(specs) == [str(folder)]
    files = {os.path.relpath(f.path, folder): f.format for f in specs[str(folder)].files}
    assert files == {"files/wandb-summary.json": "wandb", "files/output.log": "console"}


def test_two_runs_of_one_format_written_at_once_by_one_process_stay_two(tmp_path):
    """A sweep (or watchrun's demo) writes two TensorBoard runs from one process at the same
    time: the same pid in both file names is no evidence that they are one training."""
    from torch.utils.tensorboard import SummaryWriter

    a, b = SummaryWriter(str(tmp_path / "lr-0.1")), SummaryWriter(str(tmp_path / "lr-0.01"))
    for step in range(20):
        a.add_scalar("train/loss", 2.0 / (step + 1), step)
        b.add_scalar("train/loss", 2.5 / (step + 2), step)
    a.close()
    b.close()
    engine = loaded(tmp_path)
    assert sorted(engine.store.runs) == ["lr-0.01", "lr-0.1"]
    assert all(not r.joined for r in engine.store.runs.values())

"""W&B run folders written by the real wandb package (offline), read whole and live, plus the two
W&B runs in ../shared/reallogs2: every number checked against what was logged or the files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.unit.helpers import loaded, points

from watchrun.control import find_process
from watchrun.engine import Engine
from watchrun.model import RunStatus
from watchrun.sources.wandb_records import (
    FILE_HEADER,
    decode_wire,
    frame_records,
    split_records,
    wandb_decoder,
)
from watchrun.sources.wandbrun import WandbSource
from watchrun.store import Store

wandb = pytest.importorskip("wandb", reason="the wandb package writes the test runs (test extra)")
REALLOGS2 = Path(__file__).resolve().parents[2].parent / "shared" / "reallogs2"

WRITER = r"""
import json, os, sys, time
import wandb
out, steps, exit_code = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gate = sys.argv[4] if len(sys.argv) > 4 else ""
print(json.dumps({"pid": os.getpid()}), flush=True)
run = wandb.init(project="proj", name="tiny-run", dir=out,
                 config={"lr": 0.01, "opt": {"name": "adam", "beta1": 0.9}, "layers": 3})
wandb.config.update({"warmup": 5})  # a config record of its own
for i in range(steps):
    if gate and i == steps // 2:
        open(gate + ".half", "w").close()
        while not os.path.exists(gate + ".go"):
            time.sleep(0.02)
    wandb.log({"loss": 1.0 / (i + 1), "val": {"acc": i / 10, "loss": 2.0 - i / 10},
               "bad": float("nan") if i == 2 else 0.5, "note": f"sample {i}"})
    # a metric printed too would race the .wandb copy (issue 11 §3)
    print(f"logged row {i}", flush=True)
run.summary["best_acc"] = 0.9
run.finish(exit_code=exit_code)
"""


def write_run(tmp: Path, steps: int = 6, exit_code: int = 0, gate: str = "") -> subprocess.Popen:
    env = dict(
        os.environ,
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        WANDB_CONSOLE="wrap",
    )
    args = [sys.executable, "-c", WRITER, str(tmp), str(steps), str(exit_code)] + (
        [gate] if gate else []
    )
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)


def finished_run(tmp: Path, steps: int = 6, exit_code: int = 0) -> tuple[Path, int]:
    proc = write_run(tmp, steps, exit_code)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    pid = json.loads(out.splitlines()[0])["pid"]
    (folder,) = (tmp / "wandb").glob("offline-run-*")
    return folder, pid


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> tuple[Path, int]:
    return finished_run(tmp_path_factory.mktemp("wb"))


def wandb_file(folder: Path) -> Path:
    (f,) = folder.glob("run-*.wandb")
    return f


def expected_points(steps: int) -> dict[str, list[tuple[int, float]]]:
    return {
        "loss": [(i, 1.0 / (i + 1)) for i in range(steps)],
        "val/acc": [(i, i / 10) for i in range(steps)],
        "val/loss": [(i, 2.0 - i / 10) for i in range(steps)],
    }


def same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    return len(a) == len(b) and all(
        sa == sb and (va == vb or math.isnan(va) and math.isnan(vb))
        for (sa, va), (sb, vb) in zip(a, b, strict=True)
    )


def test_offline_run_is_read_as_logged(offline):
    folder, pid = offline
    engine = loaded(folder.parent.parent)
    (key,) = [k for k in engine.visible_keys()]
    run = engine.store.runs[key]
    got = points(engine, key)
    for name, want in expected_points(6).items():
        assert got[name] == want
    assert same(got["bad"], [(i, math.nan if i == 2 else 0.5) for i in range(6)])
    assert {"wandb", "console"} <= run.formats
    assert run.display_name == "tiny-run"
    assert run.hparams == {
        "lr": 0.01,
        "opt/name": "adam",
        "opt/beta1": 0.9,
        "layers": 3,
        "warmup": 5,
    }
    assert run.summary["best_acc"] == 0.9 and run.summary["loss"] == pytest.approx(1 / 6)
    assert run.status is RunStatus.FINISHED
    assert run.meta["project"] == "proj" and run.meta["exit_code"] == 0
    assert run.meta["wandb_id"] in folder.name and run.meta["started"].startswith("20")
    assert run.pid == pid
    assert run.host
    assert [t.text for t in run.texts if t.tag == "note"] == [f"sample {i}" for i in range(6)]
    assert not run.warnings


def test_wandb_metadata_json_fills_the_run_card(tmp_path):
    """wandb-metadata.json as wandb >= 0.19 writes it (the same entry its config.yaml keeps
    under `_wandb.value.e`, taken here from a real run when present)."""
    meta = {
        "host": "gpu-box-3",
        "program": "/home/u/train.py",
        "args": ["--lr", "0.1"],
        "gpu": "NVIDIA A100",
        "gpu_count": 2,
        "gpu_nvidia": [{"name": "NVIDIA A100-SXM4-80GB"}, {"name": "NVIDIA A100-SXM4-80GB"}],
        "startedAt": "2025-10-20T20:54:58.081247Z",
        "executable": "/usr/bin/python3",
    }
    files = tmp_path / "wandb" / "run-20251020_205458-abc123" / "files"
    files.mkdir(parents=True)
    (files / "wandb-metadata.json").write_text(json.dumps(meta))
    (files / "wandb-summary.json").write_text(
        json.dumps({"loss": 0.25, "_step": 9, "_wandb": {"runtime": 3}})
    )
    run = next(iter(loaded(tmp_path).store.runs.values()))
    assert run.host == "gpu-box-3"
    assert run.meta["cmdline"] == "/home/u/train.py --lr 0.1"
    assert run.meta["gpus"] == ["NVIDIA A100-SXM4-80GB"] * 2
    assert run.meta["started"] == "2025-10-20T20:54:58.081247Z"
    assert run.summary == {"loss": 0.25}


def test_failed_run_is_failed_with_its_exit_code(tmp_path):
    folder, _ = finished_run(tmp_path, steps=3, exit_code=3)
    run = next(iter(loaded(folder).store.runs.values()))
    assert run.status is RunStatus.FAILED
    assert run.meta["exit_code"] == 3
    assert any("exit code 3" in m for _, m in run.events)


def test_run_is_read_live_while_the_writer_logs(tmp_path):
    gate = str(tmp_path / "gate")
    proc = write_run(tmp_path, steps=10, gate=gate)
    try:
        deadline = time.time() + 60
        while not os.path.exists(gate + ".half") and time.time() < deadline:
            time.sleep(0.05)
        engine = Engine([str(tmp_path)], poll_seconds=0.05, use_watchdog=False)
        engine.load()
        halfway: dict = {}
        while time.time() < deadline:  # the first five rows reach the file while the run waits
            engine.tick()
            keys = engine.visible_keys()
            halfway = points(engine, keys[0]) if keys else {}
            if len(halfway.get("loss", [])) == 5:
                break
            time.sleep(0.05)
        assert halfway["loss"] == expected_points(10)["loss"][:5]
        assert engine.store.runs[keys[0]].explicit_status is None  # no exit record yet
        # the stop dialog finds the training process from the pid wandb's debug.log names
        writer_pid = json.loads(proc.stdout.readline())["pid"]
        target = find_process(engine.store.snapshot(keys[0]))
        assert target.process is not None and target.process.pid == writer_pid
        assert engine.runs_just_ended() == set()  # a live writer: not judged as ended
        Path(gate + ".go").touch()
        proc.communicate(timeout=60)
        while time.time() < deadline:
            engine.tick()
            run = engine.store.runs[keys[0]]
            if run.explicit_status is RunStatus.FINISHED:
                break
            time.sleep(0.05)
    finally:
        proc.kill() if proc.poll() is None else None
    live = points(engine, keys[0])
    assert live["loss"] == expected_points(10)["loss"]
    once = loaded(tmp_path)
    assert all(same(live[k], v) for k, v in points(once, once.visible_keys()[0]).items())


def read_bytes_into_source(chunks: list[bytes], tmp_path: Path) -> tuple[Store, WandbSource]:
    """Append `chunks` one by one to a .wandb file, polling a source after each."""
    store = Store()
    src = WandbSource(store, "r")
    f = tmp_path / "run-x.wandb"
    f.write_bytes(b"")
    src.add_file(str(f))
    for chunk in chunks:
        with open(f, "ab") as fh:
            fh.write(chunk)
        src.poll()
    return store, src


def series(store: Store) -> dict[str, list[tuple[int, float]]]:
    run = store.runs["r"]
    return {
        n: list(zip(s.steps.tolist(), s.values.tolist(), strict=True))
        for n, s in run.series.items()
    }


def test_torn_records_wait_for_the_rest_and_nothing_is_doubled(offline, tmp_path):
    data = wandb_file(offline[0]).read_bytes()
    (tmp_path / "whole").mkdir()
    (tmp_path / "torn").mkdir()
    whole, _ = read_bytes_into_source([data], tmp_path / "whole")
    cuts = list(range(0, len(data), 61)) + [len(data)]
    torn, _ = read_bytes_into_source(
        [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)], tmp_path / "torn"
    )
    assert series(torn).keys() == series(whole).keys()
    assert all(same(series(torn)[k], v) for k, v in series(whole).items())
    assert series(torn)["loss"] == expected_points(6)["loss"]
    assert not torn.runs["r"].warnings


def history_payload(step: int, loss: float) -> bytes:
    from wandb.proto import wandb_internal_pb2 as pb

    rec = pb.Record()
    for key, value in (("_step", step), ("loss", loss), ("_timestamp", 1.7e9 + step)):
        rec.history.item.add(key=key, value_json=json.dumps(value))
    return rec.SerializeToString()


def test_junk_between_records_is_skipped_counted_and_the_rest_read(tmp_path):
    head = b":W&B\xe1\xbe\x00"
    first = frame_records([history_payload(i, 1.0 / (i + 1)) for i in range(3)])
    junk = bytes((i * 37 + 11) % 256 for i in range(500))
    rest = frame_records(
        [history_payload(i, 1.0 / (i + 1)) for i in range(3, 6)],
        start=FILE_HEADER + len(first) + len(junk),
    )
    store, src = read_bytes_into_source([head + first, junk, rest], tmp_path)
    assert series(store)["loss"] == [(i, 1.0 / (i + 1)) for i in range(6)]
    assert src.counts[src.files()[0]]["damaged"] == 1
    assert any("damaged" in w for w in store.runs["r"].warnings)


def test_junk_appended_after_the_last_record_is_counted_once(offline, tmp_path):
    data = wandb_file(offline[0]).read_bytes()
    junk = bytes((i * 91 + 7) % 256 for i in range(3000))
    store, src = read_bytes_into_source([data, junk[:1000], junk[1000:]], tmp_path)
    assert series(store)["loss"] == expected_points(6)["loss"]
    assert store.runs["r"].explicit_status is RunStatus.FINISHED
    assert src.counts[src.files()[0]]["damaged"] == 1
    assert any("damaged" in w for w in store.runs["r"].warnings)


def test_file_cut_mid_record_keeps_what_was_whole(offline, tmp_path):
    data = wandb_file(offline[0]).read_bytes()
    framing = split_records(data, 0)
    last_history = max(
        i for i, r in enumerate(framing.records) if wandb_decoder()(r)[0] == "history"
    )
    # cut the file in the middle of the last history record
    cut = data.index(framing.records[last_history]) + len(framing.records[last_history]) // 2
    store, _ = read_bytes_into_source([data[:cut]], tmp_path)
    assert series(store)["loss"] == expected_points(6)["loss"][:5]
    assert store.runs["r"].explicit_status is None


def test_unknown_record_types_from_a_newer_wandb_are_skipped_and_counted(tmp_path):
    newer = (
        bytes([0xFA, 0x01, 3]) + b"abc"
    )  # a Record whose only field is number 31 (tag varint 250)
    payloads = [history_payload(0, 0.5), newer, history_payload(1, 0.25)]
    for decode in (wandb_decoder(), decode_wire):
        assert decode(newer) == ("unknown", None)
    store, src = read_bytes_into_source([b":W&B\xe1\xbe\x00" + frame_records(payloads)], tmp_path)
    assert series(store)["loss"] == [(0, 0.5), (1, 0.25)]
    assert src.counts[src.files()[0]]["unknown"] == 1
    assert any("does not know" in w for w in store.runs["r"].warnings)


def test_a_record_larger_than_a_block_spans_blocks(tmp_path):
    from wandb.proto import wandb_internal_pb2 as pb

    rec = pb.Record()
    rec.history.item.add(key="_step", value_json="0")
    for i in range(4000):
        rec.history.item.add(key=f"metric_{i:04d}", value_json=str(i))
    data = b":W&B\xe1\xbe\x00" + frame_records([rec.SerializeToString(), history_payload(1, 0.5)])
    assert len(data) > 2 * 32 * 1024
    store, _ = read_bytes_into_source([data[:40000], data[40000:]], tmp_path)
    got = series(store)
    assert len(got) == 4001 and got["metric_3999"] == [(0, 3999.0)] and got["loss"] == [(1, 0.5)]


def real_wandb_files() -> list[Path]:
    return sorted(REALLOGS2.glob("wandb-*/wandb/*/run-*.wandb"))


def test_both_decoders_agree_record_for_record(offline):
    files = [wandb_file(offline[0])] + real_wandb_files()
    pb_decode = wandb_decoder()
    kinds: set[str] = set()
    for f in files:
        records = split_records(f.read_bytes(), 0).records
        assert records
        for payload in records:
            assert decode_wire(payload) == pb_decode(payload)
            kinds.add(decode_wire(payload)[0])
    assert {"history", "summary", "config", "run", "environment", "exit", "known"} <= kinds


def test_reader_without_the_wandb_package_gives_the_same_run(offline):
    """watchrun from its own venv: wandb not importable, the wire reader decodes."""
    code = (
        "import sys, json; sys.modules['wandb'] = None\n"
        "from watchrun.engine import Engine\n"
        "from watchrun.sources import wandb_records as w; assert w.wandb_decoder() is None\n"
        f"e = Engine([{str(offline[0])!r}], use_watchdog=False); e.load()\n"
        "r = next(iter(e.store.runs.values()))\n"
        "print(json.dumps({'loss': r.series['loss'].values.tolist(), 'status': r.status.value,"
        " 'hp': r.hparams, 'name': r.display_name}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    got = json.loads(out.stdout)
    assert got == {
        "loss": [1.0 / (i + 1) for i in range(6)],
        "status": "finished",
        "hp": {"lr": 0.01, "opt/name": "adam", "opt/beta1": 0.9, "layers": 3, "warmup": 5},
        "name": "tiny-run",
    }


def test_latest_run_link_and_debug_logs_are_not_runs(offline):
    folder = offline[0]
    link = folder.parent / "latest-run"
    if not link.exists():
        link.symlink_to(folder.name)
    engine = loaded(folder.parent.parent)
    assert len(engine.visible_keys()) == 1
    run = engine.store.runs[engine.visible_keys()[0]]
    assert run.root == str(folder)
    assert {os.path.basename(f) for f in run.files} >= {
        wandb_file(folder).name,
        "output.log",
        "debug.log",
    }


def test_claims_decides_by_content(offline):
    head = wandb_file(offline[0]).read_bytes()[:64]
    assert WandbSource.claims("anything.bin", head)
    assert not WandbSource.claims("run-x.wandb", b"\x00" * 64)
    assert not WandbSource.claims("run-x.wandb", b":W&Bxx")


# -- the real runs in ../shared/reallogs2 -------------------------------------------------------
REAL = {"wandb-alexnet-cifar-overfit": 256, "wandb-resnet18-cifar-healthy": 1024}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_wandb_runs_match_their_files(name):
    root = REALLOGS2 / name
    if not root.exists():
        pytest.skip(f"real logs not present at {root}")
    (folder,) = (root / "wandb").glob("run-*")
    engine = loaded(root)
    (key,) = engine.visible_keys()
    run = engine.store.runs[key]
    summary = json.loads((folder / "files" / "wandb-summary.json").read_text())
    got = points(engine, key)
    assert [s for s, _ in got["val_loss"]] == list(range(50))
    for metric in ("train_loss", "val_loss", "val_acc", "train_acc", "learning_rate"):
        assert got[metric][-1] == (49, summary[metric])  # the last history row is the summary
        assert run.summary[metric] == summary[metric]
    assert run.step_unit == "epoch"
    assert run.status is RunStatus.FINISHED and run.meta["exit_code"] == 0
    assert run.hparams["batch_size"] == REAL[name] and run.hparams["epochs"] == 50
    assert run.host == "honeydew"
    (written,) = yaml.safe_load((folder / "files" / "config.yaml").read_text())["_wandb"]["value"][
        "e"
    ].values()
    assert run.meta["cmdline"] == " ".join([written["program"]] + written.get("args", []))
    assert "NVIDIA GeForce RTX 2080 Ti" in run.meta["gpus"]
    # output.log prints each epoch's `* Val Acc 23.960 Val Loss 1.877` (3 decimals)
    console = (folder / "files" / "output.log").read_text(errors="replace")
    printed = [
        float(line.rsplit("Val Loss ", 1)[1].split()[0])
        for line in console.splitlines()
        if "* Val Acc" in line
    ]
    assert len(printed) == 50
    assert all(abs(p - v) < 6e-4 for p, (_, v) in zip(printed, got["val_loss"], strict=True))


def test_alexnet_val_loss_turns_up_as_sources_md_says():
    root = REALLOGS2 / "wandb-alexnet-cifar-overfit"
    if not root.exists():
        pytest.skip(f"real logs not present at {root}")
    engine = loaded(root)
    val = dict(points(engine, engine.visible_keys()[0])["val_loss"])
    assert min(val, key=val.get) == 20 and val[20] == pytest.approx(0.785, abs=5e-4)
    assert val[49] == pytest.approx(1.539, abs=5e-4)

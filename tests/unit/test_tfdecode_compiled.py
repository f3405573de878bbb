"""The compiled TFRecord scanner (sources/_tfscan.c) against the numpy path, record for record.

Event files come from the real writers (torch's SummaryWriter and tensorboardX): scalars,
add_scalars, text, hparams and histograms, so both the fast layout and the protobuf leftovers
are exercised. Torn variants cut the file at every byte of its last records; corrupt variants
flip a bit in each part of a record, or insert junk. When the extension was not built in place,
it is built here into a temporary folder with the system compiler (skipped without one).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import crc32c
import numpy as np
import pytest

from watchrun.sources import tensorboard as tb
from watchrun.sources import tfscan

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    if tfscan.compiled is not None:
        return tfscan.compiled
    if shutil.which(os.environ.get("CC", "gcc")) is None:
        pytest.skip("no C compiler here and the extension is not built: only the numpy path runs")
    out = tmp_path_factory.mktemp("ext")
    subprocess.run(
        [
            sys.executable,
            "setup.py",
            "build_ext",
            "--build-lib",
            str(out / "lib"),
            "--build-temp",
            str(out / "tmp"),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    path = next((out / "lib").rglob("_tfscan*.so"))
    spec = importlib.util.spec_from_file_location("watchrun.sources._tfscan", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torch_file(logdir: Path) -> bytes:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(logdir))
    rng = np.random.default_rng(0)
    for i in range(400):
        w.add_scalar("train/loss", float(2.0 / (i + 1)), i)
        w.add_scalar("train/lr", 1e-3 * (1 - i / 400), i)
        if i % 50 == 0:
            w.add_scalar("val/loss", float("nan") if i == 300 else 1.0 / (i + 1), i)
            w.add_histogram("weights", rng.standard_normal(64), i)
            w.add_text("samples", f"step {i}: hello", i)
    w.add_scalar("big/step", 7.0, 2**40 + 3)  # a wide step varint
    w.add_scalar("neg/step", 1.0, -5)  # a ten-byte varint
    w.add_scalar("zero", 0.0, 0)  # step 0 and value 0: fields left out of the proto
    w.add_scalar("ünïcode/tag", 3.0, 401)
    w.close()
    return _only_file(logdir)


def _tbx_file(logdir: Path) -> bytes:
    from tensorboardX import SummaryWriter

    w = SummaryWriter(str(logdir))
    for i in range(300):
        w.add_scalars("pair", {"a": i * 0.5, "b": -i * 0.25}, i)  # files in subfolders
        w.add_scalar("train/loss", 1.0 / (i + 1), i)
        w.add_scalar("train/acc", float("inf") if i == 299 else i / 300, i)
    w.add_text("predictions", "pred: ''", 299)
    w.add_hparams({"lr": 0.01, "num_classes": 3}, {"hparam/accuracy": 0.9})
    w.close()
    return _only_file(logdir)


def _only_file(logdir: Path) -> bytes:
    files = sorted(glob.glob(str(logdir / "events.out.tfevents.*")), key=os.path.getsize)
    return Path(files[-1]).read_bytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    base = tmp_path_factory.mktemp("tb")
    out = {"torch": _torch_file(base / "torch"), "tensorboardX": _tbx_file(base / "tbx")}
    hparams = glob.glob(str(base / "tbx" / "*" / "events.out.tfevents.*"))  # add_hparams' subfolder
    out["hparams"] = next(b for b in map(Path.read_bytes, map(Path, hparams)) if b"hparams" in b)
    return out


def numpy_path(buf: bytes) -> tuple:
    offsets, lengths, consumed, corrupt = tb.walk_records(buf)
    decoded = tb.decode_records(buf, offsets, lengths)
    return _result(decoded, consumed, corrupt)


def compiled_path(buf: bytes, scanner: ModuleType) -> tuple:
    _, consumed, corrupt, decoded = tfscan.scan_records(buf, scanner)
    return _result(decoded, consumed, corrupt)


def _result(decoded: tb.Decoded, consumed: int, corrupt: int | list[int]) -> tuple:
    series = {
        tag: (
            np.asarray(s, np.int64).tolist(),
            np.asarray(v, np.float64).tobytes(),
            np.asarray(w, np.float64).tobytes(),
        )
        for tag, (s, v, w) in decoded.series().items()
    }
    bad = decoded.bad if isinstance(decoded.bad, int) else len(decoded.bad)
    skipped = corrupt if isinstance(corrupt, int) else len(corrupt)
    return series, decoded.texts, decoded.hparams, consumed, skipped + bad


def records(buf: bytes) -> list[tuple[int, int]]:
    """(start, end) of every record of a clean file."""
    out, pos = [], 0
    while pos < len(buf):
        (length,) = struct.unpack_from("<Q", buf, pos)
        out.append((pos, pos + 16 + length))
        pos += 16 + length
    return out


def test_crc32c_hardware_and_table_agree_with_the_crc32c_package(scanner: ModuleType) -> None:
    rng = random.Random(1)
    for n in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000]:
        data = bytes(rng.randrange(256) for _ in range(n))
        assert scanner.crc32c(data) == crc32c.crc32c(data)
        assert scanner.crc32c(data, True) == crc32c.crc32c(data)
        assert scanner.masked_crc32c(data) == tb.masked_crc(data)


@pytest.mark.parametrize("writer", ["torch", "tensorboardX"])
def test_whole_files_decode_alike(
    writer: str, files: dict[str, bytes], scanner: ModuleType
) -> None:
    buf = files[writer]
    ours = compiled_path(buf, scanner)
    assert ours == numpy_path(buf)
    series, texts, hparams, consumed, skipped = ours
    assert consumed == len(buf) and skipped == 0 and texts
    if writer == "torch":
        assert series["big/step"][0] == [2**40 + 3] and series["neg/step"][0] == [-5]
        assert series["zero"][0] == [0] and "ünïcode/tag" in series
        assert len(series["train/loss"][0]) == 400
        assert np.isnan(np.frombuffer(series["val/loss"][1])).sum() == 1
    else:
        assert len(series["train/acc"][0]) == 300 and "pair" not in series  # in subfolders
        extra = compiled_path(files["hparams"], scanner)
        assert extra == numpy_path(files["hparams"]) and extra[2]["num_classes"] == 3


def test_tags_in_a_changing_order_decode_alike(tmp_path: Path, scanner: ModuleType) -> None:
    """The scanner guesses each point's tag from the order of the last step: tags logged in a
    new order at every step, some now and then, several in one event, tags that share their
    length and their ends, must land in their own series all the same."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    rng = random.Random(7)
    tags = [f"m/{c}_x" for c in "abcdef"] + ["loss", "lossy", "m/a_y"]
    w = EventFileWriter(str(tmp_path), max_queue_size=100_000)
    want: dict[str, list[int]] = {t: [] for t in tags}
    for step in range(600):
        logged = [t for t in tags if rng.random() < 0.7]
        rng.shuffle(logged)
        while logged:
            k = rng.choice([1, 1, 1, 2, 3])  # one value per event, as most writers do, or more
            group, logged = logged[:k], logged[k:]
            values = [summary_pb2.Summary.Value(tag=t, simple_value=rng.random()) for t in group]
            w.add_event(
                event_pb2.Event(
                    wall_time=1e9 + step, step=step, summary=summary_pb2.Summary(value=values)
                )
            )
            for t in group:
                want[t].append(step)
    w.close()
    buf = _only_file(tmp_path)
    ours = compiled_path(buf, scanner)
    assert ours == numpy_path(buf)
    assert {t: s for t, (s, _, _) in ours[0].items()} == {t: s for t, s in want.items() if s}


@pytest.mark.parametrize("writer", ["torch", "tensorboardX"])
def test_torn_tails_wait_for_the_rest(
    writer: str, files: dict[str, bytes], scanner: ModuleType
) -> None:
    buf = files[writer]
    recs = records(buf)
    for cut in range(recs[-3][0], len(buf)):
        torn = buf[:cut]
        ours = compiled_path(torn, scanner)
        assert ours == numpy_path(torn), cut
        assert ours[3] == max(start for start, _ in recs if start <= cut) and ours[4] == 0


def _flip(buf: bytes, at: int) -> bytes:
    return buf[:at] + bytes([buf[at] ^ 0x10]) + buf[at + 1 :]


def _without(buf: bytes, start: int, end: int) -> bytes:
    return buf[:start] + buf[end:]


def _numpy_checks_crcs() -> bool:
    """Whether the numpy path checks the length CRC and the payload CRC of every record."""
    buf = b"".join(tb.frame(_scalar(i)) for i in range(400))
    length_bad = _flip(buf, 8)  # the length CRC of the first record
    payload_bad = _flip(buf, len(buf) - 6)  # the value of the last record
    return numpy_path(length_bad)[4] == 1 and numpy_path(payload_bad)[4] == 1


def _scalar(step: int) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    value = summary_pb2.Summary.Value(tag="t", simple_value=step * 0.5)
    return event_pb2.Event(
        wall_time=1.7e9, step=step + 1, summary=summary_pb2.Summary(value=[value])
    ).SerializeToString()


# where in the record the damage is: (name, byte offset within the record)
DAMAGE = [
    ("length", lambda s, e: s + 1),
    ("length_crc", lambda s, e: s + 9),
    ("payload", lambda s, e: e - 6),
    ("payload_crc", lambda s, e: e - 2),
]


@pytest.mark.parametrize("writer", ["torch", "tensorboardX"])
@pytest.mark.parametrize("damage", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_corrupt_record_is_skipped_and_counted(
    writer: str, damage: tuple, files: dict[str, bytes], scanner: ModuleType
) -> None:
    name, where = damage
    buf = files[writer]
    recs = records(buf)
    for k in (1, len(recs) // 2, len(recs) - 2):  # near the head, in the middle, near the end
        start, end = recs[k]
        broken = _flip(buf, where(start, end))
        series, texts, hparams, consumed, skipped = compiled_path(broken, scanner)
        clean = compiled_path(_without(buf, start, end), scanner)
        assert (series, texts, hparams) == clean[:3], (name, k)
        assert skipped == 1 and consumed == len(buf), (name, k)
        if _numpy_checks_crcs():  # the numpy path checks both CRCs from the parsers branch on
            assert numpy_path(broken) == (series, texts, hparams, consumed, skipped), (name, k)


@pytest.mark.parametrize("writer", ["torch", "tensorboardX"])
def test_junk_between_records_is_skipped(
    writer: str, files: dict[str, bytes], scanner: ModuleType
) -> None:
    buf = files[writer]
    recs = records(buf)
    rng = random.Random(7)
    junk = bytes(rng.randrange(256) for _ in range(300))
    at = recs[len(recs) // 3][0]
    broken = buf[:at] + junk + buf[at:]
    ours = compiled_path(broken, scanner)
    assert ours[:3] == compiled_path(buf, scanner)[:3]
    assert ours[4] >= 1 and ours[3] == len(broken)
    assert ours == numpy_path(broken)


def test_junk_at_the_tail_is_kept_until_a_record_follows(
    scanner: ModuleType, files: dict[str, bytes]
) -> None:
    buf = files["tensorboardX"] + b"\xff" * 40
    ours = compiled_path(buf, scanner)
    assert ours == numpy_path(buf)
    assert ours[3] == len(files["tensorboardX"]) and ours[4] == 1


def test_the_source_stores_the_same_points_either_way(
    tmp_path: Path, files: dict[str, bytes], scanner: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.helpers import loaded, points

    run = tmp_path / "run"
    run.mkdir()
    (run / "events.out.tfevents.1700000000.host.1.0").write_bytes(files["torch"])
    monkeypatch.setattr(tfscan, "compiled", scanner)
    with_c = points(loaded(tmp_path))
    monkeypatch.setattr(tfscan, "compiled", None)
    without = points(loaded(tmp_path))
    assert repr(sorted(with_c.items())) == repr(sorted(without.items()))
    assert len(with_c["train/loss"]) == 400


def test_a_build_without_a_working_compiler_still_succeeds(tmp_path: Path) -> None:
    """The extension is optional: a compiler that fails leaves a warning, not a failed install."""
    env = {**os.environ, "CC": "/bin/false"}
    out = subprocess.run(
        [
            sys.executable,
            "setup.py",
            "build_ext",
            "--build-lib",
            str(tmp_path / "lib"),
            "--build-temp",
            str(tmp_path / "tmp"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "failed" in out.stderr + out.stdout and not list(tmp_path.rglob("_tfscan*.so"))

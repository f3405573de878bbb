"""FAULTS.md: a writer does something nasty, the test knows what it wrote, the engine must have
read exactly that: nothing lost, nothing doubled, no traceback."""

from __future__ import annotations

import json
import math
import os

import pytest
from tests.unit.helpers import file_version_event, loaded, points, scalar_event

from watchrun.engine import Engine
from watchrun.tail import LineBuffer


def csv_rows(n0: int, n1: int) -> str:
    return "".join(f"{i},{i * 0.5}\n" for i in range(n0, n1))


def engine_on(tmp_path) -> Engine:
    e = Engine([str(tmp_path)], use_watchdog=False)
    e.load()
    return e


def tick(e: Engine) -> None:
    e.scan()
    e.poll()


# -- file system -----------------------------------------------------------------------------
def test_f1_truncate_then_regrow_reads_exactly_the_new_rows(tmp_path):
    f = tmp_path / "run" / "metrics.csv"
    f.parent.mkdir()
    f.write_text("step,loss\n" + csv_rows(0, 10))
    e = engine_on(tmp_path)
    f.write_text("step,loss\n" + csv_rows(100, 103))  # truncate (copytruncate) and 3 new rows
    tick(e)
    got = points(e)["loss"]
    assert got == [(i, i * 0.5) for i in range(10)] + [(i, i * 0.5) for i in range(100, 103)]


def test_f2_lightning_header_rewrite_emits_only_new_rows(tmp_path):
    f = tmp_path / "version_0" / "metrics.csv"
    f.parent.mkdir()
    f.write_text("epoch,step,train_loss\n0,9,1.0\n0,19,0.9\n")
    e = engine_on(tmp_path)
    # Lightning's _rewrite_with_new_header: same rows, wider header, then appends
    f.write_text("epoch,step,train_loss,val_loss\n0,9,1.0,\n0,19,0.9,\n0,19,,0.8\n1,29,0.7,\n")
    tick(e)
    p = points(e)
    assert p["train_loss"] == [(9, 1.0), (19, 0.9), (29, 0.7)]
    assert p["val_loss"] == [(19, 0.8)]
    assert p["epoch"] == [(9, 0.0), (19, 0.0), (19, 0.0), (29, 1.0)]


def test_f3_rotation_keeps_reading_the_old_file_and_starts_the_new(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    f = d / "train.jsonl"
    f.write_text("".join(json.dumps({"step": i, "loss": i}) + "\n" for i in range(3)))
    e = engine_on(tmp_path)
    with open(f, "a") as fh:
        fh.write(json.dumps({"step": 3, "loss": 3}) + "\n")
    os.rename(f, d / "train.jsonl.1")  # rotated while the writer still holds it
    f.write_text(json.dumps({"step": 4, "loss": 4}) + "\n")
    tick(e)
    assert points(e, "run/train.jsonl")["loss"] == [(i, float(i)) for i in range(5)]


def _jsonl(steps) -> str:
    return "".join(json.dumps({"step": i, "loss": i}) + "\n" for i in steps)


def test_f3_copytruncate_reads_the_unread_tail_from_the_copy(tmp_path):
    """logrotate's copytruncate: lines written after our last read are copied to train.jsonl.1,
    then the file is emptied and the writer goes on. The copy gives us the lines we missed."""
    d = tmp_path / "run"
    d.mkdir()
    f = d / "train.jsonl"
    f.write_text(_jsonl(range(5)))
    e = engine_on(tmp_path)
    with open(f, "a") as fh:
        fh.write(_jsonl(range(5, 8)))  # not yet read when the rotation comes
    (d / "train.jsonl.1").write_bytes(f.read_bytes())
    with open(f, "r+") as fh:
        fh.truncate(0)
    with open(f, "a") as fh:
        fh.write(_jsonl(range(8, 10)))
    tick(e)
    assert points(e, "run/train.jsonl")["loss"] == [(i, float(i)) for i in range(10)]


def test_f3_two_rotations_between_looks_read_the_generation_in_between(tmp_path):
    """Rotated twice while we were not looking (slow polling over NFS): train.jsonl.2 is the old
    file, train.jsonl.1 a whole generation we never saw, train.jsonl the newest. A `.tmp` file
    being written for an atomic replace is not a generation."""
    d = tmp_path / "run"
    d.mkdir()
    f = d / "train.jsonl"
    f.write_text(_jsonl(range(3)))
    (d / "train.jsonl.7").write_text(_jsonl(range(100, 103)))  # a rotation from an older run
    os.utime(d / "train.jsonl.7", (1.6e9, 1.6e9))
    e = engine_on(tmp_path)
    with open(f, "a") as fh:
        fh.write(_jsonl([3]))
    os.rename(f, d / "train.jsonl.2")
    f.write_text(_jsonl(range(4, 7)))
    os.rename(f, d / "train.jsonl.1")
    f.write_text(_jsonl(range(7, 9)))
    (d / "train.jsonl.tmp").write_text(_jsonl(range(7, 12)))
    tick(e)
    assert points(e, "run/train.jsonl")["loss"] == [(i, float(i)) for i in range(9)]


def test_f3_replaced_then_rotated_resumes_in_the_rotated_copy(tmp_path):
    """An atomic replace by a longer copy, then a rotation, both between two looks: the rotated
    file holds what we read plus more; it is read from where we stopped, not from the start."""
    d = tmp_path / "run"
    d.mkdir()
    f = d / "train.jsonl"
    f.write_text(_jsonl(range(4)))
    e = engine_on(tmp_path)
    tmp = d / ".next"
    tmp.write_text(_jsonl(range(6)))
    os.replace(tmp, f)
    os.rename(f, d / "train.jsonl.1")
    f.write_text(_jsonl(range(6, 8)))
    tick(e)
    assert points(e, "run/train.jsonl")["loss"] == [(i, float(i)) for i in range(8)]


def test_f4_delete_and_recreate_is_a_new_generation(tmp_path):
    f = tmp_path / "version_0" / "metrics.csv"
    f.parent.mkdir()
    f.write_text("step,loss\n" + csv_rows(0, 5))
    e = engine_on(tmp_path)
    f.unlink()
    tick(e)
    f.write_text("step,loss\n" + csv_rows(0, 2))  # the same first rows, a new run
    tick(e)
    got = points(e)["loss"]
    assert got == [(i, i * 0.5) for i in range(5)] + [(0, 0.0), (1, 0.5)]
    assert len(e.store.runs["version_0"].series["loss"].segments) == 2


def test_f5_atomic_replace_with_a_longer_copy_resumes(tmp_path):
    d = tmp_path / "tb"
    d.mkdir()
    name = "events.out.tfevents.1700000000.host.42.0"
    data = file_version_event() + b"".join(scalar_event(i, "loss", i) for i in range(5))
    (d / name).write_bytes(data)
    e = engine_on(tmp_path)
    more = data + b"".join(scalar_event(i, "loss", i) for i in range(5, 8))
    (d / "tmp").write_bytes(more)
    os.replace(d / "tmp", d / name)  # new inode, same prefix
    tick(e)
    assert [s for s, _ in points(e)["loss"]] == list(range(8))


def test_f6_half_written_trainer_state_is_retried(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    state = {"global_step": 10, "max_steps": 100, "log_history": [{"loss": 1.0, "step": 10}]}
    text = json.dumps(state)
    (d / "trainer_state.json").write_text(text[: len(text) // 2])
    e = engine_on(tmp_path)
    assert not e.store.runs["out"].series
    e.poll()  # still half: retried, no error
    (d / "trainer_state.json").write_text(text)
    e.poll()
    assert points(e)["loss"] == [(10, 1.0)]
    assert not e.store.runs["out"].warnings


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_f7_permission_denied_is_a_warning_then_recovers(tmp_path):
    f = tmp_path / "run.jsonl"
    f.write_text('{"step": 1, "loss": 1}\n')
    f.chmod(0)
    e = engine_on(tmp_path)
    assert any("cannot read" in w for w in e.store.runs["run.jsonl"].warnings)
    f.chmod(0o644)
    e.sources[("run.jsonl", "jsonl")]._retry_at.clear()
    e.poll()
    assert points(e)["loss"] == [(1, 1.0)]


def test_f12_symlink_loop_does_not_hang(tmp_path):
    (tmp_path / "a").mkdir()
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    (tmp_path / "a" / "log.jsonl").write_text('{"step": 0, "loss": 1}\n')
    e = engine_on(tmp_path)
    assert "a/log.jsonl" in e.store.runs


def test_f13_deleted_file_keeps_its_points_and_run_is_gone(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('{"step": 0, "loss": 1}\n')
    e = engine_on(tmp_path)
    f.unlink()
    e.poll()
    e.update_statuses()
    assert points(e)["loss"] == [(0, 1.0)]
    assert e.store.runs["r.jsonl"].status.value == "gone"


# -- partial writes ----------------------------------------------------------------------------
def test_p1_tfrecord_split_at_every_byte(tmp_path):
    d = tmp_path / "tb"
    d.mkdir()
    f = d / "events.out.tfevents.1700000000.host.1.0"
    record = scalar_event(7, "loss", 0.5)
    data = file_version_event() + record
    cut_from = len(data) - len(record)
    for cut in range(cut_from, len(data) + 1):
        f.write_bytes(data[:cut])
        e = engine_on(tmp_path)
        got = points(e).get("loss", [])
        assert got == ([(7, 0.5)] if cut == len(data) else []), cut
        assert not e.store.runs["tb"].warnings
    # and growing byte by byte under one engine
    f.write_bytes(data[:cut_from])
    e = engine_on(tmp_path)
    for cut in range(cut_from + 1, len(data) + 1):
        with open(f, "ab") as fh:
            fh.write(data[cut - 1 : cut])
        e.poll()
    assert points(e)["loss"] == [(7, 0.5)]


def test_p2_corruption_mid_file_is_skipped_and_counted(tmp_path):
    d = tmp_path / "tb"
    d.mkdir()
    good = [scalar_event(i, "loss", float(i)) for i in range(6)]
    bad = bytearray(good[2])
    bad[3] ^= 0xFF  # break the length field of record 2
    data = file_version_event() + good[0] + good[1] + bytes(bad) + b"".join(good[3:])
    (d / "events.out.tfevents.1700000000.h.1.0").write_bytes(data)
    e = engine_on(tmp_path)
    assert [s for s, _ in points(e)["loss"]] == [0, 1, 3, 4, 5]
    assert any("corrupt" in w for w in e.store.runs["tb"].warnings)


def test_p3_half_csv_row_waits_for_its_newline(tmp_path):
    f = tmp_path / "v" / "metrics.csv"
    f.parent.mkdir()
    f.write_text("step,loss\n1,0.5\n2,0.2")  # "0.2345" cut to "0.2"
    e = engine_on(tmp_path)
    assert points(e)["loss"] == [(1, 0.5)]
    with open(f, "a") as fh:
        fh.write("345\n")
    e.poll()
    assert points(e)["loss"] == [(1, 0.5), (2, 0.2345)]


def test_p5_keras_append_segments_and_na(tmp_path):
    f = tmp_path / "training_log.csv"
    f.write_bytes(b"epoch,loss,val_loss\r\n0,1.0,1.1\r\n1,0.8,NA\r\n0,0.7,0.75\r\n1,0.6,0.7\r\n")
    e = engine_on(tmp_path)
    p = points(e, "training_log.csv")
    assert p["loss"] == [(0, 1.0), (1, 0.8), (0, 0.7), (1, 0.6)]
    assert p["val_loss"] == [(0, 1.1), (0, 0.75), (1, 0.7)]
    assert e.store.runs["training_log.csv"].step_unit == "epoch"


def test_p6_mlflow_lines_of_two_three_five_fields_and_junk(tmp_path):
    run = tmp_path / "mlruns" / "0" / "abc"
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_text("status: 1\nrun_name: r\n")
    (run / "metrics" / "loss").write_text(
        "1700000000000 1.0 0\n1700000001000 0.9 1\nthis is junk\n"
        "1700000002000 0.8 2 x y\n1700000003000 0.7\n"
    )
    e = engine_on(tmp_path)
    key = "mlruns/0/abc"
    assert points(e, key)["loss"] == [(0, 1.0), (1, 0.9), (2, 0.8), (0, 0.7)]
    assert any("malformed" in w for w in e.store.runs[key].warnings)


def test_p7_huge_line_without_newline_is_bounded_and_skipped():
    buf = LineBuffer(max_line=1024)
    lines, used = buf.feed(b"x" * 5000)
    assert lines == [] and used == 5000 and buf.skipped == 1
    lines, used = buf.feed(b'still the same line\n{"ok": 1}\n')
    assert lines == [b'{"ok": 1}']


# -- bad values ------------------------------------------------------------------------------
def test_v1_nan_inf_huge_values_are_kept(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text(
        '{"step":1,"loss":NaN}\n{"step":2,"loss":Infinity}\n{"step":3,"loss":1e308}\n'
        '{"step":4,"loss":-Infinity}\n'
    )
    e = engine_on(tmp_path)
    vals = [v for _, v in points(e)["loss"]]
    assert math.isnan(vals[0]) and vals[1] == math.inf and vals[2] == 1e308 and vals[3] == -math.inf


def test_v2_v3_v4_steps_backwards_duplicate_negative_huge(tmp_path):
    f = tmp_path / "m.jsonl"
    rows = [(5, 1.0), (6, 2.0), (6, 3.0), (2, 4.0), (-3, 5.0), (2**63 - 1, 6.0), ("1.0e3", 7.0)]
    f.write_text("".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in rows))
    e = engine_on(tmp_path)
    got = points(e)["loss"]
    assert got == [(5, 1.0), (6, 2.0), (6, 3.0), (2, 4.0), (-3, 5.0), (2**63 - 1, 6.0), (1000, 7.0)]
    assert e.store.runs["m.jsonl"].series["loss"].segments == [0, 3, 4, 6]  # each step back


def test_v6_non_utf8_nul_crlf(tmp_path):
    f = tmp_path / "v" / "metrics.csv"
    f.parent.mkdir()
    f.write_bytes(b"step,loss\r\n1,0.5\r\n\xff\xfe\x00junk\r\n2,0.25\r\n")
    e = engine_on(tmp_path)
    assert points(e)["loss"] == [(1, 0.5), (2, 0.25)]


def test_v7_empty_files_and_identical_heads(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "metrics.csv").write_text("")
    (tmp_path / "b" / "metrics.csv").write_text("step,loss\n1,0.5\n")
    e = engine_on(tmp_path)
    assert not e.store.runs["a"].series
    assert points(e, "b")["loss"] == [(1, 0.5)]
    (tmp_path / "a" / "metrics.csv").write_text("step,loss\n1,0.5\n")  # same head as b
    tick(e)
    assert points(e, "a")["loss"] == [(1, 0.5)] and points(e, "b")["loss"] == [(1, 0.5)]


def test_junk_binary_file_with_a_log_name_never_raises(tmp_path):
    (tmp_path / "events.out.tfevents.1.h.1.0").write_bytes(os.urandom(4096))
    (tmp_path / "x.jsonl").write_bytes(os.urandom(4096) + b"\n")
    (tmp_path / "train.log").write_bytes(os.urandom(4096))
    e = loaded(tmp_path)
    e.update_statuses()
    assert all(r.points() == 0 for r in e.store.runs.values())


def test_f7_permission_denied_as_another_user_is_a_warning(tmp_path):
    """Root reads everything, so the reader runs as `nobody` in a child process: a real EACCES."""
    import pwd
    import subprocess
    import sys
    import textwrap

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user on this machine")
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    import sys as _sys

    try:
        usable = (
            subprocess.run(
                [_sys.executable, "-c", "pass"],
                preexec_fn=lambda: os.setuid(nobody.pw_uid),
                capture_output=True,
            ).returncode
            == 0
        )
    except OSError:
        usable = False
    if not usable:
        pytest.skip(f"{_sys.executable} cannot run as nobody (installed under a private home)")
    d = tmp_path / "runs"
    d.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(d, 0o755)
    ok, secret = d / "ok.jsonl", d / "secret.jsonl"
    ok.write_text('{"step": 1, "loss": 0.5}\n')
    secret.write_text('{"step": 1, "loss": 0.5}\n')
    os.chmod(ok, 0o644)
    os.chmod(secret, 0o600)  # root's, unreadable for nobody
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {os.path.abspath(src)!r})
        from watchrun.engine import Engine
        e = Engine([{str(d)!r}], use_watchdog=False); e.load()
        print(e.store.runs["ok.jsonl"].points(), e.store.runs["secret.jsonl"].points())
        print(e.store.runs["secret.jsonl"].warnings)
    """)

    def drop():
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=drop,
        env={**os.environ, "HOME": "/tmp"},
    )
    assert out.returncode == 0, out.stderr
    counts, warnings = out.stdout.splitlines()[:2]
    assert counts == "1 0" and "cannot read" in warnings


def test_f9_no_file_events_falls_back_to_polling(tmp_path, monkeypatch):
    import watchdog.observers

    def refuse(self):  # what inotify says when the watch limit is reached
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers.Observer, "start", refuse)
    f = tmp_path / "r.jsonl"
    f.write_text('{"step": 1, "loss": 1}\n')
    e = Engine([str(tmp_path)], poll_seconds=None)
    e.load()
    e.start_watching()
    assert not e.watching and "polling" in e.watch_error
    with open(f, "a") as fh:
        fh.write('{"step": 2, "loss": 0.5}\n')
    e._last_full_poll = 0.0
    e.tick()
    assert points(e)["loss"] == [(1, 1.0), (2, 0.5)]


def test_f10_five_thousand_run_dirs_are_all_found(tmp_path):
    for i in range(5000):
        d = tmp_path / f"exp{i // 100:02d}" / f"version_{i % 100}"
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text("step,loss\n1,0.5\n")
    e = loaded(tmp_path)
    assert len(e.visible_keys()) == 5000
    assert sum(r.points() for r in e.store.runs.values()) == 5000


def test_p4_crash_during_header_rewrite_keeps_old_rows_until_the_rewrite_passes_them(tmp_path):
    f = tmp_path / "version_0" / "metrics.csv"
    f.parent.mkdir()
    f.write_text("step,loss\n1,0.9\n2,0.8\n3,0.7\n")
    e = engine_on(tmp_path)
    f.write_text("step,loss,val_loss\n1,0.9,\n")  # the rewrite died after one row
    tick(e)
    assert points(e)["loss"] == [(1, 0.9), (2, 0.8), (3, 0.7)]
    with open(f, "a") as fh:  # the writer comes back and rewrites the rest, then goes on
        fh.write("2,0.8,\n3,0.7,\n3,,0.75\n4,0.6,\n")
    tick(e)
    assert points(e)["loss"] == [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6)]
    assert points(e)["val_loss"] == [(3, 0.75)]


def test_v5_clock_skew_in_wall_time_does_not_make_a_live_run_stale(tmp_path):
    from tests.unit.helpers import scalar_event

    d = tmp_path / "tb"
    d.mkdir()
    data = file_version_event() + b"".join(
        scalar_event(i, "loss", 1.0, wall=1.0e9) for i in range(5)
    )
    (d / "events.out.tfevents.1700000000.h.1.0").write_bytes(data)  # wall times in 2001
    e = engine_on(tmp_path)
    e.update_statuses()
    assert e.store.runs["tb"].status.value == "running"  # the file was just written


def test_v8_big_file_truncated_during_the_first_read(tmp_path):
    import threading

    f = tmp_path / "big.jsonl"
    row = b'{"step": 1, "loss": 0.5, "pad": "' + b"x" * 200 + b'"}\n'
    f.write_bytes(row * 200_000)  # ~46 MB
    cut = threading.Event()

    def truncate():
        cut.wait(5)
        os.truncate(f, 1000)

    t = threading.Thread(target=truncate)
    t.start()
    e = Engine([str(tmp_path)], use_watchdog=False)
    e.scan()
    cut.set()
    e.poll()  # reads with read(), never mmap: a file shrinking under us is no SIGBUS
    t.join()
    e.poll()
    e.poll()
    run = e.store.runs["big.jsonl"]
    assert run.points() >= 1 and all(v == 0.5 for v in run.series["loss"].values)


def test_f7_unreadable_file_warns_backs_off_and_recovers(tmp_path):
    """As root no mode bit refuses a read, but a path that turns into a directory does (EISDIR):
    the same error path as EACCES."""
    import shutil

    f = tmp_path / "r.jsonl"
    f.write_text('{"step": 1, "loss": 1.0}\n')
    e = engine_on(tmp_path)
    f.unlink()
    f.mkdir()
    (f / "x").write_text("")
    e.poll()
    assert any("cannot read" in w for w in e.store.runs["r.jsonl"].warnings)
    src = e.sources[("r.jsonl", "jsonl")]
    assert src._retry_at[str(f)] > 0  # backed off, not dropped
    shutil.rmtree(f)
    f.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n')
    src._retry_at.clear()
    e.poll()
    # the new file starts with the bytes already read: a longer copy, read on from the offset (F5)
    assert points(e)["loss"] == [(1, 1.0), (2, 0.5)]

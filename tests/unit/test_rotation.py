"""Exactly once under every rotation (issue 9 §2): each test reproduces a measured loss with the
writer's own log of what it wrote and checks the engine read exactly that, once."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import shutil

import pytest
from tests.unit.helpers import file_version_event, points, scalar_event

from watchrun.engine import Engine


def _jsonl(steps) -> str:
    return "".join(json.dumps({"step": i, "loss": i}) + "\n" for i in steps)


def _engine(tmp_path, **kw) -> Engine:
    e = Engine([str(tmp_path)], use_watchdog=False, **kw)
    e.load()
    return e


def look(e: Engine) -> None:
    e.scan()
    e.poll()


def _steps(e: Engine, key: str, name: str = "loss") -> list[int]:
    return [s for s, _ in points(e, key).get(name, [])]


def _append(path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


# -- a look between the rename and the new file's creation ------------------------------------
def test_watched_file_handler_rotations_with_a_look_while_the_file_is_missing(tmp_path):
    """Python's WatchedFileHandler reopens its file when the path no longer holds it; an outside
    rotation renames it away (logrotate `nocreate`). Looks fall between the rename and the
    next write, which creates the file again: every line is read once."""
    run = tmp_path / "run"
    run.mkdir()
    path = run / "train.jsonl"
    handler = logging.handlers.WatchedFileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(f"watchrun-test-{id(tmp_path)}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    written: list[int] = []

    def emit(n: int) -> None:
        for _ in range(n):
            step = len(written)
            log.info(json.dumps({"step": step, "loss": step}))
            written.append(step)

    try:
        emit(3)
        e = _engine(tmp_path)
        for rotation in range(1, 6):
            emit(7)  # after our last look: only in the file about to be renamed
            for k in range(rotation - 1, 0, -1):
                os.rename(run / f"train.jsonl.{k}", run / f"train.jsonl.{k + 1}")
            os.rename(path, run / "train.jsonl.1")
            look(e)  # the path is missing
            emit(15)  # the handler notices and creates train.jsonl again
            look(e)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert sorted(_steps(e, "run/train.jsonl")) == written


def test_nocreate_writer_keeps_writing_the_renamed_file_until_it_reopens(tmp_path):
    """logrotate `nocreate` with the writer reopening later (on SIGHUP): lines written through
    the old handle land in train.log.1, before and after our look at the missing path."""
    run = tmp_path / "run"
    run.mkdir()
    path = run / "train.jsonl"
    fh = open(path, "a")  # noqa: SIM115 - the writer's long-lived handle
    fh.write(_jsonl(range(3)))
    fh.flush()
    e = _engine(tmp_path)
    fh.write(_jsonl(range(3, 5)))
    fh.flush()
    os.rename(path, run / "train.jsonl.1")
    look(e)
    fh.write(_jsonl(range(5, 8)))  # still the old handle
    fh.flush()
    look(e)
    fh.close()
    fh = open(path, "a")  # noqa: SIM115 - reopened: a new file
    fh.write(_jsonl(range(8, 10)))
    fh.close()
    look(e)
    look(e)
    assert _steps(e, "run/train.jsonl") == list(range(10))


def test_create_rotation_with_a_late_reopen_reads_the_old_file_to_its_end(tmp_path):
    """logrotate `create`: the path holds a new empty file at once, the writer writes the old
    one until it reopens. A look in between must not stop reading the old one."""
    run = tmp_path / "run"
    run.mkdir()
    path = run / "train.jsonl"
    fh = open(path, "a")  # noqa: SIM115
    fh.write(_jsonl(range(2)))
    fh.flush()
    e = _engine(tmp_path)
    os.rename(path, run / "train.jsonl.1")
    path.write_text("")  # created empty by logrotate
    fh.write(_jsonl(range(2, 4)))
    fh.flush()
    look(e)
    fh.write(_jsonl(range(4, 6)))  # after our look, still through the old handle
    fh.flush()
    look(e)
    fh.close()
    _append(path, _jsonl(range(6, 8)))
    look(e)
    assert _steps(e, "run/train.jsonl") == list(range(8))


def test_a_look_at_an_empty_file_then_rotation_keeps_the_generation(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    path = run / "train.jsonl"
    path.write_text("")
    e = _engine(tmp_path)
    _append(path, _jsonl(range(4)))
    os.rename(path, run / "train.jsonl.1")
    path.write_text(_jsonl(range(4, 6)))
    look(e)
    assert _steps(e, "run/train.jsonl") == list(range(6))


def test_a_look_at_a_header_only_csv_then_rotation_keeps_the_generation(tmp_path):
    """The new file starts with the same header, so its first bytes match what we read of the
    old one; the old inode under `metrics.csv.1` says it is a rotation."""
    run = tmp_path / "version_0"
    run.mkdir()
    path = run / "metrics.csv"
    path.write_text("step,loss\n")
    e = _engine(tmp_path)
    _append(path, "".join(f"{i},{i}\n" for i in range(3)))
    os.rename(path, run / "metrics.csv.1")
    path.write_text("step,loss\n" + "".join(f"{i},{i}\n" for i in range(3, 5)))
    look(e)
    assert _steps(e, "version_0") == list(range(5))


# -- copytruncate, then rotation, between two looks --------------------------------------------
def test_copytruncate_then_rename_rotation_between_two_looks(tmp_path):
    """train.jsonl.2 is the copy (what we had not read of the old file), train.jsonl.1 the
    truncated file written again and renamed away, train.jsonl the newest: none lost, none
    read twice (the renamed inode is not read from our stale offset)."""
    run = tmp_path / "run"
    run.mkdir()
    path = run / "train.jsonl"
    fh = open(path, "a")  # noqa: SIM115 - O_APPEND: after the truncation it writes at 0
    fh.write(_jsonl(range(5)))
    fh.flush()
    e = _engine(tmp_path)
    fh.write(_jsonl(range(5, 8)))
    fh.flush()
    shutil.copyfile(path, run / "train.jsonl.1")  # copytruncate
    os.truncate(path, 0)
    fh.write(_jsonl(range(8, 20)))  # longer than what we had read: it looks like an append
    fh.flush()
    fh.close()
    os.rename(run / "train.jsonl.1", run / "train.jsonl.2")  # then a plain rotation
    os.rename(path, run / "train.jsonl.1")
    path.write_text(_jsonl(range(20, 22)))
    look(e)
    assert _steps(e, "run/train.jsonl") == list(range(22))


def test_a_reused_inode_number_is_not_taken_for_a_generation_already_read(tmp_path):
    """ext4 gives the inode number of a deleted file to the next new one at once: a new
    generation with the number of one we read is still new."""
    run = tmp_path / "run"
    run.mkdir()
    path = run / "train.jsonl"
    path.write_text(_jsonl(range(2)))
    e = _engine(tmp_path)
    os.rename(path, run / "train.jsonl.1")
    path.write_text(_jsonl(range(2, 4)))
    look(e)  # reads the new file; train.jsonl.1 is a generation read
    first_inode = os.stat(run / "train.jsonl.1").st_ino
    os.unlink(run / "train.jsonl.1")  # logrotate `rotate 2`: the oldest is deleted ...
    os.rename(path, run / "train.jsonl.1")
    path.write_text(_jsonl(range(4, 9)))  # ... and the new file may take its inode number
    if os.stat(path).st_ino != first_inode:
        pytest.skip("this file system did not reuse the inode number")
    os.rename(run / "train.jsonl.1", run / "train.jsonl.2")  # rotated again before a look
    os.rename(path, run / "train.jsonl.1")
    path.write_text(_jsonl(range(9, 10)))
    look(e)
    assert _steps(e, "run/train.jsonl") == list(range(10))


# -- headerless CSV generations --------------------------------------------------------------
def test_keras_append_csv_after_copytruncate_keeps_the_header(tmp_path):
    """Keras CSVLogger(append=True) writes its header only into an empty file when fit()
    begins; after logrotate's copytruncate it goes on writing rows into the emptied file. The
    first row of that generation is data, not a header."""
    path = tmp_path / "training_log.csv"
    fh = open(path, "a", newline="")  # noqa: SIM115 - the logger's open handle
    fh.write("epoch,loss,val_loss\r\n0,1.0,1.5\r\n1,0.5,0.75\r\n")
    fh.flush()
    e = _engine(tmp_path)
    fh.write("2,0.25,NA\r\n")
    fh.flush()
    shutil.copyfile(path, tmp_path / "training_log.csv.1")
    os.truncate(path, 0)
    fh.write("3,0.125,0.25\r\n4,0.0625,NA\r\n")
    fh.flush()
    look(e)
    fh.write("5,0.03125,0.5\r\n")
    fh.close()
    look(e)
    p = points(e, "training_log.csv")
    assert p["loss"] == [(i, 2.0**-i) for i in range(6)]
    assert p["val_loss"] == [(0, 1.5), (1, 0.75), (3, 0.25), (5, 0.5)]


def test_a_new_header_is_still_a_header(tmp_path):
    """A generation that starts with a header (other columns) takes it, however numeric the
    previous rows were."""
    path = tmp_path / "training_log.csv"
    path.write_text("epoch,loss\n0,1.0\n")
    e = _engine(tmp_path)
    path.write_text("epoch,loss,acc\n0,2.0,0.5\n")
    look(e)
    p = points(e, "training_log.csv")
    assert p["loss"] == [(0, 1.0), (0, 2.0)] and p["acc"] == [(0, 0.5)]


# -- files over one read ---------------------------------------------------------------------
BIG = 65 * 1024 * 1024  # past the 64 MiB of one read


def _big_lines(path, make_line, pad: int = 8192) -> int:
    """Write lines of about `pad` bytes until the file is past one read; return the count."""
    n = 0
    with open(path, "w") as fh:
        size = 0
        while size < BIG + 1024 * 1024:
            line = make_line(n, pad)
            fh.write(line)
            size += len(line)
            n += 1
    return n


@pytest.mark.parametrize("kind", ["jsonl", "console", "mlflow", "dvclive"])
def test_files_over_64_mib_are_read_to_the_end(tmp_path, kind):
    if kind == "jsonl":
        path = tmp_path / "big.jsonl"
        n = _big_lines(
            path, lambda i, pad: json.dumps({"step": i, "loss": i, "note": "x" * pad}) + "\n"
        )
        key, name = "big.jsonl", "loss"
    elif kind == "console":
        path = tmp_path / "run" / "train.log"
        path.parent.mkdir()
        n = _big_lines(path, lambda i, pad: f"step {i} | loss={i}\n" + " " * pad + "\n")
        key, name = "run/train.log", "loss"
    elif kind == "mlflow":
        run = tmp_path / "mlruns" / "0" / "abc"
        (run / "metrics").mkdir(parents=True)
        (run / "meta.yaml").write_text("status: 1\nrun_name: r\n")
        path = run / "metrics" / "loss"
        n = _big_lines(path, lambda i, pad: f"1700000000000 {i} {i}" + " " * pad + "\n")
        key, name = "mlruns/0/abc", "loss"
    else:
        path = tmp_path / "dvclive" / "plots" / "metrics" / "loss.tsv"
        path.parent.mkdir(parents=True)
        with open(path, "w") as fh:
            fh.write("timestamp\tstep\tloss\n")
        body = tmp_path / "body"
        n = _big_lines(body, lambda i, pad: f"1700000000000\t{i}\t{i}" + " " * pad + "\n")
        with open(path, "a") as out, open(body) as src:
            shutil.copyfileobj(src, out)
        body.unlink()
        key, name = "dvclive", "loss"
    assert os.path.getsize(path) > 64 * 1024 * 1024
    e = _engine(tmp_path)
    got = points(e, key)[name]
    assert len(got) == n and got[-1] == (n - 1, float(n - 1))


# -- polling: new files and rotated names ------------------------------------------------------
def test_polling_finds_a_new_file_in_a_run_dir_at_the_next_tick(tmp_path):
    """With --poll (no file events), a file created in a known run dir is read at the next
    poll, not at the next walk of the tree (every 10 s): a generation rotated away before that
    walk would otherwise never be read."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.jsonl").write_text(_jsonl(range(2)))
    e = Engine([str(tmp_path)], poll_seconds=0.01)
    e.load()
    e.tick()
    (run / "eval.jsonl").write_text(_jsonl(range(3)))
    e.tick()
    assert _steps(e, "run/eval.jsonl") == [0, 1, 2]


def test_a_rotated_event_file_is_read_once_not_as_a_file_of_its_own(tmp_path):
    tb = tmp_path / "tb"
    tb.mkdir()
    name = "events.out.tfevents.1700000000.host.1.0"
    (tb / name).write_bytes(
        file_version_event() + b"".join(scalar_event(i, "loss", i) for i in range(3))
    )
    e = _engine(tmp_path)
    with open(tb / name, "ab") as fh:
        fh.write(scalar_event(3, "loss", 3))
    os.rename(tb / name, tb / (name + ".1"))
    (tb / name).write_bytes(file_version_event() + scalar_event(4, "loss", 4))
    look(e)
    look(e)
    assert _steps(e, "tb") == list(range(5))


def test_a_write_event_on_the_renamed_file_reads_it_through_its_path(tmp_path):
    """With file events, the writer's late lines in `train.jsonl.1` are read when that name is
    reported, not at the next full poll."""
    run = tmp_path / "run"
    run.mkdir()
    path = run / "train.jsonl"
    fh = open(path, "a")  # noqa: SIM115
    fh.write(_jsonl(range(2)))
    fh.flush()
    e = _engine(tmp_path)
    os.rename(path, run / "train.jsonl.1")
    path.write_text("")
    e.poll(paths={str(path), str(run / "train.jsonl.1")})
    fh.write(_jsonl(range(2, 4)))
    fh.close()
    e.poll(paths={str(run / "train.jsonl.1")})
    assert _steps(e, "run/train.jsonl") == list(range(4))


def test_a_same_size_rewrite_in_the_tick_of_our_look_is_read(tmp_path):
    """trainer_state.json rewritten in place to the same size within the file system's clock
    tick of our last look: its stat (inode, size, mtime) is the same, its content is not."""

    def state(steps, losses) -> str:
        history = [{"loss": v, "step": s} for s, v in zip(steps, losses, strict=True)]
        return json.dumps({"global_step": steps[-1], "log_history": history})

    out = tmp_path / "out"
    out.mkdir()
    f = out / "trainer_state.json"
    f.write_text(state([0, 1], [0.0, 0.25]))
    tick_ns = os.stat(f).st_mtime_ns + 10**9  # as if written just now, whatever the machine's speed
    os.utime(f, ns=(tick_ns, tick_ns))
    e = _engine(tmp_path)
    f.write_text(state([2, 3], [0.5, 0.75]))  # the same length
    os.utime(f, ns=(tick_ns, tick_ns))  # and the same mtime: written in the same tick
    look(e)
    assert points(e, "out")["loss"] == [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75)]


@pytest.mark.parametrize("how", ["renamed", "truncated"])
def test_a_file_changed_between_the_look_and_the_read_is_not_read_from_the_old_offset(
    tmp_path, how
):
    """A live writer does not wait: between the stat that classified the file and the read of
    its new bytes, the path may be rotated (a new file there) or the file truncated and written
    again. The bytes at our offset are then another generation's: read nothing now (the next
    look finds the change), rather than lines from the middle of the wrong file."""
    from watchrun.tail import PREFETCH, Change, FileCursor

    path = tmp_path / "train.jsonl"
    path.write_text(_jsonl(range(10)))
    cursor = FileCursor(str(path))
    cursor.check()
    cursor.advance(len(cursor.read()))
    _append(path, _jsonl(range(10, 10 + PREFETCH // 20)))  # more than check() reads itself
    assert cursor.check() is Change.GREW
    other = _jsonl(range(1000, 1000 + PREFETCH // 10))  # another generation, longer
    if how == "renamed":
        os.rename(path, tmp_path / "train.jsonl.1")
        path.write_text(other)
    else:
        os.truncate(path, 0)
        _append(path, other)
    assert cursor.read() == b""

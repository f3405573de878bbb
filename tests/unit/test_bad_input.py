"""Regression tests for the hostile inputs of issue 9 section 3: each one names a defect that
dropped a whole read, crashed a command, hung it, or read wrong points. Each writes the bad
record between good ones and checks that the good ones are read with their values, that the
bad one is reported with its file and place, and that nothing raises or hangs (per-test
timeouts, never timing assertions)."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2
from tests.unit.helpers import file_version_event, loaded, points, scalar_event

from watchrun import cli
from watchrun.sources.console import ConsoleSource
from watchrun.sources.tensorboard import frame, walk_records
from watchrun.store import Store


def warnings_of(engine, key: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    runs = engine.store.runs
    return (runs[key] if key else next(iter(runs.values()))).warnings


# -- reading in chunks keeps each record's line number ----------------------------------------
def test_chunked_read_numbers_lines_across_chunks_and_counts_an_over_long_one(tmp_path):
    """One mechanism reads to EOF a chunk at a time (bounded memory past 64 MiB) and numbers
    every line across chunks, the over-long one skipped and counted with its own number."""
    from watchrun.sources.base import Lines
    from watchrun.sources.table import JsonlSource
    from watchrun.tail import FileCursor

    rows = [json.dumps({"step": i, "loss": i / 10}) for i in range(40)]
    rows[25] = json.dumps({"step": 25, "junk": "x" * 300})  # over the 64-byte cap below
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(rows) + "\n")
    src = JsonlSource(Store(), "run")
    cursor = FileCursor(str(path))
    cursor.check()
    got: list[tuple[int, bytes]] = []
    batches = 0
    for batch in src.complete_lines(cursor, Lines(max_line=64), chunk=100):
        batches += 1
        got.extend(batch)
    assert batches >= path.stat().st_size // 100  # a chunk at a time, not the whole file
    assert cursor.offset == path.stat().st_size  # to the end
    assert [n for n, _ in got] == [n for n in range(1, 41) if n != 26]
    assert all(line == rows[n - 1].encode() for n, line in got)
    assert src.skipped == {str(path): 1}
    assert src._last_skip[str(path)][:2] == ("over-long", "line 26")


# -- one out-of-range value drops only its own record -------------------------------------------
@pytest.mark.parametrize("bad_step", [str(2**63), "1e19", "-1e19", str(10**30)])
def test_csv_step_past_int64_skips_that_row_only(tmp_path, bad_step):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "metrics.csv").write_text(f"step,loss\n1,0.5\n{bad_step},0.4\n3,0.3\n")
    assert points(loaded(tmp_path))["loss"] == [(1, 0.5), (3, 0.3)]


def test_jsonl_step_1e19_and_int_above_1e308_keep_the_other_lines(tmp_path):
    lines = [
        {"step": 1, "loss": 0.5},
        {"step": 1e19, "loss": 0.4},
        {"step": 2, "loss": 10**400},
        {"step": "nan", "loss": 0.3},
        {"step": 3, "loss": 0.2},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    got = points(loaded(tmp_path))["loss"]
    assert got == [(1, 0.5), (2, float("inf")), (3, 0.2)]


def test_jsonl_deep_nesting_is_one_skipped_line(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "m.jsonl").write_text(
        f'{{"step": 1, "loss": 0.5}}\n{deep}\n{{"step": 2, "loss": 0.4}}\n'
    )
    e = loaded(tmp_path)
    assert points(e)["loss"] == [(1, 0.5), (2, 0.4)]
    assert any(
        "m.jsonl: skipped 1 unreadable record(s), the last at line 2" in w for w in warnings_of(e)
    )


def test_trainer_state_bad_step_does_not_lose_the_file_forever(tmp_path):
    state = tmp_path / "out" / "trainer_state.json"
    state.parent.mkdir()
    history = [
        {"loss": 0.9, "step": 10},
        {"loss": 0.8, "step": 1e19},
        {"loss": 0.7, "step": "nan"},
        {"loss": 0.6, "step": 20},
    ]
    state.write_text(json.dumps({"global_step": 20, "log_history": history}))
    e = loaded(tmp_path)
    assert points(e, "out")["loss"] == [(10, 0.9), (20, 0.6)]
    assert any(
        "trainer_state.json: skipped 2" in w and "log_history[2]" in w
        for w in warnings_of(e, "out")
    )
    history.append({"loss": 0.5, "step": 30})  # the next save: its new entry is read
    state.write_text(json.dumps({"global_step": 30, "log_history": history}))
    e.poll()
    assert points(e, "out")["loss"] == [(10, 0.9), (20, 0.6), (30, 0.5)]


def test_console_hf_dict_with_step_nan_keeps_the_others(tmp_path):
    (tmp_path / "train.log").write_text(
        "{'loss': 0.9, 'step': 10}\n{'loss': 0.8, 'step': 'nan'}\n"
        "{'loss': 0.7, 'step': 1e19}\n{'loss': 0.6, 'step': 30}\n"
    )
    got = points(loaded(tmp_path))["loss"]
    assert (10, 0.9) in got and (30, 0.6) in got and all(s < 2**62 for s, _ in got)


# -- CSV framing: one row spoiled, never the read ----------------------------------------------
@pytest.mark.parametrize(
    "bad",
    ["2,0.4\r7", "2," + "x" * (128 * 1024 + 10), '2,"0.4'],
    ids=["lone-cr", "field-128k", "open-quote"],
)
def test_csv_lone_cr_huge_field_and_unterminated_quote_spoil_one_row(tmp_path, bad):
    (tmp_path / "v").mkdir()
    f = tmp_path / "v" / "metrics.csv"
    f.write_bytes(b"step,loss\n1,0.5\n" + bad.encode() + b"\n3,0.3\n4,0.2\n")
    got = points(loaded(tmp_path))["loss"]
    assert (1, 0.5) in got and (3, 0.3) in got and (4, 0.2) in got


def test_csv_unterminated_quote_is_reported_with_its_line(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "metrics.csv").write_text('step,loss\n1,0.5\n2,"0.4\n3,0.3\n4,0.2\n')
    e = loaded(tmp_path)
    assert points(e)["loss"] == [(1, 0.5), (3, 0.3), (4, 0.2)]
    assert any(
        "metrics.csv: skipped 1 malformed record(s), the last at line 3" in w
        for w in warnings_of(e)
    )


def test_lightning_csv_odd_rows(tmp_path):
    (tmp_path / "version_0").mkdir()
    (tmp_path / "version_0" / "metrics.csv").write_text(
        "epoch,step,train_loss,\n0,1,0.5,\n0,,0.4,\n0,1e19,0.3,\n0,2.0,0.2,x\n,3,nan,\n0,4,0.1\n"
    )
    got = points(loaded(tmp_path))["train_loss"]
    assert got[:2] == [(1, 0.5), (2, 0.2)] and len(got) == 3  # the NaN at step 3 is kept as NaN


# -- TensorBoard: both CRCs ---------------------------------------------------------------------
def _tb_file(tmp_path, records: list[bytes]):  # type: ignore[no-untyped-def]
    d = tmp_path / "tb"
    d.mkdir(exist_ok=True)
    f = d / "events.out.tfevents.1700000000.h.1.0"
    f.write_bytes(file_version_event() + b"".join(records))
    return f


@pytest.mark.parametrize("count", [6, 400])  # a few records (protobuf path), many (numpy path)
def test_tb_bit_flip_in_a_tag_invents_no_series(tmp_path, count):
    good = [scalar_event(i, "val_loss", float(i)) for i in range(count)]
    bad = bytearray(good[count // 2])
    bad[bad.index(b"val_loss") + 4] ^= 0x02  # val_loss -> val_moss, CRCs left as they were
    good[count // 2] = bytes(bad)
    e = loaded(_tb_file(tmp_path, good).parent)
    assert list(points(e)) == ["val_loss"]
    assert [s for s, _ in points(e)["val_loss"]] == [i for i in range(count) if i != count // 2]
    assert any(
        "corrupt" in w
        and f"byte {len(file_version_event()) + sum(len(g) for g in good[: count // 2])}" in w
        for w in warnings_of(e)
    )


@pytest.mark.parametrize("count", [6, 400])
def test_tb_bit_flip_in_a_value_reads_no_wrong_number(tmp_path, count):
    good = [scalar_event(i, "loss", 0.5) for i in range(count)]
    bad = bytearray(good[3])
    bad[-6] ^= 0x40  # inside simple_value
    good[3] = bytes(bad)
    e = loaded(_tb_file(tmp_path, good).parent)
    got = points(e)["loss"]
    assert all(v == 0.5 for _, v in got) and len(got) == count - 1


def test_tb_fast_path_checks_the_length_crc(tmp_path):
    good = [scalar_event(i, "loss", float(i)) for i in range(400)]
    bad = bytearray(good[200])
    bad[9] ^= 0x01  # the length's CRC; length and payload intact
    good[200] = bytes(bad)
    e = loaded(_tb_file(tmp_path, good).parent)
    assert [s for s, _ in points(e)["loss"]] == [i for i in range(400) if i != 200]
    assert any("skipped 1 corrupt record(s)" in w for w in warnings_of(e))


@pytest.mark.parametrize("before", [0, 300])
def test_tb_record_torn_at_every_byte_waits_for_the_rest(before):
    head = b"".join(scalar_event(i, "loss", 1.0) for i in range(before))
    rec = scalar_event(before, "loss", 2.0)
    for cut in range(len(rec)):
        offsets, _, consumed, corrupt = walk_records(head + rec[:cut])
        assert (len(offsets), consumed, corrupt) == (before, len(head), [])
    offsets, _, consumed, corrupt = walk_records(head + rec)
    assert (len(offsets), consumed, corrupt) == (before + 1, len(head) + len(rec), [])


def test_tb_odd_length_tensor_content_is_one_skipped_record(tmp_path):
    tensor = tensor_pb2.TensorProto(dtype=1, tensor_content=b"\x01\x02\x03")
    odd = frame(
        event_pb2.Event(
            wall_time=1.7e9,
            step=5,
            summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag="acc", tensor=tensor)]
            ),
        ).SerializeToString()
    )
    good = [scalar_event(i, "loss", float(i)) for i in range(4)]
    e = loaded(_tb_file(tmp_path, good[:2] + [odd] + good[2:]).parent)
    assert points(e)["loss"] == [(i, float(i)) for i in range(4)]
    assert "acc" not in points(e) and any("corrupt" in w for w in warnings_of(e))


# -- never hang -----------------------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "name", ["metrics.csv", "train.log", "events.out.tfevents.1.h.2.3", "metrics.json"]
)
def test_a_fifo_under_a_metrics_name_is_skipped_not_waited_on(tmp_path, capsys, name):
    run = tmp_path / "version_0"
    run.mkdir()
    (run / "hparams.yaml").write_text("lr: 0.1\n")
    os.mkfifo(run / name)
    (tmp_path / "ok.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    assert cli.main(["ls", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ok.jsonl" in out
    e = loaded(tmp_path)
    assert points(e, "ok.jsonl")["loss"] == [(1, 0.5)]
    fifo_runs = [r for r in e.store.runs.values() if any(f.endswith(name) for f in r.files)]
    assert all(any("not a regular file" in w for w in r.warnings) for r in fifo_runs)


@pytest.mark.timeout(60)
def test_console_long_word_and_megabyte_line_parse_in_linear_time(tmp_path):
    word = "a" * 200_000  # the old `name: value` pattern: minutes on this line, hours on 1 MiB
    lines = [
        f"epoch 1 | loss={0.5}",
        f"epoch 2 {word}",
        f"epoch 3 {word}: 1",
        "epoch 4 " + "x1=" * 350_000,
        f"epoch 5 | loss={0.3}",
    ]
    (tmp_path / "train.log").write_text("\n".join(lines) + "\n")
    e = loaded(tmp_path)
    assert points(e)["loss"] == [(1, 0.5), (5, 0.3)]
    assert any("skipped 3 over-long record(s)" in w for w in warnings_of(e))
    src = ConsoleSource(Store(), "k")  # the patterns themselves, past the line cap
    columns: dict = {}
    for line in lines[1:4] + ["step " + " " * 1_000_000 + "x", "epoch 1 " + "1" * 1_000_000]:
        src._line(line, columns)
    assert all(name in ("x1",) for name in columns)


# -- crashes that became messages ---------------------------------------------------------------
@pytest.mark.timeout(120)
def test_deeply_nested_metrics_json_is_no_crash(tmp_path, capsys):
    d = tmp_path / "det"
    d.mkdir()
    (d / "metrics.json").write_text(
        "[" * 100_000 + "]" * 100_000 + '\n{"iteration": 1, "loss": 0.5}\n'
    )
    assert cli.main(["ls", str(tmp_path)]) == 0
    assert cli.main(["check", str(tmp_path)]) in (0, 1)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_num_classes_inf_in_hparams_is_no_crash(tmp_path, capsys):
    run = tmp_path / "version_0"
    run.mkdir()
    (run / "hparams.yaml").write_text("num_classes: .inf\nlr: 0.1\n")
    rows = "".join(f"{i},{i},{2 / (i + 1)},{1 / (i + 1)},{0.1 + i / 200}\n" for i in range(0, 60))
    (run / "metrics.csv").write_text("epoch,step,train_loss,val_loss,val_acc\n" + rows)
    assert cli.main(["check", str(tmp_path)]) in (0, 1)
    out = capsys.readouterr()
    assert (
        "Traceback" not in out.err and "failed on run" not in out.out + out.err
    )  # every detector ran


def _mlflow_db(path: str) -> None:
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE experiments (experiment_id INTEGER, name TEXT);
        CREATE TABLE runs (run_uuid TEXT, name TEXT, status TEXT, experiment_id INTEGER);
        CREATE TABLE params (run_uuid TEXT, key TEXT, value TEXT);
        CREATE TABLE metrics (run_uuid TEXT, key TEXT, value REAL, timestamp INTEGER,
                              step INTEGER, is_nan INTEGER);
        INSERT INTO experiments VALUES (0, CAST(x'ff66' AS TEXT));
        INSERT INTO runs VALUES ('r1', CAST(x'72756e31ff' AS TEXT), 'RUNNING', 0);
        INSERT INTO runs VALUES (NULL, 'no uuid', 'FINISHED', 0);
        INSERT INTO params VALUES ('r1', CAST(x'6c72c3' AS TEXT), CAST(x'ff' AS TEXT));
        INSERT INTO metrics VALUES ('r1', 'loss', 0.5, 1700000000000, 1, 0);
        INSERT INTO metrics VALUES ('r1', CAST(x'6c6f7373ff' AS TEXT), 0.4, 1700000000000, 2, 0);
        INSERT INTO metrics VALUES ('r1', 'loss', 'abc', 1700000000000, 3, 0);
        INSERT INTO metrics VALUES ('r1', 'loss', 0.3, 1700000000000, '9223372036854775808', 0);
        INSERT INTO metrics VALUES ('r1', 'loss', 0.2, 1700000000000, 5, 0);
    """)
    con.close()


@pytest.mark.timeout(120)
def test_mlflow_db_with_non_utf8_names_is_read_not_crashed(tmp_path, capsys):
    _mlflow_db(str(tmp_path / "mlflow.db"))
    e = loaded(tmp_path)
    key = next(k for k in e.store.runs if k.endswith("run1\ufffd"))
    assert points(e, key)["loss"] == [(1, 0.5), (5, 0.2)]
    assert points(e, key)["loss\ufffd"] == [(2, 0.4)]
    assert any(
        "mlflow.db: skipped 3 bad record(s)" in w for w in warnings_of(e, "mlflow.db")
    )  # 2 rows + a run
    assert cli.main(["ls", str(tmp_path)]) == 0
    assert cli.main(["check", str(tmp_path)]) in (0, 1)


@pytest.mark.parametrize("pid", ["abc", -1, 1.5, 0, 1, True, [1], {"a": 1}, 2**70])
def test_run_card_with_odd_types_is_no_crash(tmp_path, capsys, pid):
    run = tmp_path / "r"
    run.mkdir()
    (run / "watchrun-run.json").write_text(
        json.dumps(
            {
                "pid": pid,
                "launcher_pid": pid,
                "host": [pid],
                "max_steps": 100,
                "world_size": "x",
                "cmdline": {"a": 1},
            }
        )
    )
    (run / "watchrun.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (run / ".watchrun-stop.done").write_text(json.dumps({"step": "abc", "checkpoint": [1]}))
    e = loaded(tmp_path)
    r = e.store.runs["r"]
    assert (
        r.pid is None
        and r.host is None
        and r.meta["max_steps"] == 100
        and "world_size" not in r.meta
    )
    assert any("world_size: not a count" in w for w in r.warnings)
    assert any(".watchrun-stop.done: skipped 1" in w for w in r.warnings)
    assert cli.main(["ls", str(tmp_path)]) == 0
    assert cli.main(["check", str(tmp_path)]) in (0, 1)


def test_tb_hparams_struct_values_become_text(tmp_path):
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2

    info = plugin_data_pb2.HParamsPluginData(
        session_start_info=plugin_data_pb2.SessionStartInfo(
            hparams={
                "lr": struct_pb2.Value(number_value=0.1),
                "layers": struct_pb2.Value(
                    list_value=struct_pb2.ListValue(values=[struct_pb2.Value(number_value=2)])
                ),
            }
        )
    )
    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="hparams", content=info.SerializeToString()
        )
    )
    ev = frame(
        event_pb2.Event(
            wall_time=1.7e9,
            summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag="_hparams_/session_start_info", metadata=meta)]
            ),
        ).SerializeToString()
    )
    e = loaded(_tb_file(tmp_path, [ev, scalar_event(1, "loss", 0.5)]).parent)
    hp = e.store.runs["tb"].hparams
    assert hp["lr"] == 0.1 and isinstance(hp["layers"], str)


def test_tb_file_names_with_odd_numbers_are_no_crash(tmp_path, capsys):
    d = tmp_path / "tb"
    d.mkdir()
    (d / "events.out.tfevents.1\u00b200.h.1.2").write_bytes(
        scalar_event(1, "loss", 0.5)
    )  # '²' is a digit to isdigit()
    (d / "events.out.tfevents.17.h.99999999999999999999999.1").write_bytes(
        scalar_event(2, "loss", 0.25)
    )
    assert cli.main(["ls", str(tmp_path)]) == 0
    e = loaded(tmp_path)
    assert (
        sorted(points(e, "tb")["loss"]) == [(1, 0.5), (2, 0.25)] and e.store.runs["tb"].pid is None
    )


def test_gpu_samples_deep_nesting_and_huge_int_cost_one_line_each(tmp_path):
    from watchrun.sources.gpu_samples import GpuSamplesSource

    store = Store()
    store.run("exp")
    lines = [
        {"t": 1.7e9, "run": "exp", "step": 1, "values": {"gpu/util": 10.0}},
        "[" * 100_000 + "]" * 100_000,
        {
            "t": 1.7e9 + 1,
            "run": "exp",
            "step": 2,
            "values": {"gpu/util": 10**400, "gpu/mem_used": 5.0},
        },
        {"t": 1.7e9 + 2, "run": "exp", "step": 3, "values": {"gpu/util": 30.0}},
    ]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    src = GpuSamplesSource(store)
    src.add_file(str(path))
    src.poll()
    run = store.runs["exp"]
    assert run.series["gpu/util"].values.tolist() == [10.0, 30.0]
    assert run.series["gpu/mem_used"].values.tolist() == [5.0]

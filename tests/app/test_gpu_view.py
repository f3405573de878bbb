"""The process and GPU view in the app: the Process tab (6) with a real training-like process
(its pid, RSS, threads), GPU series fed as a sampler-format file (the sparklines), a machine
picture built here for the machine strip and the run list's strip, and the "no GPU here" note
from the real sampler on this machine."""

from __future__ import annotations

import time
import types

import pytest
from tests.app.helpers import FIXED, loaded, make_app, screen_text, wait_for
from tests.unit.live_trainer import Trainer
from tests.unit.test_gpu import healthy, needs_no_gpu, simulate
from textual.widgets import Sparkline

from watchrun.app.widgets.gpu import MachineStrip, ProcessPane, bar, run_strip
from watchrun.config import Config
from watchrun.gpu import NO_BINDING, DeviceSample, GpuProcess, MachineSnapshot, RunSample
from watchrun.procs import MIB, ProcRow, RunProcesses
from watchrun.sources.gpu_samples import GpuSamplesSource

GIB = 1024 * MIB


@pytest.fixture
def trainer(tmp_path):
    t = Trainer(tmp_path, grow_mb=20, workers=1)
    yield t
    t.kill()


def fed_run(tmp_path) -> str:
    """A run `exp` whose log and sampled GPU series (two minutes, healthy) are on disk: the
    log in the watched tree, the samples in a file for a GpuSamplesSource."""
    fed = simulate(tmp_path, 2, healthy, mem=lambda s: 10240.0 + 40 * s)
    (tmp_path / "runs" / "exp" / "metrics.jsonl").write_text(
        "".join(line + "\n" for _, line in fed.log)
    )
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(line + "\n" for _, line in fed.samples))
    return str(samples)


async def feed(pilot, samples: str) -> None:
    """Read the samples file into the app's store, as the sampler's own source does."""
    app = pilot.app
    src = GpuSamplesSource(app.engine.store)
    src.add_file(samples)
    src.poll()
    assert src.bad == 0
    app.engine.wake.set()
    assert await wait_for(
        pilot, lambda: (r := app.snapshot.run("exp")) is not None and "gpu0/util" in r.series
    )


def built_machine(writer_pid: int = 25260) -> MachineSnapshot:
    """Two GPUs: GPU 0 used by run `exp`, GPU 1 by a process of no watched run."""
    rows = (
        ProcRow(writer_pid, 1, "writer", "python", "python train.py", 97.0, 1186.0, 1456 * MIB,
                12, FIXED + 3600 - 7500, 0),
        ProcRow(writer_pid + 1, writer_pid, "worker", "python", "python -c worker", 35.0, 60.0,
                300 * MIB, 2, FIXED + 3600 - 7400, 1),
    )  # fmt: skip
    procs = RunProcesses("exp", writer_pid, writer_pid, "metrics.jsonl open", rows, FIXED)
    devices = (
        DeviceSample(0, "NVIDIA H100", "GPU-0", 57.0, 12 * GIB, 80 * GIB, 310.0, 61.0,
                     (GpuProcess(writer_pid, 11 * GIB, 55.0),)),
        DeviceSample(1, "NVIDIA H100", "GPU-1", 99.0, 70 * GIB, 80 * GIB, 650.0, 77.0,
                     (GpuProcess(4242, 69 * GIB),)),
    )  # fmt: skip
    values = {"gpu/util": 57.0, "gpu/mem_used": 11264.0, "gpu0/mem_total": 81920.0}
    return MachineSnapshot(
        at=FIXED,
        gpu_status="",
        devices=devices,
        owners={0: ("exp",), 1: ()},
        foreign={1: (4242,)},
        runs={"exp": RunSample("exp", 100, procs, (0,), values)},
    )


async def show_machine(pilot, machine: MachineSnapshot) -> None:
    """Stop the real sampler and publish `machine` as its latest look."""
    app = pilot.app
    assert await wait_for(pilot, lambda: app.engine.sampler is not None)
    app.engine.sampler.stop()
    app.engine.sampler.latest = machine
    app.engine.wake.set()
    assert await wait_for(pilot, lambda: app.snapshot.machine is machine)
    await pilot.pause(0.2)


# -- pieces -------------------------------------------------------------------------------------
def test_bar_in_eighths_and_ascii():
    assert bar(0.0, 4) == "    "
    assert bar(1.0, 4) == "████"
    assert bar(0.5, 4) == "██  "
    assert bar(0.5 + 1 / 32, 4) == "██▏ "
    assert bar(0.5, 4, ascii_only=True) == "##.."
    assert bar(7.0, 3) == "███"  # clipped


def test_run_strip_gpu_cpu_or_nothing():
    machine = built_machine()
    gpu = run_strip(machine.runs["exp"], 30)
    assert gpu is not None and gpu.plain.startswith("gpu ") and "57%" in gpu.plain
    assert "11G" in gpu.plain
    narrow = run_strip(machine.runs["exp"], 16)
    assert narrow is not None and len(narrow.plain) <= 16 and "57%" in narrow.plain
    cpu_only = RunSample("exp", 1, machine.runs["exp"].processes, (), {"proc/rss": 1756.0})
    cpu = run_strip(cpu_only, 30)
    assert cpu is not None and cpu.plain == "cpu  97%  rss 1.4G"  # the writer's, not the tree's
    assert run_strip(None, 30) is None


# -- the app ------------------------------------------------------------------------------------
async def test_process_tab_shows_the_training_process_pid_and_rss(tmp_path, trainer):
    trainer.epoch(0)
    trainer.epoch(1)
    app = make_app(tmp_path / "runs")
    app.clock = time.time  # a live run: the real clock
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot, runs=1)

        def sampled() -> RunSample | None:
            machine = app.snapshot.machine
            return machine.runs.get("exp") if machine is not None else None

        assert await wait_for(pilot, lambda: sampled() is not None, timeout=30)
        await pilot.press("6")
        await pilot.pause(0.3)
        sample = sampled()
        assert sample is not None
        writer = sample.processes.writer_row()
        assert writer is not None and writer.pid == trainer.proc.pid
        text = screen_text(app)
        assert f"training process: running (PID {trainer.proc.pid}, started " in text
        assert "CPU time" in text and "MB" in text
        line = next(ln for ln in text.splitlines() if f" {trainer.proc.pid}  writer" in ln)
        fields = line.split("▕")[-1].split()
        pid, role, cpu, rss, threads = fields[:5]
        assert (int(pid), role) == (trainer.proc.pid, "writer") and float(cpu) >= 0
        assert rss.endswith("M") and abs(int(rss[:-1]) - writer.rss / MIB) < 8
        assert int(rss[:-1]) >= 40  # the 2 x 20 MB the trainer holds, and Python itself
        assert int(threads) >= 1
        workers = [r for r in sample.processes.rows if r.role == "worker"]
        assert workers and any(f" {workers[0].pid}  worker" in ln for ln in text.splitlines())
        # the run list's strip: the writer's CPU % and RSS under the name (no GPU here)
        assert "rss " in text


@needs_no_gpu
async def test_no_gpu_here_is_said_once_as_the_panels_note(tmp_path, trainer):
    trainer.epoch(0)
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot, runs=1)
        machine = app.main.query_one(MachineStrip)
        assert await wait_for(pilot, lambda: app.snapshot.machine is not None)
        await pilot.press("6")
        await pilot.pause(0.3)
        status = app.snapshot.machine.gpu_status
        assert status == NO_BINDING or status.startswith("no NVIDIA GPU found (")
        text = screen_text(app)
        assert text.count(status[:40]) == 1
        assert not machine.has_class("shown") and "GPU0" not in text  # no machine strip


def test_panel_text_says_why_there_is_no_process():
    from watchrun.app.widgets.gpu import panel_text
    from watchrun.model import RunStatus
    from watchrun.snapshot import EMPTY

    def view(status):
        return types.SimpleNamespace(key="exp", status=status, ended=status is RunStatus.FINISHED)

    empty = MachineSnapshot(at=FIXED, gpu_status="")
    assert "process view off" in panel_text(view(RunStatus.RUNNING), None, FIXED).plain
    ended = panel_text(view(RunStatus.FINISHED), empty, FIXED).plain
    assert ended == "training process: not running (run finished)"
    assert "not found" in panel_text(view(RunStatus.RUNNING), empty, FIXED).plain
    shown = panel_text(view(RunStatus.RUNNING), built_machine(), FIXED + 3600).plain
    assert shown.startswith("training process: running (PID 25260, started ")
    assert "CPU time 1246 s" in shown and "memory 1756 MB" in shown
    assert EMPTY.machine is None


async def test_run_list_drops_the_strip_at_80_columns(tmp_path, trainer):
    trainer.epoch(0)
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, runs=1)
        await show_machine(pilot, built_machine(trainer.proc.pid))
        table = app.main.query_one("#runs")

        def height() -> int:
            return next(r.height for k, r in table.rows.items() if k.value == "exp")

        assert height() == 1  # the name column is too narrow for a strip
        await pilot.resize_terminal(160, 40)
        assert await wait_for(pilot, lambda: height() == 2)
        await pilot.pause(0.2)
        row = next(ln for ln in screen_text(app).splitlines()[1:] if "57%" in ln)
        assert "rss" not in row  # the run is on a GPU: its util, not its CPU


async def test_gpu_sparklines_from_sampled_series(tmp_path):
    samples = fed_run(tmp_path)
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot, runs=1)
        await feed(pilot, samples)
        await pilot.press("6")
        await pilot.pause(0.3)
        lines = list(app.main.query_one(ProcessPane).query(Sparkline))
        assert len(lines) == 2  # util and memory of GPU 0
        util, mem = lines
        assert max(util.data) == 96.0 and min(util.data) == 88.0
        assert mem.data[0] == 10240.0 and mem.data[-1] == 10240.0 + 40 * 119
        text = screen_text(app)
        assert "GPU 0 util 88% (88%..96%)" in text  # the last sample, and the sparkline's scale
        assert "GPU 0 memory 15G of 80G (10G..15G)" in text


async def test_machine_strip_every_gpu_and_its_owner(tmp_path):
    samples = fed_run(tmp_path)
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot, runs=1)
        await feed(pilot, samples)
        strip = app.main.query_one(MachineStrip)
        await show_machine(pilot, built_machine())
        assert strip.has_class("shown")
        top = screen_text(app).splitlines()[0]
        assert "GPU0" in top and "57%" in top and "12G/80G" in top and "exp" in top
        assert "GPU1" in top and "99%" in top and "not a watched run" in top
        # gone when the machine has no GPU
        await show_machine(pilot, MachineSnapshot(at=FIXED, gpu_status="no NVIDIA GPU found (x)"))
        assert not strip.has_class("shown")
        assert "GPU0" not in screen_text(app)


async def test_ascii_strips(tmp_path):
    samples = fed_run(tmp_path)
    app = make_app(tmp_path / "runs", Config(ascii=True))
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot, runs=1)
        await feed(pilot, samples)
        await show_machine(pilot, built_machine())
        await pilot.press("6")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert text.isascii()
        assert "GPU0 ##.. 57% #... 12G/80G exp | GPU1" in text.splitlines()[0]
        assert "gpu ##.. 57% mem #... 11G" in text  # the run list strip


def test_process_panel_snapshot(snap_compare, tmp_path):
    samples = fed_run(tmp_path)

    async def before(pilot):
        await loaded(pilot, runs=1)
        await feed(pilot, samples)
        pilot.app.main.query_one(ProcessPane).clock = lambda: FIXED + 3600
        await show_machine(pilot, built_machine())
        await pilot.press("6")
        await pilot.pause(0.5)

    assert snap_compare(make_app(tmp_path / "runs"), terminal_size=(120, 36), run_before=before)

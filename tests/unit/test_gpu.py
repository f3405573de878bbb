"""The GPU side. On this machine (no NVIDIA driver) the "no GPU here" path runs for real; the
rest is fed as the sampler's own output format (JSON lines) through the same source and
detectors the sampler uses: a slow-loader-like series, a healthy one, memory running out."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest
from tests.unit.live_trainer import check_follow, follow

from watchrun.detectors.gpu import stall_evidence
from watchrun.engine import Engine
from watchrun.gpu import NO_BINDING, DeviceSample, GpuProcess, Nvml, Sampler, records, snapshot
from watchrun.procs import MIB, ProcessView
from watchrun.sources.gpu_samples import GpuSamplesSource, is_sampled

GIB = 1024.0  # MiB


# -- no GPU here, for real -------------------------------------------------------------------------
def _gpu_here() -> bool:
    nvml = Nvml()
    found = nvml.open() is None
    nvml.close()
    return found


needs_no_gpu = pytest.mark.skipif(
    _gpu_here(), reason="an NVIDIA GPU is readable here: no 'no GPU' path"
)


@needs_no_gpu
def test_nvml_says_why_no_gpu_here():
    message = Nvml().open()
    assert message is not None
    assert message == NO_BINDING or message.startswith("no NVIDIA GPU found")


@needs_no_gpu
def test_sampler_without_gpu_says_so_once_and_samples_processes(tmp_path, trainer_factory):
    trainer = trainer_factory(grow_mb=0)
    said: list[str] = []
    engine = Engine([str(tmp_path / "runs")], use_watchdog=False)
    engine.load()
    sampler = Sampler(
        engine.store, path=str(tmp_path / "s.jsonl"), interval=0.2, on_notice=said.append
    )
    for n in range(3):
        trainer.epoch(n)
        engine.poll()
        engine.update_statuses()
        time.sleep(0.2)
        snap = sampler.sample_once()
    assert len(said) == 1 and said == sampler.notices
    assert snap.gpu_status == said[0] and snap.devices == ()
    assert snap.runs["exp"].devices == ()
    run = engine.store.runs["exp"]
    assert not any(n.startswith("gpu") for n in run.series)
    assert len(run.series["proc/rss"]) == 3
    sampler.stop()


def test_ls_json_gives_each_run_its_gpus_empty_here(tmp_path, trainer_factory):
    trainer = trainer_factory(grow_mb=0)
    trainer.epoch(0)
    out = subprocess.run(
        [sys.executable, "-m", "watchrun.cli", "ls", "--json", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["run"] for r in rows] == ["exp"] and rows[0]["gpus"] == []
    assert rows[0]["process"]["pid"] == trainer.proc.pid and rows[0]["process"]["rss_mb"] > 5


@needs_no_gpu
@pytest.mark.timeout(120)
def test_check_follow_says_no_gpu_once_on_stderr(tmp_path, trainer_factory):
    trainer = trainer_factory(grow_mb=0)
    trainer.epoch(0)
    proc = check_follow(tmp_path / "runs", stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("watchrun: ") and (
            "no NVIDIA GPU found" in first or "nvidia-ml-py" in first
        )
        trainer.epoch(1)
        time.sleep(1.5)  # a few samples more: nothing more is said
    finally:
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
    assert err.strip() == ""
    assert all(json.loads(line)["detector"] for line in out.splitlines())


# -- the mapping, with the real tree of a live process ---------------------------------------------
def test_gpu_processes_map_to_the_run_that_owns_them(tmp_path, trainer_factory):
    trainer = trainer_factory(grow_mb=0, workers=1)
    engine, sampler, _ = follow(tmp_path, trainer, 1)
    tree = sampler.latest.runs["exp"].processes
    worker = next(r.pid for r in tree.rows if r.role == "worker")
    devices = [
        DeviceSample(
            0,
            "H200",
            "GPU-a",
            88.0,
            60 * 2**30,
            140 * 2**30,
            400.0,
            61.0,
            (GpuProcess(trainer.proc.pid, 50 * 2**30, 80.0), GpuProcess(worker, 2 * 2**30)),
        ),
        DeviceSample(
            1,
            "H200",
            "GPU-b",
            3.0,
            1 * 2**30,
            140 * 2**30,
            80.0,
            35.0,
            (GpuProcess(999999, 2**30),),
        ),
    ]
    snap = snapshot(time.time(), "", devices, {"exp": tree}, {"exp": 100})
    assert snap.runs["exp"].devices == (0,)
    assert snap.runs["exp"].util == 88.0 and snap.runs["exp"].mem == (52 * 1024, 140 * 1024)
    assert snap.owners == {0: ("exp",), 1: ()} and snap.foreign == {1: (999999,)}
    values = snap.runs["exp"].values
    assert values["gpu0/mem_run"] == 52 * 1024 and values["gpu0/mem_used"] == 60 * 1024
    assert values["gpu0/proc_util"] == 80.0 and values["gpu/util"] == 88.0
    assert values["gpu/mem_used"] == 52 * 1024 and "gpu1/util" not in values
    # through the file and the source into the run's series, x = the sample's wall-clock time
    path = tmp_path / "fed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records(snap)))
    src = GpuSamplesSource(engine.store)
    src.add_file(str(path))
    src.poll()
    run = engine.store.runs["exp"]
    assert run.series["gpu0/util"].values.tolist() == [88.0]
    assert run.series["gpu0/util"].walls[0] == pytest.approx(snap.at, abs=0.01)
    assert run.meta["gpu_devices"] == [0]


# -- fed series ------------------------------------------------------------------------------------
@dataclass
class Fed:
    """A run's log (metrics.jsonl) and its sampler file, written minute by minute."""

    root: str
    start: float
    seconds: int
    log: list[tuple[int, str]] = field(default_factory=list)  # (second, line)
    samples: list[tuple[int, str]] = field(default_factory=list)


def simulate(
    tmp_path,
    minutes: int,
    util,
    mem=lambda s: 10 * GIB,
    held=None,
    total=80 * GIB,
    step_every: float = 2.0,
    eval_every: int = 100,
    run: str = "exp",
    devices: tuple[int, ...] = (0,),
) -> Fed:
    """One sample a second: `util(second)` %, `mem(second)` MiB used on device 0; the run
    logs a step every `step_every` s (0: never after the first) and a val_loss every
    `eval_every` steps. Returns the lines per second-by-second order."""
    root = tmp_path / "runs" / run
    root.mkdir(parents=True, exist_ok=True)
    fed = Fed(str(root), time.time() - minutes * 60, minutes * 60)
    step = 0
    for sec in range(minutes * 60):
        t = fed.start + sec
        new_step = int(sec / step_every) * 10 if step_every else 0
        if new_step != step or sec == 0:
            step = new_step
            row = {"step": step, "loss": 2.0 / (1 + step / 500)}
            if step % eval_every == 0:
                row["val_loss"] = 2.2 / (1 + step / 500)
            fed.log.append((sec, json.dumps(row)))
        values = {
            "gpu0/util": util(sec),
            "gpu/util": util(sec),
            "gpu0/mem_used": mem(sec),
            "gpu0/mem_total": total,
            "gpu0/power": 300.0,
            "proc/rss": 2000.0,
            "proc/cpu": 150.0,
        }
        if held is not None:
            values["gpu0/mem_run"] = held(sec)
        for d in devices[1:]:
            values[f"gpu{d}/util"] = util(sec)
        record = {"t": t, "run": run, "step": step, "devices": list(devices), "values": values}
        fed.samples.append((sec, json.dumps(record)))
    return fed


def judge(tmp_path, fed: Fed, chunks: int = 1) -> list:
    """Write the log and the samples in `chunks` spans of time, reading and detecting after
    each (the log first: the sampler's step is the last one logged)."""
    log = os.path.join(fed.root, "metrics.jsonl")
    samples = str(tmp_path / "samples.jsonl")
    open(log, "w").close()
    open(samples, "w").close()
    engine = Engine([str(tmp_path / "runs")], use_watchdog=False)
    engine.load()
    src = GpuSamplesSource(engine.store)
    src.add_file(samples)
    alerts = []
    span = math.ceil(fed.seconds / chunks)
    for i in range(chunks):
        lo, hi = i * span, (i + 1) * span
        with open(log, "a") as fh:
            fh.writelines(line + "\n" for sec, line in fed.log if lo <= sec < hi)
        with open(samples, "a") as fh:
            fh.writelines(line + "\n" for sec, line in fed.samples if lo <= sec < hi)
        engine.poll()
        src.poll()
        alerts += engine.detect()
    alerts += engine.detect(final=True)
    assert src.bad == 0
    judge.engine = engine  # type: ignore[attr-defined]
    return alerts


def slow_loader(sec: int) -> float:
    """A GPU that waits for data: a burst of work every few seconds, idle between."""
    return 28.0 if sec % 4 == 0 else 0.0


def healthy(sec: int) -> float:
    return 96.0 if sec % 7 else 88.0


def gpu_alerts(alerts: list, detector: str) -> list:
    return [a for a in alerts if a.detector == detector]


def test_gpu_starved_on_a_slow_loader_series(tmp_path):
    alerts = judge(tmp_path, simulate(tmp_path, 10, slow_loader))
    starved = gpu_alerts(alerts, "gpu_starved")
    assert len(starved) == 1
    a = starved[0]
    assert a.severity.value == "warning" and a.metrics == ["gpu/util"]
    assert a.message.startswith("GPU 0 at 7% for 5 min while steps advance")
    assert "num_workers" in a.action and "pin_memory" in a.action
    assert {x.detector for x in alerts} == {"gpu_starved"}  # nothing else reads the sampled series


def test_gpu_starved_once_for_a_run_on_several_gpus(tmp_path):
    alerts = judge(tmp_path, simulate(tmp_path, 10, slow_loader, devices=(0, 1, 2, 3)))
    assert [a.message.split(" for ")[0] for a in alerts] == ["GPUs 0,1,2,3 at 7%"]


def test_gpu_starved_not_on_a_healthy_series(tmp_path):
    alerts = judge(tmp_path, simulate(tmp_path, 10, healthy))
    assert alerts == []


def test_gpu_starved_not_while_steps_stand_still(tmp_path):
    """An idle GPU while no step is logged is a pause (checkpoint, eval, a hang): not a loader."""
    alerts = judge(tmp_path, simulate(tmp_path, 10, slow_loader, step_every=0))
    assert gpu_alerts(alerts, "gpu_starved") == []


def test_gpu_starved_not_for_a_short_dip(tmp_path):
    dip = lambda sec: 3.0 if 120 <= sec < 300 else 95.0  # noqa: E731 - three minutes idle
    alerts = judge(tmp_path, simulate(tmp_path, 10, dip))
    assert gpu_alerts(alerts, "gpu_starved") == []


def test_gpu_starved_same_alert_live_and_at_once(tmp_path):
    once = [
        (a.detector, a.step, a.message)
        for a in judge(tmp_path, simulate(tmp_path, 10, slow_loader))
    ]
    tmp_live = tmp_path / "live"
    fed = simulate(tmp_live, 10, slow_loader)
    live = [(a.detector, a.step, a.message) for a in judge(tmp_live, fed, chunks=37)]
    assert once == live and len(once) == 1


def test_gpu_starved_clears_when_the_gpu_is_busy_again(tmp_path):
    fixed = lambda sec: slow_loader(sec) if sec < 420 else 95.0  # noqa: E731
    judge(tmp_path, simulate(tmp_path, 16, fixed))
    state = judge.engine.detectors.states["exp"]  # type: ignore[attr-defined]
    starved = [a for (det, _), a in state.open_alerts.items() if det == "gpu_starved"]
    closed = [a for a in judge.engine.store.alerts_for("exp") if a.detector == "gpu_starved"]  # type: ignore[attr-defined]
    assert starved == [] and len(closed) == 1 and not closed[0].open


def test_gpu_memory_running_out_across_evals_is_a_warning(tmp_path):
    rising = lambda sec: 70 * GIB + sec * 3.5  # noqa: E731 - MiB, ~ +2 GiB per 10 min
    alerts = judge(tmp_path, simulate(tmp_path, 40, healthy, mem=rising))
    oom = gpu_alerts(alerts, "gpu_memory")
    assert len(oom) == 1 and oom[0].severity.value == "warning"
    assert "out of memory is coming" in oom[0].message and "of 80.0 GiB" in oom[0].message
    at = [m for _, m in oom[0].evidence["at_evals"]]
    assert at[-1] >= 0.95 * 80 * GIB and all(b > a for a, b in zip(at, at[1:], strict=False))


def test_gpu_memory_reserved_whole_but_flat_is_not_a_warning(tmp_path):
    """TensorFlow reserves nearly all the memory at start: full, not growing."""
    alerts = judge(tmp_path, simulate(tmp_path, 40, healthy, mem=lambda sec: 78.5 * GIB))
    assert gpu_alerts(alerts, "gpu_memory") == []


def test_gpu_memory_tiny_share_of_a_large_gpu_for_long_is_info(tmp_path):
    alerts = judge(tmp_path, simulate(tmp_path, 35, healthy, held=lambda sec: 2 * GIB))
    tiny = gpu_alerts(alerts, "gpu_memory")
    assert len(tiny) == 1 and tiny[0].severity.value == "info"
    assert tiny[0].message.startswith("the run held at most 2.0 GiB of GPU 0's 80 GiB (2%)")


@pytest.mark.parametrize(
    ("held", "total", "minutes"),
    [(30 * GIB, 80 * GIB, 35), (2 * GIB, 80 * GIB, 20), (2 * GIB, 8 * GIB, 35)],
    ids=["large-share", "not-long-yet", "small-gpu"],
)
def test_gpu_memory_no_info_when_share_large_short_or_gpu_small(tmp_path, held, total, minutes):
    alerts = judge(tmp_path, simulate(tmp_path, minutes, healthy, held=lambda s: held, total=total))
    assert gpu_alerts(alerts, "gpu_memory") == []


# -- the source on bad input -----------------------------------------------------------------------
def test_source_waits_for_a_torn_line_and_skips_junk(tmp_path):
    fed = simulate(tmp_path, 1, healthy)
    engine = Engine([str(tmp_path / "runs")], use_watchdog=False)
    with open(os.path.join(fed.root, "metrics.jsonl"), "w") as fh:
        fh.writelines(line + "\n" for _, line in fed.log)
    engine.load()
    path = tmp_path / "samples.jsonl"
    first, second = fed.samples[0][1], fed.samples[1][1]
    path.write_text(
        first + "\n" + "\x00junk{\n" + '{"t": 1, "run": "nope", "values": {}}\n' + second[:40]
    )
    src = GpuSamplesSource(engine.store)
    src.add_file(str(path))
    src.poll()
    run = engine.store.runs["exp"]
    assert len(run.series["gpu0/util"]) == 1 and src.bad == 1 and src.unknown_runs == {"nope"}
    with open(path, "a") as fh:
        fh.write(second[40:] + "\n")
    src.poll()
    src.poll()
    assert len(run.series["gpu0/util"]) == 2 and src.bad == 1
    assert "nope" not in engine.store.runs


def test_sampled_names():
    assert all(is_sampled(n) for n in ("gpu/util", "gpu0/mem_used", "gpu12/power", "proc/rss"))
    assert not any(is_sampled(n) for n in ("gpu_util", "gpuloss/x", "train/loss", "proc_rss"))


# -- evidence for stalled --------------------------------------------------------------------------
@pytest.mark.parametrize(("util", "verdict"), [(0.0, "gpu_idle"), (97.0, "gpu_busy")])
def test_stall_evidence_reads_the_gpu(tmp_path, util, verdict):
    judge(tmp_path, simulate(tmp_path, 2, lambda sec: util))
    run = judge.engine.store.runs["exp"]  # type: ignore[attr-defined]
    last = float(run.series["gpu/util"].walls[-1])
    ev = stall_evidence(run, now=last + 5)
    assert ev is not None and ev.verdict == verdict
    assert stall_evidence(run, now=last + 300) is None  # no fresh samples: no evidence


def test_process_view_samples_at_most_once_per_interval(tmp_path, trainer_factory):
    trainer = trainer_factory(grow_mb=0)
    trainer.epoch(0)
    engine = Engine([str(tmp_path / "runs")], use_watchdog=False)
    engine.load()
    view = ProcessView(min_interval=3600)
    runs = [engine.store.runs["exp"]]
    first = view.sample(runs)
    assert list(first) == ["exp"] and first["exp"].rss > MIB
    trainer.epoch(1)
    assert view.sample(runs)["exp"] is first["exp"]  # the same sample, not a new one


def test_sampler_modules_do_not_import_pynvml():
    """pynvml is loaded only when the sampler first looks for GPUs (that the core imports no
    textual is the import contract's: tests/unit/test_import_isolation.py)."""
    code = (
        "import sys, watchrun.gpu, watchrun.procs, watchrun.sources.gpu_samples, "
        "watchrun.detectors.gpu, watchrun.engine;"
        "bad=[m for m in sys.modules if m.split('.')[0] == 'pynvml'];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_gpu_starved_on_a_resumed_run(tmp_path):
    """The run's logs already hold a segment (steps went back when it resumed); the sampled
    series start in the current one and are judged there."""
    fed = simulate(tmp_path, 10, slow_loader)
    before = [(0, json.dumps({"step": s, "loss": 3.0 - s / 5000})) for s in range(0, 5001, 50)]
    fed.log = before + fed.log
    alerts = judge(tmp_path, fed, chunks=10)  # live: the restart is seen before the samples
    assert [a.detector for a in alerts] == ["restarted", "gpu_starved"]
    run = judge.engine.store.runs["exp"]  # type: ignore[attr-defined]
    assert len(run.series["loss"].segments) == len(run.series["gpu0/util"].segments) == 2


def test_samples_are_thinned_after_an_hour_bounded(tmp_path):
    fed = simulate(tmp_path, 180, healthy)  # three hours at one a second
    alerts = judge(tmp_path, fed)
    assert alerts == []
    series = judge.engine.store.runs["exp"].series["gpu0/util"]  # type: ignore[attr-defined]
    walls = series.walls
    per_hour = [
        int(((walls >= fed.start + h * 3600) & (walls < fed.start + (h + 1) * 3600)).sum())
        for h in range(3)
    ]
    assert per_hour[0] == 3600 and per_hour[0] > per_hour[1] >= per_hour[2] > 1000


# -- the NVML reader against a stand-in with pynvml's documented shapes ----------------------------
class _StandIn:
    """What nvidia-ml-py returns, per its documented API: names as bytes (older releases) or
    str, memory in bytes (c_nvmlMemory_t total/free/used), power in mW, compute processes with
    pid/usedGpuMemory (None when the driver cannot say), process utilisation samples with
    pid/timeStamp/smUtil (NVMLError_NotFound when none is newer than the timestamp given).
    There is no driver here: this checks the reader's calls, not NVML."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's names
        pass

    class NVMLError_NotFound(NVMLError):  # noqa: N801
        pass

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.util_calls: list[tuple[int, int]] = []
        self.shut = False

    def nvmlInit(self):  # noqa: N802
        return None

    def nvmlShutdown(self):  # noqa: N802
        self.shut = True

    def nvmlDeviceGetCount(self):  # noqa: N802
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):  # noqa: N802
        return i

    def nvmlDeviceGetName(self, h):  # noqa: N802
        return b"NVIDIA H200" if h == 0 else "NVIDIA H200"

    def nvmlDeviceGetUUID(self, h):  # noqa: N802
        return f"GPU-{h}"

    def nvmlDeviceGetUtilizationRates(self, h):  # noqa: N802
        return type("Util", (), {"gpu": 7 if h == 0 else 0, "memory": 2})()

    def nvmlDeviceGetMemoryInfo(self, h):  # noqa: N802
        return type("Mem", (), {"total": 140 * 2**30, "used": 20 * 2**30, "free": 120 * 2**30})()

    def nvmlDeviceGetPowerUsage(self, h):  # noqa: N802
        if h == 1:
            raise self.NVMLError_NotSupported()
        return 123456

    def nvmlDeviceGetTemperature(self, h, sensor):  # noqa: N802
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 48

    def nvmlDeviceGetComputeRunningProcesses(self, h):  # noqa: N802
        proc = type("P", (), {})
        if h == 0:
            mine, other = proc(), proc()
            mine.pid, mine.usedGpuMemory = self.pid, 18 * 2**30
            other.pid, other.usedGpuMemory = 4242, None
            return [mine, other]
        return []

    def nvmlDeviceGetProcessUtilization(self, h, ts):  # noqa: N802
        self.util_calls.append((h, ts))
        if h == 1:
            raise self.NVMLError_NotSupported()
        if ts >= 2000:
            raise self.NVMLError_NotFound()
        sample = type("S", (), {})
        older, newer = sample(), sample()
        older.pid, older.timeStamp, older.smUtil = self.pid, 1000, 50
        newer.pid, newer.timeStamp, newer.smUtil = self.pid, 2000, 6
        return [older, newer]


def test_sampler_reads_gpus_through_the_nvml_calls(tmp_path, trainer_factory, monkeypatch):
    trainer = trainer_factory(grow_mb=0)
    stand_in = _StandIn(trainer.proc.pid)
    monkeypatch.setitem(sys.modules, "pynvml", stand_in)
    engine = Engine([str(tmp_path / "runs")], use_watchdog=False)
    engine.load()
    said: list[str] = []
    sampler = Sampler(
        engine.store, path=str(tmp_path / "s.jsonl"), interval=0.2, on_notice=said.append
    )
    for n in range(2):
        trainer.epoch(n)
        engine.poll()
        engine.update_statuses()
        time.sleep(0.2)
        snap = sampler.sample_once()
    assert said == [] and snap.gpu_status == ""
    d0, d1 = snap.devices
    assert (d0.name, d1.name, d0.power, d1.power) == ("NVIDIA H200", "NVIDIA H200", 123.456, None)
    assert d0.processes[0].util is None  # no sample newer than the last one seen
    assert snap.owners == {0: ("exp",), 1: ()} and snap.foreign == {0: (4242,)}
    assert stand_in.util_calls == [(0, 0), (1, 0), (0, 2000)]  # not supported: never asked again
    run = engine.store.runs["exp"]
    assert run.series["gpu0/util"].values.tolist() == [7.0, 7.0]
    assert run.series["gpu0/mem_run"].values.tolist() == [18 * 1024, 18 * 1024]
    assert run.series["gpu0/proc_util"].values.tolist() == [6.0]
    assert "gpu1/util" not in run.series and run.meta["gpu_devices"] == [0]
    sampler.stop()
    assert stand_in.shut

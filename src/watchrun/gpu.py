"""The GPU and process sampler: once per second while `check --follow` or the app runs, each
watched run's process tree (`watchrun.procs`) and every NVIDIA GPU (utilisation, memory
used/total, power, temperature, and per compute process its GPU memory and, where the driver
reports it, its SM utilisation), mapped to runs through the pids of their trees.

Built on `nvidia-ml-py` (import `pynvml`), NVIDIA's own binding of NVML, rather than nvitop's
`api`: it is one pure-Python module with no dependencies, maintained by NVIDIA alongside the
driver, and the few calls needed here (device counts, utilisation, memory, power, temperature,
compute processes, process utilisation) are exactly its documented functions; nvitop's layer
adds caching, its own process objects and a dependency tree that watchrun's `procs` already
covers with psutil. It is an extra: `pip install 'watchrun[gpu]'`.

No binding, no driver, no GPU or no permission: the sampler says so once ("no NVIDIA GPU
found ...") and samples processes only; nothing else changes.

Each sample becomes one JSON line per run (the format `sources.gpu_samples` reads), appended to
a file in a private temporary directory and read back through that source into the store, so
a test can feed GPU series as a file through the same path. The latest `MachineSnapshot` (what
the UI's machine strip, run-list strip and GPU panel render) is kept in `Sampler.latest`.

A process inside a container without the host's pid namespace is reported by NVML under its
host pid: it then shows as "not a watched run".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from watchrun.model import Run, RunStatus
from watchrun.procs import MIB, ProcessView, RunProcesses
from watchrun.sources.gpu_samples import GpuSamplesSource, logged_step
from watchrun.store import Store

NO_BINDING = "GPU view off: nvidia-ml-py is not installed (pip install 'watchrun[gpu]')"
MAX_FILE_BYTES = 8 * MIB


@dataclass(frozen=True)
class GpuProcess:
    """A compute process on a device, as the driver reports it."""

    pid: int
    mem: int | None  # bytes; None where the driver does not say
    util: float | None = None  # SM %, where the driver reports per-process utilisation


@dataclass(frozen=True)
class DeviceSample:
    """One GPU at one sample. A field the device does not support is None."""

    index: int
    name: str
    uuid: str
    util: float | None  # % of the last sample period a kernel ran
    mem_used: int | None  # bytes
    mem_total: int | None  # bytes
    power: float | None  # W
    temp: float | None  # C
    processes: tuple[GpuProcess, ...] = ()


@dataclass(frozen=True)
class RunSample:
    """What one run uses at one sample: its process tree, its GPUs, the values recorded."""

    run: str
    step: int
    processes: RunProcesses
    devices: tuple[int, ...]  # GPU indexes its processes are on
    values: dict[str, float]  # series name -> value (the JSON line's "values")

    @property
    def util(self) -> float | None:
        """Mean utilisation % of its GPUs (the run-list strip's first bar)."""
        return self.values.get("gpu/util")

    @property
    def mem(self) -> tuple[float, float] | None:
        """(MiB its processes hold, MiB of its GPUs in all): the strip's second bar."""
        total = sum(self.values.get(f"gpu{d}/mem_total", 0.0) for d in self.devices)
        used = self.values.get("gpu/mem_used")
        return None if used is None or not total else (used, total)


@dataclass(frozen=True)
class MachineSnapshot:
    """The machine at one sample, for the UI.

    - machine strip: `devices` (every GPU), `owners[i]` (run keys on GPU i) and `foreign[i]`
      (pids on GPU i that belong to no watched run: "not a watched run");
    - run list strip / run view: `runs[key].devices` and the run's `gpu...` series in the store
      (history), `runs[key].processes.rows` (the process table);
    - `gpu_status`: "" when GPUs are read, else the one-line reason they are not.
    """

    at: float
    gpu_status: str
    devices: tuple[DeviceSample, ...] = ()
    owners: dict[int, tuple[str, ...]] = field(default_factory=dict)
    foreign: dict[int, tuple[int, ...]] = field(default_factory=dict)
    runs: dict[str, RunSample] = field(default_factory=dict)


# -- NVML -----------------------------------------------------------------------------------------
def describe_nvml_error(exc: Exception) -> str:
    """The one line said when NVML cannot be used."""
    kind = type(exc).__name__
    if kind in ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded"):
        return f"no NVIDIA GPU found (no NVIDIA driver: {exc})"
    if kind == "NVMLError_NoPermission":
        return f"NVIDIA GPUs not readable: no permission ({exc})"
    return f"NVIDIA GPUs not readable ({exc})"


class Nvml:
    """A thin reader over pynvml. `open()` returns None when GPUs can be read, else why not;
    `read()` samples every device (a field a device does not support is None)."""

    def __init__(self) -> None:
        self.nv: Any = None
        self.handles: list[Any] = []
        self._proc_util_seen: dict[int, int] = {}  # device -> last sample timestamp (us)
        self._no_proc_util: set[int] = set()

    def open(self) -> str | None:
        try:
            import pynvml
        except ImportError:
            return NO_BINDING
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            return describe_nvml_error(exc)
        try:
            count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()
            return describe_nvml_error(exc)
        if not self.handles:
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()
            return "no NVIDIA GPU found (the driver lists none)"
        self.nv = pynvml
        return None

    def close(self) -> None:
        if self.nv is not None:
            with contextlib.suppress(self.nv.NVMLError):
                self.nv.nvmlShutdown()
            self.nv = None

    def read(self) -> list[DeviceSample]:
        return [self._device(i, h) for i, h in enumerate(self.handles)] if self.nv else []

    def _ask(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nv.NVMLError:
            return None

    def _device(self, index: int, handle: Any) -> DeviceSample:
        nv = self.nv
        rates = self._ask(nv.nvmlDeviceGetUtilizationRates, handle)
        memory = self._ask(nv.nvmlDeviceGetMemoryInfo, handle)
        power_mw = self._ask(nv.nvmlDeviceGetPowerUsage, handle)
        temp = self._ask(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
        return DeviceSample(
            index=index,
            name=_text(self._ask(nv.nvmlDeviceGetName, handle)),
            uuid=_text(self._ask(nv.nvmlDeviceGetUUID, handle)),
            util=None if rates is None else float(rates.gpu),
            mem_used=None if memory is None else int(memory.used),
            mem_total=None if memory is None else int(memory.total),
            power=None if power_mw is None else power_mw / 1000.0,
            temp=None if temp is None else float(temp),
            processes=self._processes(index, handle),
        )

    def _processes(self, index: int, handle: Any) -> tuple[GpuProcess, ...]:
        listed = self._ask(self.nv.nvmlDeviceGetComputeRunningProcesses, handle) or []
        utils = self._process_utils(index, handle)
        out = []
        for p in listed:
            mem = getattr(p, "usedGpuMemory", None)
            out.append(
                GpuProcess(int(p.pid), None if mem is None else int(mem), utils.get(int(p.pid)))
            )
        return tuple(out)

    def _process_utils(self, index: int, handle: Any) -> dict[int, float]:
        """SM % per pid from the samples the driver buffered since the last call (the latest per
        pid). Not found: no sample in that period; not supported: never asked again."""
        if index in self._no_proc_util:
            return {}
        nv = self.nv
        try:
            samples = nv.nvmlDeviceGetProcessUtilization(handle, self._proc_util_seen.get(index, 0))
        except nv.NVMLError as exc:
            if type(exc).__name__ in ("NVMLError_NotSupported", "NVMLError_NoPermission"):
                self._no_proc_util.add(index)
            return {}
        latest: dict[int, tuple[int, float]] = {}
        for s in samples:
            if int(s.pid) not in latest or s.timeStamp >= latest[int(s.pid)][0]:
                latest[int(s.pid)] = (int(s.timeStamp), float(s.smUtil))
        if latest:
            self._proc_util_seen[index] = max(ts for ts, _ in latest.values())
        return {pid: util for pid, (_, util) in latest.items()}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


# -- mapping --------------------------------------------------------------------------------------
def run_values(
    procs: RunProcesses, devices: list[DeviceSample]
) -> tuple[tuple[int, ...], dict[str, float]]:
    """The GPUs a run's processes are on and the values recorded for it: `proc/...` always;
    per device `gpuN/util`, `gpuN/mem_used`, `gpuN/mem_total` (MiB, the whole device),
    `gpuN/mem_run` (MiB its processes hold), `gpuN/proc_util` (their SM %), `gpuN/power`,
    `gpuN/temp`; and over its devices `gpu/util` (mean), `gpu/mem_used` (what its processes
    hold, or the devices' use where the driver does not say), `gpu/power` (sum)."""
    values = procs.series()
    pids = procs.pids
    used: list[int] = []
    utils: list[float] = []
    run_mem: list[float | None] = []
    dev_mem: list[float] = []
    power: list[float] = []
    for d in devices:
        mine = [p for p in d.processes if p.pid in pids]
        if not mine:
            continue
        used.append(d.index)
        g = f"gpu{d.index}/"
        held = None if any(p.mem is None for p in mine) else sum(p.mem or 0 for p in mine) / MIB
        sm = [p.util for p in mine if p.util is not None]
        for name, value in (
            ("util", d.util),
            ("mem_used", None if d.mem_used is None else d.mem_used / MIB),
            ("mem_total", None if d.mem_total is None else d.mem_total / MIB),
            ("mem_run", held),
            ("proc_util", sum(sm) if sm else None),
            ("power", d.power),
            ("temp", d.temp),
        ):
            if value is not None:
                values[g + name] = float(value)
        if d.util is not None:
            utils.append(d.util)
        run_mem.append(held)
        if d.mem_used is not None:
            dev_mem.append(d.mem_used / MIB)
        if d.power is not None:
            power.append(d.power)
    if utils:
        values["gpu/util"] = sum(utils) / len(utils)
    if run_mem and all(m is not None for m in run_mem):
        values["gpu/mem_used"] = float(sum(m or 0.0 for m in run_mem))
    elif dev_mem:
        values["gpu/mem_used"] = sum(dev_mem)
    if power:
        values["gpu/power"] = sum(power)
    return tuple(used), values


def owners(
    devices: list[DeviceSample], trees: dict[str, RunProcesses]
) -> tuple[dict[int, tuple[str, ...]], dict[int, tuple[int, ...]]]:
    """Per GPU: the watched runs on it, and the pids on it that belong to none."""
    by_pid = {pid: key for key, tree in trees.items() for pid in tree.pids}
    owned: dict[int, tuple[str, ...]] = {}
    foreign: dict[int, tuple[int, ...]] = {}
    for d in devices:
        keys = sorted({by_pid[p.pid] for p in d.processes if p.pid in by_pid})
        others = tuple(sorted(p.pid for p in d.processes if p.pid not in by_pid))
        owned[d.index] = tuple(keys)
        if others:
            foreign[d.index] = others
    return owned, foreign


def snapshot(
    at: float,
    gpu_status: str,
    devices: list[DeviceSample],
    trees: dict[str, RunProcesses],
    steps: dict[str, int],
) -> MachineSnapshot:
    runs = {}
    for key, tree in trees.items():
        used, values = run_values(tree, devices)
        runs[key] = RunSample(key, steps.get(key, 0), tree, used, values)
    owned, foreign = owners(devices, trees)
    return MachineSnapshot(at, gpu_status, tuple(devices), owned, foreign, runs)


def records(snap: MachineSnapshot) -> list[dict[str, Any]]:
    """The JSON lines of one sample (see `sources.gpu_samples`)."""
    return [
        {"t": snap.at, "run": r.run, "step": r.step, "devices": list(r.devices), "values": r.values}
        for r in snap.runs.values()
    ]


# -- the sampler ----------------------------------------------------------------------------------
class Sampler:
    """Samples every `interval` seconds in a thread (`start`/`stop`), or once per
    `sample_once()` call. Writes the JSON lines to `path` (emptied first; default: a private
    temporary directory, removed by `stop`) and reads them into `store` through
    `GpuSamplesSource`."""

    def __init__(
        self,
        store: Store,
        path: str | None = None,
        interval: float = 1.0,
        allow_other_users: bool = False,
        on_notice: Callable[[str], None] | None = None,
        nvml: Nvml | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.procs = ProcessView(allow_other_users, min_interval=interval * 0.9)
        self.nvml = nvml or Nvml()
        self.on_notice = on_notice
        self.notices: list[str] = []
        self._tmp = None if path else tempfile.mkdtemp(prefix="watchrun-samples-")
        self.path = path or os.path.join(self._tmp or "", "samples.jsonl")
        open(self.path, "w").close()  # this session's samples only
        self._generation = 0
        self.source = GpuSamplesSource(store)
        self.source.add_file(self.path)
        self.gpu_status: str | None = None  # None until the first sample
        self.latest: MachineSnapshot | None = None
        self._reported_exits: set[tuple[str, float]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, name="watchrun-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.nvml.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.sample_once()
            except Exception as exc:  # noqa: BLE001 - a sampler bug must not stop the follow loop
                self.notice(f"process/GPU sampling failed: {type(exc).__name__}: {exc}")
            self._stop.wait(max(0.05, self.interval - (time.monotonic() - t0)))

    def notice(self, message: str) -> None:
        """Say `message` once per session."""
        if message in self.notices:
            return
        self.notices.append(message)
        if self.on_notice is not None:
            self.on_notice(message)

    # -- one sample ---------------------------------------------------------------------------
    def sample_once(self) -> MachineSnapshot:
        if self.gpu_status is None:
            self.gpu_status = self.nvml.open() or ""
            if self.gpu_status:
                self.notice(self.gpu_status)
        runs, looking, steps = self._candidates()
        trees = self.procs.sample(runs, looking)
        devices = self.nvml.read() if not self.gpu_status else []
        snap = snapshot(time.time(), self.gpu_status, devices, trees, steps)
        lines = records(snap) + self._exit_records()
        if lines:
            self._write(lines)
        self.latest = snap
        return snap

    def _candidates(self) -> tuple[list[Run], set[str], dict[str, int]]:
        """Light copies of the runs worth a look (being written now, or with a writer already
        tracked), the keys of those being written, and each run's last logged step."""
        runs: list[Run] = []
        looking: set[str] = set()
        steps: dict[str, int] = {}
        with self.store.lock:
            for key, run in self.store.runs.items():
                writing = run.status is RunStatus.RUNNING and not run.stopped
                if not writing and key not in self.procs.tracked:
                    continue
                if writing:
                    looking.add(key)
                runs.append(
                    Run(
                        key=key,
                        root=run.root,
                        formats=set(run.formats),
                        files=set(run.files),
                        meta=dict(run.meta),
                        pid=run.pid,
                        host=run.host,
                    )
                )
                steps[key] = logged_step(run) or 0
        return runs, looking, steps

    def _exit_records(self) -> list[dict[str, Any]]:
        out = []
        for key, when in self.procs.exited.items():
            if (key, when) not in self._reported_exits:
                self._reported_exits.add((key, when))
                out.append({"t": when, "run": key, "event": "exited"})
        return out

    def _write(self, lines: list[dict[str, Any]]) -> None:
        with open(self.path, "a") as fh:
            fh.write("".join(json.dumps(line) + "\n" for line in lines))
        self.source.poll()
        if self._tmp and os.path.getsize(self.path) > MAX_FILE_BYTES:
            self._next_file()

    def _next_file(self) -> None:
        """Everything has been read: start a fresh file so the temporary one stays small."""
        old = self.path
        self._generation += 1
        self.path = os.path.join(self._tmp or "", f"samples-{self._generation}.jsonl")
        self.source.cursors.pop(old, None)
        self.source.add_file(self.path)
        with contextlib.suppress(OSError):
            os.remove(old)


SAMPLES_ENV = "WATCHRUN_SAMPLES_FILE"


def start_sampler(engine: Any) -> Sampler | None:
    """The follow loop's hook: sample the engine's runs in a thread until `stop()`. The JSON
    lines go to a private temporary file, or are kept in $WATCHRUN_SAMPLES_FILE when set.
    None (said through `engine.on_notice`) when that file cannot be made: the loop goes on."""
    notice = getattr(engine, "on_notice", None)
    try:
        sampler = Sampler(
            engine.store,
            path=os.environ.get(SAMPLES_ENV) or None,
            allow_other_users=engine.config.allow_other_users,
            on_notice=notice,
        )
    except OSError as exc:
        if notice is not None:
            notice(f"process/GPU view off: cannot write its samples ({exc})")
        return None
    return sampler.start()


def look_once(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """One look (for `watchrun ls --json`), per run: `gpus`, the GPUs its processes are on now
    (empty without a verified writer, GPU or driver), and `process`, its tree's totals (None
    without a verified writer on this host)."""
    live = [r for r in runs if r.status is RunStatus.RUNNING]
    trees = ProcessView().sample(live) if live else {}
    out: dict[str, dict[str, Any]] = {r.key: {"gpus": [], "process": None} for r in runs}
    for key, tree in trees.items():
        out[key]["process"] = tree.to_json()
    nvml = Nvml()
    if not trees or nvml.open() is not None:
        return out
    try:
        devices = nvml.read()
    finally:
        nvml.close()
    for key, tree in trees.items():
        out[key]["gpus"] = list(run_values(tree, devices)[0])
    return out

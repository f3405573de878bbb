"""What only the sampled series can tell (`watchrun.gpu`, `sources.gpu_samples`): a GPU starved
by its input pipeline, GPU memory running out (or barely used), host memory that keeps growing,
and the evidence a stalled run's processes give.

The sampled series carry the run's last logged step at each sample, so "while steps advance"
is read from them directly, and their wall-clock times (the sampling instants) give durations.
Memory is judged at the run's evaluations: memory rising within an epoch and falling at its end
is how training uses memory; memory higher at every evaluation than at the one before is a trend.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from watchrun.detectors.base import Detector, RunView, SeriesView, fmt, pct
from watchrun.model import Run, Severity

_DEVICE = re.compile(r"^gpu(\d+)/(\w+)$")


def device_series(view: RunView, what: str) -> dict[int, SeriesView]:
    """`gpuN/<what>` series of the run, by device index."""
    out = {}
    for name, sv in view.series.items():
        m = _DEVICE.match(name)
        if m and m.group(2) == what:
            out[int(m.group(1))] = sv
    return out


def new_walls(view: RunView, sv: SeriesView) -> np.ndarray:
    """Wall-clock times of the points of `sv` not seen before."""
    return view.run.series[sv.name].walls_between(sv.start + sv.new_from, sv.start + len(sv.steps))


def eval_steps(view: RunView) -> SeriesView | None:
    """The series whose steps are the run's evaluations: the validation loss, else the first
    validation metric by name."""
    picked = view.pick("val", "loss")
    if picked is not None:
        return picked
    vals = sorted(
        (sv for sv in view.series.values() if sv.role.split == "val"), key=lambda s: s.name
    )
    return vals[0] if vals else None


class _Window:
    """The samples of the last `seconds`, with their running sum and the number of times the
    step moved up inside the window. A gap longer than `max_gap` starts it afresh."""

    def __init__(self, seconds: float, max_gap: float) -> None:
        self.seconds = seconds
        self.max_gap = max_gap
        self.points: deque[tuple[float, int, float, bool]] = deque()
        self.total = 0.0
        self.advances = 0

    def add(self, wall: float, step: int, value: float) -> None:
        if self.points and wall - self.points[-1][0] > self.max_gap:
            self.points.clear()
            self.total, self.advances = 0.0, 0
        moved = bool(self.points) and step > self.points[-1][1]
        self.points.append((wall, step, value, moved))
        self.total += value
        self.advances += moved
        while self.points and wall - self.points[0][0] > self.seconds:
            _, _, v, m = self.points.popleft()
            self.total -= v
            self.advances -= m

    @property
    def span(self) -> float:
        return self.points[-1][0] - self.points[0][0] if self.points else 0.0

    @property
    def mean(self) -> float:
        return self.total / len(self.points) if self.points else math.nan


class GpuStarved(Detector):
    """A run's GPUs below `below` % utilisation (their mean, `gpu/util`: the ranks of a
    data-parallel run wait together) for `minutes` while its steps advance: the training loop
    waits for data. One alert per run; it clears when the window's mean is back above
    `recover` %."""

    id = "gpu_starved"
    DEFAULTS = {"below": 20.0, "recover": 30.0, "minutes": 5.0, "min_advances": 3, "max_gap": 60.0}

    def __init__(self, run_key: str, config: Any) -> None:
        super().__init__(run_key, config)
        self.window = _Window(60.0 * self.p["minutes"], self.p["max_gap"])

    def update(self, view: RunView) -> None:
        sv = view.series.get("gpu/util")
        if sv is None or sv.new_from >= len(sv.steps):
            return
        devices = view.run.meta.get("gpu_devices") or []
        for i, wall in zip(sv.new, new_walls(view, sv), strict=True):
            self.window.add(float(wall), int(sv.steps[i]), float(sv.values[i]))
            self._judge(devices, self.window)

    def _judge(self, devices: list[int], w: _Window) -> None:
        full = w.span >= 0.95 * w.seconds
        if "starved" in self.open:
            if full and w.mean >= self.p["recover"]:
                self.clear("starved")
            return
        if not full or w.mean >= self.p["below"] or w.advances < self.p["min_advances"]:
            return
        first, last = w.points[0][1], w.points[-1][1]
        peak = max(v for _, _, v, _ in w.points)
        which = f"GPU {devices[0]}" if len(devices) == 1 else "GPUs " + ",".join(map(str, devices))
        if not devices:
            which = "its GPU"
        self.fire(
            "starved",
            Severity.WARNING,
            last,
            ["gpu/util"],
            f"{which} at {w.mean:.0f}% for {w.span / 60:.0f} min while steps advance "
            f"({first} -> {last}): the input pipeline is the bottleneck",
            {
                "devices": devices,
                "mean_util": w.mean,
                "max_util": peak,
                "minutes": w.span / 60,
                "first_step": first,
                "last_step": last,
                "samples": len(w.points),
            },
            "raise the DataLoader's num_workers, set pin_memory=True and a prefetch_factor, move "
            "heavy transforms off the training loop (a model too small for this GPU looks the "
            "same: then raise the batch size)",
        )


class GpuMemory(Detector):
    """Two findings about GPU memory:
    - warning: a device within `near_full` of its total at the last evaluation and higher at
      each of the last `evals` evaluations (by `min_growth` of the total in all): the out of
      memory that is coming. A framework that reserves the whole device at start (TensorFlow)
      is near full but not growing: no alert.
    - info: the run's processes held at most `tiny_share` of a device of `large_gib` GiB or
      more for `tiny_minutes` while its steps advanced: the batch size could grow."""

    id = "gpu_memory"
    DEFAULTS = {
        "near_full": 0.95,
        "evals": 3,
        "min_growth": 0.002,  # of the total, over the evals: beyond the allocator's steps
        "tiny_share": 0.10,
        "large_gib": 16.0,
        "tiny_minutes": 30.0,
    }

    def __init__(self, run_key: str, config: Any) -> None:
        super().__init__(run_key, config)
        self.at_evals: dict[int, list[tuple[int, float, float]]] = {}
        self.eval_cursor = 0
        self.share: dict[int, dict[str, float]] = {}

    def update(self, view: RunView) -> None:
        used = device_series(view, "mem_used")
        total = device_series(view, "mem_total")
        self._near_full(view, used, total)
        held = device_series(view, "mem_run")
        for device, sv in used.items():
            if device in total:
                self._tiny(view, device, held.get(device, sv), total[device])

    # -- out of memory coming -----------------------------------------------------------------
    def _near_full(
        self, view: RunView, used: dict[int, SeriesView], total: dict[int, SeriesView]
    ) -> None:
        if not used:
            return  # no GPU samples (yet): the evaluations wait for them, at no cost a pass
        evals = eval_steps(view)
        if evals is None:
            return
        new = [int(s) for s in evals.steps[self.eval_cursor :]]
        if not new or max(new) > min((int(sv.steps[-1]) for sv in used.values()), default=-1):
            return  # judge an evaluation once the samples after it have settled
        self.eval_cursor = len(evals.steps)
        for step in new:
            for device, sv in used.items():
                mem, cap = (
                    sv.value_at(step),
                    total[device].value_at(step) if device in total else math.nan,
                )
                if math.isfinite(mem) and math.isfinite(cap) and cap > 0:
                    rows = self.at_evals.setdefault(device, [])
                    rows.append((step, mem, cap))
                    del rows[: -(int(self.p["evals"]) + 1)]
                    self._judge_oom(device, rows)

    def _judge_oom(self, device: int, rows: list[tuple[int, float, float]]) -> None:
        key = f"oom{device}"
        step, mem, cap = rows[-1]
        if key in self.open:
            if mem < (self.p["near_full"] - 0.05) * cap:
                self.clear(key)
            return
        k = int(self.p["evals"])
        if len(rows) < k + 1 or mem < self.p["near_full"] * cap:
            return
        values = [m for _, m, _ in rows]
        rising = all(b > a for a, b in zip(values, values[1:], strict=False))
        if not rising or values[-1] - values[0] < self.p["min_growth"] * cap:
            return
        self.fire(
            key,
            Severity.WARNING,
            step,
            [f"gpu{device}/mem_used"],
            f"GPU {device} memory at {mem / 1024:.1f} of {cap / 1024:.1f} GiB ({pct(mem / cap)}) "
            f"and higher at each of the last {k} evals (+{values[-1] - values[0]:.0f} MiB): "
            "out of memory is coming",
            {
                "device": device,
                "mem_used_mib": mem,
                "mem_total_mib": cap,
                "at_evals": [(s, round(m)) for s, m, _ in rows],
            },
            "lower the batch size or sequence length; look for tensors kept across steps (losses "
            "appended without .item(), eval outputs accumulated on the GPU)",
        )

    # -- a tiny share of a large GPU ----------------------------------------------------------
    def _tiny(self, view: RunView, device: int, held: SeriesView, total: SeriesView) -> None:
        key = f"tiny{device}"
        if key in self.open or held.new_from >= len(held.steps):
            return
        walls = new_walls(view, held)
        st = self.share.setdefault(device, {"first": math.nan, "peak": 0.0, "step0": math.nan})
        for i, wall in zip(held.new, walls, strict=True):
            if math.isnan(st["first"]):
                st["first"], st["step0"] = float(wall), float(held.steps[i])
            st["peak"] = max(st["peak"], float(held.values[i]))
        cap = float(total.values[-1]) if len(total.values) else math.nan
        minutes = (float(walls[-1]) - st["first"]) / 60 if len(walls) else 0.0
        last_step = int(held.steps[-1])
        if not (math.isfinite(cap) and cap >= self.p["large_gib"] * 1024):
            return
        if minutes < self.p["tiny_minutes"] or last_step <= st["step0"]:
            return
        if st["peak"] >= self.p["tiny_share"] * cap:
            return
        self.fire(
            key,
            Severity.INFO,
            last_step,
            [held.name],
            f"the run held at most {st['peak'] / 1024:.1f} GiB of GPU {device}'s {cap / 1024:.0f} "
            f"GiB ({pct(st['peak'] / cap)}) for {minutes:.0f} min: the batch size could grow",
            {"device": device, "peak_mib": st["peak"], "mem_total_mib": cap, "minutes": minutes},
            "raise the batch size (and scale the learning rate with it), or share this GPU with "
            "another job",
        )


class HostMemoryLeak(Detector):
    """The RSS of the run's processes (`proc/rss`, MiB) higher at each of the last `evals`
    evaluations than at the one before, by `min_growth_mib` and `min_growth_frac` in all: a
    host-memory leak (info, with the numbers). A run that never evaluates is judged every
    `every_minutes` of samples instead."""

    id = "host_memory"
    DEFAULTS = {"evals": 5, "min_growth_mib": 100.0, "min_growth_frac": 0.10, "every_minutes": 10.0}

    def __init__(self, run_key: str, config: Any) -> None:
        super().__init__(run_key, config)
        self.points: list[tuple[int, float]] = []  # (step, RSS) at each checkpoint
        self.eval_cursor = 0
        self.next_wall = math.nan

    def update(self, view: RunView) -> None:
        rss = view.series.get("proc/rss")
        if rss is None or not len(rss.steps):
            return
        evals = eval_steps(view)
        if evals is not None:
            self._at_evals(rss, evals)
        else:
            self._every(view, rss)

    def _at_evals(self, rss: SeriesView, evals: SeriesView) -> None:
        settled_to = int(rss.steps[-1])
        while (
            self.eval_cursor < len(evals.steps) and int(evals.steps[self.eval_cursor]) <= settled_to
        ):
            step = int(evals.steps[self.eval_cursor])
            self.eval_cursor += 1
            if rss.at_or_before(step) >= 0:
                self._add(step, rss.value_at(step))

    def _every(self, view: RunView, rss: SeriesView) -> None:
        walls = new_walls(view, rss)
        for i, wall in zip(rss.new, walls, strict=True):
            if math.isnan(self.next_wall):
                self.next_wall = float(wall)
            if wall >= self.next_wall:
                self.next_wall = float(wall) + 60.0 * self.p["every_minutes"]
                self._add(int(rss.steps[i]), float(rss.values[i]))

    def _add(self, step: int, value: float) -> None:
        k = int(self.p["evals"])
        self.points.append((step, value))
        del self.points[: -(k + 1)]
        if "rss" in self.open or len(self.points) < k + 1:
            return
        values = [v for _, v in self.points]
        growth = values[-1] - values[0]
        if not all(b > a for a, b in zip(values, values[1:], strict=False)):
            return
        if growth < max(self.p["min_growth_mib"], self.p["min_growth_frac"] * values[0]):
            return
        self.fire(
            "rss",
            Severity.INFO,
            step,
            ["proc/rss"],
            f"the run's processes grew from {values[0]:.0f} MB to {values[-1]:.0f} MB of RAM over "
            f"the last {k} evals (+{growth / k:.0f} MB per eval): a host-memory leak?",
            {"rss_mib_at_evals": [(s, round(v, 1)) for s, v in self.points], "growth_mib": growth},
            "look for objects kept across steps (lists of tensors or outputs, growing caches, "
            "DataLoader workers touching a Python-list dataset); "
            "the run's proc/rss series shows it",
        )


# -- evidence for `stalled` -----------------------------------------------------------------------
@dataclass(frozen=True)
class StallEvidence:
    verdict: str  # "exited", "gpu_idle", "gpu_busy", "gpu_partial", "cpu_idle", "cpu_busy"
    message: str  # what the samples say, to append to the stalled alert's message
    action: str
    evidence: dict[str, Any]


def stall_evidence(
    run: Run, now: float, recent: float = 60.0, fresh: float = 30.0
) -> StallEvidence | None:
    """What the sampler saw of a run that stopped writing: its writer exited (finished or
    crashed), its GPU idle (crashed or hung), its GPU busy (a long eval or checkpoint), or
    without GPU series its processes' CPU. None without samples newer than `fresh` seconds
    (no sampler running, or the run is not on this host). Reads the last `recent` seconds."""
    exited = run.meta.get("process_exited")
    if isinstance(exited, float) and exited >= run.last_write - 1.0:
        return StallEvidence(
            "exited",
            "its process has exited: it finished or crashed",
            "read the end of its console log (a traceback, CUDA out of memory, "
            "Killed by the OOM killer)",
            {"process_exited": exited},
        )
    gpu = _recent(run, "gpu/util", now, recent, fresh)
    if gpu is not None:
        mean = float(np.mean(gpu))
        ev = {"gpu_util_recent": round(mean, 1), "samples": len(gpu)}
        if mean < 5.0:
            return StallEvidence(
                "gpu_idle",
                f"its GPU is idle ({mean:.0f}%) while the process lives: likely hung",
                "look at the process (py-spy dump --pid PID): a deadlock, a dead DataLoader "
                "worker, a rank waiting for a dead one",
                ev,
            )
        if mean >= 50.0:
            return StallEvidence(
                "gpu_busy",
                f"its GPU is busy ({mean:.0f}%): likely a long evaluation or checkpoint "
                "(a hung NCCL collective also keeps a GPU busy)",
                "wait for the next write; if it never comes, py-spy dump --pid PID",
                ev,
            )
        return StallEvidence(
            "gpu_partial",
            f"its GPU is at {mean:.0f}%: still working, slowly",
            "wait for the next write; compare with the run's usual pace",
            ev,
        )
    cpu = _recent(run, "proc/cpu", now, recent, fresh)
    if cpu is None:
        return None
    mean = float(np.mean(cpu))
    ev = {"cpu_percent_recent": round(mean, 1), "samples": len(cpu)}
    if mean < 5.0:
        return StallEvidence(
            "cpu_idle",
            f"its processes are alive but idle ({mean:.0f}% CPU): likely hung",
            "look at the process (py-spy dump --pid PID)",
            ev,
        )
    return StallEvidence(
        "cpu_busy",
        f"its processes are busy ({fmt(mean)}% CPU): likely a long evaluation or checkpoint",
        "wait for the next write",
        ev,
    )


def _recent(run: Run, name: str, now: float, recent: float, fresh: float) -> np.ndarray | None:
    """The values of `name` sampled in the last `recent` seconds, if its newest is fresh."""
    s = run.series.get(name)
    if s is None or not len(s):
        return None
    lo = max(0, len(s) - int(4 * recent) - 1)
    walls = s.walls_between(lo, len(s))
    if now - float(walls[-1]) > fresh:
        return None
    keep = walls >= float(walls[-1]) - recent
    return s.values[lo:][keep]

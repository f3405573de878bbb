"""The process and GPU view (`watchrun.gpu`'s `MachineSnapshot` and the run's sampled series):
the machine strip on top (every GPU: util, memory, who owns it), the run list's one-line strip
(a run's GPU util and memory, or its writer's CPU % and RSS) and the Process tab (the run's
process tree, and per GPU a sparkline of util and memory from the store's series)."""

from __future__ import annotations

import re
import time

from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Sparkline, Static

from watchrun.app.text import middle
from watchrun.gpu import MachineSnapshot, RunSample
from watchrun.procs import MIB, RunProcesses
from watchrun.snapshot import RunView
from watchrun.textsafe import printable

EIGHTHS = " ▏▎▍▌▋▊▉█"
DEVICE_SERIES = re.compile(r"^gpu(\d+)/util$")


def bar(fraction: float, width: int, ascii_only: bool = False) -> str:
    """`fraction` (0..1) as a bar `width` cells long, in eighths of a cell (`#` in ASCII)."""
    fraction = min(1.0, max(0.0, fraction))
    if ascii_only:
        full = round(fraction * width)
        return "#" * full + "." * (width - full)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[part] if part and full < width else "")
    return text.ljust(width)


def size(mib: float) -> str:
    """MiB as a person reads a memory size: 512M, 1.4G, 80G."""
    if mib < 1024:
        return f"{mib:.0f}M"
    gib = mib / 1024
    return f"{gib:.1f}G" if gib < 10 else f"{gib:.0f}G"


def run_strip(sample: RunSample | None, width: int, ascii_only: bool = False) -> Text | None:
    """The run list's line under a run's name: GPU util and memory as small bars when its
    processes are on a GPU, else its writer's CPU % and RSS; None when no process is known."""
    if sample is None:
        return None
    util, mem = sample.util, sample.mem
    if util is not None or mem is not None:
        u = util or 0.0
        used, total = mem or (0.0, 0.0)
        m = used / total if total else 0.0
        forms = [
            f"gpu {bar(u / 100, 4, ascii_only)}{u:3.0f}% mem {bar(m, 4, ascii_only)} {size(used)}",
            f"{bar(u / 100, 3, ascii_only)}{u:3.0f}% {bar(m, 3, ascii_only)} {size(used)}",
        ]
    else:
        writer = sample.processes.writer_row()
        if writer is None:
            return None
        rss = size(writer.rss / MIB)
        forms = [f"cpu {writer.cpu:3.0f}%  rss {rss}", f"{writer.cpu:3.0f}% {rss}"]
    text = next((f for f in forms if len(f) <= width), forms[-1][:width])
    return Text(text, style="dim")


def machine_text(machine: MachineSnapshot | None, ascii_only: bool = False) -> Text | None:
    """One line, every GPU: util, memory, the runs on it or "not a watched run"; None without
    GPUs."""
    if machine is None or not machine.devices:
        return None
    out = Text(no_wrap=True, overflow="ellipsis")
    sep = " | " if ascii_only else " │ "
    for i, d in enumerate(machine.devices):
        if i:
            out.append(sep, style="dim")
        out.append(f"GPU{d.index} ", style="bold")
        if d.util is not None:
            out.append(f"{bar(d.util / 100, 4, ascii_only)}{d.util:3.0f}% ")
        if d.mem_used is not None and d.mem_total:
            frac = d.mem_used / d.mem_total
            out.append(
                f"{bar(frac, 4, ascii_only)} {size(d.mem_used / MIB)}/{size(d.mem_total / MIB)} "
            )
        owners = machine.owners.get(d.index, ())
        if owners:
            out.append(", ".join(middle(k, 24) for k in owners))
        if machine.foreign.get(d.index):
            out.append(("; " if owners else "") + "not a watched run", style="italic")
        if not owners and not machine.foreign.get(d.index):
            out.append("idle", style="dim")
    return out


class MachineStrip(Static):
    """The machine strip on top; hidden when there is no GPU."""

    DEFAULT_CSS = """
    MachineStrip { height: 1; padding: 0 1; background: $panel; display: none; }
    MachineStrip.shown { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.ascii_only = False
        self._shown: MachineSnapshot | None = None

    def show(self, machine: MachineSnapshot | None) -> None:
        if machine is self._shown:
            return
        self._shown = machine
        text = machine_text(machine, self.ascii_only)
        self.set_class(text is not None, "shown")
        self.update(text or "")


# -- the Process tab ------------------------------------------------------------------------------
def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def process_lines(procs: RunProcesses, now: float) -> Text:
    """The one line a report gives and the tree, a row per process."""
    t = Text()
    t.append("training process: ", style="bold")
    t.append(f"running ({printable(procs.summary(now))})\n")
    t.append(f"  {'PID':>7}  {'ROLE':<8} {'CPU %':>6} {'RSS':>7} {'THR':>4} {'AGE':>7}  COMMAND\n")
    for r in procs.rows:
        command = "  " * r.depth + printable(r.cmdline or r.name)
        t.append(
            f"  {r.pid:>7}  {r.role:<8} {r.cpu:>6.1f} {r.rss / MIB:>6.0f}M "
            f"{r.threads:>4} {_age(r.age(now)):>7}  {middle(command, 60)}\n",
            style="bold" if r.role == "writer" else "",
        )
    return t


def panel_text(run: RunView, machine: MachineSnapshot | None, now: float) -> Text:
    """The tab's text part: the note (once), the process line and tree or why there is none."""
    t = Text()
    if machine is not None and machine.gpu_status:
        t.append(printable(machine.gpu_status) + "\n", style="italic")
    sample = machine.runs.get(run.key) if machine is not None else None
    if sample is not None:
        t.append_text(process_lines(sample.processes, now))
    elif machine is None:
        t.append("process view off (no sampler: watchrun samples while it follows)\n", style="dim")
    elif run.ended:
        t.append(f"training process: not running (run {run.status.value})\n", style="dim")
    else:
        t.append(
            "training process: not found (no process on this host verified as the writer)\n",
            style="dim",
        )
    t.rstrip()
    return t


def run_devices(run: RunView) -> list[int]:
    """The GPUs the run has sampled series of."""
    return sorted(int(m.group(1)) for n in run.series if (m := DEVICE_SERIES.match(n)))


def device_label(run: RunView, index: int, what: str) -> str:
    """The line over a sparkline: now, and the range the sparkline spans (it scales from the
    lowest to the highest value shown): "GPU 0 util 57% (30%..96%)"."""
    name = f"gpu{index}/util" if what == "util" else f"gpu{index}/mem_used"
    values = _values(run, name)
    series = run.series.get(name)
    if series is None or not values:
        return f"GPU {index} {'util' if what == 'util' else 'memory'}: no samples"
    low, high = min(values), max(values)
    if what == "util":
        return f"GPU {index} util {series.last:.0f}% ({low:.0f}%..{high:.0f}%)"
    total = run.series.get(f"gpu{index}/mem_total")
    of = f" of {size(total.last)}" if total is not None and len(total) else ""
    return f"GPU {index} memory {size(series.last)}{of} ({size(low)}..{size(high)})"


def _values(run: RunView, name: str) -> list[float]:
    s = run.series.get(name)
    return [] if s is None else [float(v) for v in s.values if v == v]


class ProcessPane(VerticalScroll):
    """The Process tab: the run's process tree and, per GPU it used, util and memory
    sparklines over the sampled history."""

    DEFAULT_CSS = """
    ProcessPane { height: 1fr; padding: 0 1; }
    ProcessPane #proc-gpus { height: auto; }
    ProcessPane .gpu-label { height: 1; margin-top: 1; }
    ProcessPane .gpu-label.mem { margin-top: 0; }
    ProcessPane Sparkline { height: 2; margin: 0 0; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.clock = time.time
        self._shown: tuple[RunView | None, MachineSnapshot | None] = (None, None)
        self._lines: dict[int, dict[str, tuple[Static, Sparkline]]] = {}

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("", id="proc-text")
        yield Vertical(id="proc-gpus")

    def show(self, run: RunView | None, machine: MachineSnapshot | None) -> None:
        if run is self._shown[0] and machine is self._shown[1]:
            return
        self._shown = (run, machine)
        text = panel_text(run, machine, self.clock()) if run is not None else Text("")
        self.query_one("#proc-text", Static).update(text)
        devices = tuple(run_devices(run)) if run is not None else ()
        if devices != tuple(self._lines):
            box = self.query_one("#proc-gpus", Vertical)
            box.remove_children()
            self._lines = {
                i: {
                    what: (
                        Static("", classes=f"gpu-label {what}"),
                        Sparkline([], summary_function=max, classes=f"gpu{i}-{what}"),
                    )
                    for what in ("util", "mem")
                }
                for i in devices
            }
            box.mount_all([w for pair in self._lines.values() for p in pair.values() for w in p])
        if run is not None:
            self._fill(run)

    def _fill(self, run: RunView) -> None:
        for i, lines in self._lines.items():
            for what, (label, line) in lines.items():
                name = f"gpu{i}/util" if what == "util" else f"gpu{i}/mem_used"
                label.update(device_label(run, i, what))
                line.data = _values(run, name)

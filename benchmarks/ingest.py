"""Ingestion speed and memory: watchrun vs rustboard (TensorBoard's Rust data server) vs
tensorboard's EventAccumulator vs tbparse, same run; and the DataFrame each gives:
`watchrun.read(...).scalars()` vs tbparse's `SummaryReader(...).scalars`.

(a) one run of 10 tags x 100k steps (1M scalar events); (b) 100 runs of 10 tags x 5k steps.
Files hold the records tensorboard's EventFileWriter (what torch's SummaryWriter uses) writes,
framed by watchrun's `frame` (benchmarks/detectors.py), written once into a cache directory.
Prints seconds, points/s, peak RSS (each loader in its own subprocess) and bytes retained per
point, and the ratios.

watchrun is timed from a fresh interpreter, imports included, as `watchrun ls` loads (a bounded
store), with the compiled TFRecord scanner and with the numpy fallback (WATCHRUN_NO_COMPILED=1).
rustboard is the `server` binary of the tensorboard-data-server package, spawned on the logdir
(`--reload once --samples-per-plugin scalars=all`, with and without `--checksum`) and timed
from spawn to its "Finished load cycle" log line; then its gRPC data provider API
(ListScalars + ReadScalars, tensorboard.data.proto) is asked for every point, and the count
printed must equal the points written.

Usage: python benchmarks/ingest.py [--quick] [--dataframes] [--only name,name]
(`--dataframes`: only the two DataFrame loaders; `--only`: these loaders)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # detectors.write_events
CACHE = os.environ.get("WATCHRUN_BENCH_DIR", "/tmp/watchrun-bench2")
TAGS = [
    "train/loss",
    "train/lr",
    "train/grad_norm",
    "train/accuracy",
    "val/loss",
    "val/accuracy",
    "val/f1",
    "perf/throughput",
    "sys/gpu_mem",
    "epoch",
]


def write_run(logdir: str, steps: int) -> None:
    """10 tags x `steps` steps, the records tensorboard's EventFileWriter writes (its Event
    protos, TFRecord-framed with both CRC32Cs; its pure-Python CRC would take minutes)."""
    import math
    import random
    from pathlib import Path

    from detectors import write_events

    rng = random.Random(logdir)

    def rows():  # type: ignore[no-untyped-def]
        for s in range(steps):
            progress = 1 - math.exp(-s / (steps / 5))
            yield (  # shaped like a healthy run, so the detectors do their usual work
                s,
                {
                    "train/loss": 2.0 * (1 - progress) + 0.3 + rng.gauss(0, 0.02),
                    "train/lr": 1e-3 * (1 - s / steps),
                    "train/grad_norm": abs(rng.lognormvariate(0.0, 0.3)),
                    "train/accuracy": 0.5 + 0.4 * progress + rng.gauss(0, 0.01),
                    "val/loss": 2.0 * (1 - progress) + 0.35 + rng.gauss(0, 0.01),
                    "val/accuracy": 0.5 + 0.38 * progress + rng.gauss(0, 0.005),
                    "val/f1": 0.45 + 0.4 * progress + rng.gauss(0, 0.005),
                    "perf/throughput": 1000 + rng.gauss(0, 10),
                    "sys/gpu_mem": 10.5 + rng.gauss(0, 0.1),
                    "epoch": s / (steps / 10),
                },
            )

    write_events(Path(logdir), rows())


def prepare(quick: bool, cases: str = "ab") -> dict[str, str]:
    a = os.path.join(CACHE, "a-quick" if quick else "a")
    b = os.path.join(CACHE, "b-quick" if quick else "b")
    if not os.path.exists(os.path.join(a, ".done")):
        write_run(a, 10_000 if quick else 100_000)
        open(os.path.join(a, ".done"), "w").close()
    if "b" in cases and not os.path.exists(os.path.join(b, ".done")):
        for r in range(10 if quick else 100):
            write_run(os.path.join(b, f"run_{r:03d}"), 5_000)
        open(os.path.join(b, ".done"), "w").close()
    return {"a": a, "b": b}


LS = """
from watchrun.engine import Engine
e = Engine([PATH], use_watchdog=False, bounded=True); e.load()
points = sum(len(s) + s.dropped for r in e.store.runs.values() for s in r.series.values())
retained = sum(s.nbytes() for r in e.store.runs.values() for s in r.series.values())
"""

LOADERS = {
    "watchrun": LS,
    "watchrun-numpy": LS,  # the fallback decoder (run with WATCHRUN_NO_COMPILED=1)
    "rustboard": "",  # a binary, see rustboard()
    "rustboard-checksum": "",
    "watchrun-check": """
from watchrun.engine import Engine
e = Engine([PATH], use_watchdog=False); e.check()
points = sum(r.points() for r in e.store.runs.values()); retained = 0
""",
    "event_accumulator": """
import os
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
points = 0
for d, _, files in os.walk(PATH):
    if any(f.startswith("events.out") for f in files):
        acc = EventAccumulator(d, size_guidance={"scalars": 0}); acc.Reload()
        points += sum(len(acc.Scalars(t)) for t in acc.Tags()["scalars"])
retained = 0
""",
    "watchrun-read": """
import watchrun
df = watchrun.read(PATH).scalars()
points = len(df); retained = int(df.memory_usage(deep=True).sum())
""",
    "tbparse": """
from tbparse import SummaryReader
df = SummaryReader(PATH, pivot=False).scalars
points = len(df); retained = int(df.memory_usage(deep=True).sum())
""",
}


# imported before the clock starts: the DataFrame comparison times reading, not `import pandas`
PRELOAD = {"watchrun-read": "import watchrun.api", "tbparse": "import tbparse"}


ENV = {"watchrun-numpy": {"WATCHRUN_NO_COMPILED": "1"}}


def measure(name: str, path: str) -> dict:
    if name.startswith("rustboard"):
        return rustboard(path, checksum=name.endswith("checksum"))
    code = "\n".join(
        [
            "import time, resource, json",
            f"PATH = {path!r}",
            PRELOAD.get(name, ""),
            "t = time.perf_counter()",
            LOADERS[name],
            "print(json.dumps({'s': time.perf_counter() - t, 'points': points,"
            " 'retained': retained,"
            " 'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))",
        ]
    )
    env = {**os.environ, **ENV.get(name, {})}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=3600, env=env
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def rustboard(path: str, checksum: bool) -> dict:
    """Spawn TensorBoard's Rust data server on `path`; seconds to its "Finished load cycle"
    line, then every scalar point counted over its gRPC API."""
    import tempfile
    import time

    try:
        import tensorboard_data_server
    except ImportError:
        return {"error": "pip install tensorboard-data-server"}
    binary = tensorboard_data_server.server_binary()
    port_file = tempfile.mktemp(prefix="rustboard-port-")
    args = [
        binary,
        "--logdir",
        path,
        "--port",
        "0",
        "--port-file",
        port_file,
        "--reload",
        "once",
        "--samples-per-plugin",
        "scalars=all",
        "--verbose",
        "--die-after-stdin",
    ]
    if checksum:
        args.append("--checksum")
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "Finished load cycle" in line:
                break
        else:
            return {"error": "rustboard exited before a load cycle finished"}
        seconds = time.perf_counter() - t
        with open(port_file) as fh:
            points = _rustboard_points(fh.read().strip())
        rss = _rss_mb(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        if os.path.exists(port_file):
            os.unlink(port_file)
    return {"s": seconds, "points": points, "retained": 0, "rss_mb": rss}


def _rustboard_points(port: str) -> int:
    import grpc
    from tensorboard.data.proto import data_provider_pb2 as pb
    from tensorboard.data.proto import data_provider_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", -1)]
    )
    stub = pb_grpc.TensorBoardDataProviderStub(channel)
    scalars = pb.PluginFilter(plugin_name="scalars")
    listing = stub.ListScalars(pb.ListScalarsRequest(plugin_filter=scalars))
    points = 0
    for run in listing.runs:  # one request per run keeps each reply small
        wanted = pb.RunTagFilter(runs=pb.RunFilter(names=[run.run_name]))
        reply = stub.ReadScalars(
            pb.ReadScalarsRequest(
                plugin_filter=scalars,
                run_tag_filter=wanted,
                downsample=pb.Downsample(num_points=2**31 - 1),
            )
        )
        points += sum(len(tag.data.step) for r in reply.runs for tag in r.tags)
    channel.close()
    return points


def _rss_mb(pid: int) -> float:
    """Peak RSS of a live process (VmHWM), in MB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


TIMED = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t)"
IMPORTS = TIMED.format("import watchrun.cli, watchrun.engine")


def import_seconds(code: str = IMPORTS, tries: int = 7) -> float:
    """The best of a few fresh interpreters (the least disturbed by other load), with compiled
    bytecode as an installed package has it (PYTHONDONTWRITEBYTECODE would time the compiler:
    the bytecode goes to a cache folder of its own, filled by a first run)."""
    import tempfile

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "watchrun-bench-pycache")
    times = []
    for _ in range(tries + 1):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return min(times[1:])


APPEND = """
import glob, shutil, sys, tempfile, time
from watchrun.engine import Engine
from watchrun.sources.tensorboard import frame
from tensorboard.compat.proto import event_pb2, summary_pb2
src, burst = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp(); shutil.copytree(src, d + "/run")
e = Engine([d], use_watchdog=False); e.load()
f = sorted(glob.glob(d + "/run/events.out.tfevents.*"))[0]
def record(i):
    ev = event_pb2.Event(wall_time=2e9, step=10**7 + i, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="train/loss", simple_value=0.1)]))
    return frame(ev.SerializeToString())
total, n = 0.0, 0
for i in range(0, 2000, burst):
    with open(f, "ab") as fh:
        fh.write(b"".join(record(i + j) for j in range(burst)))
    t = time.perf_counter(); e.poll(paths={f}); total += time.perf_counter() - t; n += burst
shutil.rmtree(d)
print(total / n * 1e6)
"""


def append_cost(path: str, burst: int) -> float:
    """Microseconds per appended scalar event, polling after every `burst` events (a copy of
    the run is used: the cached benchmark files stay as written)."""
    out = subprocess.run(
        [sys.executable, "-c", APPEND, path, str(burst)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")


def warm_page_cache(path: str) -> None:
    """Read every file of a case once, so that each tool, the first measured too, reads it
    from memory: a cold page cache made the first one (watchrun) look 2x slower."""
    for dirpath, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def main() -> None:
    quick = "--quick" in sys.argv
    only_frames = "--dataframes" in sys.argv
    only = set(sys.argv[sys.argv.index("--only") + 1].split(",")) if "--only" in sys.argv else None
    paths = prepare(quick)
    for case, path in paths.items():
        print(f"\n== case ({case}) {path}")
        warm_page_cache(path)
        names = ["watchrun-read", "tbparse"] if only_frames else list(LOADERS)
        names = [n for n in names if only is None or n in only]
        results = {n: measure(n, path) for n in names}
        base = results.get("event_accumulator", {})
        for name, r in results.items():
            if "error" in r:
                print(f"  {name:<18} error: {r['error']}")
                continue
            rate = r["points"] / r["s"] / 1e6 if r["s"] else float("nan")
            ratio = base["s"] / r["s"] if "s" in base and r["s"] else float("nan")
            bpp = r["retained"] / r["points"] if r["points"] and r["retained"] else float("nan")
            versus = f"x{ratio:6.1f} vs EventAccumulator  " if base else ""
            print(
                f"  {name:<18} {r['s']:8.2f} s  {rate:6.2f} M pts/s  {versus}"
                f"peak RSS {r['rss_mb']:7.0f} MB  retained {bpp:5.1f} B/pt  ({r['points']} points)"
            )
        ours, rust = results.get("watchrun", {}), results.get("rustboard", {})
        if "s" in ours and "s" in rust:
            rate = ours["points"] / ours["s"] / 1e6
            print(
                f"  watchrun vs rustboard: x{rust['s'] / ours['s']:.2f} (target >= 2), "
                f"{rate:.2f} M pts/s "
                f"(target >= 2.5); rustboard served {rust['points']} of {ours['points']} points"
            )
        if "s" in results.get("watchrun", {}) and "s" in results.get("watchrun-check", {}):
            print(
                "  check / ingest time: "
                f"{results['watchrun-check']['s'] / results['watchrun']['s']:.2f}x"
            )
        ours, ref = results.get("watchrun-read", {}), results.get("tbparse", {})
        if "s" in ours and "s" in ref:
            print(
                "  DataFrame (imports excluded): watchrun.read().scalars() "
                f"x{ref['s'] / ours['s']:.1f} faster than tbparse, "
                f"peak RSS {ours['rss_mb']:.0f} MB vs {ref['rss_mb']:.0f} MB, "
                f"frame {ours['retained'] / 1e6:.1f} MB vs {ref['retained'] / 1e6:.1f} MB"
            )
    if only_frames:
        return
    print(
        f"\nimports (watchrun.cli + watchrun.engine, best of 7): {import_seconds():.3f} s; "
        f"numpy alone: {import_seconds(TIMED.format('import numpy')):.3f} s "
        "(target <= 0.12 s, numpy is the floor)"
    )
    if only is not None and "append" not in only:
        return
    small = os.path.join(CACHE, "b-quick" if quick else "b", "run_000")
    for burst in (1, 10, 100):
        print(
            f"appended events, a poll every {burst:>3}: "
            f"{append_cost(small, burst):7.1f} us per event"
        )


if __name__ == "__main__":
    main()

"""Memory of a long-lived watch: 100 runs x 1M points (10 tags x 100k steps each), bounded store
vs unbounded, peak RSS of the process that loads them (each in its own subprocess).

The runs are 100 hard links to one event file of 1M scalar events written by tensorboard's
EventFileWriter (benchmarks/ingest.py's case (a)), so they cost no extra disk and are read
through the whole real path: discovery, tailing, decoding, store. The unbounded store is
measured on 10 runs and the figure for 100 is extrapolated from them (it would need ~2 GB).
Usage: python benchmarks/memory.py [--runs N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from ingest import CACHE, prepare  # noqa: E402

CODE = """
import json, resource, sys, time
from watchrun.engine import Engine
t = time.perf_counter()
e = Engine([sys.argv[1]], use_watchdog=False, bounded=sys.argv[2] == "1")
e.load()
s = time.perf_counter() - t
series = [x for r in e.store.runs.values() for x in r.series.values()]
print(json.dumps({
    "s": s,
    "runs": len(e.store.runs),
    "points": sum(len(x) + x.dropped for x in series),
    "kept": sum(len(x) for x in series),
    "store_mb": sum(x.nbytes() for x in series) / 2**20,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def runs_dir(n: int) -> str:
    """`n` run folders, each with a hard link to the 1M-point event file."""
    source_dir = prepare(False, cases="a")["a"]
    source = next(os.path.join(source_dir, f) for f in os.listdir(source_dir) if "tfevents" in f)
    root = os.path.join(CACHE, f"memory-{n}")
    for i in range(n):
        run = os.path.join(root, f"run_{i:03d}")
        os.makedirs(run, exist_ok=True)
        link = os.path.join(run, os.path.basename(source))
        if not os.path.exists(link):
            os.link(source, link)
    return root


def measure(path: str, bounded: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CODE, path, "1" if bounded else "0"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(name: str, r: dict) -> None:
    if "error" in r:
        print(f"  {name:<22} error: {r['error']}")
        return
    print(
        f"  {name:<22} {r['runs']:4d} runs  {r['points'] / 1e6:6.1f} M points  kept "
        f"{r['kept'] / 1e6:6.2f} M  store {r['store_mb']:7.1f} MB "
        f" peak RSS {r['rss_mb']:7.0f} MB  load {r['s']:6.1f} s"
    )


def main() -> None:
    n = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 100
    small = max(1, n // 10)
    bounded = measure(runs_dir(n), True)
    unbounded = measure(runs_dir(small), False)
    print(f"== memory: {n} runs x 1M points (10 tags x 100k steps)")
    show("bounded", bounded)
    show(f"unbounded ({small} runs)", unbounded)
    if "error" not in bounded and "error" not in unbounded:
        per_run = unbounded["store_mb"] / unbounded["runs"]
        print(
            f"  unbounded store for {n} runs, extrapolated: {per_run * n:7.0f} MB "
            f"(x{per_run * n / bounded['store_mb']:.0f} the bounded store)"
        )
        verdict = "met" if bounded["rss_mb"] < 300 else "NOT met"
        print(
            f"  target: {n} runs x 1M points under 300 MB RSS: "
            f"{bounded['rss_mb']:.0f} MB, {verdict}"
        )


if __name__ == "__main__":
    main()

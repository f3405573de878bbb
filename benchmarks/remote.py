"""What watching a bucket costs: requests and bytes counted by the S3 server itself (moto's
standalone server on 127.0.0.1, wrapped by a counting layer), for 100 runs written by the real
writers (tensorboard's SummaryWriter, a CSV history, HF's trainer_state.json), against a local
read of the same files.

- first load: `watchrun` opening s3://bench/runs (listing, sniffing, reading);
- an hour of idle watching: a few real polls with nothing changed, counted per poll, and the
  hour extrapolated with the mirror's own adaptive interval (1 s while files grow, x1.5 per
  quiet poll up to 30 s): polls in an hour = the intervals that sum to 3600 s;
- one appended event: a run logs one more scalar, its events file is uploaded again (as
  TensorBoard's S3 writer does), one poll.

Targets (issue 14): the first load reads each byte once; idle costs one listing per poll per root;
an appended event costs one ranged GET.

    PYTHONPATH=src python3 benchmarks/remote.py [--runs 100] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.integration.s3server import CountingS3, Hit  # noqa: E402

BUCKET = "bench"


def write_runs(top: Path, runs: int, steps: int) -> list[object]:
    """`runs` finished runs, each with TensorBoard events, metrics.csv and trainer_state.json."""
    import json

    from torch.utils.tensorboard import SummaryWriter

    writers = []
    for r in range(runs):
        folder = top / f"run{r:03d}"
        folder.mkdir(parents=True)
        tb = SummaryWriter(str(folder))
        rows = ["epoch,loss,val_loss"]
        history = []
        for s in range(1, steps + 1):
            tb.add_scalar("train/grad_norm", 1.0 + (r + s) % 7, s)
            rows.append(f"{s},{1 / s:.6f},{1.1 / s:.6f}")
            history.append({"loss": 1 / s, "step": s, "epoch": s})
        tb.flush()
        (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
        state = {"global_step": steps, "log_history": history}
        (folder / "trainer_state.json").write_text(json.dumps(state, indent=2))
        writers.append(tb)
    return writers


def upload(client: object, top: Path) -> tuple[int, int]:
    files = sorted(p for p in top.rglob("*") if p.is_file())
    for f in files:
        key = f"runs/{f.relative_to(top).as_posix()}"
        client.put_object(Bucket=BUCKET, Key=key, Body=f.read_bytes())  # type: ignore[attr-defined]
    return len(files), sum(f.stat().st_size for f in files)


def tally(hits: list[Hit]) -> tuple[int, int, int, int]:
    """(requests, listings, object reads, bytes) of what a reader sent."""
    listings = [h for h in hits if h.is_listing]
    reads = [h for h in hits if h.is_object_read]
    return len(hits), len(listings), len(reads), sum(h.nbytes for h in hits)


def polls_per_hour(fast: float, slow: float, grow: float) -> int:
    """How many quiet polls the adaptive interval makes in an hour, starting from `fast`."""
    t, interval, polls = 0.0, fast, 0
    while t + interval <= 3600:
        t += interval
        polls += 1
        interval = min(slow, interval * grow)
    return polls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--idle-polls", type=int, default=10)
    args = ap.parse_args()

    import boto3

    server = CountingS3()
    server.start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=server.endpoint,
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = os.path.join(tmp, "cache")
        top = Path(tmp) / "runs"
        writers = write_runs(top, args.runs, args.steps)
        client = boto3.client("s3", endpoint_url=server.endpoint)
        client.create_bucket(Bucket=BUCKET)
        nfiles, nbytes = upload(client, top)

        from watchrun.engine import Engine
        from watchrun.remote.fsmirror import FAST_POLL, SLOW_POLL, WINDOW

        # a local read of the same files, for comparison: what it opens and reads
        t0 = time.monotonic()
        local = Engine([str(top)], use_watchdog=False)
        local.load()
        local_s = time.monotonic() - t0
        local_points = sum(r.points() for r in local.store.runs.values())

        mark = len(server.hits)
        t0 = time.monotonic()
        engine = Engine([f"s3://{BUCKET}/runs"], use_watchdog=False)
        mirror = next(iter(engine.mirrors.values()))
        mirror.poll_seconds = 3600  # the benchmark drives the polls
        engine.load()
        remote_s = time.monotonic() - t0
        first = tally(server.reads_since(mark))
        remote_points = sum(r.points() for r in engine.store.runs.values())

        idle: list[tuple[int, int, int, int]] = []
        for _ in range(args.idle_polls):
            mark = len(server.hits)
            mirror.poll_safely()  # type: ignore[attr-defined]
            idle.append(tally(server.reads_since(mark)))
        per_poll = idle[-1]
        hourly = polls_per_hour(FAST_POLL, SLOW_POLL, 1.5)

        tb = writers[0]
        events = next((top / "run000").glob("events.out.tfevents.*"))
        before = events.stat().st_size
        tb.add_scalar("train/grad_norm", 0.5, args.steps + 1)  # type: ignore[attr-defined]
        tb.flush()  # type: ignore[attr-defined]
        client.put_object(Bucket=BUCKET, Key=f"runs/run000/{events.name}", Body=events.read_bytes())
        appended = events.stat().st_size - before
        mark = len(server.hits)
        mirror.poll_safely()  # type: ignore[attr-defined]
        append = tally(server.reads_since(mark))
        engine.close()
    server.stop()

    print(f"{args.runs} runs, {nfiles} files, {nbytes:,} bytes in s3://{BUCKET}/runs")
    print(f"  local read: {nbytes:,} bytes of {nfiles} files, {local_points:,} points, "
          f"{local_s:.1f}s")  # fmt: skip
    req, lists, reads, got = first
    print(
        f"first load: {req} requests ({lists} listing, {reads} ranged GETs = "
        f"{reads / nfiles:.2f} per file), {got:,} bytes = {got / nbytes:.3f} x the files' bytes "
        f"(listing included), {remote_points:,} points, {remote_s:.1f}s"
    )
    print(
        f"idle poll: {per_poll[0]} request(s) ({per_poll[1]} listing, {per_poll[2]} GETs), "
        f"{per_poll[3]:,} bytes (the listing of {nfiles} objects)"
    )
    print(
        f"idle hour (extrapolated: {hourly} polls, the adaptive interval {FAST_POLL:g}s x1.5 up "
        f"to {SLOW_POLL:g}s): {hourly * per_poll[0]} requests, {hourly * per_poll[3]:,} bytes"
    )
    print(
        f"one appended event ({appended} bytes): {append[0]} requests ({append[1]} listing, "
        f"{append[2]} ranged GET), {append[3] - per_poll[3]:,} bytes read past the listing "
        f"(the event + {WINDOW} bytes of overlap)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

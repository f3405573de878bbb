"""FAULTS L3 soak: a writer logs to four streams (TFRecord, CSV, JSONL, console) at N events/s
each for S seconds, rotating, copytruncating, atomically replacing and cutting records in half
at random moments, while watchrun follows (file events, then polling every 0.5 s). Prints per
stream what was written and read, lost and doubled, and the faults done (tests/unit/soak.py).

Usage: python benchmarks/soak.py [--seconds 60] [--rate 10000] [--mode events|polling|both]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.unit.soak import run_soak  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=int, default=10_000, help="events/s per stream")
    ap.add_argument("--mode", choices=["events", "polling", "both"], default="both")
    args = ap.parse_args()
    modes = ["events", "polling"] if args.mode == "both" else [args.mode]
    bad = 0
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="watchrun-soak-") as root:
            result = run_soak(root, args.seconds, args.rate, polling=mode == "polling")
        print(f"{mode}: {args.seconds:g} s at {args.rate} events/s per stream")
        for kind, r in result.items():
            faults = ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items()))
            print(
                f"  {kind:9} written {r['written']:>8}  read {r['read']:>8}  lost {r['lost']:>6}"
                f"  doubled {r['doubled']:>6}  ({faults})"
            )
            bad += r["lost"] + r["doubled"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

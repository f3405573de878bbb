"""The model-based exactly-once test (tests/unit/test_exactly_once_model.py) with many
examples: every format family, with polling and with file events. Prints, per family and mode,
the examples run, the seconds taken and ok or the failing sequence of operations.

Usage: python benchmarks/exactly_once.py [--examples 10000] [--steps 30]
(--examples is the total, split evenly over the 12 family x mode pairs)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.unit.test_exactly_once_model import FAMILIES, MODES, machine  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    each = -(-args.examples // (len(FAMILIES) * len(MODES)))
    failed = 0
    for mode in MODES:
        for family in sorted(FAMILIES):
            t0 = time.monotonic()
            try:
                machine(family, mode, each, args.steps).TestCase("runTest").runTest()
                verdict = "ok"
            except Exception as exc:  # noqa: BLE001 - report and go on with the other families
                failed += 1
                notes = "\n".join(getattr(exc, "__notes__", []))
                verdict = f"FAILED: {exc}\n{notes}"
            print(
                f"{family:9} {mode:8} {each} examples  {time.monotonic() - t0:7.1f} s  {verdict}",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

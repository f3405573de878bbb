"""The long fuzz run of every parser (issue 9 section 3): the cases of tests/unit/fuzz_cases.py
(good records around one bad record, fed whole and in three torn chunks through the real
Source class) by the thousand, counted rather than stopped at the first failure.

Prints per parser: cases, crashes (an exception out of the source), hangs (a case over
--hang seconds; a case is cut off after 10x that), good records lost, and for TensorBoard
points read from a corrupt record. Reports, never asserts.

Usage: python benchmarks/fuzz.py [--cases 10000] [--parsers csv,tensorboard] [--hang 2]
       [--seconds N]   (a time budget per parser; whichever of --cases and --seconds ends first)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
import warnings
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.setrecursionlimit(5000)  # as under pytest (tests/conftest.py)

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tests.unit.fuzz_cases import CASES, Outcome, check  # noqa: E402


class Hung(Exception):
    pass


class OutOfTime(Exception):
    """Ends the run of one parser at its time budget (hypothesis stops at an exception)."""


def _alarm(signum, frame):  # type: ignore[no-untyped-def]
    raise Hung()


def run_parser(name: str, cases: int, hang: float, seconds: float) -> Counter:
    case = CASES[name]
    totals: Counter = Counter()
    examples: list[str] = []
    deadline = time.monotonic() + seconds

    @settings(
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # counted, never shrunk
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(rec=case.strategy, cut=st.tuples(st.floats(0, 1), st.floats(0, 1)))
    def one(rec, cut):  # type: ignore[no-untyped-def]
        if time.monotonic() > deadline:
            raise OutOfTime
        before, bad, after = rec
        for torn in (False, True):
            totals["cases"] += 1
            signal.setitimer(signal.ITIMER_REAL, hang * 10)
            t0 = time.monotonic()
            try:
                out = check(case, before, bad, after, torn, cut)
            except Hung:
                out = Outcome(crash=None)
                totals["cut off"] += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if time.monotonic() - t0 > hang:
                totals["hangs"] += 1
            if out.crash:
                totals["crashes"] += 1
                if len(examples) < 3:
                    examples.append(f"{out.crash} <- bad={str(bad)[:80]!r}")
            totals["good lost"] += out.lost
            totals["bad points"] += out.extra
            totals["bad counted"] += out.skipped > 0

    signal.signal(signal.SIGALRM, _alarm)
    with contextlib.suppress(OutOfTime):
        one()
    for e in examples:
        print(f"    e.g. {e}")
    return totals


def main() -> None:
    warnings.filterwarnings("ignore", message="Generating overly large repr")  # 128 KiB cases
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--cases", type=int, default=10_000, help="examples per parser (each fed whole and torn)"
    )
    ap.add_argument(
        "--parsers", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES)
    )
    ap.add_argument(
        "--hang", type=float, default=2.0, help="seconds after which a case counts as a hang"
    )
    ap.add_argument("--seconds", type=float, default=float("inf"), help="time budget per parser")
    args = ap.parse_args()
    print(
        f"{'parser':<15} {'cases':>7} {'crashes':>8} {'hangs':>6} {'good lost':>10} "
        f"{'bad points':>11} {'secs':>6}"
    )
    for name in args.parsers.split(","):
        t0 = time.monotonic()
        c = run_parser(name, args.cases, args.hang, args.seconds)
        print(
            f"{name:<15} {c['cases']:>7} {c['crashes']:>8} {c['hangs']:>6} {c['good lost']:>10} "
            f"{c['bad points'] if name == 'tensorboard' else '-':>11} "
            f"{time.monotonic() - t0:>6.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

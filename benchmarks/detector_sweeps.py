"""Detector quality on simulated runs: false alarms on healthy runs and calls on overfitting
runs, by noise level. The shapes are those of tests/unit/test_sweeps.py; this script draws many
more of them and prints rates, where the tests assert exact counts on a fixed sample.

    python benchmarks/detector_sweeps.py [RUNS_PER_CELL]
"""

from __future__ import annotations

import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.unit.test_sweeps import KINDS, healthy, overfitting, warnings_of  # noqa: E402


def healthy_params(rng: random.Random, noise: float, vnoise: float) -> tuple:
    kind = rng.choice(KINDS)
    n_logs = rng.choice([30, 100, 300, 1000] if kind != "keras" else [10, 20, 50, 100])
    evals = n_logs if kind == "keras" else min(n_logs, rng.choice([3, 5, 10, 20, 50]))
    start = rng.choice([0.05, 0.7, 1.1, 2.3, 4.6])
    return (
        kind,
        n_logs,
        evals,
        noise,
        vnoise,
        start,
        start * rng.choice([0.02, 0.1, 0.3, 0.6]),
        rng.choice([1.5, 3, 6, 12]),
        rng.random() < 0.6,
        rng.choice(["none", "linear", "warm"]) if kind == "hf" else "none",
    )


def overfit_params(rng: random.Random, noise: float, vnoise: float) -> tuple:
    kind = rng.choice(KINDS)
    n_logs = rng.choice([100, 300, 1000] if kind != "keras" else [20, 30, 50, 100])
    evals = n_logs if kind == "keras" else min(n_logs, rng.choice([10, 20, 50]))
    return (
        kind,
        n_logs,
        evals,
        noise,
        vnoise,
        rng.choice([0.7, 2.3]),
        rng.choice([0.2, 0.35, 0.6]),
        rng.choice([0.3, 0.5]),
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    rng = random.Random(2026)
    print(
        f"{'train noise':>11} {'val noise':>9} | {'healthy runs with a warning':>28} | "
        f"{'overfitting runs called':>23}"
    )
    for noise in (0.01, 0.05, 0.1, 0.3):
        for vnoise in (0.005, 0.02, 0.04, 0.06):
            false, why, hit = 0, Counter(), 0
            with tempfile.TemporaryDirectory() as tmp:
                for i in range(n):
                    p = healthy_params(rng, noise, vnoise)
                    got = warnings_of(Path(tmp), f"h{i}", healthy(*p), p[0], rng.randrange(1000))
                    false += bool(got)
                    why.update(got)
                    q = overfit_params(rng, noise, vnoise)
                    hit += "overfitting" in warnings_of(
                        Path(tmp), f"o{i}", overfitting(*q), q[0], rng.randrange(1000)
                    )
            detail = ", ".join(f"{k} {v}" for k, v in why.most_common())
            print(f"{noise:>11.0%} {vnoise:>9.1%} | {false:>3}/{n} {detail:<22} | {hit:>3}/{n}")


if __name__ == "__main__":
    main()

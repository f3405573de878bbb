"""One training is one run: the evidence that runs found apart were written by one training.

Layouts put most files of a run together (layout.py), but one training often logs through several
writers into sibling folders: Lightning's TensorBoard and CSV loggers (tb_logs/x/version_0 and
csv_logs/x/version_0), Keras' CSVLogger next to its TensorBoard callback, Ultralytics' results.csv
next to its MLflow run, HF Trainer's output dir next to wandb/. These are joined only on evidence
in the files, never on folder names:
- the same values at the same steps: at least MIN_SHARED points of loss- or metric-like series
  equal (as float32, the precision TensorBoard keeps) in both runs, written by different writers
  (two runs of one format with equal values are a rerun with the same seed, or a copy);
- the same writer: the same host and pid, with overlapping write times, through different
  writers (one process trains one model at a time; two fits in a row in one notebook stay two
  runs, and so do two runs of one format written at once: a sweep in one process);
- a console standing alone joins the run whose values it printed (rounded as printed: `loss:
  0.2870`), or, printing none of them, the one training in the folders below its own (a
  `train.log` above tb_logs/ and csv_logs/); beside two trainings it stays apart.
and only between runs that are near: their roots meet at most NEAR levels up. Two trainings in one
folder share neither values nor a live pid, and stay two runs.

Within a joined run, the same metric from two writers under two names (`loss` in the CSV,
`train/epoch_loss` in TensorBoard) is kept once: under the name that says what it is, from the
richer writer (Source.richness, as the store chooses between two writers of one name), then from
the series with more points (`duplicates`).
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from watchrun.model import Run
from watchrun.semantics import role_of

NEAR = 3  # levels up from each root to their common ancestor
MIN_SHARED = 3  # equal (step, value) points that make two series one
SAMPLE = 64  # points of each series fingerprinted (the first ones: every writer starts there)
CROWD = 8  # a fingerprint shared by more runs is not distinctive (a constant, a copied template)
# series set by the recipe, not by the data (equal in any two runs of one recipe): no evidence
_RECIPE_LAST = {"lr", "rate", "epoch", "epochs", "step", "steps", "iter", "iteration", "runtime",
                "time", "timestamp", "second", "flos", "memory", "eta", "size", "momentum", "decay",
                "wd", "warmup", "mem", "gpu"}  # fmt: skip
_TOKENS = re.compile(r"[/_.\-\s()]+")
_DENOMINATORS = np.arange(1, 101)
# values checked in one numpy pass: its (values x denominators) float64 temporaries stay under
# glibc's mmap threshold (128 KiB), so they come from the heap, not from fresh pages each time
CHECKED_AT_ONCE = 128
MANY_WRITER_SETS = 64  # past this many distinct sets of writers, runs are not sorted by them


@dataclass
class RunFacts:
    """What evidence is drawn from: a run's root, writer, write times and value fingerprints."""

    key: str
    root: str  # the directory the run lives in (a file run: its directory)
    consoles_only: bool
    writer: tuple[str, int] | None
    span: tuple[float, float] | None
    streams: frozenset[str] = frozenset()  # the writers of the fingerprinted series
    values: np.ndarray = field(default_factory=lambda: np.empty(0))  # the sampled values
    formats: frozenset[str] = frozenset()  # the log formats its files are in
    sizes: tuple[int, ...] = ()  # the length of each series' sample in `values`

    @cached_property
    def points(self) -> set[bytes]:
        """The value fingerprints of its series (`_fingerprints` of each sample), worked out
        when first asked: only when some run has other writers can equal values join runs."""
        return _fingerprints_of(np.split(self.values, np.cumsum(self.sizes)[:-1]))


def facts(
    run: Run, run_dir: str, consoles_only: bool, streams_of: Callable[[str], set[str]]
) -> RunFacts:
    streams: set[str] = set()
    sampled: list[np.ndarray] = []
    lo, hi = np.inf, -np.inf
    for name, s in run.series.items():
        if not len(s):
            continue
        if s.wall0 == s.wall0:  # not NaN
            first, last = s.wall_span()
            lo, hi = min(lo, first), max(hi, last)
        if comparable(name):
            streams |= streams_of(name)
            sampled.append(s.values[:SAMPLE])
    writer = (run.host or "", int(run.pid)) if isinstance(run.pid, int) and run.pid > 0 else None
    span = (lo, hi) if lo <= hi else None
    values = np.concatenate(sampled) if sampled else np.empty(0)
    return RunFacts(
        run.key,
        run_dir,
        consoles_only,
        writer,
        span,
        streams=frozenset(streams),
        values=values,
        formats=frozenset(run.formats),
        sizes=tuple(len(v) for v in sampled),
    )


def comparable(name: str) -> bool:
    """A loss or a metric: its values depend on the data, so equal values mean the same training
    (a learning rate, an epoch counter or a runtime says nothing). `train/epoch_loss` is a loss."""
    tokens = [t for t in _TOKENS.split(name.lower()) if t]
    if not tokens or tokens[-1] in _RECIPE_LAST or "lr" in tokens:
        return False
    return not re.fullmatch(r"pg\d+", tokens[-1])


def _fingerprints(values: np.ndarray) -> set[bytes]:
    """The values, as float32, that could not be equal by chance: not integers, not simple
    fractions (an accuracy of 3/4 on a small eval set is common to many runs). Steps are left out:
    writers count them differently (Ultralytics' results.csv from 1, its MLflow steps from 0)."""
    return _fingerprints_of([values])


def _fingerprints_of(samples: list[np.ndarray]) -> set[bytes]:
    """The union of the `_fingerprints` of each sample: the samples of more than 8 finite
    values are checked together (each value is judged on its own: the same verdicts, one numpy
    pass for a run's series rather than one each)."""
    out: set[bytes] = set()
    many: list[np.ndarray] = []
    for values in samples:
        with np.errstate(over="ignore"):
            v32 = values.astype(np.float32)
        v32 = v32[np.isfinite(v32)]
        if len(v32) <= 8:  # numpy's per-call cost dominates: one check per value
            out |= {v.tobytes() for v in v32 if not _simple(float(v))}
        else:
            many.append(v32)
    if many:
        values = np.concatenate(many) if len(many) > 1 else many[0]
        for i in range(0, len(values), CHECKED_AT_ONCE):
            out |= _not_simple(values[i : i + CHECKED_AT_ONCE])
    return out


def _not_simple(v32: np.ndarray) -> set[bytes]:
    """The bytes of the float32 values that are neither integers nor simple fractions."""
    v64 = v32.astype(np.float64)
    scaled = v64[:, None] * _DENOMINATORS[None, :]
    off = np.abs(scaled - np.round(scaled)) / _DENOMINATORS[None, :]
    simple = (off < 1e-6 * np.maximum(np.abs(v64), 1e-3)[:, None]).any(axis=1)
    return _each(v32[~simple])


def _each(v32: np.ndarray) -> set[bytes]:
    """The float32 values' bytes, one by one (one conversion, then slices: a numpy scalar per
    value cost most of a first load of many runs)."""
    raw = v32.tobytes()
    return {raw[i : i + 4] for i in range(0, len(raw), 4)}


def _simple(v: float) -> bool:
    """An integer or a fraction with a denominator up to 100 (as float32 shows it)."""
    from fractions import Fraction  # only when runs are compared

    f = Fraction(v).limit_denominator(100)
    return abs(float(f) - v) < 1e-6 * max(abs(v), 1e-3)


def near(a: str, b: str) -> bool:
    common = os.path.commonpath([a, b])
    depth = lambda p: 0 if p == common else p[len(common) :].count(os.sep)  # noqa: E731
    return depth(a) <= NEAR and depth(b) <= NEAR


def groups(runs: list[RunFacts]) -> list[tuple[list[str], str]]:
    """Sets of run keys that are one training, each with the evidence that joined it."""
    parent = {r.key: r.key for r in runs}
    why: dict[str, list[str]] = defaultdict(list)

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def join(a: RunFacts, b: RunFacts, reason: str) -> None:
        ra, rb = find(a.key), find(b.key)
        if ra != rb:
            parent[rb] = ra
            why[ra] += why.pop(rb, []) + [f"{a.key} + {b.key}: {reason}"]

    by_key = {r.key: r for r in runs}
    for a, b, reason in _candidates(runs):
        if near(a.root, b.root):
            join(a, b, reason)
    _join_consoles(runs, by_key, find, join)
    members: dict[str, list[str]] = defaultdict(list)
    for r in runs:
        members[find(r.key)].append(r.key)
    return [(sorted(keys), "; ".join(why[root])) for root, keys in members.items() if len(keys) > 1]


def _candidates(runs: list[RunFacts]):  # type: ignore[no-untyped-def]
    """Pairs with evidence, found through an index (linear in runs, never all pairs)."""
    by_writer: dict[tuple[str, int], list[RunFacts]] = defaultdict(list)
    for r in runs:
        if not r.consoles_only and r.writer:
            by_writer[r.writer].append(r)
    for writer, rs in by_writer.items():
        for i, a in enumerate(rs[:CROWD]):
            for b in rs[i + 1 : CROWD]:
                # one process writing two runs of one format at once is running two
                # trainings (a sweep, a demo); one training logs through different writers
                if _overlap(a.span, b.span) and not a.formats & b.formats:
                    yield (
                        a,
                        b,
                        "one writer (pid "
                        f"{writer[1]}{' on ' + writer[0] if writer[0] else ''}), same time",
                    )
    trainings = [r for r in runs if not r.consoles_only]
    if not _writers_apart(r.streams for r in trainings):
        return  # equal values join only runs of different writers: no two runs are
    by_point: dict[bytes, list[RunFacts]] = defaultdict(list)
    for r in trainings:
        for p in r.points:
            by_point[p].append(r)
    shared: dict[tuple[str, str], int] = defaultdict(int)
    for rs in by_point.values():
        if 1 < len(rs) <= CROWD:
            for i, a in enumerate(rs):
                for b in rs[i + 1 :]:
                    shared[(a.key, b.key) if a.key < b.key else (b.key, a.key)] += 1
    by_key = {r.key: r for r in runs}
    for (ka, kb), n in shared.items():
        if n >= MIN_SHARED and not by_key[ka].streams & by_key[kb].streams:
            yield by_key[ka], by_key[kb], f"{n} equal values"


def _writers_apart(stream_sets: Iterable[frozenset[str]]) -> bool:
    """Whether two of the runs share no writer (their streams are disjoint): the only pairs
    that equal values may join. Most often every run has the same writer (1,000 TensorBoard
    runs): then no run's fingerprints need working out."""
    counts = Counter(stream_sets)
    if len(counts) > MANY_WRITER_SETS:
        return True
    distinct = list(counts)
    for i, a in enumerate(distinct):
        if not a and counts[a] > 1:
            return True
        if any(not a & b for b in distinct[i + 1 :]):
            return True
    return False


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    if a is None or b is None:
        return False
    return a[0] <= b[1] and b[0] <= a[1]


def _join_consoles(runs, by_key, find, join) -> None:  # type: ignore[no-untyped-def]
    """A console standing alone joins the run whose values it printed, or else the single
    training in its own folder (the run's files appeared after it), or else the single training
    in the folders below its own."""
    trainings = [r for r in runs if not r.consoles_only]
    for c in runs:
        if not c.consoles_only:
            continue
        near_runs = [r for r in trainings if _under(r.root, c.root) or _under(c.root, r.root)]
        printed = [(printed_matches(c.values, r.values), r) for r in near_runs]
        printed = [(n, r) for n, r in printed if n >= MIN_SHARED]
        if printed:
            n, best = max(printed, key=lambda nr: nr[0])
            join(best, c, f"its console, printing {n} of its values")
            continue
        # only a run of the folder itself (a TensorBoard dir, a Lightning version): a run that
        # is one file (a CSV named for itself) shares its folder with other trainings
        here = {find(r.key) for r in near_runs if r.root == c.root and _names_its_folder(r)}
        if len(here) == 1:  # found before the run's files (a log opened before the imports):
            # discovery attaches a console to the run of its folder; the same, found later
            join(by_key[next(iter(here))], c, "its console, in the same folder")
            continue
        below = {find(r.key) for r in near_runs if r.root != c.root and _under(r.root, c.root)}
        if len(below) == 1 and not here:
            join(by_key[next(iter(below))], c, "its console, in the folder above it")


def _names_its_folder(r: RunFacts) -> bool:
    """The run is its folder (its key ends with the folder's name), not a file in it."""
    return os.path.basename(r.key.rstrip("/")) == os.path.basename(r.root.rstrip(os.sep))


def printed_matches(printed: np.ndarray, exact: np.ndarray) -> int:
    """How many distinct values a console printed (rounded to the decimals it shows) are values
    of the other run rounded the same way; simple fractions and integers do not count."""
    if not len(printed) or not len(exact):
        return 0
    shown = {float(v) for v in printed if v == v and abs(v) < 1e15}
    found = 0
    by_decimals: dict[int, set[float]] = {}
    for v in shown:
        if not _fingerprints(np.array([v])):
            continue
        d = _decimals(v)
        if d < 2:
            continue
        if d not in by_decimals:
            by_decimals[d] = {round(float(w), d) for w in exact if w == w}
        found += v in by_decimals[d]
    return found


def _decimals(v: float) -> int:
    text = repr(v)
    if "e" in text or "." not in text:
        return 0
    return len(text.split(".")[1])


def _under(root: str, d: str) -> bool:
    if root == d:
        return True
    if not root.startswith(d.rstrip(os.sep) + os.sep):
        return False
    return root[len(d) :].count(os.sep) <= NEAR


def duplicates(
    run: Run, streams: dict[str, str], richness: Callable[[str], int] = lambda s: 0
) -> dict[str, str]:
    """{dropped series: kept series}: series of different writers that are one metric: equal
    (as float32) at every common step, at least MIN_SHARED of them, or, where the writers count
    steps differently, most of the shorter one's values found in the other. Kept: the one whose
    name says what it is (`loss` over an author's `train` column), then the one from the richer
    writer (so a run's series come from one writer where they can, counting steps one way:
    Ultralytics' results.csv from 1, its MLflow copy from 0), then the one with more points,
    then the shorter name."""
    names = [n for n in run.series if comparable(n) and len(run.series[n])]
    prints = {n: _fingerprints(run.series[n].values) for n in names}
    out: dict[str, str] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if a in out or b in out or streams.get(a) == streams.get(b):
                continue
            if not (_aligned(run.series[a], run.series[b]) or _same_values(prints[a], prints[b])):
                continue
            keep, drop = sorted(
                (a, b),
                key=lambda n: (
                    role_of(n).kind == "other",
                    -richness(streams.get(n, "")),
                    -len(run.series[n]),
                    len(n),
                    n,
                ),
            )
            out[drop] = keep
    return out


def _same_values(a: set[bytes], b: set[bytes]) -> bool:
    shared = len(a & b)
    return shared >= MIN_SHARED and shared >= 0.8 * min(len(a), len(b))


def _aligned(a, b) -> bool:  # type: ignore[no-untyped-def]
    common, ia, ib = np.intersect1d(a.steps, b.steps, return_indices=True)
    if len(common) < MIN_SHARED:
        return False
    with np.errstate(over="ignore"):
        va, vb = a.values[ia].astype(np.float32), b.values[ib].astype(np.float32)
    return bool(np.all((va == vb) | (np.isnan(va) & np.isnan(vb))))

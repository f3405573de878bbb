"""Detector quality on labelled runs, as a user meets it: `check` over every labelled run.

The labelled set is ../shared/reallogs2/<dir> (labels.json) and ../shared/reallogs/<dir>
(benchmarks/reallogs_labels.json, read from its SOURCES.md). For each run directory the engine
reads everything and judges it as `watchrun check` does; then, per detector:

- a call: an alert (any severity) from the labelled detector (a label "a|b" takes either);
  "(info)" counts the calls made at info severity only;
- a miss: a labelled detector that raised nothing;
- a false alarm: a warning or critical on a run labelled healthy, or from a detector that is not
  among the run's labels (info is context, never a false alarm);
- lead/lag: the step of the first call minus the label's `call_at` (negative = earlier), in the
  label's unit (an alert in steps is turned into epochs through the run's `epoch` series).

Directories watchrun does not read at all show as "not read".

    python benchmarks/detection.py [--shared DIR] [--runs]     per-run lines with --runs
    python benchmarks/detection.py --sweeps [N]                 the simulated sweeps instead
    ... --alerts FILE      also write every alert (run, detector, severity, step, open, message,
                           evidence) as sorted JSON lines: a change meant to keep the alerts
                           (a speed-up) is checked with `diff` of two such files
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from watchrun.engine import Engine  # noqa: E402
from watchrun.model import Alert, Severity  # noqa: E402

SHARED = ROOT.parent / "shared"
REALLOGS_LABELS = Path(__file__).resolve().parent / "reallogs_labels.json"
_AT = re.compile(r"(step|epoch)\s*~?\s*(\d+(?:\.\d+)?)", re.I)


@dataclass
class Labelled:
    """One labelled run directory."""

    set: str
    name: str
    path: Path
    labels: list[str]  # detector ids; "a|b" accepts either; ["healthy"] for a healthy run
    confidence: dict[str, str]
    step_unit: str
    call_at: dict[str, float]

    @property
    def healthy(self) -> bool:
        return self.labels == ["healthy"]

    @property
    def accepted(self) -> set[str]:
        return {d for label in self.labels for d in label.split("|")} - {"healthy"}


@dataclass
class Outcome:
    item: Labelled
    runs: list[str]
    alerts: list[Alert]
    steps_in_label_unit: dict[int, float] = field(default_factory=dict)  # id(alert) -> step

    @property
    def read(self) -> bool:
        return bool(self.runs)

    def step(self, a: Alert) -> float:
        return self.steps_in_label_unit.get(id(a), float(a.step))

    def calls(self, label: str) -> list[Alert]:
        ids = set(label.split("|"))
        return sorted((a for a in self.alerts if a.detector in ids), key=self.step)

    def false_alarms(self) -> list[Alert]:
        return [
            a
            for a in self.alerts
            if a.severity is not Severity.INFO and a.detector not in self.item.accepted
        ]


# -- labels ---------------------------------------------------------------------------------------
def parse_call_at(text: str | dict | None, labels: list[str]) -> dict[str, float]:
    """`call_at` as {label: first step}: a dict per label, or a string of parts
    "name: epoch 14 (...)" (the name a prefix of the label, "early stop" for early_stopped), a
    part that starts with the label ("overfitting from ~epoch 26"), or one unnamed part for every
    other label."""
    if not text:
        return {}
    parts = text.items() if isinstance(text, dict) else [_split_part(p) for p in text.split(";")]
    out: dict[str, float] = {}
    default = None
    for name, rest in parts:
        m = _AT.search(rest)
        if not m:
            continue
        at = float(m.group(2))
        label = _label_named(name, labels) if name else _label_named(rest.split(" ")[0], labels)
        if label:
            out.setdefault(label, at)
        elif not name and default is None:
            default = at
    if default is not None:
        for label in labels:
            out.setdefault(label, default)
    return out


def _split_part(part: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z_][A-Za-z_ |]*?):\s*(.*)$", part)
    return (m.group(1), m.group(2)) if m else ("", part.strip())


def _label_named(name: str, labels: list[str]) -> str | None:
    key = re.sub(r"\W+", "_", name.strip().lower()).strip("_")
    if len(key) < 4:
        return None
    for label in labels:
        if label == key or any(d.startswith(key) or key.startswith(d) for d in label.split("|")):
            return label
    return None


def _confidence(raw: str | dict, labels: list[str]) -> dict[str, str]:
    return dict(raw) if isinstance(raw, dict) else {label: raw for label in labels}


def load_labels(shared: Path = SHARED) -> list[Labelled]:
    """Every labelled run directory present under `shared`."""
    out: list[Labelled] = []
    sources = [("reallogs2", shared / "reallogs2" / "labels.json"), ("reallogs", REALLOGS_LABELS)]
    for set_name, file in sources:
        base = shared / set_name
        if not file.exists() or not base.is_dir():
            continue
        for name, entry in json.loads(file.read_text()).items():
            if name.startswith("_") or not (base / name).exists():
                continue
            labels = list(entry["label"])
            out.append(
                Labelled(
                    set_name,
                    name,
                    base / name,
                    labels,
                    _confidence(entry["confidence"], labels),
                    entry.get("step_unit", "step"),
                    parse_call_at(entry.get("call_at"), labels),
                )
            )
    return out


# -- judging --------------------------------------------------------------------------------------
def judge(item: Labelled) -> Outcome:
    """Run the engine as `watchrun check` does and collect every alert of every run found."""
    engine = Engine([str(item.path)], use_watchdog=False)
    engine.check()
    keys = engine.visible_keys()
    alerts = [a for k in keys for a in engine.store.alerts_for(k)]
    out = Outcome(item, keys, alerts)
    for a in alerts:
        run = engine.store.runs[a.run]
        if item.step_unit == "epoch" and run.step_unit != "epoch" and "epoch" in run.series:
            s = run.series["epoch"]
            i = int(s.steps.searchsorted(a.step, side="right")) - 1
            if i >= 0:
                out.steps_in_label_unit[id(a)] = round(float(s.values[i]), 2)
    record_alerts(out)
    return out


ALERT_LINES: list[str] = []  # --alerts: one JSON line per alert of every judged run


def record_alerts(o: Outcome) -> None:
    for a in o.alerts:
        line = dict(a.to_json(), open=a.open, set=o.item.set, name=o.item.name)
        ALERT_LINES.append(json.dumps(line, sort_keys=True, default=str))


# -- report ---------------------------------------------------------------------------------------
@dataclass
class Row:
    labelled: int = 0
    called: int = 0
    info_only: int = 0  # called, but only at info severity
    missed: int = 0
    false: int = 0
    lags: list[float] = field(default_factory=list)


def tally(outcomes: list[Outcome]) -> dict[str, Row]:
    rows: dict[str, Row] = defaultdict(Row)
    for o in outcomes:
        if not o.read:
            continue
        for label in o.item.labels:
            if label == "healthy":
                continue
            row = rows[label]
            row.labelled += 1
            calls = o.calls(label)
            if calls:
                row.called += 1
                row.info_only += all(a.severity is Severity.INFO for a in calls)
                if label in o.item.call_at:
                    row.lags.append(o.step(calls[0]) - o.item.call_at[label])
            else:
                row.missed += 1
        for a in o.false_alarms():
            rows[a.detector].false += 1
    return rows


def _lag_text(lags: list[float]) -> str:
    if not lags:
        return "-"
    return " ".join(f"{x:+g}" for x in sorted(lags))


def print_table(rows: dict[str, Row]) -> None:
    print(
        f"{'detector':<48} {'labels':>6} {'called':>6} {'(info)':>6} {'missed':>6} {'false':>5}"
        "  lead(-)/lag(+) vs call_at"
    )
    for name in sorted(rows):
        r = rows[name]
        print(
            f"{name:<48} {r.labelled:>6} {r.called:>6} {r.info_only:>6} {r.missed:>6} {r.false:>5}"
            f"  {_lag_text(r.lags)}"
        )


def run_line(o: Outcome) -> str:
    it = o.item
    head = f"{it.set}/{it.name}"
    if not o.read:
        return f"{head}: NOT READ (no run found)  labels: {', '.join(it.labels)}"
    parts = []
    for label in it.labels:
        if label == "healthy":
            continue
        calls = o.calls(label)
        conf = it.confidence.get(label, "?")[0]
        if calls:
            a = calls[0]
            at = it.call_at.get(label)
            parts.append(
                f"+{label}[{conf}] {a.severity.value}@{o.step(a):g}"
                + (f" (call_at {at:g})" if at is not None else "")
            )
        else:
            parts.append(f"-{label}[{conf}] missed")
    falses = [f"{a.detector} {a.severity.value}@{o.step(a):g}" for a in o.false_alarms()]
    if it.healthy:
        parts.append("healthy")
    if falses:
        parts.append("FALSE: " + ", ".join(falses))
    return f"{head}: " + "; ".join(parts)


def totals(outcomes: list[Outcome]) -> dict[str, tuple[int, int]]:
    read = [o for o in outcomes if o.read]
    healthy = [o for o in read if o.item.healthy]
    high = [
        (o, lab)
        for o in read
        for lab in o.item.labels
        if lab != "healthy" and o.item.confidence.get(lab) == "high"
    ]
    every = [(o, lab) for o in read for lab in o.item.labels if lab != "healthy"]
    return {
        "runs read": (len(read), len(outcomes)),
        "healthy runs with 0 false alarms": (
            sum(not o.false_alarms() for o in healthy),
            len(healthy),
        ),
        "labelled-failure runs with 0 false alarms": (
            sum(not o.false_alarms() for o in read if not o.item.healthy),
            sum(not o.item.healthy for o in read),
        ),
        "high-confidence labels called": (sum(bool(o.calls(lab)) for o, lab in high), len(high)),
        "all labels called": (sum(bool(o.calls(lab)) for o, lab in every), len(every)),
    }


def print_totals(tot: dict[str, tuple[int, int]]) -> None:
    for name, (k, n) in tot.items():
        share = f"{100 * k / n:.0f}%" if n else "-"
        print(f"  {name:<44} {k:>3}/{n:<3} {share:>5}")


def labelled_report(shared: Path, per_run: bool) -> list[Outcome]:
    items = load_labels(shared)
    if not items:
        print(f"no labelled runs under {shared}")
        return []
    outcomes = [judge(it) for it in items]
    print_table(tally(outcomes))
    print()
    print_totals(totals(outcomes))
    missing = [o.item for o in outcomes if not o.read]
    if missing:
        print(f"  not read: {', '.join(f'{i.set}/{i.name}' for i in missing)}")
    if per_run:
        print()
        for o in outcomes:
            print(run_line(o))
    return outcomes


# -- simulated sweeps -----------------------------------------------------------------------------
def sweeps_report(n: int) -> None:
    """The simulated runs of tests/unit/test_sweeps.py and test_scenarios.py, drawn `n` at a
    time: healthy ones (every warning is a false alarm) and overfitting ones (must be called)."""
    from tests.unit.test_scenarios import HEALTHY, write
    from tests.unit.test_sweeps import healthy, healthy_params, overfitting, overfitting_params

    rng = random.Random(2026)
    rows: dict[str, Row] = defaultdict(Row)
    healthy_clean = healthy_total = 0
    with tempfile.TemporaryDirectory() as tmp:
        cases: list[tuple[str, object, str, list[str]]] = []
        for i in range(n):
            p = healthy_params(rng)
            cases.append((f"h{i}", healthy(*p), p[0], ["healthy"]))
            q = overfitting_params(rng)
            cases.append((f"o{i}", overfitting(*q), q[0], ["overfitting"]))
        for name, (gen, kind) in sorted(HEALTHY.items()):
            for seed in range(3):
                cases.append((f"{name}-{seed}", gen, kind, ["healthy"]))
        for name, gen, kind, labels in cases:
            path = Path(tmp) / name
            write(path, gen, kind, rng.randrange(1000))
            item = Labelled("sim", name, path, labels, {lab: "high" for lab in labels}, "step", {})
            o = judge(item)
            if item.healthy:
                healthy_total += 1
                healthy_clean += not o.false_alarms()
            for label in labels:
                if label != "healthy":
                    rows[label].labelled += 1
                    if o.calls(label):
                        rows[label].called += 1
                    else:
                        rows[label].missed += 1
            for a in o.false_alarms():
                rows[a.detector].false += 1
    print_table(rows)
    print()
    print(f"  healthy simulated runs with 0 false alarms  {healthy_clean:>3}/{healthy_total}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--shared", type=Path, default=SHARED, help="the shared folder (default ../shared)"
    )
    ap.add_argument("--runs", action="store_true", help="one line per labelled run")
    ap.add_argument(
        "--sweeps",
        type=int,
        nargs="?",
        const=40,
        metavar="N",
        help="the simulated sweeps instead: N healthy and N overfitting runs",
    )
    ap.add_argument("--alerts", type=Path, metavar="FILE", help="write every alert to FILE")
    args = ap.parse_args()
    if args.sweeps:
        sweeps_report(args.sweeps)
    else:
        labelled_report(args.shared, args.runs)
    if args.alerts:
        args.alerts.write_text("".join(line + "\n" for line in sorted(ALERT_LINES)))


if __name__ == "__main__":
    main()

"""Feed each run's settled points to its detectors, segment by segment; keep alert episodes.

Settling: a point is handed to the detectors once a point with a higher step has arrived in any
metric of the run (so the train loss and the eval metrics of one step are seen together, however
the files were interleaved), or when the run has been quiet for `settle_seconds`, or at the end of a
batch read. Segments: when steps go backwards (a resumed run, a Keras CSV appended by another
fit()), the detectors finish the old segment, a `restarted` alert is raised, and fresh detectors
start on the new segment.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from watchrun.config import Config, run_targets
from watchrun.control import runs_with_live_writer, writer_alive
from watchrun.detectors import ALL_DETECTORS
from watchrun.detectors.base import Detector, RunView, SeriesView
from watchrun.model import ENDED, Alert, Run, RunStatus, Severity, stale_limit, typical_interval
from watchrun.semantics import Role, promote_test_to_val, role_of
from watchrun.store import Store

# shares that logs write as fractions or as percentages (timm's eval_top1 = 76.1, HF speech
# recipes' 100 * wer); detectors judge them as fractions. The value above which a first log means
# percent: a score or a blank share is at most 1 as a fraction; a WER fraction can pass 1
# (insertions), rarely 5.
PERCENT_ABOVE = {
    "accuracy": 1.0,
    "topk_accuracy": 1.0,
    "f1": 1.0,
    "precision": 1.0,
    "recall": 1.0,
    "auc": 1.0,
    "blank_ratio": 1.0,
    "wer": 5.0,
    "cer": 5.0,
}


def _in_percent(values: np.ndarray, above: float) -> bool:
    """Decided on the first finite value, so that a run read live and read at once agree."""
    head = values[:64]
    fin = head[np.isfinite(head)]
    return bool(len(fin)) and float(fin[0]) > above and (above > 1.0 or float(fin[0]) <= 100.0)


@dataclass
class _RunState:
    detectors: list[Detector]
    round: int = 0
    cursors: dict[str, int] = field(default_factory=dict)  # absolute index processed
    version: int = -1
    finalized: bool = False
    final_points: int = 0  # the run's points when it was last finalized
    open_alerts: dict[tuple[str, str], Alert] = field(default_factory=dict)
    stalled_open: bool = False
    quiet_judged: bool = False  # the current silence has been judged (hang or end)
    fired: set[tuple[str, str]] = field(default_factory=set)
    targets: list | None = None
    roles_of: tuple[str, ...] = ()  # the metrics `roles` were worked out for
    roles: tuple[dict[str, Role], bool] = ({}, False)
    percent: dict[str, bool] = field(default_factory=dict)  # metric -> logged in percent
    seen: tuple = ()  # (metrics, run.updates, no alert opened or closed) at the last pass
    closed: bool = False  # an alert was closed since the last pass


class DetectorRunner:
    def __init__(self, store: Store, config: Config, watch_roots: list[str] | None = None) -> None:
        self.store = store
        store.held = True  # history is bounded only behind what the detectors have seen
        self.config = config
        self.watch_roots = watch_roots or []
        self.states: dict[str, _RunState] = {}
        self.ended_now: set[str] = set()  # runs a batch verdict judges as ended (no live writer)
        self.failed: set[tuple[str, str]] = set()  # (run, detector) that raised: left out since
        self.failures: list[str] = []  # their messages, for the caller to show (take_failures)

    def _new_detectors(self, key: str) -> list[Detector]:
        return [
            cls(key, self.config)
            for cls in ALL_DETECTORS
            if self.config.enabled(cls.id) and (key, cls.id) not in self.failed
        ]

    def _call(self, det: Detector, method: str, run: Run, state: _RunState, view: RunView) -> None:
        """det.update(view) or det.finalize(view); a detector that raises is reported once and
        left out for this run (its state is unknown), and the other detectors go on."""
        try:
            getattr(det, method)(view)
        except Exception as exc:  # noqa: BLE001 - one broken detector must not stop the rest
            self.failed.add((run.key, det.id))
            state.detectors = [d for d in state.detectors if d is not det]
            message = f"detector {det.id} failed on run {run.key}: {type(exc).__name__}: {exc}"
            self.failures.append(message)
            self.store.warn(run.key, message)

    def take_failures(self) -> list[str]:
        """Detector failures not yet shown, once each."""
        out, self.failures = self.failures, []
        return out

    def process(self, final: bool = False, keys: list[str] | None = None) -> list[Alert]:
        """Feed the new settled points of every run (or of `keys`) to its detectors."""
        new_alerts: list[Alert] = []
        with self.store.lock:
            runs = self.store.runs
            for key, run in (
                [(k, runs[k]) for k in keys if k in runs]
                if keys is not None
                else list(runs.items())
            ):
                state = self.states.get(key)
                if state is None:
                    state = self.states[key] = _RunState(self._new_detectors(key))
                if state.version == run.version and not final:
                    continue
                new_alerts += self._process_run(run, state, final)
                state.version = run.version
                if self.store.bounded:
                    self._bound(run, state)
        return new_alerts

    def finalized_all(self) -> bool:
        """Every run has had its end-of-run checks (tests wait on this, not on a clock)."""
        with self.store.lock:
            return all(k in self.states and self.states[k].finalized for k in self.store.runs)

    def _process_run(self, run: Run, state: _RunState, final: bool) -> list[Alert]:
        out: list[Alert] = []
        if state.targets is None:
            state.targets = list(self.config.targets)
            for root in self.watch_roots:
                if run.root.startswith(root):
                    state.targets += run_targets(run.root, root)
        max_round = max((len(s.segments) for s in run.series.values()), default=1) - 1
        while True:
            last_round = state.round >= max_round
            view = self._view(run, state, settle_all=final or not last_round)
            if view.series and not self._nothing_new(run, state, view):
                found = len(out)
                for det in list(state.detectors):
                    self._call(det, "update", run, state, view)
                    out += self._collect(run, state, view, det)
                state.seen = (
                    tuple(view.series),
                    run.updates,
                    len(out) == found and not state.closed,
                )
                state.closed = False
            if last_round:
                break
            out += self._restart(run, state)
        ended = final and (run.status in ENDED or run.key in self.ended_now)
        if state.finalized and run.points() != state.final_points:
            state.finalized = False  # points read after the end (a final state file written last)
        if ended and not state.finalized:
            view = self._view(run, state, settle_all=True, advance=False)
            view.ended = True
            for det in list(state.detectors):
                self._call(det, "finalize", run, state, view)
                out += self._collect(run, state, view, det)
            state.finalized = True
            state.final_points = run.points()
        elif run.status not in ENDED and run.key not in self.ended_now:
            state.finalized = False
        return out

    def _view(self, run: Run, state: _RunState, settle_all: bool, advance: bool = True) -> RunView:
        r = state.round
        parts: dict[str, tuple[np.ndarray, np.ndarray, int, int, int]] = {}
        frontier: int | None = None  # the highest last step of the series (None: no points)
        for name, s in run.series.items():
            segments = s.segments
            if len(segments) <= r:
                continue
            start = segments[r]
            end = segments[r + 1] if len(segments) > r + 1 else s.n
            if end <= start:
                continue
            steps = s.steps[start:end]
            last = int(steps[-1])
            parts[name] = (steps, s.values[start:end], start, s.dropped, last)
            if frontier is None or last > frontier:
                frontier = last
        series: dict[str, SeriesView] = {}
        roles, test_as_val = self._roles(state, tuple(parts))
        cursors = state.cursors
        for name, (steps, values, start, dropped, last) in parts.items():
            role = roles[name]
            if self._percent(state, run, name, role.kind):
                values = values / 100.0
            settled = (
                len(steps)
                if settle_all or frontier is None or last < frontier  # all below it: settled
                else int(steps.searchsorted(frontier, side="left"))
            )
            # cursors count every point, those a bounded store dropped too: see _bound
            cursor = max(cursors.get(name, start + dropped) - dropped, start)
            series[name] = SeriesView(
                name,
                role,
                steps[:settled],
                values[:settled],
                min(cursor - start, settled),
                start,
            )
            if advance:
                cursors[name] = max(cursor, start + settled) + dropped
        view = RunView(run, series, self.config, list(state.targets or []), test_as_val=test_as_val)
        view.fired = {det for det, _ in state.fired}
        for (det, _), a in state.open_alerts.items():
            if det != "stuck_metric":
                view.claim(a)
        return view

    def _roles(self, state: _RunState, names: tuple[str, ...]) -> tuple[dict[str, Role], bool]:
        """The metrics' roles (test metrics promoted when no validation metric is logged),
        worked out again only when the run's metrics change."""
        if state.roles_of != names:
            roles = {name: role_of(name, self.config.aliases) for name in names}
            state.roles_of, state.roles = names, (roles, promote_test_to_val(roles))
        return state.roles

    @staticmethod
    def _percent(state: _RunState, run: Run, name: str, kind: str) -> bool:
        """A share logged in percent (decided on the series' first finite value, kept)."""
        known = state.percent.get(name)
        if known is not None:
            return known
        above = PERCENT_ABOVE.get(kind)
        if above is None:
            return False
        values = run.series[name].values
        decided = _in_percent(values, above)
        if decided or len(values) >= 64 or np.isfinite(values).any():
            state.percent[name] = decided  # the first 64 points are never bounded away
        return decided

    @staticmethod
    def _nothing_new(run: Run, state: _RunState, view: RunView) -> bool:
        """Nothing a detector's update could act on since the last pass: no point settled, the
        same metrics, no hparams or meta changed, and that pass opened or closed no alert (so
        every detector saw the claims it would see now). Each update judges only new points
        (or, for not_learning's trend, the same points with the same claims: the same verdict),
        so the pass is skipped: a live read that settles nothing costs no detector work."""
        if any(sv.new_from < len(sv.steps) for sv in view.series.values()):
            return False
        return state.seen == (tuple(view.series), run.updates, True)

    def _bound(self, run: Run, state: _RunState) -> None:
        """Reduce the history the detectors have seen (a bounded store). Cursors are kept as
        index + points dropped, which reducing history behind them leaves unchanged."""
        for name, s in run.series.items():
            if len(s.segments) == state.round + 1 and name in state.cursors:
                s.bound(upto=state.cursors[name] - s.dropped)

    def _restart(self, run: Run, state: _RunState) -> list[Alert]:
        r = state.round
        prev_last, new_first = None, None
        for s in run.series.values():
            if len(s.segments) > r + 1:
                i = s.segments[r + 1]
                if new_first is None:
                    new_first, prev_last = int(s.steps[i]), int(s.steps[i - 1])
        state.round += 1
        state.detectors = self._new_detectors(run.key)
        state.fired = set()
        for (det, key), alert in list(state.open_alerts.items()):
            alert.open = False
            del state.open_alerts[(det, key)]
        alert = Alert(
            run.key,
            "restarted",
            Severity.INFO,
            new_first or 0,
            [],
            f"steps went back from {prev_last} to {new_first}: resumed or appended run "
            f"(segment {state.round + 1})",
            {
                "previous_last_step": prev_last,
                "new_first_step": new_first,
                "segment": state.round + 1,
            },
            "nothing to do if this run was resumed on purpose; "
            "detectors restart on the new segment",
        )
        alert.open = False
        self.store.add_alert(alert)
        return [alert]

    def _collect(self, run: Run, state: _RunState, view: RunView, det: Detector) -> list[Alert]:
        """Record the findings of the detector just called (only a call makes findings); later
        detectors in this pass see the new claims."""
        out = []
        if det.findings and (run.key, det.id) not in self.failed:  # a failed one's are void
            for finding in det.take():
                slot = (det.id, finding.key)
                if finding.alert is None:
                    old = state.open_alerts.pop(slot, None)
                    if old is not None:
                        old.open = False
                        state.closed = True
                        self.store.touch(run.key)
                    continue
                state.open_alerts[slot] = finding.alert
                state.fired.add(slot)
                self.store.add_alert(finding.alert)
                out.append(finding.alert)
                view.fired.add(det.id)
                if det.id != "stuck_metric":
                    view.claim(finding.alert)
        return out

    # -- not step-driven ----------------------------------------------------------------------
    def check_stalled(self, now: float | None = None) -> list[Alert]:
        """Runs seen writing in this session that went silent for much longer than usual while
        their writer still lives (a hang), against a usual interval measured from several
        writes. A run whose writer is gone, or that no process is known to write, has ended: it
        gets its end-of-run checks, as in a batch verdict, and no `stalled` warning."""
        now = now or time.time()
        out: list[Alert] = []
        if not self.config.enabled("stalled"):
            return out
        with self.store.lock:
            for key, run in self.store.runs.items():
                state = self.states.get(key)
                if state is None or not run.active_this_session or run.explicit_status is not None:
                    continue
                if run.status in NOT_STALLED or len(run.write_intervals) < MIN_INTERVALS:
                    continue
                silent = now - run.last_write
                limit = stale_limit(run, self.config)
                if silent > limit and not state.stalled_open and not state.quiet_judged:
                    state.quiet_judged = True
                    if not _writer_lives(run):
                        continue
                    state.stalled_open = True
                    alert = _stalled_alert(run, silent, now)
                    state.open_alerts[("stalled", "")] = alert
                    self.store.add_alert(alert)
                    out.append(alert)
                elif silent <= limit and (state.stalled_open or state.quiet_judged):
                    state.stalled_open = state.quiet_judged = False
                    old = state.open_alerts.pop(("stalled", ""), None)
                    if old:
                        old.open = False
        return out


def _stalled_alert(run: Run, silent: float, now: float) -> Alert:
    """The stalled alert, with what the process and GPU sampler saw when it has samples."""
    from watchrun.detectors.gpu import stall_evidence

    message = (
        f"no write for {duration(silent)} (usually every {duration(typical_interval(run))}): "
        "the process may have crashed or hung"
    )
    evidence: dict = {
        "silent_seconds": round(silent),
        "typical_interval": typical_interval(run),
        "pid": run.pid,
        "pid_alive": pid_alive(run.pid, run.host),
    }
    action = "check the process and its console (GPU OOM, NCCL hang, full disk)"
    seen = stall_evidence(run, now)
    if seen is not None:
        message += f"; {seen.message}"
        action = seen.action
        evidence.update(seen.evidence, verdict=seen.verdict)
    return Alert(
        run.key, "stalled", Severity.WARNING, run.last_step() or 0, [], message, evidence, action
    )


NOT_STALLED = {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.GONE}
MIN_INTERVALS = 2  # gaps between writes seen before a run has a "usual" interval


def duration(seconds: float) -> str:
    """0.4s, 12s, 3 min, 2.5 h."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _writer_lives(run: Run) -> bool:
    """The run's process (its recorded pid, or one holding its files open) is still alive, as
    batch `check` judges it (runs_with_live_writer): a writer on another host is not seen."""
    alive = writer_alive(run)  # verified: a reused pid is not the writer
    if alive is not None:
        return alive
    return run.key in runs_with_live_writer([run])


def pid_alive(pid: int | None, host: str | None) -> bool | None:
    if pid is None:
        return None
    import socket

    if host and host.split(".")[0] != socket.gethostname().split(".")[0]:
        return None
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

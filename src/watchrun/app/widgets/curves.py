"""The Curves tab: losses on top, the task metrics below, for the selected run."""

from __future__ import annotations

from typing import Any

import numpy as np
from textual.app import ComposeResult
from textual.containers import Vertical

from watchrun.app.plotting import Curve, Figure
from watchrun.app.theme import Palette
from watchrun.app.widgets.plot import Plot
from watchrun.model import is_sampled
from watchrun.semantics import pick, role_of
from watchrun.snapshot import RunView, SeriesView

X_KINDS = ("step", "epoch", "time")
SMOOTH_ALPHA = 0.9


def loss_names(names: list[str], aliases: dict[str, str]) -> list[str]:
    found = [
        n for n in (pick(names, "train", "loss", aliases), pick(names, "val", "loss", aliases)) if n
    ]
    return found or [n for n in names if role_of(n, aliases).kind == "loss"][:2]


def metric_names(names: list[str], losses: list[str], aliases: dict[str, str]) -> list[str]:
    """The task metrics for the lower plot: validation/test quality first, else whatever the
    logs hold but losses, runtimes and epochs; never the process and GPU samples (the Process
    tab draws those)."""
    names = [n for n in names if not is_sampled(n)]
    roles = {n: role_of(n, aliases) for n in names}
    key = [
        n
        for n in names
        if roles[n].split in ("val", "test")
        and roles[n].is_quality
        and roles[n].kind != "loss"
        and roles[n].cls is None
    ]
    if not key:
        key = [
            n
            for n in names
            if n not in losses
            and roles[n].kind not in ("runtime", "epoch")
            and roles[n].cls is None
        ]
    return key[:3]


def ema(y: np.ndarray, alpha: float = SMOOTH_ALPHA) -> np.ndarray:
    """Exponential smoothing that steps over NaN/inf (they stay where they were)."""
    out = np.array(y, dtype=np.float64)
    acc = np.nan
    for i, v in enumerate(out):
        if np.isfinite(v):
            acc = v if np.isnan(acc) else alpha * acc + (1 - alpha) * v
            out[i] = acc
    return out


def run_start(run: RunView) -> float:
    """The wall time of the run's first point, whatever series it is in: the time axis's 0
    for every curve (a first eval logged ten minutes in is drawn ten minutes in)."""
    firsts = [s.first_wall for s in run.series.values() if len(s.wall_offsets)]
    return min(firsts) if firsts else 0.0


def has_wall_times(run: RunView) -> bool:
    """Whether the run's points carry wall times that differ: a console or a CSV read whole
    has none of its own (every point gets the time it was read), a time axis would draw it at
    one instant."""
    for s in run.series.values():
        walls = s.wall_offsets[np.isfinite(s.wall_offsets)]  # a NaN wall time says nothing
        if len(walls) > 1 and walls.max() > walls.min():
            return True
    return False


def x_kind_for(run: RunView, kind: str) -> str:
    """The x axis drawn for `kind`: steps where the run has no wall times for a time axis."""
    return "step" if kind == "time" and not has_wall_times(run) else kind


def x_values(run: RunView, s: SeriesView, kind: str) -> np.ndarray:
    if kind == "time":
        return s.walls - run_start(run) if len(s.walls) else s.walls
    return steps_to_x(run, s.steps, kind, s)


def steps_to_x(
    run: RunView, steps: np.ndarray, kind: str, ref: SeriesView | None = None
) -> np.ndarray:
    """Where steps (an alert's, a best point's) lie on an x axis of `kind`: epochs from the
    run's epoch series, times from the steps and wall times of `ref`."""
    steps = np.asarray(steps, dtype=np.float64)
    if kind == "time":
        if ref is None or len(ref.steps) < 1 or len(ref.walls) != len(ref.steps):
            return np.full(len(steps), np.nan)
        order = np.argsort(ref.steps, kind="stable")
        return np.interp(steps, ref.steps[order], ref.walls[order] - run_start(run))
    epoch = run.series.get("epoch")
    if kind == "epoch" and epoch is not None and len(epoch.steps) > 1 and run.step_unit != "epoch":
        order = np.argsort(epoch.steps, kind="stable")
        return np.interp(steps, epoch.steps[order], epoch.values[order])
    return steps


def figure_for(
    run: RunView,
    names: list[str],
    palette: Palette,
    *,
    x_kind: str = "step",
    smooth: bool = False,
    log_y: bool = False,
    ascii_only: bool = False,
    aliases: dict[str, str] | None = None,
    offset: int = 0,
) -> Figure:
    """A figure of `names` in `run`: the raw curves faint behind smoothed ones when smoothing."""
    aliases = aliases or {}
    x_kind = x_kind_for(run, x_kind)
    curves, faint = [], []
    nonfinite: list[float] = []
    ref: SeriesView | None = None  # the first curve's series: steps to times for the alerts
    for i, name in enumerate(names):
        s = run.series.get(name)
        if s is None or not len(s.steps):
            continue
        x = x_values(run, s, x_kind)
        color = palette.plot[(i + offset) % len(palette.plot)]
        hb = role_of(name, aliases).higher_better
        best_step = None if hb is None else (s.best_high if hb else s.best_low)
        best = None
        if best_step is not None:  # the star where the best point lies on this x axis
            best_x = float(steps_to_x(run, np.array([best_step[0]]), x_kind, s)[0])
            best = (best_x, best_step[1]) if np.isfinite(best_x) else None
        y = s.values
        bad = ~np.isfinite(y)
        if bad.any():
            nonfinite += x[bad].tolist()
        if smooth and len(y) > 3:
            faint.append(Curve(name, x, y, palette.faint(color)))
            y = ema(y)
        curves.append(Curve(name, x, y, color, best, last=s.last, best_step=best_step))
        if ref is None:
            ref = s
    alert_steps = np.array(
        [float(a.step) for a in run.alerts if a.severity.value != "info"], dtype=np.float64
    )
    marks = tuple(float(v) for v in steps_to_x(run, alert_steps, x_kind, ref) if np.isfinite(v))
    return Figure(
        tuple(curves),
        x_kind=x_kind,
        log_y=log_y,
        marks=marks,
        mark_color=palette.warning,
        nan_color=palette.critical,
        ascii_only=ascii_only,
        faint=tuple(faint),
        nonfinite=tuple(nonfinite),
    )


def figure_key(run: RunView, names: list[str], palette: Palette, **opts: Any) -> tuple[Any, ...]:
    """What figure_for(run, names, palette, **opts) is made of: equal keys, equal figures.
    Series views compare by identity (a snapshot reuses an unchanged one)."""
    epoch = run.series.get("epoch") if opts.get("x_kind") == "epoch" else None
    marks = tuple((a.step, a.severity) for a in run.alerts)
    return (
        tuple(names),
        tuple(run.series.get(n) for n in names),
        epoch,
        marks,
        palette,
        sorted(opts.items()),
    )


class CurvesPane(Vertical):
    DEFAULT_CSS = """
    CurvesPane { height: 1fr; }
    CurvesPane > Plot { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.palette = Palette()
        self.ascii_only = False
        self.aliases: dict[str, str] = {}
        self.x_kind = "step"
        self.smooth = False
        self.log_y = False
        self.run: RunView | None = None

    def compose(self) -> ComposeResult:
        yield Plot(id="loss-plot")
        yield Plot(id="metric-plot")

    def show(self, run: RunView | None, force: bool = False) -> None:
        if run is self.run and not force:
            return
        self.run = run
        if run is None:
            return
        names = list(run.series)
        losses = loss_names(names, self.aliases)
        metrics = metric_names(names, losses, self.aliases)
        opts = dict(
            x_kind=self.x_kind,
            smooth=self.smooth,
            log_y=self.log_y,
            ascii_only=self.ascii_only,
            aliases=self.aliases,
        )
        for plot_id, names, offset in (
            ("#loss-plot", losses, 0),
            ("#metric-plot", metrics, len(losses)),
        ):
            self.query_one(plot_id, Plot).show_for(
                figure_key(run, names, self.palette, offset=offset, **opts),
                lambda names=names, offset=offset: figure_for(
                    run, names, self.palette, offset=offset, **opts
                ),
            )

    def redraw(self) -> None:
        self.show(self.run, force=True)

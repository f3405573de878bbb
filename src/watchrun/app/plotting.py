"""Curves drawn by plotext, one figure per widget, fed with decimated points.

A series is reduced to at most two points (min and max) per terminal column before plotext sees
it, so a redraw costs the same for a thousand or a million points. Axes, ticks and the second y
axis come from plotext; this module picks the ticks (numbers that read: 2k, 1.5M, 1h20m), groups
curves of different scales onto the left and right axes, and marks NaN/inf points and alert steps
with vertical lines.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import plotext
from rich.color import Color
from rich.style import Style
from rich.text import Text

from watchrun.app.text import num, to_ascii

BEST_ASCII = "@"  # the best point with --ascii: the curves themselves are drawn with "*"
LEFT_MARGIN = 8  # cells plotext takes for the y tick labels (ours are at most 6 wide)


@dataclass(frozen=True, eq=False)
class Curve:
    name: str
    x: np.ndarray
    y: np.ndarray
    color: str  # "#rrggbb"
    best: tuple[float, float] | None = None  # (x, y) of the best point: a star on the plot
    group: int = -1  # y axis: -1 decided by scale, 0 left, 1 right
    last: float | None = None  # for the readout: the raw latest value (y may be smoothed)
    best_step: tuple[float, float] | None = None  # for the readout: (step, value) of the best


@dataclass(frozen=True, eq=False)
class Figure:
    curves: tuple[Curve, ...] = ()
    x_kind: str = "step"  # step | epoch | time (seconds since the first point)
    log_y: bool = False
    marks: tuple[float, ...] = ()  # x of alerts
    mark_color: str = "#ffaf00"
    nan_color: str = "#ff5f5f"
    axis_color: str = "#808080"
    ascii_only: bool = False
    faint: tuple[Curve, ...] = ()  # raw curves drawn behind the smoothed ones
    nonfinite: tuple[float, ...] = field(default=())  # x of NaN/inf points (drawn as lines)


def decimate(x: np.ndarray, y: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite points only, at most two per each of `columns` x-buckets: the bucket's min at
    its first x and its max at its last x (a spike still reaches its height in its column)."""
    good = np.isfinite(y) & np.isfinite(x)
    if not good.all():
        x, y = x[good], y[good]
    n = len(x)
    if n <= 2 * columns or columns < 2:
        return x, y
    if np.any(np.diff(x) < 0):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    edges = np.linspace(x[0], x[-1], columns + 1)[1:-1]
    starts = np.unique(np.concatenate([[0], np.searchsorted(x, edges)]))
    starts = starts[starts < n]
    low = np.minimum.reduceat(y, starts)
    high = np.maximum.reduceat(y, starts)
    ends = np.append(starts[1:], n)
    xs = np.empty(2 * len(starts))
    ys = np.empty(2 * len(starts))
    xs[0::2] = x[starts]
    xs[1::2] = x[ends - 1]
    ys[0::2] = low
    ys[1::2] = high
    return xs, ys


_DECIMATED: OrderedDict[
    tuple[int, int, int, bool], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
] = OrderedDict()
DECIMATED_KEPT = 64  # decimated series remembered (two plots of a few runs, the overview's tiles)


def decimated(
    x: np.ndarray, y: np.ndarray, columns: int, log_y: bool
) -> tuple[np.ndarray, np.ndarray]:
    """decimate() of (x, y or its log), remembered for read-only arrays (a snapshot's series
    never change, a new version comes as new arrays): a resize, a theme or a redraw of an
    unchanged series costs no pass over its points."""
    frozen = not x.flags.writeable and not y.flags.writeable
    key = (id(x), id(y), columns, log_y)
    hit = _DECIMATED.get(key) if frozen else None
    if hit is not None and hit[0] is x and hit[1] is y:
        _DECIMATED.move_to_end(key)
        return hit[2], hit[3]
    yy = _log(y) if log_y else np.asarray(y, dtype=np.float64)
    out = decimate(np.asarray(x, dtype=np.float64), yy, columns)
    if frozen:
        _DECIMATED[key] = (x, y, *out)  # the arrays are held: their ids stay theirs
        while len(_DECIMATED) > DECIMATED_KEPT:
            _DECIMATED.popitem(last=False)
    return out


def _magnitude(y: np.ndarray, log_y: bool) -> float | None:
    """log10 of the largest |value| (for log10 values given: their largest), None if none."""
    fin = y[np.isfinite(y)]
    if not len(fin):
        return None
    if log_y:
        return float(fin.max())
    return math.log10(max(float(np.abs(fin).max()), 1e-30))


def scale_groups(
    curves: tuple[Curve, ...] | list[Curve],
    points: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    log_y: bool = False,
) -> list[int]:
    """Left (0) or right (1) axis per curve: curves whose magnitudes differ by more than 20x do
    not share an axis (a learning rate beside a gradient norm, an MSE in the hundreds beside
    an R2). The largest group keeps the left axis. `points`: each curve's decimated points by
    id, in log10 when `log_y` (they keep every extreme: the same magnitudes, fewer points)."""
    mags = []
    for c in curves:
        if points is not None and id(c) in points:
            mags.append(_magnitude(points[id(c)][1], log_y))
        else:
            mags.append(_magnitude(c.y, False))
    known = [m for m in mags if m is not None]
    if not known or max(known) - min(known) <= math.log10(20):
        return [c.group if c.group >= 0 else 0 for c in curves]
    ref = mags[0] if mags[0] is not None else known[0]
    out = []
    for c, m in zip(curves, mags, strict=True):
        if c.group >= 0:
            out.append(c.group)
        else:
            out.append(0 if m is None or abs(m - ref) <= math.log10(20) else 1)
    return out


def nice_ticks(lo: float, hi: float, count: int) -> list[float]:
    """About `count` round numbers between lo and hi (1, 2, 2.5 or 5 times a power of ten), at
    least two when the range holds two (1..85 asked for 3: 25, 50, 75, not 50 alone)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or count < 1:
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    steps = [m * power for m in (0.5, 1, 2, 2.5, 5, 10)]
    chosen = next(i for i, step in enumerate(steps) if step >= raw)
    ticks: list[float] = []
    for step in steps[chosen::-1]:  # the round step, then finer ones while < 2 ticks fit
        ticks = _ticks_every(lo, hi, step)
        if len(ticks) >= 2:
            break
    return ticks


def log_ticks(lo: float, hi: float, count: int) -> list[float]:
    """Ticks for a log10 axis spanning lo..hi (in log10): the powers of ten when two of them
    fit, else 1-2-5 times them, else 1..9 times them (0.08..0.32 reads 0.1, 0.2, 0.3), so that
    at least two labels show; every n-th one when more than `count` come."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        return []
    for mantissas in ((1,), (1, 2, 5), tuple(range(1, 10))):
        ticks = [
            k + math.log10(m)
            for k in range(math.floor(lo), math.ceil(hi) + 1)
            for m in mantissas
            if lo - 1e-9 <= k + math.log10(m) <= hi + 1e-9
        ]
        if len(ticks) >= 2:
            every = math.ceil(len(ticks) / max(count, 1))
            return ticks[::every]
    return nice_ticks(lo, hi, count)


def _ticks_every(lo: float, hi: float, step: float) -> list[float]:
    """The multiples of `step` in [lo, hi] (each k * step, so no sum drifts: 0.6, not 0.6…01)."""
    ticks: list[float] = []
    k = math.ceil(lo / step - 1e-9)
    while k * step <= hi + step * 1e-9 and len(ticks) < 50:
        v = round(k * step, 12)
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        k += 1
    return ticks


def time_label(seconds: float) -> str:
    s = int(round(seconds))
    if abs(s) < 60:
        return f"{s}s"
    if abs(s) < 3600:
        return f"{s // 60}m{s % 60:02d}" if s % 60 else f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}"


def x_label(v: float, kind: str) -> str:
    if kind == "time":
        return time_label(v)
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}" if kind == "epoch" else f"{v:.0f}"


def y_label(v: float, log_y: bool) -> str:
    return num(10**v if log_y else v, 3)


def _rgb(color: str) -> tuple[int, int, int] | str:
    if color.startswith("#") and len(color) == 7:
        return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))
    return color


def _log(y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)


def new_figure():  # type: ignore[no-untyped-def]
    """A plotext figure of its own (not the module's global one)."""
    term = type(plotext.terminal)()
    term.limit(False, False)
    return term._master


def render(fig: Figure, width: int, height: int, figure=None) -> Text:  # type: ignore[no-untyped-def]
    """The figure as Rich text of exactly `height` lines (the x axis and its labels included)."""
    curves = [c for c in fig.curves if len(c.x)]
    if width < 20 or height < 5:
        return Text("(too small)", style="dim")
    if not curves:
        return Text("no data yet", style="dim")
    columns = max(10, width - 2 * LEFT_MARGIN)
    points = {id(c): decimated(c.x, c.y, columns, fig.log_y) for c in (*fig.faint, *curves)}
    groups = scale_groups(curves, points, fig.log_y)
    f = figure if figure is not None else new_figure()
    f.clear()
    f.plot_size(width, height)
    f.canvas("default")
    f.legend(False)
    axis = _rgb(fig.axis_color)
    f.axes(pixel=plotext.pixel(axis, "default"))
    drawn = {0: [], 1: []}  # type: dict[int, list[np.ndarray]]
    xs_all: list[np.ndarray] = []
    marker = "braille" if not fig.ascii_only else "dot"
    for layer in (fig.faint, tuple(curves)):
        layer_groups = groups if layer is not fig.faint else scale_groups(layer, points, fig.log_y)
        for c, g in zip(layer, layer_groups, strict=True):
            x, yd = points[id(c)]
            if not len(x):
                continue
            s = f.signal(
                x.tolist(), yd.tolist(), marker=plotext.marker(marker, _rgb(c.color)), yside=g
            )
            s.lines(True)
            f.draw(s)
            drawn[g].append(yd)
            xs_all.append(x)
    for c, g in zip(curves, groups, strict=True):
        if c.best is not None and math.isfinite(c.best[1]) and not (fig.log_y and c.best[1] <= 0):
            by = math.log10(c.best[1]) if fig.log_y else c.best[1]
            star = plotext.marker(BEST_ASCII if fig.ascii_only else "★", _rgb(c.color))
            f.draw(f.signal([c.best[0]], [by], marker=star, yside=g))
    if not xs_all:
        return Text("only NaN/inf values so far", style=f"bold {fig.nan_color}")
    bad = [x for x in fig.nonfinite if math.isfinite(x)]
    x0 = min([float(a.min()) for a in xs_all] + bad)
    x1 = max([float(a.max()) for a in xs_all] + bad)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    for g, ys in drawn.items():
        if ys:
            _y_ruler(f, g, ys, height, fig.log_y)
    f.ruler("x").lim(x0, x1)
    ticks = nice_ticks(x0, x1, max(3, (width - 2 * LEFT_MARGIN) // 12))  # >= 2 labels shown
    f.ruler("x").ticks(ticks, [x_label(t, fig.x_kind) for t in ticks])
    nan_columns = _vertical(f, fig.nonfinite, x0, x1, columns, fig.nan_color, "heavy")
    _vertical(f, fig.marks, x0, x1, columns, fig.mark_color, "dotted", avoid=nan_columns)
    out = f.build().string(colorless=False).rstrip("\n")
    if fig.ascii_only:
        out = to_ascii(out)
    return ansi_to_text(out)


_SGR = re.compile(r"\x1b\[([\d;]*)m")


@lru_cache(maxsize=512)
def _sgr_style(codes: tuple[str, ...]) -> Style:
    """The Rich style of the SGR codes given since the last reset (plotext writes few kinds)."""
    style = Style()
    i = 0
    while i < len(codes):
        code = codes[i]
        if code in ("38", "48") and i + 2 < len(codes) and codes[i + 1] == "5":
            color = Color.from_ansi(int(codes[i + 2]))
            style += Style(color=color) if code == "38" else Style(bgcolor=color)
            i += 3
            continue
        if code in ("38", "48") and i + 4 < len(codes) and codes[i + 1] == "2":
            color = Color.from_rgb(*(int(c) for c in codes[i + 2 : i + 5]))
            style += Style(color=color) if code == "38" else Style(bgcolor=color)
            i += 5
            continue
        style += {
            "1": Style(bold=True),
            "2": Style(dim=True),
            "3": Style(italic=True),
            "4": Style(underline=True),
            "7": Style(reverse=True),
        }.get(code, Style())
        i += 1
    return style


def ansi_to_text(out: str) -> Text:
    """plotext's ANSI output as Rich text: a small decoder for its few SGR codes (Rich's
    general one costs a third of a redraw)."""
    text = Text(no_wrap=True, end="")
    codes: list[str] = []
    append = text.append
    for i, part in enumerate(_SGR.split(out)):
        if i % 2 == 0:
            if part:
                append(part, _sgr_style(tuple(codes)) if codes else None)
            continue
        params = part.split(";") if part else ["0"]
        codes = params[1:] if params[0] in ("0", "") else codes + params
    return text


def _y_ruler(f, side: int, ys: list[np.ndarray], height: int, log_y: bool) -> None:  # type: ignore[no-untyped-def]
    lo = min(float(a.min()) for a in ys)
    hi = max(float(a.max()) for a in ys)
    if hi == lo:
        pad = abs(hi) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    ruler = f.ruler("y", side)
    ruler.lim(lo, hi)
    count = max(2, (height - 3) // 2)
    ticks = log_ticks(lo, hi, count) if log_y else nice_ticks(lo, hi, count)
    ruler.ticks(ticks, [y_label(t, log_y) for t in ticks])


def _vertical(
    f,
    xs: tuple[float, ...],
    x0: float,
    x1: float,
    columns: int,
    color: str,  # type: ignore[no-untyped-def]
    style: str,
    avoid: set[int] | frozenset[int] = frozenset(),
) -> set[int]:
    """One vertical line per run of neighbouring columns (a burst of NaNs is one line), none
    next to a column in `avoid` (a NaN line wins over the alert that reported it); the
    columns taken."""
    seen: set[int] = set()
    for x in sorted(xs):
        if not (x0 <= x <= x1):
            continue
        col = int((x - x0) / ((x1 - x0) or 1) * columns)
        if col - 1 in seen or col in avoid or col - 1 in avoid or col + 1 in avoid:
            seen.add(col)
            continue
        if col in seen or len(seen) > 40:
            continue
        seen.add(col)
        f.line(x, "v", pixel=plotext.pixel(_rgb(color), "default"), style=style)
    return seen

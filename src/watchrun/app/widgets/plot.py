"""A braille line plot drawn natively (no global figure, no per-render rebuild of a library plot).

Each series is reduced to min/max per terminal column before drawing, so a redraw costs the same
for 1k or 1M points. NaN/inf points are gaps with a red marker on the axis. The best point and the
alert step are marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.text import Text
from textual.widget import Widget

# braille dot bits for (x in 0..1, y in 0..3) inside one cell
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
COLORS = ["cyan", "magenta", "yellow", "green", "blue", "red", "white"]


@dataclass
class Curve:
    name: str
    x: np.ndarray
    y: np.ndarray
    color: str = "cyan"
    best: tuple[float, float] | None = None


@dataclass
class PlotData:
    curves: list[Curve] = field(default_factory=list)
    log_y: bool = False
    marks: list[float] = field(default_factory=list)  # x positions (alert steps)
    x_label: str = "step"


def decimate(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bucket x centres, min, max) of y per x-bucket, NaN where a bucket is empty."""
    lo, hi = float(x.min()), float(x.max())
    span = hi - lo or 1.0
    idx = np.clip(((x - lo) / span * (buckets - 1)).astype(np.int64), 0, buckets - 1)
    ymin = np.full(buckets, np.inf)
    ymax = np.full(buckets, -np.inf)
    np.minimum.at(ymin, idx, y)
    np.maximum.at(ymax, idx, y)
    empty = ymin == np.inf
    ymin[empty] = np.nan
    ymax[empty] = np.nan
    return lo + np.arange(buckets) * span / max(1, buckets - 1), ymin, ymax


def render(data: PlotData, width: int, height: int, ascii_only: bool = False) -> Text:
    text = Text()
    curves = [c for c in data.curves if len(c.x)]
    if width < 12 or height < 3 or not curves:
        return Text("no data yet" if not curves else "…", style="dim")
    label_w = 9
    cols, rows = width - label_w, height - 1
    ys = []
    for c in curves:
        y = c.y.astype(np.float64)
        if data.log_y:
            y = np.where(y > 0, np.log10(np.where(y > 0, y, 1)), np.nan)
        ys.append(y)
    xs_all = np.concatenate([c.x for c in curves]).astype(np.float64)
    x0, x1 = float(xs_all.min()), float(xs_all.max())
    finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.empty(0)
    if len(finite) == 0:
        return Text("only NaN/inf values", style="red")
    y0, y1 = float(finite.min()), float(finite.max())
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    grid = np.zeros((rows, cols), dtype=np.int64)
    owner = np.full((rows, cols), -1, dtype=np.int64)
    nan_cols: set[int] = set()
    sub_w, sub_h = cols * 2, rows * 4

    def px(xv: np.ndarray) -> np.ndarray:
        return np.clip(((xv - x0) / ((x1 - x0) or 1) * (sub_w - 1)).round().astype(np.int64), 0, sub_w - 1)

    def py(yv: np.ndarray) -> np.ndarray:
        return np.clip(((y1 - yv) / (y1 - y0) * (sub_h - 1)).round().astype(np.int64), 0, sub_h - 1)

    for ci, (c, y) in enumerate(zip(curves, ys, strict=True)):
        x = c.x.astype(np.float64)
        bad = ~np.isfinite(y)
        if bad.any():
            nan_cols.update((px(x[bad]) // 2).tolist())
        xc, lo, hi = decimate(x[~bad], y[~bad], sub_w) if (~bad).any() else (np.empty(0),) * 3
        prev = None
        for k in range(len(xc)):
            if math.isnan(lo[k]):
                continue
            sx = int(px(np.array([xc[k]]))[0])
            top, bot = int(py(np.array([hi[k]]))[0]), int(py(np.array([lo[k]]))[0])
            mid = (top + bot) // 2
            cells = [(sx, sy) for sy in range(top, bot + 1)]
            if prev is not None and sx - prev[0] > 1:  # join to the previous point with a line
                n = sx - prev[0]
                cells += [(prev[0] + j, round(prev[1] + (mid - prev[1]) * j / n)) for j in range(1, n)]
            for cx, sy in cells:
                r, cc = sy // 4, cx // 2
                grid[r, cc] |= _DOTS[cx % 2][sy % 4]
                owner[r, cc] = ci
            prev = (sx, mid)
    marks = {int(px(np.array([m]))[0]) // 2 for m in data.marks if x0 <= m <= x1}
    best_cells = {}
    for ci, c in enumerate(curves):
        if c.best is not None and math.isfinite(c.best[1]):
            by = math.log10(c.best[1]) if data.log_y and c.best[1] > 0 else c.best[1]
            best_cells[(int(py(np.array([by]))[0]) // 4, int(px(np.array([c.best[0]]))[0]) // 2)] = ci
    for r in range(rows):
        yv = y1 - (y1 - y0) * r / max(1, rows - 1)
        label = _num(10**yv if data.log_y else yv) if r in (0, rows - 1, rows // 2) else ""
        text.append(label.rjust(label_w - 1) + ("|" if ascii_only else "┤"), style="dim")
        for cc in range(cols):
            if (r, cc) in best_cells:
                text.append("*" if ascii_only else "★", style=f"bold {curves[best_cells[(r, cc)]].color}")
                continue
            bits = grid[r, cc]
            if bits:
                ch = "." if ascii_only else chr(0x2800 + int(bits))
                if ascii_only:
                    ch = "*" if bin(int(bits)).count("1") > 2 else "."
                text.append(ch, style=curves[owner[r, cc]].color)
            elif cc in marks:
                text.append("|" if ascii_only else "┊", style="red")
            else:
                text.append(" ")
        text.append("\n")
    axis = [" "] * cols
    for cc in nan_cols:
        if 0 <= cc < cols:
            axis[cc] = "x"
    left, right = _num(x0), _num(x1)
    line = "".join(axis)
    text.append(" " * (label_w - 1) + ("+" if ascii_only else "└"), style="dim")
    text.append(line[: cols], style="bold red")
    text.append("\n" + " " * label_w + left + data.x_label.center(max(0, cols - len(left) - len(right))) + right, style="dim")
    return text


def _num(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a >= 1e5 or (0 < a < 1e-3):
        return f"{v:.1e}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


class Plot(Widget):
    DEFAULT_CSS = """
    Plot { height: 1fr; min-height: 6; }
    """

    def __init__(self, *args, ascii_only: bool = False, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.data = PlotData()
        self.ascii_only = ascii_only

    def show(self, data: PlotData) -> None:
        self.data = data
        self.refresh()

    def render(self) -> Text:
        legend = Text()
        for c in self.data.curves:
            legend.append("● " if not self.ascii_only else "o ", style=c.color)
            legend.append(c.name + "  ")
        body = render(self.data, self.size.width, max(1, self.size.height - 1), self.ascii_only)
        return legend + Text("\n") + body

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

from watchrun.textsafe import printable

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


def decimate(x: np.ndarray, y: np.ndarray, buckets: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bucket index, min y, max y) for every non-empty x-bucket; x must be sorted."""
    span = hi - lo or 1.0
    idx = np.clip(((x - lo) / span * (buckets - 1)).astype(np.int64), 0, buckets - 1)
    if len(idx) > 1 and np.any(np.diff(idx) < 0):  # not sorted: the slower unbuffered path
        ymin = np.full(buckets, np.inf)
        ymax = np.full(buckets, -np.inf)
        np.minimum.at(ymin, idx, y)
        np.maximum.at(ymax, idx, y)
        keep = np.flatnonzero(ymin != np.inf)
        return keep, ymin[keep], ymax[keep]
    starts = np.flatnonzero(np.concatenate([[True], idx[1:] != idx[:-1]]))
    return idx[starts], np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)


def _cells_for_curve(bx: np.ndarray, top: np.ndarray, bot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixels (x, y) that draw a curve: each bucket's min-max span, and straight segments
    from one bucket's middle to the next across empty columns."""
    lengths = bot - top + 1
    xs = [np.repeat(bx, lengths)]
    ys = [np.repeat(top, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))]
    if len(bx) > 1:
        mid = (top + bot) // 2
        gap = bx[1:] - bx[:-1]
        steps_n = np.maximum(gap, np.abs(mid[1:] - mid[:-1]))
        sel = steps_n > 1
        if sel.any():
            n = steps_n[sel]
            t = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            frac = t / np.repeat(n, n)
            x0, x1 = np.repeat(bx[:-1][sel], n), np.repeat(bx[1:][sel], n)
            y0, y1 = np.repeat(mid[:-1][sel], n), np.repeat(mid[1:][sel], n)
            xs.append(np.round(x0 + (x1 - x0) * frac).astype(np.int64))
            ys.append(np.round(y0 + (y1 - y0) * frac).astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def render(data: PlotData, width: int, height: int, ascii_only: bool = False) -> Text:
    curves = [c for c in data.curves if len(c.x)]
    if width < 12 or height < 3 or not curves:
        return Text("no data yet" if not curves else "…", style="dim")
    label_w = 9
    cols, rows = width - label_w, height - 1
    reduced = []  # per curve: (x, low y, high y, x of non-finite points), at most ~4 per column
    for c in curves:
        x = np.asarray(c.x, dtype=np.float64)
        y = np.asarray(c.y, dtype=np.float64)
        if data.log_y:
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.where(y > 0, np.log10(np.where(y > 0, y, 1)), np.nan)
        good = np.isfinite(y)
        bad_x = x[~good] if not good.all() else x[:0]
        if not good.all():
            x, y = x[good], y[good]
        chunk = len(x) // (4 * cols * 2)
        if chunk > 1:  # a first cheap pass by index: min and max of each run of points
            starts = np.arange(0, len(x), chunk)
            reduced.append((x[starts], np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts), bad_x))
        else:
            reduced.append((x, y, y, bad_x))
    xs_all = [r[0] for r in reduced if len(r[0])] + [r[3] for r in reduced if len(r[3])]
    x0 = min(float(v.min()) for v in xs_all)
    x1 = max(float(v.max()) for v in xs_all)
    lows = [float(r[1].min()) for r in reduced if len(r[1])]
    highs = [float(r[2].max()) for r in reduced if len(r[2])]
    if not lows:
        return Text("only NaN/inf values", style="red")
    y0, y1 = min(lows), max(highs)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    sub_w, sub_h = cols * 2, rows * 4
    grid = np.zeros((rows, cols), dtype=np.int64)
    owner = np.full((rows, cols), -1, dtype=np.int64)
    bits = np.array([[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]], dtype=np.int64)
    nan_cols: set[int] = set()

    def px(xv):  # type: ignore[no-untyped-def]
        return np.clip(np.round((np.asarray(xv, dtype=np.float64) - x0) / ((x1 - x0) or 1) * (sub_w - 1)).astype(np.int64), 0, sub_w - 1)

    def py(yv):  # type: ignore[no-untyped-def]
        return np.clip(np.round((y1 - np.asarray(yv, dtype=np.float64)) / (y1 - y0) * (sub_h - 1)).astype(np.int64), 0, sub_h - 1)

    for ci, (x, lo_y, hi_y, bad_x) in enumerate(reduced):
        if len(bad_x):
            nan_cols.update((px(bad_x) // 2).tolist())
        if not len(x):
            continue
        bx, _, hi = decimate(x, hi_y, sub_w, x0, x1)
        _, lo, _ = decimate(x, lo_y, sub_w, x0, x1)
        cx, cy = _cells_for_curve(bx, py(hi), py(lo))
        r, cc = cy // 4, cx // 2
        np.bitwise_or.at(grid, (r, cc), bits[cx % 2, cy % 4])
        owner[r, cc] = ci
    marks = {int(v) // 2 for v in px([m for m in data.marks if x0 <= m <= x1])} if data.marks else set()
    best_cells = {}
    for ci, c in enumerate(curves):
        if c.best is not None and math.isfinite(c.best[1]):
            by = math.log10(c.best[1]) if data.log_y and c.best[1] > 0 else c.best[1]
            best_cells[(int(py(by)) // 4, int(px(c.best[0])) // 2)] = ci
    text = Text()
    sep = "|" if ascii_only else "┤"
    for r in range(rows):
        yv = y1 - (y1 - y0) * r / max(1, rows - 1)
        label = _num(10**yv if data.log_y else yv) if r in (0, rows - 1, rows // 2) else ""
        text.append(label.rjust(label_w - 1) + sep, style="dim")
        row_bits, row_owner = grid[r], owner[r]
        chars: list[str] = []
        styles: list[str] = []
        for cc in range(cols):
            if (r, cc) in best_cells:
                chars.append("*" if ascii_only else "★")
                styles.append(f"bold {curves[best_cells[(r, cc)]].color}")
            elif row_bits[cc]:
                b = int(row_bits[cc])
                chars.append(("*" if bin(b).count("1") > 2 else ".") if ascii_only else chr(0x2800 + b))
                styles.append(curves[row_owner[cc]].color)
            elif cc in marks:
                chars.append("|" if ascii_only else "┊")
                styles.append("red")
            else:
                chars.append(" ")
                styles.append("")
        start = 0
        for k in range(1, cols + 1):  # one span per run of equal style
            if k == cols or styles[k] != styles[start]:
                text.append("".join(chars[start:k]), style=styles[start] or None)
                start = k
        text.append("\n")
    axis = ["x" if cc in nan_cols else " " for cc in range(cols)]
    left, right = _num(x0), _num(x1)
    text.append(" " * (label_w - 1) + ("+" if ascii_only else "└"), style="dim")
    text.append("".join(axis), style="bold red")
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
            legend.append(printable(c.name) + "  ")
        body = render(self.data, self.size.width, max(1, self.size.height - 1), self.ascii_only)
        return legend + Text("\n") + body

"""Small text helpers shared by the panes: truncation, numbers, ages, glyphs."""

from __future__ import annotations

import math

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.color import Color
from textual.filter import LineFilter

from watchrun.model import RunStatus
from watchrun.textsafe import printable

STATUS_GLYPH = {
    RunStatus.RUNNING: ("▶", ">"),
    RunStatus.FINISHED: ("✔", "v"),
    RunStatus.FAILED: ("✖", "x"),
    RunStatus.STALE: ("⏸", "="),
    RunStatus.STOPPED: ("■", "#"),
    RunStatus.GONE: ("∅", "0"),
    RunStatus.UNKNOWN: ("?", "?"),
}
SEVERITY_GLYPH = {"critical": "!!", "warning": "! ", "info": "i ", "": "  "}


def middle(text: str, width: int) -> str:
    """`text` in at most `width` cells, cut in the middle so both ends stay readable:
    `pl-mnist…/version_0` (run keys differ at both ends)."""
    text = printable(text)
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail :]


def num(v: float, digits: int = 4) -> str:
    """A value as a person reads it: 0.312, 1.2e-05, 12.5k, nan."""
    if v is None or not isinstance(v, (int, float)):
        return ""
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e6 or a < 1e-3:
        return f"{v:.2e}"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.{digits}g}"


def age(t: float, now: float) -> str:
    """Seconds since the last write, in coarse steps (a redraw every second tells nothing)."""
    if not t:
        return ""
    s = max(0.0, now - t)
    if s < 60:
        return "<1m"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


_ASCII = str.maketrans(
    {
        "─": "-",
        "━": "-",
        "═": "=",
        "│": "|",
        "┃": "|",
        "║": "|",
        "┌": "+",
        "┐": "+",
        "└": "+",
        "┘": "+",
        "├": "+",
        "┤": "+",
        "┬": "+",
        "┴": "+",
        "┼": "+",
        "╭": "+",
        "╮": "+",
        "╰": "+",
        "╯": "+",
        "╸": "-",
        "╺": "-",
        "╴": "-",
        "╶": "-",
        "▁": "_",
        "▔": "-",
        "▏": "|",
        "▕": "|",
        "█": "#",
        "▌": "|",
        "▐": "|",
        "▀": "-",
        "▄": "_",
        "…": "~",
        "→": ">",
        "←": "<",
        "↑": "^",
        "↓": "v",
        "•": "*",
        "●": "o",
        "★": "*",
        "┊": ":",
        "▶": ">",
        "✔": "v",
        "✖": "x",
        "⏸": "=",
        "■": "#",
        "∅": "0",
        "⏎": "<",
        "·": ".",
        "▎": "|",
        "▊": "|",
        "▍": "|",
        "▋": "|",
    }
)


def to_ascii(text: str) -> str:
    out = text.translate(_ASCII)
    if out.isascii():
        return out
    return "".join(c if c.isascii() else _fallback(c) for c in out)


def _fallback(c: str) -> str:
    if "\u2800" <= c <= "\u28ff":  # braille dots
        return "."
    if "\u2500" <= c <= "\u257f":  # the box-drawing corners and joints not mapped above
        return "+"
    if "\u2580" <= c <= "\u259f":  # block elements (scrollbar thumbs)
        return "#"
    return "?"


class AsciiFilter(LineFilter):
    """`--ascii`: every character that reaches the terminal is ASCII (box lines, braille,
    Textual's own scrollbars and tab underlines included)."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        return [
            seg if seg.text.isascii() else Segment(to_ascii(seg.text), seg.style, seg.control)
            for seg in segments
        ]


def severity_style(severity: str, color: str) -> Style:
    """Severity that reads without colour too (NO_COLOR): critical reversed and bold, warning
    bold; colour on top when there is colour."""
    if severity == "critical":
        return Style(color=color, bold=True, reverse=True)
    if severity == "warning":
        return Style(color=color, bold=True)
    return Style(color=color)


class Ranked(Text):
    """A table cell that carries its row's place, so that `DataTable.sort` keeps the order the
    snapshot gives (worst first, newest first) without clearing the table."""

    rank = 0


def ranked(text: Text, rank: int) -> Ranked:
    cell = Ranked(text.plain, style=text.style)
    for span in text.spans:
        cell.spans.append(span)
    cell.rank = rank
    return cell


NARROW = 24  # below this width a shortened name keeps its first part only

BOILERPLATE = {
    "lightning_logs",
    "runs",
    "results",
    "logs",
    "outputs",
    "output",
    "checkpoints",
    "dvclive",
    "mlruns",
    "wandb",
}


def short_names(keys: list[str], width: int) -> dict[str, str]:
    """Run keys shortened to `width` so that they stay told apart. Path parts every run has
    (lightning_logs, runs) go first; then inner parts, the most shared first, give way to one
    `…` (`rl-ddpg-pilot-healthy/…/Exp2_1/data`: the experiment's name and the run's own part
    stay whole), then a last part many keys share (`results.csv`); then the first part is cut
    in its middle. Keys that would then read the
    same are cut part by part instead (`pl-…/Goreg12345/version_0`, not `pl-csv-ed…/version_0`
    three times)."""
    parts = {k: printable(k).split("/") for k in keys}
    freq: dict[tuple[int, str], int] = {}
    for comps in parts.values():
        for i, c in enumerate(comps):
            freq[(i, c)] = freq.get((i, c), 0) + 1
    out: dict[str, str] = {}
    for key, comps in parts.items():
        if len(printable(key)) <= width:
            out[key] = printable(key)
        else:
            out[key] = _collapsed(_kept(comps), width, freq)
    seen: dict[str, int] = {}
    for name in out.values():
        seen[name] = seen.get(name, 0) + 1
    for key, comps in parts.items():
        if seen[out[key]] > 1 and len(printable(key)) > width:
            out[key] = _cut(_kept(comps), width, freq)
    return out


def _kept(comps: list[str]) -> list[tuple[int, str]]:
    """The parts of a key that are not boilerplate, with their positions."""
    return [(i, c) for i, c in enumerate(comps) if c not in BOILERPLATE] or [(0, comps[0])]


def _collapsed(kept: list[tuple[int, str]], width: int, freq: dict[tuple[int, str], int]) -> str:
    """Inner parts replaced by `…`, the most shared (then the leftmost) first, until it fits."""
    shown: list[str | None] = [c for _, c in kept]

    def text() -> str:
        out: list[str] = []
        for c in shown:
            if c is not None:
                out.append(c)
            elif not out or out[-1] != "…":
                out.append("…")
        return "/".join(out)

    while len(text()) > width:
        inner = [j for j in range(1, len(shown) - 1) if shown[j] is not None]
        if not inner:
            break
        shown[max(inner, key=lambda j: (freq.get(kept[j], 1), -j))] = None
    if len(text()) > width and len(shown) > 1 and freq.get(kept[-1], 1) > 1:
        shown[-1] = None  # a last part many keys share (results.csv) tells no run apart
    first, rest = shown[0] or "", text()[len(shown[0] or "") :]
    if len(first) + len(rest) <= width or not rest:
        return middle(text(), width)
    if width < NARROW:  # no room for two readable halves: the experiment's name alone
        return middle(first, width)
    # the first part gives way, down to half the width; then the rest is cut too
    head = middle(first, max(width - len(rest), min(len(first), width // 2)))
    return head + middle(rest, width - len(head))


def _cut(kept: list[tuple[int, str]], width: int, freq: dict[tuple[int, str], int]) -> str:
    """Each part shortened, the most shared (then the longest) first, down to 3 characters;
    the last part (version_1, the run's own name) only when nothing else is left to cut."""
    shown = [c for _, c in kept]
    while len("/".join(shown)) > width:
        candidates = [j for j, c in enumerate(shown[:-1]) if len(c) > 3]
        candidates = candidates or [j for j, c in enumerate(shown) if len(c) > 3]
        if not candidates:
            break
        j = max(candidates, key=lambda j: (freq.get(kept[j], 1), len(shown[j])))
        excess = len("/".join(shown)) - width
        keep = max(3, len(shown[j]) - max(excess, len(shown[j]) // 3))
        # a part many keys share keeps its start (pl-…, mlf…); a rare one its two ends
        shown[j] = (
            shown[j][: keep - 1] + "…" if freq.get(kept[j], 1) > 1 else middle(shown[j], keep)
        )
    return middle("/".join(shown), width)

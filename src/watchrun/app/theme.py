"""Themes: one definition per theme, a TOML file read from the package's themes/ and from the
user's config dir (~/.config/watchrun/themes/, or $XDG_CONFIG_HOME). Each file is a Textual
`Theme` plus a [watchrun] table with the colours of severities and plot series, so light and
high-contrast themes reach the run list, the banner and the curves too."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.theme import Theme

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PACKAGE_THEMES = Path(__file__).resolve().parent.parent / "themes"
THEME_FIELDS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
    "dark",
    "luminosity_spread",
    "text_alpha",
    "variables",
)


@dataclass(frozen=True)
class Palette:
    """Colours the widgets use in Rich styles (hex strings)."""

    critical: str = "#ff5f5f"
    warning: str = "#ffaf00"
    info: str = "#5fafff"
    ok: str = "#5fd787"
    plot: tuple[str, ...] = ("#5fafff", "#ff87d7", "#ffd75f", "#87d787", "#af87ff", "#5fd7d7")
    foreground: str = "#e4e4e4"
    background: str = "#121212"

    def severity(self, name: str) -> str:
        return {"critical": self.critical, "warning": self.warning, "info": self.info}.get(
            name, self.ok
        )

    def faint(self, color: str, amount: float = 0.6) -> str:
        """`color` mixed toward the background: the raw curve behind a smoothed one."""
        return _mix(color, self.background, amount)


def user_theme_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "watchrun" / "themes"


def theme_files() -> list[Path]:
    """Package themes first, then the user's (a user file of the same name wins)."""
    files: list[Path] = []
    for folder in (PACKAGE_THEMES, user_theme_dir()):
        if folder.is_dir():
            files += sorted(folder.glob("*.toml"))
    return files


def load_theme(path: Path) -> tuple[Theme, Palette]:
    """A theme file -> (Textual theme, palette). Raises ValueError with the file's name."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    fields: dict[str, Any] = {k: doc[k] for k in THEME_FIELDS if k in doc}
    name = doc.get("name") or path.stem
    if "primary" not in fields:
        raise ValueError(f"{path}: a theme needs at least `primary`")
    theme = Theme(name=str(name), **fields)
    return theme, palette_from(theme, doc.get("watchrun") or {})


def palette_from(theme: Theme, extra: dict[str, Any] | None = None) -> Palette:
    """The palette of any Textual theme; a [watchrun] table overrides its colours."""
    extra = extra or {}
    base = Palette()
    dark = theme.dark
    plot = extra.get("plot")
    return Palette(
        critical=str(extra.get("critical") or theme.error or base.critical),
        warning=str(extra.get("warning") or theme.warning or base.warning),
        info=str(extra.get("info") or theme.primary or base.info),
        ok=str(extra.get("ok") or theme.success or base.ok),
        plot=tuple(str(c) for c in plot) if isinstance(plot, list) and plot else base.plot,
        foreground=str(theme.foreground or ("#e4e4e4" if dark else "#1c1c1c")),
        background=str(theme.background or ("#121212" if dark else "#fafafa")),
    )


def load_all() -> tuple[dict[str, Theme], dict[str, Palette], list[str]]:
    """Every theme file that reads; the problems of those that do not (shown, not fatal)."""
    themes: dict[str, Theme] = {}
    palettes: dict[str, Palette] = {}
    problems: list[str] = []
    for path in theme_files():
        try:
            theme, palette = load_theme(path)
        except (ValueError, TypeError) as exc:
            problems.append(f"theme {exc}")
            continue
        themes[theme.name] = theme
        palettes[theme.name] = palette
    return themes, palettes, problems


def _mix(a: str, b: str, amount: float) -> str:
    try:
        ra, ga, ba = (int(a[i : i + 2], 16) for i in (1, 3, 5))
        rb, gb, bb = (int(b[i : i + 2], 16) for i in (1, 3, 5))
    except (ValueError, IndexError):
        return a
    mix = [round(x + (y - x) * amount) for x, y in ((ra, rb), (ga, gb), (ba, bb))]
    return "#" + "".join(f"{v:02x}" for v in mix)

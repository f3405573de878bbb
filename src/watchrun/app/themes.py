"""Textual themes shipped with watchrun (also in themes/*.toml for reference)."""

from __future__ import annotations

from textual.theme import Theme

THEMES = [
    Theme(name="watchrun-dark", primary="#5fafff", secondary="#af87ff", accent="#ffaf00",
          warning="#ffaf00", error="#ff5f5f", success="#5fd787", background="#121212",
          surface="#1c1c1c", panel="#262626", foreground="#e4e4e4", dark=True),
    Theme(name="watchrun-light", primary="#005fd7", secondary="#8700af", accent="#af5f00",
          warning="#af5f00", error="#d70000", success="#008700", background="#fafafa",
          surface="#eeeeee", panel="#e4e4e4", foreground="#1c1c1c", dark=False),
    Theme(name="watchrun-contrast", primary="#ffff00", secondary="#00ffff", accent="#ffffff",
          warning="#ffff00", error="#ff0000", success="#00ff00", background="#000000",
          surface="#000000", panel="#000000", foreground="#ffffff", dark=True),
]


def register_themes(app) -> None:  # type: ignore[no-untyped-def]
    for theme in THEMES:
        app.register_theme(theme)

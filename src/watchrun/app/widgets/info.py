"""The Info tab: where the run lives, the files that make it up, its writer, settings, warnings."""

from __future__ import annotations

import os

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from watchrun.app.text import num
from watchrun.snapshot import RunView
from watchrun.textsafe import printable

META_KEYS = (
    "max_steps",
    "max_epochs",
    "eval_steps",
    "logging_steps",
    "best_metric",
    "best_model_checkpoint",
)


def info_text(run: RunView) -> Text:
    t = Text()

    def line(label: str, value: str, style: str = "") -> None:
        t.append(f"{label:<10}", style="bold")
        t.append(printable(value) + "\n", style=style)

    line("root", run.root)
    line(
        "status",
        f"{run.status.value}   formats: {', '.join(sorted(run.formats))}   "
        f"step unit: {run.step_unit}   last step: {run.last_step}",
    )
    if run.pid:
        line("writer", f"pid {run.pid} on {run.host or '?'}")
    for k in META_KEYS:
        if k in run.meta:
            line(k, str(run.meta[k]))
    if run.hparams:
        line("hparams", ", ".join(f"{k}={v}" for k, v in list(run.hparams.items())[:40]))
    if run.summary:
        line(
            "summary",
            ", ".join(
                f"{k}={num(v) if isinstance(v, float) else v}"
                for k, v in list(run.summary.items())[:30]
            ),
        )
    t.append(f"files ({len(run.files)})\n", style="bold")
    for f in run.files:
        if f == run.root:  # a run that is one file (a console log, a CSV)
            rel = os.path.basename(f)
        else:
            rel = os.path.relpath(f, run.root) if f.startswith(run.root) else f
        t.append(f"  {printable(rel)}\n")
    if run.warnings:
        t.append("warnings\n", style="bold")
        for w in run.warnings:
            t.append(f"  {printable(w)}\n", style="yellow")
    return t


class InfoPane(VerticalScroll):
    DEFAULT_CSS = """
    InfoPane { height: 1fr; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.run: RunView | None = None

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("", id="info-text")

    def show(self, run: RunView | None) -> None:
        if run is self.run:
            return
        self.run = run
        self.query_one("#info-text", Static).update(info_text(run) if run else "")

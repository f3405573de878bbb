"""One metric role overlaid across runs (the marked ones, or the first few): metrics are matched
by what they are (the validation loss, the task metric), not by their names, so `val_loss` in a
Lightning run and `eval/loss` in an HF run land on one plot. n/p cycle the role."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from watchrun.app.plotting import Curve, Figure
from watchrun.app.theme import Palette
from watchrun.app.widgets.curves import x_values
from watchrun.app.widgets.plot import Plot
from watchrun.semantics import Role, role_of
from watchrun.snapshot import RunView, Snapshot

MAX_RUNS = 7
ROLE_ORDER = ("loss", "accuracy", "f1", "wer", "cer", "auc", "precision", "recall")


def role_label(role: Role) -> str:
    parts = [role.split or "", role.avg or "", role.kind]
    if role.cls is not None:
        parts.append(f"class {role.cls}")
    return " ".join(p for p in parts if p)


def role_groups(runs: list[RunView], aliases: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """(role label, run key -> that run's metric for the role), the roles most runs share first.
    Names with no known role are matched by their name."""
    groups: dict[str, dict[str, str]] = {}
    for run in runs:
        for name in run.series:
            r = role_of(name, aliases)
            label = role_label(r) if r.kind not in ("other", "runtime", "epoch") else name
            members = groups.setdefault(label, {})
            if run.key not in members or len(name) < len(members[run.key]):
                members[run.key] = name  # the plainest name wins (val_loss over val_loss_epoch)

    def rank(item: tuple[str, dict[str, str]]) -> tuple[int, int, str]:
        label, members = item
        kind = next((i for i, k in enumerate(ROLE_ORDER) if label.endswith(k)), len(ROLE_ORDER))
        return (-len(members), kind, label)

    return sorted(groups.items(), key=rank)


class CompareScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,c,q", "app.pop_screen", "Back", id="compare_back"),
        Binding("n", "next_metric", "Next metric", id="compare_next"),
        Binding("p", "prev_metric", "Prev metric", id="compare_prev"),
    ]
    DEFAULT_CSS = """
    CompareScreen #compare-title { height: 1; padding: 0 1; }
    CompareScreen Plot { height: 1fr; }
    """

    def __init__(
        self,
        snapshot: Snapshot,
        keys: list[str],
        start: str | None,
        palette: Palette,
        ascii_only: bool,
        log_y: bool,
        aliases: dict[str, str],
    ) -> None:
        super().__init__()
        self.runs = [snapshot.runs[k] for k in keys[:MAX_RUNS] if k in snapshot.runs]
        self.palette = palette
        self.ascii_only = ascii_only
        self.log_y = log_y
        self.groups = role_groups(self.runs, aliases)
        labels = [g[0] for g in self.groups]
        start_label = role_label(role_of(start, aliases)) if start else None
        self.index = labels.index(start_label) if start_label in labels else 0

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-title")
        yield Plot(id="compare-plot")
        yield Footer()

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        title = self.query_one("#compare-title", Static)
        if not self.groups:
            title.update("no metrics to compare")
            return
        label, members = self.groups[self.index]
        curves = []
        for i, run in enumerate(self.runs):
            name = members.get(run.key)
            s = run.series.get(name) if name else None
            if s is not None and len(s.steps):
                curves.append(
                    Curve(
                        f"{run.key}:{name}" if name != label else run.key,
                        x_values(run, s, "step"),
                        s.values,
                        self.palette.plot[i % len(self.palette.plot)],
                        group=0,
                    )
                )
        title.update(
            f" compare {label} across {len(curves)} run(s)   "
            f"[{self.index + 1}/{len(self.groups)}]  n/p: metric"
        )
        self.query_one("#compare-plot", Plot).show(
            Figure(tuple(curves), log_y=self.log_y, ascii_only=self.ascii_only)
        )

    def action_next_metric(self) -> None:
        self.index = (self.index + 1) % max(1, len(self.groups))
        self._show()

    def action_prev_metric(self) -> None:
        self.index = (self.index - 1) % max(1, len(self.groups))
        self._show()

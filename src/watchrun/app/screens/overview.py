"""All runs at a glance: a scrolling grid of small loss plots, worst first, each tile's border
coloured by its worst alert. Enter on a tile opens that run."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from watchrun.app.messages import RunChosen
from watchrun.app.text import short_names
from watchrun.app.theme import Palette
from watchrun.app.widgets.curves import figure_for, figure_key, loss_names
from watchrun.app.widgets.plot import Plot
from watchrun.snapshot import RunView, Snapshot

TILE_WIDTH = 44  # columns a tile needs for a readable plot
MAX_TILES = 200


class Tile(Plot):
    DEFAULT_CSS = """
    Tile { height: 12; min-height: 10; border: round $panel-lighten-2; padding: 0; }
    Tile.critical { border: heavy $error; }
    Tile.warning { border: round $warning; }
    Tile:focus { border: double $accent; }
    """
    can_focus = True

    def __init__(self, key: str) -> None:
        super().__init__(classes="tile", readout=True, compact=True)
        self.key = key
        self.view: RunView | None = None

    def on_click(self) -> None:
        self.post_message(RunChosen(self.key))


class _Scroll(VerticalScroll, can_focus=False):
    """Scrolls to the focused tile; the tiles take the focus, not the container."""


class OverviewScreen(Screen[None]):
    DEFAULT_CSS = """
    OverviewScreen Grid { grid-size: 2; grid-gutter: 0 1; height: auto; grid-rows: 12; }
    """
    BINDINGS = [
        Binding("escape,o,q", "app.pop_screen", "Back", id="overview_back"),
        Binding("enter", "open_tile", "Open run", id="overview_open"),
        # priority: the scrolling container's own up/down would scroll instead of moving
        Binding("down,j", "next_tile", "Next", show=False, priority=True),
        Binding("up,k", "previous_tile", "Previous", show=False, priority=True),
    ]

    def __init__(
        self, snapshot: Snapshot, palette: Palette, ascii_only: bool, aliases: dict[str, str]
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.palette = palette
        self.ascii_only = ascii_only
        self.aliases = aliases

    def compose(self) -> ComposeResult:
        with _Scroll(id="overview"):
            with Grid(id="tiles"):
                for key in list(self.snapshot.runs)[:MAX_TILES]:
                    yield Tile(key)
        yield Footer()

    def on_mount(self) -> None:
        self.show(self.snapshot)
        self._fit_columns()
        tiles = self.query(Tile)
        if tiles:
            tiles.first().focus()

    def on_resize(self) -> None:
        self._fit_columns()

    def _columns(self) -> int:
        return max(1, self.size.width // TILE_WIDTH)

    def _fit_columns(self) -> None:
        self.query_one("#tiles", Grid).styles.grid_size_columns = self._columns()
        self._titles()

    def _titles(self) -> None:
        """Each tile's run name, shortened as the run list does, to what its border holds
        (the corners, a space each side and the scrollbar's share taken off)."""
        cols = self._columns()
        width = max(8, (self.size.width - 2 - (cols - 1)) // cols - 6)
        tiles = list(self.query(Tile))
        names = short_names([t.key for t in tiles], width)
        for tile in tiles:
            tile.border_title = names[tile.key]

    def _sync_tiles(self, snapshot: Snapshot) -> None:
        """One tile per run of `snapshot` (the first MAX_TILES, worst first): the tiles of runs
        that went are removed, a new run's tile is put before the first tile that ranks after
        it; tiles already shown keep their place, so the one the user is on does not jump."""
        wanted = list(snapshot.runs)[:MAX_TILES]
        tiles = {tile.key: tile for tile in self.query(Tile)}
        if set(wanted) == set(tiles):
            return
        for key, tile in tiles.items():
            if key not in wanted:
                tile.remove()
        grid = self.query_one("#tiles", Grid)
        for rank, key in enumerate(wanted):
            if key in tiles:
                continue
            tile = Tile(key)
            after = next((tiles[k] for k in wanted[rank + 1 :] if k in tiles), None)
            if after is not None:
                grid.mount(tile, before=after)
            else:
                grid.mount(tile)
            tiles[key] = tile
        self.call_after_refresh(self._titles)  # once the removed tiles are gone

    def show(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        if self.is_mounted:
            self._sync_tiles(snapshot)
        for tile in self.query(Tile):
            run = snapshot.runs.get(tile.key)
            if run is None or run is tile.view:
                continue
            tile.view = run
            worst = run.worst
            tile.set_class(worst is not None and worst.severity.value == "critical", "critical")
            tile.set_class(worst is not None and worst.severity.value == "warning", "warning")
            tile.border_subtitle = worst.detector if worst else run.status.value
            names = loss_names(list(run.series), self.aliases)
            opts: dict[str, Any] = dict(ascii_only=self.ascii_only, aliases=self.aliases)
            tile.show_for(
                figure_key(run, names, self.palette, **opts),
                lambda run=run, names=names, opts=opts: figure_for(
                    run, names, self.palette, **opts
                ),
            )

    def action_next_tile(self) -> None:
        self.focus_next(Tile)

    def action_previous_tile(self) -> None:
        self.focus_previous(Tile)

    def action_open_tile(self) -> None:
        if isinstance(self.focused, Tile):
            self.post_message(RunChosen(self.focused.key))

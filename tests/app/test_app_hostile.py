"""The app with hostile names and a detector that raises: names drawn escaped (never as terminal
controls or markup), the failure shown once, live updates going on."""

from __future__ import annotations

import os

import pytest
from tests.app.test_app import wait_for
from textual.widgets import DataTable, Static

from watchrun.app.app import WatchrunApp
from watchrun.config import Config
from watchrun.detectors import runner
from watchrun.detectors.base import Detector

HOSTILE = "run\x1b]52;c;ZXZpbA==\x07\x1b[2J\u202e[/bold]"


def _csv(path, rows) -> None:  # type: ignore[no-untyped-def]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as fh:
        if fh.tell() == 0:
            fh.write("step,train_loss\n")
        fh.writelines(f"{s},{v}\n" for s, v in rows)


def _plain(cell) -> str:  # type: ignore[no-untyped-def]
    return getattr(cell, "plain", str(cell))


async def test_a_hostile_run_name_is_drawn_escaped(tmp_path):
    _csv(
        str(tmp_path / HOSTILE / "metrics.csv"),
        [(s, "nan" if s > 5 else 1 / (s + 1)) for s in range(10)],
    )
    app = WatchrunApp([str(tmp_path)], Config())
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.main.query_one("#runs", DataTable)
        banner = app.main.query_one("#banner", Static)
        assert await wait_for(
            pilot, lambda: table.row_count == 1 and "CRITICAL" in str(banner.render())
        )
        shown = _plain(table.get_row(HOSTILE)[1])
        # the list cuts long names in the middle; what it shows is the escaped name
        assert "\x1b" not in shown and "\u202e" not in shown
        assert shown.startswith("run\\x1b") and shown.endswith("\\u202e[/bold]")
        texts = [
            str(app.main.query_one(sel).render()) for sel in ("#banner", "#run-title", "#info-text")
        ]
        for text in texts:
            assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "run\\x1b]52" in texts[1] and "run\\x1b]52" in texts[2]
        await pilot.press("x")  # the stop dialog names the run too
        assert await wait_for(pilot, lambda: app.screen.__class__.__name__ == "StopScreen")
        dialog = "\n".join(str(w.render()) for w in app.screen.query(Static))
        assert "Stop run run\\x1b]52" in dialog and "\x1b" not in dialog


class Exploding(Detector):
    id = "exploding"

    def update(self, view):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


@pytest.fixture
def exploding(monkeypatch):
    monkeypatch.setattr(runner, "ALL_DETECTORS", [Exploding, *runner.ALL_DETECTORS])


async def test_a_raising_detector_is_shown_once_and_live_updates_go_on(tmp_path, exploding):
    f = str(tmp_path / "r" / "metrics.csv")
    _csv(f, [(s, 1 / (s + 1)) for s in range(8)])
    app = WatchrunApp([str(tmp_path)], Config(settle_seconds=0.2), poll=0.1)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.main.query_one("#runs", DataTable)
        assert await wait_for(pilot, lambda: app.ready and table.row_count == 1)

        def failures() -> list[str]:
            return [str(n.message) for n in app._notifications if "exploding" in str(n.message)]

        assert await wait_for(pilot, lambda: failures() != [])
        assert failures() == ["detector exploding failed on run r: RuntimeError: boom"]
        _csv(f, [(8, "nan"), (9, "nan")])
        banner = app.main.query_one("#banner", Static)
        assert await wait_for(pilot, lambda: "CRITICAL" in str(banner.render()))
        assert "nan" in str(banner.render())
        assert len(failures()) == 1

"""The app with a remote root whose server is away: the trouble is shown (once), the local
root beside it is listed and read as usual."""

from __future__ import annotations

import pytest
from tests.app.helpers import wait_for
from textual.widgets import DataTable

from watchrun.app.app import WatchrunApp
from watchrun.config import Config

pytest.importorskip("s3fs")


async def test_a_server_away_is_shown_and_local_runs_go_on(tmp_path, monkeypatch):
    from tests.integration.s3server import free_port

    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = tmp_path / "here" / "run"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.4\n")
    app = WatchrunApp([str(tmp_path / "here"), "s3://away/logs"], Config(), poll=0.2)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.main.query_one("#runs", DataTable)
        assert await wait_for(pilot, lambda: app.ready and table.row_count == 1)

        def said() -> list[str]:
            return [
                str(n.message) for n in app._notifications if "s3://away/logs" in str(n.message)
            ]

        assert await wait_for(pilot, lambda: said() != [])
        assert "connection refused" in said()[0]
        assert list(app.snapshot.runs) == ["here/run"]
        assert "s3://away/logs: connection refused" in (app.snapshot.notice or "")


def test_the_stop_dialog_of_a_remote_run_signals_nothing_and_offers_the_request(tmp_path):
    import json

    from watchrun.app.screens.stop import dialog_text
    from watchrun.control import find_process
    from watchrun.model import Run
    from watchrun.remote import MARKER

    (tmp_path / "run").mkdir()
    (tmp_path / MARKER).write_text(json.dumps({"url": "ssh://node2/logs", "label": "node2"}))
    run = Run("node2/run", str(tmp_path / "run"), remote="ssh://node2/logs")
    text = dialog_text(run, find_process(run), None)
    assert "will not signal any process: the run is read from ssh://node2/logs" in text
    assert "'Save & stop' writes the stop request file there" in text

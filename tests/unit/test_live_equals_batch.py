"""Live = batch on every labelled real run: the files are replayed growing into a fresh folder
while the follow loop polls between chunks, the run then ends as live runs end (it goes quiet),
and the alerts (detector, severity, step) equal those of `check` on the finished files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.conftest import REALLOGS

from watchrun.config import Config
from watchrun.detectors.runner import ENDED
from watchrun.engine import Engine

SHARED = REALLOGS.parent
LABELLED = [d for root in (SHARED / "reallogs", SHARED / "reallogs2") if root.is_dir()
            for d in sorted(root.iterdir()) if d.is_dir()]
ROUNDS = 8
# the replayed runs end the way a live run with no known writer ends: by going quiet
LIVE = Config(stale_seconds=0.5, settle_seconds=0.1)


def _whole_document(path: Path, data: bytes) -> bool:
    """A file its writer rewrites whole (trainer_state.json, args.yaml, a JSON summary), not one
    it appends to."""
    if path.suffix in (".yaml", ".yml"):
        return True
    if path.suffix != ".json":
        return False
    try:
        json.loads(data)
    except ValueError:
        return False  # JSON lines (detectron2's metrics.json)
    return True


def _document_at(path: Path, data: bytes, r: int) -> bytes | None:
    """What a whole-document file holds after round r of ROUNDS: trainer_state.json's history
    grows with the run, a results summary appears at the end, configs at the start."""
    if path.name.endswith("results.json") or path.name in ("wandb-summary.json",):
        return data if r == ROUNDS else None
    doc = json.loads(data) if path.suffix == ".json" else None
    if isinstance(doc, dict) and isinstance(doc.get("log_history"), list):
        history = doc["log_history"]
        doc["log_history"] = history[: max(1, len(history) * r // ROUNDS)]
        return json.dumps(doc).encode() if r < ROUNDS else data
    return data


def replay(src: Path, dst: Path, engine: Engine) -> None:
    """Write every file of `src` into `dst` in ROUNDS chunks, appended where the writer appends
    (cut at arbitrary bytes: torn records must wait for the rest), rewritten where it rewrites;
    the follow loop runs one round between chunks."""
    files = sorted(f for f in src.rglob("*") if f.is_file())
    blobs = {f: f.read_bytes() for f in files}
    for r in range(1, ROUNDS + 1):
        for f in files:
            out = dst / f.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            data = blobs[f]
            if _whole_document(f, data):
                doc = _document_at(f, data, r)
                if doc is not None:
                    out.write_bytes(doc)
                continue
            lo, hi = len(data) * (r - 1) // ROUNDS, len(data) * r // ROUNDS
            with open(out, "ab") as fh:
                fh.write(data[lo:hi])
        engine.tick()


def keys(engine: Engine) -> dict[str, set[tuple[str, str, int]]]:
    return {k: {(a.detector, a.severity.value, a.step) for a in engine.store.alerts_for(k)}
            for k in engine.store.runs}


@pytest.mark.skipif(not LABELLED, reason=f"no labelled real runs at {SHARED}/reallogs*")
@pytest.mark.parametrize("src", LABELLED, ids=[f"{d.parent.name}/{d.name}" for d in LABELLED])
def test_live_replay_gives_the_batch_alerts(src, tmp_path):
    batch = Engine([str(src)], use_watchdog=False)
    batch.check()
    dst = tmp_path / src.name
    dst.mkdir()
    engine = Engine([str(dst)], config=LIVE, poll_seconds=0.05)
    engine.load()
    replay(src, dst, engine)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        engine.tick()
        runs = engine.store.runs.values()
        if runs and all(r.status in ENDED for r in runs) and engine.detectors.finalized_all():
            break
        time.sleep(0.1)
    assert keys(engine) == keys(batch)

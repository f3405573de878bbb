"""The process view, for real: training-like processes started by the test (a writer holding
its metrics.jsonl open, with worker children, allocating memory epoch by epoch) sampled with
psutil, recorded through the sampler's file and source, judged by the detectors."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

import pytest
from tests.unit.live_trainer import check_follow, follow

from watchrun.detectors.gpu import stall_evidence
from watchrun.procs import MIB


def test_process_tree_of_a_live_run_writer_and_workers(tmp_path, trainer_factory):
    trainer = trainer_factory(grow_mb=0, workers=2)
    engine, sampler, _ = follow(tmp_path, trainer, 2)
    snap = sampler.latest
    assert snap is not None and list(snap.runs) == ["exp"]
    tree = snap.runs["exp"].processes
    assert tree.writer == trainer.proc.pid == tree.root
    assert "metrics.jsonl open for writing" in tree.evidence
    roles = {r.pid: r.role for r in tree.rows}
    assert roles[trainer.proc.pid] == "writer"
    workers = [r for r in tree.rows if r.role == "worker"]
    assert len(workers) == 2 and all(r.ppid == trainer.proc.pid and r.depth == 1 for r in workers)
    writer = tree.writer_row()
    assert writer is not None and writer.rss > 5 * MIB and writer.threads >= 1
    assert writer.age() >= 0 and writer.cpu_time > 0
    assert tree.summary().startswith(f"PID {trainer.proc.pid}, started ")
    assert "CPU time" in tree.summary()
    run = engine.store.runs["exp"]
    assert run.series["proc/count"].values[-1] == 3
    assert run.series["proc/rss"].values[-1] == pytest.approx(tree.rss / MIB)
    # the samples file is not one of the run's files: it does not make the run look written
    assert all("samples" not in f for f in run.files)
    assert not any(n.startswith("gpu") for n in run.series)


def test_rss_growing_across_evals_is_an_info_alert_with_the_numbers(tmp_path, trainer_factory):
    trainer = trainer_factory(grow_mb=40, workers=2)
    engine, sampler, alerts = follow(tmp_path, trainer, 8)
    leak = [a for a in alerts if a.detector == "host_memory"]
    assert len(leak) == 1
    a = leak[0]
    assert a.severity.value == "info" and a.metrics == ["proc/rss"]
    rss = [v for _, v in a.evidence["rss_mib_at_evals"]]
    assert len(rss) == 6 and all(b - a > 30 for a, b in zip(rss, rss[1:], strict=False))
    assert "MB of RAM over the last 5 evals" in a.message
    # nothing else fires on the sampled series
    assert {x.detector for x in alerts} == {"host_memory"}


def test_flat_rss_raises_nothing(tmp_path, trainer_factory):
    trainer = trainer_factory(grow_mb=0, workers=2)
    engine, sampler, alerts = follow(tmp_path, trainer, 8)
    assert len(engine.store.runs["exp"].series["proc/rss"]) == 8
    assert alerts == []


def test_exited_writer_is_recorded_and_is_the_stall_evidence(tmp_path, trainer_factory):
    trainer = trainer_factory(grow_mb=0, workers=0)
    engine, sampler, _ = follow(tmp_path, trainer, 2)
    run = engine.store.runs["exp"]
    alive = stall_evidence(run, time.time())
    assert alive is not None and alive.verdict in ("cpu_idle", "cpu_busy")
    trainer.finish()
    time.sleep(0.2)
    sampler.sample_once()
    assert "exp" not in sampler.latest.runs
    assert run.meta["process_exited"] >= run.last_write
    gone = stall_evidence(run, time.time())
    assert gone is not None and gone.verdict == "exited" and "finished or crashed" in gone.message
    sampler.sample_once()  # said once
    with open(sampler.path) as fh:
        assert sum(1 for line in fh if '"exited"' in line) == 1


def _wait_for_sample(path, step: int, deadline: float) -> None:
    """Until the sampler has recorded the run at `step` (a sample after that epoch)."""
    while time.time() < deadline:
        try:
            with open(path) as fh:
                if any(f'"step": {step},' in line for line in fh):
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no sample at step {step}")


@pytest.mark.timeout(180)
def test_check_follow_json_prints_the_leak_alert(tmp_path, trainer_factory):
    """End to end: `watchrun check --follow --json` beside a leaking training process."""
    trainer = trainer_factory(grow_mb=40, workers=0)
    samples = tmp_path / "kept.jsonl"
    env = dict(os.environ, WATCHRUN_SAMPLES_FILE=str(samples))
    check = check_follow(tmp_path / "runs", stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 120
        for n in range(8):
            trainer.epoch(n)
            _wait_for_sample(samples, 100 * (n + 1), deadline)
        assert check.stdout is not None
        alert = None
        while alert is None and time.time() < deadline:
            if select.select([check.stdout], [], [], 1.0)[0]:
                line = json.loads(check.stdout.readline())
                alert = line if line["detector"] == "host_memory" else None
        assert alert is not None and alert["severity"] == "info" and alert["run"] == "exp"
        assert "MB of RAM over the last 5 evals" in alert["message"]
    finally:
        check.send_signal(2)
        check.communicate(timeout=30)

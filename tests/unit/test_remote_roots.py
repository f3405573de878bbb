"""Remote roots without a server: URL parsing, names that must stay inside the mirror, the
words a failure is said in, and control's refusal to signal anything for a mirrored run."""

from __future__ import annotations

import json
import os
import socket
import sys

import pytest

from watchrun.control import find_process, request_stop, runs_with_live_writer, writer_alive
from watchrun.model import Run
from watchrun.remote import MARKER, cache_dir_for, mirror_root, scheme_of
from watchrun.remote.fsmirror import _label, _root_path, _safe, describe


@pytest.mark.parametrize(
    ("url", "label", "path"),
    [
        ("s3://bucket/logs/exp1/", "s3:bucket/logs/exp1", "bucket/logs/exp1"),
        ("gs://b/p", "gs:b/p", "b/p"),
        ("az://container/runs", "az:container/runs", "container/runs"),
        (
            "abfs://c@acct.dfs.core.windows.net/runs",
            "abfs:c@acct.dfs.core.windows.net/runs",
            "c/runs",
        ),
        ("ssh://me@node2/home/me/logs", "node2", "/home/me/logs"),
        ("ssh://node3:2222/logs", "node3", "/logs"),
    ],
)
def test_urls_give_a_label_and_a_path(url: str, label: str, path: str) -> None:
    scheme = url.partition("://")[0]
    assert scheme_of(url) == scheme
    assert _label(url, scheme) == label
    assert _root_path(url) == path


def test_local_paths_are_no_urls() -> None:
    assert scheme_of("logs/") is None
    assert scheme_of("/tmp/x") is None
    assert scheme_of("http://example/x") is None  # no backend registered for it


@pytest.mark.parametrize(
    "rel",
    ["../escape.csv", "a/../../b.csv", "/etc/passwd", "a//b.csv", "a/./b", "x\x00y", ".git/x.csv",
     "a\\..\\b", "run/.watchrun-stop", ""],
)  # fmt: skip
def test_names_that_would_leave_the_mirror_or_clash_are_skipped(rel: str) -> None:
    assert not _safe(rel)


def test_ordinary_names_are_kept() -> None:
    assert _safe("exp/version_0/metrics.csv")
    assert _safe("run 1/événements.out.tfevents.1.host")


def test_failures_are_said_in_words() -> None:
    assert describe(ConnectionRefusedError(111, "Connect call failed")).startswith(
        "connection refused"
    )
    assert describe(PermissionError("Forbidden")).startswith("access denied")
    assert describe(socket.gaierror(-2, "Name or service not known")).startswith("no such host")
    assert describe(TimeoutError()).startswith("timed out")
    assert describe(FileNotFoundError("bucket")).startswith("no such bucket")
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise RuntimeError("listing failed") from inner
    except RuntimeError as outer:
        assert describe(outer).startswith("connection refused")  # the cause chain is read


def test_cache_dir_follows_xdg(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a, b = cache_dir_for("s3://b/p"), cache_dir_for("s3://b/q")
    assert a != b and a.startswith(str(tmp_path / "watchrun" / "remote"))
    assert os.path.isdir(a)


def _mirrored_run(tmp_path) -> Run:
    """A run under a mirror's local root, named by a TensorBoard file of this host and this
    (live) process: everything a local process lookup would act on."""
    root = tmp_path / "tree"
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    (root / MARKER).write_text(json.dumps({"url": "ssh://node2/logs", "label": "node2"}))
    name = f"events.out.tfevents.{int(os.path.getmtime(root))}.{socket.gethostname()}."
    events = run_dir / (name + f"{os.getpid()}.0")
    events.write_bytes(b"")
    run = Run("node2/run", str(run_dir))
    run.files = {str(events)}
    return run


def test_a_mirrored_run_is_never_signalled_even_unmarked(tmp_path) -> None:
    run = _mirrored_run(tmp_path)
    assert mirror_root(run.root)["url"] == "ssh://node2/logs"
    target = find_process(run)  # run.remote not set: the marker file alone is enough
    assert target.process is None and target.launcher is None
    assert "ssh://node2/logs" in target.reason
    run.remote = "ssh://node2/logs"
    assert writer_alive(run) is None
    assert runs_with_live_writer([run]) == set()


def test_stop_request_for_a_remote_run_needs_its_mirror(tmp_path) -> None:
    run = _mirrored_run(tmp_path)
    with pytest.raises(OSError, match="mirror is not open"):
        request_stop(run, "why")
    assert not os.path.exists(os.path.join(run.root, ".watchrun-stop"))


def test_the_core_does_not_load_fsspec() -> None:
    import subprocess

    code = (
        "import watchrun.engine, watchrun.cli, watchrun.control, sys;"
        "print([m for m in ('fsspec', 's3fs', 'sshfs', 'watchrun.remote.fsmirror')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_two_roots_never_share_a_label(tmp_path, monkeypatch) -> None:
    pytest.importorskip("sshfs")
    from watchrun.remote import open_roots

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    local = tmp_path / "node2"
    local.mkdir()
    urls = ["ssh://me@node2/logs/a", "ssh://me@node2/logs/b", "ssh://me@node3/logs"]
    roots, mirrors = open_roots([str(local), *urls])
    labels = [m.label for m in mirrors.values()]
    assert labels == ["me@node2/logs/a", "me@node2/logs/b", "node3"]
    assert roots[0] == str(local) and len(set(roots)) == 4


def test_two_watchruns_never_write_one_mirror(tmp_path) -> None:
    pytest.importorskip("s3fs")
    from watchrun.remote.fsmirror import FsMirror

    first = FsMirror("s3://b/p", str(tmp_path / "m"))
    second = FsMirror("s3://b/p", str(tmp_path / "m"))
    assert first.cache_dir == str(tmp_path / "m")
    assert second.cache_dir != first.cache_dir  # a temporary mirror of its own
    assert second.local_root.startswith(second.cache_dir)
    second.close()
    assert not os.path.exists(second.cache_dir)
    first.close()
    third = FsMirror("s3://b/p", str(tmp_path / "m"))
    assert third.cache_dir == str(tmp_path / "m")
    third.close()

"""Runs that live elsewhere: object storage and other hosts (fsspec), MLflow tracking servers.

A remote root is kept as a local mirror that the ordinary engine watches: a `Mirror` polls its
backend (a prefix listing per poll, ranged reads from each file's saved offset, history only for
runs updated since the last poll) and appends what is new to files under `local_root`, in the
layout the local sources already read. Discovery, tailing, the detectors and the UI then work
unchanged, and a remote run is never confused with a local process (`remote` marks it).

Each backend registers its URL schemes in `SCHEMES` (one place); its module is imported only when
a root of that scheme is opened, so that a local-only user never loads fsspec or mlflow.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
from typing import Protocol

# URL scheme -> "module:factory"; the factory is called as factory(url, cache_dir) -> Mirror
SCHEMES: dict[str, str] = {
    "s3": "watchrun.remote.fsmirror:FsMirror",
    "s3a": "watchrun.remote.fsmirror:FsMirror",
    "gs": "watchrun.remote.fsmirror:FsMirror",
    "gcs": "watchrun.remote.fsmirror:FsMirror",
    "az": "watchrun.remote.fsmirror:FsMirror",
    "abfs": "watchrun.remote.fsmirror:FsMirror",
    "abfss": "watchrun.remote.fsmirror:FsMirror",
    "ssh": "watchrun.remote.fsmirror:FsMirror",
    "sftp": "watchrun.remote.fsmirror:FsMirror",
    "mlflow+http": "watchrun.remote.mlflow_server:MlflowMirror",
    "mlflow+https": "watchrun.remote.mlflow_server:MlflowMirror",
}
MARKER = ".watchrun-mirror.json"  # {"url", "label", "kind"} in every mirror's local_root


class RemoteError(Exception):
    """A remote root that cannot be opened at all (a backend's package missing, a bad URL)."""


class Mirror(Protocol):
    """One remote root, kept as local files the engine watches."""

    url: str  # as the user gave it
    label: str  # a short name that keeps two hosts' `version_0` apart ("node2", "s3:bucket/p")
    local_root: str  # the directory the engine watches
    poll_seconds: float | None  # `--poll`: a fixed interval instead of the adaptive one

    def start(self) -> None:
        """Begin polling in a background thread (the first load happens here: start() returns
        once it is done, or has failed and problem() says why)."""

    def close(self) -> None:
        """Stop polling and release the backend's connections."""

    def problem(self) -> str | None:
        """What is wrong right now (server away, credentials, empty bucket), or None."""

    def request_stop(self, local_path: str) -> str:
        """Ask the run whose mirrored file is `local_path` to save and stop, through the remote
        filesystem (the integrations' stop-request file); return what was done, for the user."""


def scheme_of(root: str) -> str | None:
    """The registered scheme of a root (`s3://b/p` -> "s3"), or None for a local path."""
    head, sep, _ = root.partition("://")
    return head.lower() if sep and head.lower() in SCHEMES else None


def open_mirror(url: str, cache_dir: str) -> Mirror:
    module_name, _, factory = SCHEMES[scheme_of(url) or ""].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, factory)(url, cache_dir)  # type: ignore[no-any-return]


def cache_dir_for(url: str) -> str:
    """Where the mirror of `url` lives: $XDG_CACHE_HOME/watchrun/remote/<hash of the URL>
    (~/.cache when unset; a temporary directory when no home can be written)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    folder = os.path.join(base, "watchrun", "remote", digest)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        folder = os.path.join(tempfile.gettempdir(), f"watchrun-remote-{os.getuid()}", digest)
        os.makedirs(folder, exist_ok=True)
    return folder


def open_roots(
    paths: list[str], poll_seconds: float | None = None
) -> tuple[list[str], dict[str, Mirror]]:
    """The roots to watch, a URL replaced by its mirror's local root, and the mirrors by their
    local root (not started: Engine.load starts them). Raises RemoteError."""
    roots: list[str] = []
    mirrors: dict[str, Mirror] = {}
    # run names start with a label: no two roots may share one (two paths on one host)
    used = {os.path.basename(os.path.abspath(p)) for p in paths if scheme_of(p) is None}
    for path in paths:
        if scheme_of(path) is None:
            roots.append(path)
            continue
        mirror = open_mirror(path, cache_dir_for(path))
        if mirror.label in used:
            mirror.label = path.partition("://")[2].strip("/")
        used.add(mirror.label)
        mirror.poll_seconds = poll_seconds
        mirrors[os.path.abspath(mirror.local_root)] = mirror
        roots.append(mirror.local_root)
    return roots, mirrors


def mirror_root(path: str) -> dict[str, str] | None:
    """The marker ({"url", "label", "kind"}) of the mirror that `path` lies in, or None for a
    local path: found by looking for MARKER in the folders above it (control asks it before
    anything is signalled, so it must not depend on this process having opened the mirror)."""
    folder = os.path.abspath(path)
    while True:
        marker = os.path.join(folder, MARKER)
        if os.path.isfile(marker):
            return _read_marker(marker)
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _read_marker(marker: str) -> dict[str, str]:
    import json

    try:
        with open(marker, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return {k: str(doc.get(k, "")) for k in ("url", "label", "kind")} | {
        "root": os.path.dirname(marker)
    }


# local_root -> the mirrors this process has open (the engine registers them; control's
# request_stop finds a remote run's mirror here)
OPEN: dict[str, Mirror] = {}


def hold_cache(cache_dir: str, temp_prefix: str) -> tuple[int | None, str]:
    """(lock fd, the cache dir to use): `cache_dir`, locked while its mirror is open; when
    another watchrun holds it, a temporary dir of our own (two processes appending to one
    mirror would double its points)."""
    import fcntl

    os.makedirs(cache_dir, exist_ok=True)
    fd = os.open(os.path.join(cache_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None, tempfile.mkdtemp(prefix=temp_prefix)
    return fd, os.path.abspath(cache_dir)


def release_cache(lock_fd: int | None, cache_dir: str, temp_prefix: str) -> None:
    """Undo hold_cache: close the lock (and with it the flock), or remove our own temporary dir."""
    if lock_fd is not None:
        os.close(lock_fd)
    elif os.path.basename(cache_dir).startswith(temp_prefix):
        shutil.rmtree(cache_dir, ignore_errors=True)

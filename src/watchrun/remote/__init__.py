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

import importlib
from typing import Protocol

# URL scheme -> "module:factory"; the factory is called as factory(url, cache_dir) -> Mirror
SCHEMES: dict[str, str] = {
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

    def start(self) -> None:
        """Begin polling in a background thread (the first load happens here)."""

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


OPEN: dict[str, Mirror] = {}  # local_root -> the mirrors this process has open (request_stop)

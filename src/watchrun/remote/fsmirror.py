"""Remote logdirs through fsspec (s3://, gs://, az://, ssh://), kept as a local mirror.

Each poll costs one listing of the root (`fs.find` with details: a prefix listing on object
stores) and, per file whose identity (size plus ETag, or mtime) moved, one ranged read:

- a file seen for the first time: its head (probe.HEAD_BYTES, and the tail of a long text file,
  exactly what discovery reads of a local file) is shown to the source registry; a file no
  source reads is remembered by its identity and not read again until that moves; a file one
  does read gets its remaining bytes, so the first load reads each byte once;
- a file that changed: the bytes from `WINDOW` before the saved offset to its new end. When the
  overlap equals the local copy, the new bytes are appended (a growing log, or an object that
  its writer re-uploads whole with more at the end, as TensorBoard's S3 writer does); otherwise
  (rewritten, shrunk, replaced by other content) the whole file is read again and replaced in the
  mirror atomically (os.replace), which the local tailer treats as a rewrite of a local file.

A file gone from the listing is removed from the mirror (the run turns gone, as locally). The
local copies keep the remote mtimes, so statuses (running, stale) follow the remote writes.
Errors never lose state: offsets stay, the poll is retried with backoff and the next good poll
continues from there; `problem()` says what is wrong meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from watchrun.control import STOP_FILE, stop_request_body
from watchrun.discover import PRUNE_DIRS
from watchrun.remote import MARKER, RemoteError, hold_cache, release_cache
from watchrun.sources import Head, claim
from watchrun.sources.probe import HEAD_BYTES, TAIL_BYTES, is_binary
from watchrun.tail import is_rotated_name

CLOSE_WAIT = 3.0  # seconds close() waits for a poll under way (an exit must not hang)

WINDOW = 1024  # bytes before the saved offset read again with the new ones: proves an append
FAST_POLL = 1.0  # seconds between polls while files grow
SLOW_POLL = 30.0  # at most this long between polls when all is quiet
BACKOFF_MAX = 60.0  # between retries when the backend keeps failing
NAME_ONLY = {"checkpoint"}  # formats read from the file name alone: an empty stand-in is mirrored
SKIP_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".onnx", ".npy", ".npz", ".pkl", ".pickle",
    ".png", ".jpg", ".jpeg", ".gif", ".mp4", ".wav", ".tar", ".gz", ".zip", ".zst", ".arrow",
    ".parquet", ".h5", ".keras", ".msgpack", ".ot", ".gguf",
)  # fmt: skip
OWN_FILES = {STOP_FILE, STOP_FILE + ".done"}  # the stop handshake: written here, not read
# scheme -> (fsspec protocol, package, extra)
BACKENDS = {
    "s3": ("s3", "s3fs", "s3"),
    "s3a": ("s3", "s3fs", "s3"),
    "gs": ("gs", "gcsfs", "gcs"),
    "gcs": ("gs", "gcsfs", "gcs"),
    "az": ("az", "adlfs", "azure"),
    "abfs": ("abfs", "adlfs", "azure"),
    "abfss": ("abfs", "adlfs", "azure"),
    "ssh": ("ssh", "sshfs", "ssh"),
    "sftp": ("ssh", "sshfs", "ssh"),
}
STATE_FILE = "state.json"  # beside the mirrored tree: what each local copy is a copy of
TEMP_PREFIX = "watchrun-mirror-"  # a mirror of its own, when another watchrun holds the cache


@dataclass
class Entry:
    """One remote file: its identity when last looked at, and how much of it is mirrored."""

    size: int  # remote size when last looked at
    tag: str  # ETag (or generation, or mtime where the backend has no ETag)
    mirrored: int = -1  # bytes in the local copy; -1: not mirrored (no source reads it)


_UNREAD = Entry(0, "")  # what a file never seen counts as: not mirrored


@dataclass
class Counters:
    """What the backend was asked for since the mirror was made (benchmarks, tests)."""

    listings: int = 0
    reads: int = 0
    bytes: int = 0
    writes: int = 0


class FsMirror:
    """A remote root (any fsspec URL with a registered scheme), mirrored under `cache_dir`."""

    def __init__(self, url: str, cache_dir: str, **storage_options: Any) -> None:
        self.url = url
        scheme = url.partition("://")[0].lower()
        self.protocol, self.package, self.extra = BACKENDS[scheme]
        self.kind = self.protocol
        self.storage_options = storage_options
        self._check_package()
        self.root_path = _root_path(url)
        self.label = _label(url, scheme)
        self._lock_fd, self.cache_dir = hold_cache(cache_dir, TEMP_PREFIX)
        self.local_root = os.path.join(self.cache_dir, "tree")
        self.poll_seconds: float | None = None
        self.interval = FAST_POLL
        self.counters = Counters()
        self.entries: dict[str, Entry] = {}
        self.sizes: dict[str, int] = {}  # rel path -> bytes in its local copy
        self.polls = 0
        self.failures = 0
        self._fs: Any = None
        self._problem: str | None = None
        self._unsettled: set[str] = set()
        self._lock = threading.Lock()  # one poll at a time (the thread, a stop request)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the Mirror protocol ------------------------------------------------------------------
    def start(self) -> None:
        os.makedirs(self.local_root, exist_ok=True)
        self._write_marker()
        self._load_state()
        self.poll_safely()
        self._thread = threading.Thread(target=self._loop, name=f"mirror {self.label}")
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        """Stop polling and let go of the filesystem. A poll still waiting on a slow or absent
        server (its client retrying) is left to end with the process: an exit must not wait
        for it (the thread is a daemon; the lock is tried, not waited on)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=CLOSE_WAIT)
        if self._lock.acquire(timeout=CLOSE_WAIT):
            try:
                self._drop_fs()
            finally:
                self._lock.release()
        release_cache(self._lock_fd, self.cache_dir, TEMP_PREFIX)
        self._lock_fd = None

    def problem(self) -> str | None:
        return self._problem

    def request_stop(self, local_path: str) -> str:
        """Write the stop request into the run's remote folder (watchrun's training callback
        polls it there); no process here is signalled."""
        rel = os.path.relpath(os.path.abspath(local_path), os.path.abspath(self.local_root))
        if rel.startswith(".."):
            raise OSError(f"{local_path} is not in the mirror of {self.url}")
        folder = rel if os.path.isdir(local_path) else os.path.dirname(rel)
        parts = [p for p in folder.split(os.sep) if p not in ("", ".")]
        remote = "/".join([self.root_path.rstrip("/"), *parts, STOP_FILE])
        where = "/".join([self.url.rstrip("/"), *parts, STOP_FILE])
        with self._lock:
            try:
                self._filesystem().pipe_file(remote, stop_request_body(""))
            except Exception as exc:  # noqa: BLE001 - said to the user as an OSError
                self._drop_fs()
                raise OSError(f"cannot write {where}: {describe(exc)}") from exc
        self.counters.writes += 1
        return f"wrote {where} (the run is remote: no process here was signalled)"

    # -- polling ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds or self.interval):
            self.poll_safely()

    def poll_safely(self) -> bool:
        """One poll; a failure is kept as `problem()` and retried later with backoff, nothing
        read so far is dropped. Whether anything changed."""
        with self._lock:
            try:
                changed = self.poll_once()
            except Exception as exc:  # noqa: BLE001 - any backend failure: say it, retry
                self.failures += 1
                self.interval = min(BACKOFF_MAX, FAST_POLL * 2**self.failures)
                self._problem = f"{self.url}: {describe(exc)}; retrying, nothing read is lost"
                self._drop_fs()  # a dropped SSH link or session is made again
                return False
        self.failures = 0
        # fast while something grows, slower and slower while all is quiet
        self.interval = FAST_POLL if changed else min(SLOW_POLL, self.interval * 1.5)
        return changed

    def poll_once(self) -> bool:
        """List the root once; bring each new or changed file's new bytes into the mirror. The
        reads of one poll go out together (fsspec's cat_ranges: concurrent where the backend is
        async), one ranged read per file and step."""
        self.polls += 1
        listing = self._list()
        self._problem = None if listing else f"{self.url}: no files there (yet)"
        moved = {
            rel: info
            for rel, info in listing.items()
            if (e := self.entries.get(rel)) is None or (e.size, e.tag) != info[:2]
        }
        self._follow_renames(moved, listing)
        todo = {
            rel: info
            for rel, info in moved.items()
            if (e := self.entries.get(rel)) is None or (e.size, e.tag) != info[:2]
        }  # a file renamed as it was is in place already
        grown = {r: i for r, i in todo.items() if self.entries.get(r, _UNREAD).mirrored >= 0}
        self._unsettled = set()  # changed while read: looked at again at the next poll
        self._continue(grown)
        self._first_looks({r: i for r, i in todo.items() if r not in grown})
        for rel, (size, tag, mtime) in todo.items():
            if rel in self._unsettled:
                continue
            mirrored = self.sizes.get(rel, -1)
            self.entries[rel] = Entry(size, tag, mirrored)
            if mirrored >= 0:
                with contextlib.suppress(OSError):
                    os.utime(self.local(rel), (mtime, mtime))
        gone = [r for r in self.entries if r not in listing]
        for rel in gone:
            self._forget(rel)
        if moved or gone:
            self._save_state()
        return bool(moved or gone)

    def _list(self) -> dict[str, tuple[int, str, float]]:
        """rel path -> (size, identity tag, mtime) of every file under the root: one listing."""
        fs = self._filesystem()
        self.counters.listings += 1
        if self.protocol != "ssh":
            fs.invalidate_cache()
        try:
            found = fs.find(self.root_path, detail=True)
        except FileNotFoundError:
            if self.protocol == "ssh" or not fs.exists(self.root_path.split("/")[0]):
                raise
            found = {}  # an empty prefix of a bucket that exists
        prefix = self.root_path.rstrip("/") + "/"
        out: dict[str, tuple[int, str, float]] = {}
        for name, info in found.items():
            if info.get("type") not in ("file", None):
                continue
            rel = name[len(prefix) :] if name.startswith(prefix) else None
            if rel is None or not _safe(rel):
                continue
            mtime = _mtime(info)
            out[rel] = (int(info.get("size") or 0), _tag(info, mtime), mtime)
        return out

    def _follow_renames(
        self, moved: dict[str, tuple[int, str, float]], listing: dict[str, tuple[int, str, float]]
    ) -> None:
        """A file that left its name (rotated, `train.log` -> `train.log.1`) shows up as a new
        name with the identity the old name had (a rename keeps the mtime; a copy keeps the
        ETag): its copy is renamed here too, before the new file under the old name is read,
        which is what the local tailer sees of a local rotation, and nothing is read again.
        Where the identity is only an mtime, the new name must be a rotation of the old one."""
        left: dict[str, list[str]] = {}
        for rel, e in self.entries.items():
            if e.mirrored >= 0 and (rel not in listing or listing[rel][:2] != (e.size, e.tag)):
                left.setdefault(e.tag, []).append(rel)
        for rel, (size, tag, mtime) in moved.items():
            was = left.get(tag, [])
            if len(was) != 1 or rel in self.entries or size < self.entries[was[0]].size:
                continue  # none, or more than one file it could be
            old = was[0]
            name, old_name = rel.rsplit("/", 1)[-1], old.rsplit("/", 1)[-1]
            if tag == repr(mtime) and not (name == old_name or is_rotated_name(name, old_name)):
                continue
            os.makedirs(os.path.dirname(self.local(rel)), exist_ok=True)
            try:
                os.replace(self.local(old), self.local(rel))
            except OSError:
                continue
            del left[tag]
            self.entries[rel] = self.entries.pop(old)
            self.sizes[rel] = self.sizes.pop(old)

    def _continue(self, files: dict[str, tuple[int, str, float]]) -> None:
        """Files mirrored before whose identity moved: one ranged read each from WINDOW before
        our end. Where that overlap equals our copy, the file grew by what follows and only
        that is appended; else (rewritten, replaced, shrunk) it is read again whole."""
        have = {rel: self.sizes.get(rel, 0) for rel in files}
        ranges = [
            (rel, max(0, have[rel] - WINDOW), size)
            for rel, (size, _, _) in files.items()
            if size >= have[rel]
        ]
        whole = [rel for rel, (size, _, _) in files.items() if size < have[rel]]
        for (rel, start, _), data in zip(ranges, self._read_many(ranges), strict=True):
            if data is not None and not self._append(rel, start, data, have[rel]):
                whole.append(rel)
        ranges = [(rel, 0, files[rel][0]) for rel in whole]
        for (rel, _, _), data in zip(ranges, self._read_many(ranges), strict=True):
            if data is not None:
                self._write_whole(rel, data)

    def _first_looks(self, files: dict[str, tuple[int, str, float]]) -> None:
        """Files not mirrored: sniff each head as discovery would (the head, and the tail of a
        long text file), and mirror those a source reads, reading each byte once."""
        files = {
            rel: info
            for rel, info in files.items()
            if not rel.lower().endswith(SKIP_SUFFIXES) or rel.endswith(".ckpt")
        }
        for rel in [r for r, (size, _, _) in files.items() if size == 0]:
            cls = claim(self.local(rel), None)  # an empty file: its name is all there is
            if cls is not None and cls.reads:
                self._write_whole(rel, b"")
        sizes = {rel: size for rel, (size, _, _) in files.items() if size > 0}
        ranges = [(rel, 0, min(size, HEAD_BYTES)) for rel, size in sizes.items()]
        heads = {r[0]: d for r, d in zip(ranges, self._read_many(ranges), strict=True) if d}
        ranges = [
            (rel, max(HEAD_BYTES, sizes[rel] - TAIL_BYTES), sizes[rel])
            for rel, head in heads.items()
            if sizes[rel] > HEAD_BYTES + TAIL_BYTES // 2 and not is_binary(head)
        ]
        tails = {r[0]: d for r, d in zip(ranges, self._read_many(ranges), strict=True) if d}
        wanted = []
        for rel, head in heads.items():
            if rel in self._unsettled:
                continue
            tail = tails.get(rel, b"")
            cls = claim(self.local(rel), Head.of(head, sizes[rel], tail))
            if cls is None or not cls.reads:
                continue
            if cls.format in NAME_ONLY:
                self._write_whole(rel, b"")
            elif len(head) + len(tail) >= sizes[rel]:
                self._write_whole(rel, head + tail)
            else:
                wanted.append((rel, len(head), sizes[rel] - len(tail)))
        for (rel, _, _), middle in zip(wanted, self._read_many(wanted), strict=True):
            if middle is not None:
                self._write_whole(rel, heads[rel] + middle + tails.get(rel, b""))

    def _append(self, rel: str, start: int, data: bytes, have: int) -> bool:
        """Append what `data` (the remote bytes from `start`) holds past our copy's `have`
        bytes, if its first bytes equal our copy's from `start`; False: another file now."""
        try:
            with open(self.local(rel), "rb") as fh:
                fh.seek(start)
                if fh.read(have - start) != data[: have - start]:
                    return False
            if len(data) > have - start:
                with open(self.local(rel), "ab") as fh:
                    fh.write(data[have - start :])
        except OSError:  # the local copy went away (a cleaned cache): read it whole again
            return False
        self.sizes[rel] = start + len(data)
        return True

    def _write_whole(self, rel: str, data: bytes) -> None:
        """Replace the local copy at once (os.replace): never a half-written file to read."""
        path = self.local(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # written beside the tree, not in it: discovery must never find a half-written copy
        tmp = os.path.join(self.cache_dir, "incoming")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        self.sizes[rel] = len(data)

    def _forget(self, rel: str) -> None:
        """The remote file is gone: so is its copy (the run turns gone as it would locally)."""
        self.entries.pop(rel, None)
        self.sizes.pop(rel, None)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.local(rel))

    def _read_many(self, ranges: list[tuple[str, int, int]]) -> list[bytes | None]:
        """Bytes [start, end) of each (rel, start, end): one ranged read each, sent together.
        None for a file gone or shortened since the listing (it is looked at again next poll);
        any other failure fails the poll (retried: what was read so far stays)."""
        if not ranges:
            return []
        paths = [f"{self.root_path.rstrip('/')}/{rel}" for rel, _, _ in ranges]
        starts = [start for _, start, _ in ranges]
        ends = [end for _, _, end in ranges]
        got = self._filesystem().cat_ranges(paths, starts, ends, on_error="return")
        out: list[bytes | None] = []
        for (rel, start, end), data in zip(ranges, got, strict=True):
            if isinstance(data, BaseException) and not isinstance(data, FileNotFoundError):
                raise data
            if not isinstance(data, FileNotFoundError):
                self.counters.reads += 1
                self.counters.bytes += len(data)
            if isinstance(data, FileNotFoundError) or len(data) != end - start:
                self._unsettled.add(rel)
                out.append(None)
                continue
            out.append(bytes(data))
        return out

    def local(self, rel: str) -> str:
        return os.path.join(self.local_root, *rel.split("/"))

    # -- the filesystem -----------------------------------------------------------------------
    def _check_package(self) -> None:
        try:
            __import__(self.package)
        except ImportError as exc:
            raise RemoteError(
                f"{self.url}: reading {self.protocol}:// needs {self.package}: "
                f"pip install 'watchrun[{self.extra}]'"
            ) from exc

    def _filesystem(self) -> Any:
        if self._fs is None:
            self._fs = _make_fs(self.url, self.protocol, self.storage_options)
        return self._fs

    def _drop_fs(self) -> None:
        fs, self._fs = self._fs, None
        if fs is not None and self.protocol == "ssh":
            with contextlib.suppress(Exception):
                fs.client.close()

    # -- state kept across runs of watchrun ---------------------------------------------------
    def _write_marker(self) -> None:
        doc = {"url": self.url, "label": self.label, "kind": self.kind}
        tmp = os.path.join(self.local_root, MARKER + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        os.replace(tmp, os.path.join(self.local_root, MARKER))

    def _save_state(self) -> None:
        tmp = os.path.join(self.cache_dir, STATE_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(
                {"url": self.url, "files": {r: asdict(e) for r, e in self.entries.items()}}, fh
            )
        os.replace(tmp, os.path.join(self.cache_dir, STATE_FILE))

    def _load_state(self) -> None:
        """Copies left by an earlier watchrun are kept where they are what the state says
        (then only what changed since is read); anything else in the tree is removed."""
        try:
            with open(os.path.join(self.cache_dir, STATE_FILE), encoding="utf-8") as fh:
                files = json.load(fh).get("files", {})
            self.entries = {r: Entry(**e) for r, e in files.items() if _safe(r)}
        except (OSError, ValueError, TypeError, AttributeError):
            self.entries = {}
        for rel, entry in list(self.entries.items()):
            try:
                size = os.path.getsize(self.local(rel)) if entry.mirrored >= 0 else -1
            except OSError:
                size = -2
            if size != entry.mirrored:
                del self.entries[rel]
            elif size >= 0:
                self.sizes[rel] = size
        self._remove_strays()

    def _remove_strays(self) -> None:
        keep = {os.path.normpath(self.local(r)) for r in self.sizes}
        keep.add(os.path.join(self.local_root, MARKER))
        for folder, _dirs, names in os.walk(self.local_root):
            for name in names:
                path = os.path.normpath(os.path.join(folder, name))
                if path not in keep:
                    with contextlib.suppress(OSError):
                        os.remove(path)


def _make_fs(url: str, protocol: str, options: dict[str, Any]) -> Any:
    """A private filesystem object (no instance cache, no listings cache: every listing is a
    real one), with timeouts short enough that a server gone away is said within seconds."""
    import fsspec
    from fsspec.config import conf

    cls = fsspec.get_filesystem_class(protocol)
    kwargs: dict[str, Any] = dict(cls._get_kwargs_from_urls(url))
    configured = conf.get(protocol, {})
    if protocol == "s3" and "config_kwargs" not in configured:
        kwargs["config_kwargs"] = {
            "connect_timeout": 5,
            "read_timeout": 30,
            "retries": {"max_attempts": 2},
        }
    if protocol == "ssh" and "connect_timeout" not in configured:
        kwargs["connect_timeout"] = 10
    kwargs.update(options)
    kwargs["skip_instance_cache"] = True
    if protocol != "ssh":  # sshfs keeps no listings (and passes unknown options to asyncssh)
        kwargs["use_listings_cache"] = False
    return cls(**kwargs)


def _root_path(url: str) -> str:
    """The path inside the filesystem: `bucket/prefix` for object stores, `/path` for SSH."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() in ("ssh", "sftp"):
        _, slash, path = rest.partition("/")
        return "/" + path.rstrip("/") if slash else "."
    if "@" in rest.split("/", 1)[0]:  # abfs://container@account.dfs.core.windows.net/path
        container, _, tail = rest.partition("@")
        rest = container + "/" + tail.partition("/")[2]
    return rest.strip("/")


def _label(url: str, scheme: str) -> str:
    """`node2` for ssh://user@node2/logs, `s3:bucket/prefix` for a bucket: what run names
    start with, so that two hosts' `version_0` stay apart."""
    rest = url.partition("://")[2]
    if scheme in ("ssh", "sftp"):
        host = rest.split("/", 1)[0].rpartition("@")[2]
        return host.split(":")[0] or "ssh"
    return f"{scheme}:{rest.strip('/')}"


def _safe(rel: str) -> bool:
    """A remote name that stays inside the mirror (no `..`, no absolute path, no NUL)."""
    parts = rel.split("/")
    return (
        bool(rel)
        and "\x00" not in rel
        and "\\" not in rel
        and all(p not in ("", ".", "..") for p in parts)
        and not any(p in PRUNE_DIRS for p in parts[:-1])
        and parts[-1] not in OWN_FILES
    )


def _mtime(info: dict[str, Any]) -> float:
    for key in ("mtime", "LastModified", "last_modified", "updated", "time"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        with contextlib.suppress(TypeError, ValueError):
            return float(value)
        with contextlib.suppress(ValueError):
            from datetime import datetime

            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return time.time()


def _tag(info: dict[str, Any], mtime: float) -> str:
    for key in ("ETag", "etag", "generation", "md5Hash", "version_id"):
        if info.get(key):
            return str(info[key])
    return repr(mtime)


def describe(exc: BaseException) -> str:
    """What went wrong, in words a user can act on (the cause chain is searched)."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain)
    low = text.lower()
    names = {type(e).__name__ for e in chain}
    if (
        any(isinstance(e, PermissionError) for e in chain)
        or any(
            s in low
            for s in (
                "accessdenied",
                "invalidaccesskeyid",
                "signaturedoesnotmatch",
                "permission denied",
            )
        )
        or names & {"PermissionDenied", "NoCredentialsError"}
    ):
        why = "access denied: check the credentials"
    elif any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in low:
        why = "connection refused: is the server up?"
    elif any(isinstance(e, socket.gaierror) for e in chain) or "name or service" in low:
        why = "no such host"
    elif any(isinstance(e, TimeoutError) for e in chain) or "timeout" in low or "timed out" in low:
        why = "timed out"
    elif any(isinstance(e, FileNotFoundError) for e in chain) or "nosuchbucket" in low:
        why = "no such bucket, container or folder"
    elif any(getattr(e, "errno", None) == errno.ECONNRESET for e in chain):
        why = "connection reset"
    else:
        why = "cannot read"
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return f"{why} ({detail})"

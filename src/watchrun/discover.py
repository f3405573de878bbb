"""A directory tree -> runs, asking each source which files it claims.

A file is a source because of what it holds, wherever it is and whatever it is called: the first
bytes of every regular file (probe.HEAD_BYTES, and the last TAIL_BYTES of a longer text file) are
shown to the registry (sources/__init__.py), once per file identity (device, inode, size, mtime):
a rescan of an unchanged tree opens no file. The claiming source places the file in its run
(layout.py); files that only describe a run (a console, hparams.yaml, a checkpoint) join the run
of their directory. Evidence in the files' contents joins the rest (merge.py, after a first read).

The walk stays inside the roots it is given: a symlink is followed only when its target lies
inside one of them (or when asked to follow all), each directory is entered once (symlink loops),
FIFOs and devices are never opened, and every directory or file that cannot be read is reported
("permission denied: PATH"), never skipped in silence.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field

from watchrun.sources import Head, Source, claim, source_class
from watchrun.sources.layout import Dirs, rotated_copy
from watchrun.sources.probe import HEAD_BYTES, TAIL_BYTES

PRUNE_DIRS = {
    ".git",
    "__pycache__",
    "node_modules",
    ".venv",
    "venv",
    "site-packages",
    ".cache",
    ".ipynb_checkpoints",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
}
MAX_ERRORS = 200  # paths kept per scan; the count goes on


@dataclass
class RunFile:
    format: str
    path: str
    options: dict = field(default_factory=dict)


@dataclass
class RunSpec:
    root: str
    files: list[RunFile] = field(default_factory=list)
    mtime: float = 0.0

    def add(self, fmt: str, path: str, mtime: float | None = None, **options: object) -> None:
        self.files.append(RunFile(fmt, path, dict(options)))
        if mtime is None:
            with contextlib.suppress(OSError):
                mtime = os.path.getmtime(path)
        self.mtime = max(self.mtime, mtime or 0.0)


def run_key(root: str, watch_root: str) -> str:
    if root.startswith(watch_root + os.sep):  # the usual case, without relpath's cost
        return root[len(watch_root) + 1 :]
    rel = os.path.relpath(root, watch_root)
    return os.path.basename(os.path.abspath(watch_root)) if rel == "." else rel


def describe_error(path: str, exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {path}"
    return f"cannot read {path}: {exc.strerror or exc}"


class Discovery:
    """Walks roots into RunSpecs; remembers each file's verdict across scans."""

    def __init__(self, roots: list[str] | None = None, follow_symlinks: bool = False) -> None:
        self.roots = [os.path.realpath(r) for r in roots or []]
        self.follow_symlinks = follow_symlinks
        self.verdicts: dict[str, tuple[tuple[int, int, int, int], str | None]] = {}
        self.sniffed = 0  # heads read since this object was made
        self.errors: list[str] = []  # what the last scan could not read
        self.error_count = 0
        self.unreadable: set[str] = set()  # the paths behind `errors`
        self.readable = 0  # directories and files the last scan could read
        self.empty: set[str] = set()  # files that were empty at the last look: nothing said yet
        self.folders: set[str] = set()  # every directory walked (polling watches them for news)

    # -- the walk ---------------------------------------------------------------------------
    def scan(self, watch_root: str) -> dict[str, RunSpec]:
        """Walk `watch_root` once; runs by absolute root path, newest first."""
        watch_root = os.path.abspath(watch_root)
        self.errors, self.error_count, self.readable = [], 0, 0
        self.unreadable = set()
        runs: dict[str, RunSpec] = {}
        attaching: list[tuple[type[Source], str, float]] = []
        dirs = Dirs()
        for path, st in self._files(watch_root):
            if rotated_copy(path, dirs):
                continue
            cls = self._verdict(path, st)
            if cls is None or not cls.reads:
                continue
            if cls.attaches:
                attaching.append((cls, path, st.st_mtime))
                continue
            root, options = cls.place(path, dirs)
            runs.setdefault(root, RunSpec(root)).add(cls.format, path, st.st_mtime, **options)
        _attach(runs, attaching)
        return dict(sorted(runs.items(), key=lambda kv: -kv[1].mtime))

    def _files(self, top: str):  # type: ignore[no-untyped-def]
        """(path, stat) of every regular file under `top` (or `top` itself), depth first."""
        try:
            st = os.stat(top)
        except OSError as exc:
            self._error(top, exc)
            return
        if not stat.S_ISDIR(st.st_mode):
            if stat.S_ISREG(st.st_mode):
                yield top, st
            return
        seen = {(st.st_dev, st.st_ino)}
        stack = [top]
        while stack:
            d = stack.pop()
            try:
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name, reverse=True)
            except OSError as exc:
                self._error(d, exc)
                continue
            self.readable += 1
            self.folders.add(d)
            for entry in entries:
                try:
                    link = entry.is_symlink()
                    if link and not self._may_follow(entry.path):
                        continue
                    st = entry.stat() if link else entry.stat(follow_symlinks=False)
                    if link and stat.S_ISDIR(st.st_mode) and _inside(entry.path, top):
                        continue  # an alias (wandb's latest-run): its target is walked by name
                except OSError as exc:
                    if not entry.is_symlink():  # a dangling link is no error
                        self._error(entry.path, exc)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    ident = (st.st_dev, st.st_ino)
                    if entry.name in PRUNE_DIRS or ident in seen:
                        continue
                    seen.add(ident)
                    stack.append(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    yield entry.path, st

    def _may_follow(self, path: str) -> bool:
        if self.follow_symlinks:
            return True
        target = os.path.realpath(path)
        return any(target == r or target.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)

    def _error(self, path: str, exc: OSError) -> None:
        self.error_count += 1
        self.unreadable.add(path)
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(describe_error(path, exc))

    def grown(self) -> bool:
        """Has a file that was empty at the last look got contents that make it a source? (A log
        is often created empty; with no file events only this stat of those files notices.)"""
        for path in list(self.empty):
            try:
                if os.stat(path).st_size == 0:
                    continue
            except OSError:
                self.empty.discard(path)
                continue
            if self.is_source(path):
                return True
        return False

    # -- what a file is -----------------------------------------------------------------------
    def is_source(self, path: str) -> bool:
        """Would a scan make this file a source now? (A file that said nothing yet, say created
        empty, is asked again when file events say it changed.)"""
        try:
            st = os.stat(path)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        errors, count, unreadable = self.errors, self.error_count, self.unreadable
        self.unreadable = set(unreadable)
        try:
            cls = self._verdict(path, st)
            return cls is not None and cls.reads
        finally:
            self.errors, self.error_count, self.unreadable = errors, count, unreadable

    def _verdict(self, path: str, st: os.stat_result) -> type[Source] | None:
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self.verdicts.get(path)
        if cached is not None and cached[0] == ident:
            return source_class(cached[1]) if cached[1] else None
        try:
            head = self._head(path, st.st_size)
        except OSError as exc:
            self._error(path, exc)
            return claim(path, None)  # not cached: asked again until it can be read
        self.readable += 1
        # an empty file says nothing yet, but its reader must exist from its first byte (a log
        # rotated before it was first read would be lost): its name is all there is to go by
        cls = claim(path, head if st.st_size else None)
        if st.st_size == 0 and cls is None and len(self.empty) < 100_000:
            self.empty.add(path)
        else:
            self.empty.discard(path)
        if len(self.verdicts) > 500_000:
            self.verdicts.clear()
        self.verdicts[path] = (ident, cls.format if cls else None)
        return cls

    def _head(self, path: str, size: int) -> Head:
        """The first HEAD_BYTES and, past them, the last TAIL_BYTES. Opened non-blocking: a file
        that turned into a FIFO between the stat and the open must not hang the scan."""
        self.sniffed += 1
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return Head.of(b"", 0)
            data = os.read(fd, HEAD_BYTES)
            tail = b""
            if size > HEAD_BYTES + TAIL_BYTES // 2 and b"\x00" not in data[:4096]:
                tail = os.pread(fd, TAIL_BYTES, max(HEAD_BYTES, size - TAIL_BYTES))
            return Head.of(data, size, tail)
        finally:
            os.close(fd)


def _inside(link: str, top: str) -> bool:
    """Does this symlink point into the tree under `top` (so that its target is walked anyway)?"""
    target, top = os.path.realpath(link), os.path.realpath(top)
    return target == top or target.startswith(top.rstrip(os.sep) + os.sep)


def _attach(runs: dict[str, RunSpec], attaching: list[tuple[type[Source], str, float]]) -> None:
    """Files that describe a run (consoles, hparams.yaml, checkpoints) join the run rooted in
    their directory, or in the parent directory when they may (`attaches` = 2). A console with no
    run to join is a run of its own (merge.py may join it on evidence: a history file beside it
    may be another training's)."""
    for cls, path, mtime in attaching:
        owner = None
        d = os.path.dirname(path)
        for _ in range(cls.attaches):
            if d in runs:
                owner = d
                break
            d = os.path.dirname(d)
        if owner is None and not cls.standalone:
            continue
        root = owner or path
        runs.setdefault(root, RunSpec(root)).add(cls.format, path, mtime)


def discover(watch_root: str, follow_symlinks: bool = False) -> dict[str, RunSpec]:
    """One walk of `watch_root` with a fresh verdict cache (the engine keeps a Discovery)."""
    return Discovery([watch_root], follow_symlinks).scan(watch_root)

"""FileCursor: read only the new bytes of a file, and notice when the file is not the one we read.

Identity of a file is its path plus (st_dev, st_ino) plus a fingerprint of its first bytes, so that
truncate-then-regrow (copytruncate), atomic replacement by rename, rotation and delete+recreate are
each told apart from a plain append (FAULTS.md F1-F5, V7). Files are opened, read with plain
read() (never mmap: a file truncated under us would SIGBUS) and closed at every poll, so a deleted
file holds no handle and a thousand watched files need no thousand descriptors.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from enum import Enum

HEAD_BYTES = 64
MAX_READ = 64 * 1024 * 1024
PREFETCH = 1 << 20  # new bytes read during check() itself (the live-tail case)


class Change(Enum):
    UNCHANGED = "unchanged"
    GREW = "grew"  # same file, new bytes after our offset (or a rewrite we can resume)
    RESET = "reset"  # a new generation: read again from byte 0
    GONE = "gone"
    ERROR = "error"


@dataclass
class Previous:
    """What the cursor knew of the file a path held before it was rotated or truncated: enough
    to find the bytes that were written to it after our last read (FAULTS F1, F3)."""

    ident: tuple[int, int]
    offset: int  # how far we had read it
    head: bytes
    mtime_ns: int  # its mtime at our last read: rotated files newer than this are unread
    moved: bool  # renamed away (the old inode lives on) rather than truncated in place


@dataclass
class FileCursor:
    path: str
    offset: int = 0
    ident: tuple[int, int] | None = None
    head: bytes = b""
    size: int = -1
    mtime_ns: int = -1
    generation: int = 0
    error: str | None = None
    key: str = ""  # the path the cursor was made for: parser state is kept under it
    previous: Previous | None = None  # the file this path held before a reset, while unread
    retired: list[tuple[int, int]] = field(default_factory=list, repr=False)  # generations read
    _prefetched: tuple[str, int, bytes, bool] | None = field(default=None, repr=False, compare=False)  # (path, offset, data, at EOF)

    def __post_init__(self) -> None:
        self.key = self.key or self.path

    def check(self) -> Change:
        """Stat the file and classify what happened since the last look. When the file changed,
        it is opened once: the head is compared and the new bytes (up to PREFETCH) are read in
        the same visit, so `read()` after a small append costs no second open."""
        self._prefetched = None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return Change.GONE
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror or exc}"
            return Change.ERROR
        if (st.st_dev, st.st_ino) == self.ident and st.st_size == self.size and st.st_mtime_ns == self.mtime_ns:
            return Change.UNCHANGED
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block us
        except FileNotFoundError:
            return Change.GONE
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror or exc}"
            return Change.ERROR
        try:
            return self._classify(fd)
        except OSError as exc:
            self.error = f"{self.path}: {exc.strerror or exc}"
            return Change.ERROR
        finally:
            os.close(fd)

    def _classify(self, fd: int) -> Change:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            self.error = f"{self.path}: not a regular file"
            return Change.ERROR
        head = os.pread(fd, HEAD_BYTES, 0)
        self.error = None
        ident = (st.st_dev, st.st_ino)
        first_look = self.ident is None
        old_ident, old_mtime = self.ident, self.mtime_ns
        same_prefix = head[: len(self.head)] == self.head and st.st_size >= self.offset
        self.ident = ident
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        if first_look:
            self.head = head
            change = Change.GREW if st.st_size > 0 else Change.UNCHANGED
        elif not same_prefix:
            # truncated, replaced by other content, or rewritten from the start
            if self.offset > 0 and old_ident is not None:
                self.previous = Previous(old_ident, self.offset, self.head, old_mtime, old_ident != ident)
            if old_ident is not None and old_ident != ident:
                self.retire(old_ident)
            self.head = head
            self.offset = 0
            self.generation += 1
            change = Change.RESET
        else:
            self.head = head
            change = Change.GREW if st.st_size > self.offset else Change.UNCHANGED
        pending = st.st_size - self.offset
        if change is not Change.UNCHANGED and 0 < pending <= PREFETCH:
            want = pending + 4096  # a writer may have added more since the fstat
            data = os.pread(fd, want, self.offset)
            self._prefetched = (self.path, self.offset, data, len(data) < want)
        return change

    def retire(self, ident: tuple[int, int]) -> None:
        """Remember a generation of this path that has been read (a rotated file is read once)."""
        if ident not in self.retired:
            self.retired.append(ident)
            del self.retired[:-32]

    def read(self, limit: int = MAX_READ) -> bytes:
        """Bytes from the offset to EOF (at most `limit`). Does not move the offset."""
        pre = self._take_prefetched()
        if pre is not None and len(pre[0]) <= limit:
            return pre[0]
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                return fh.read(limit)
        except FileNotFoundError:
            return b""

    def read_all(self) -> bytes:
        pre = self._take_prefetched()
        if pre is not None and self.offset == 0 and pre[1]:  # the whole file, read to EOF
            return pre[0]
        with open(self.path, "rb") as fh:
            return fh.read()

    def _take_prefetched(self) -> tuple[bytes, bool] | None:
        pre, self._prefetched = self._prefetched, None
        if pre is None or pre[0] != self.path or pre[1] != self.offset:
            return None
        return pre[2], pre[3]

    def advance(self, nbytes: int) -> None:
        self.offset += nbytes


_ROTATED_SUFFIX = re.compile(
    r"^[.\-_](?:\d{1,4}|\d{4}-?\d{2}-?\d{2}(?:[_T\-]?\d{2}(?:-?\d{2}){0,2})?|old|bak)$"
)


@dataclass
class Sibling:
    """A rotated generation of a file to read: where, from which offset, and its identity."""

    path: str
    offset: int
    ident: tuple[int, int]


def rotated_siblings(path: str, prev: Previous, current: tuple[int, int] | None,
                     retired: list[tuple[int, int]] = ()) -> list[Sibling]:  # type: ignore[assignment]
    """The files holding what `path`'s earlier generations received after our last read, in
    the order they were written, each with the offset to read it from. Only rotation-style
    names count (`train.log.1`, `train.log-20261123`, `train.log.old`), never a `.tmp` being
    written."""
    folder, base = os.path.split(path)
    try:
        entries = list(os.scandir(folder or "."))
    except OSError:
        return []
    old: Sibling | None = None
    newer: list[tuple[int, Sibling, int]] = []  # (mtime, file from 0, size)
    for entry in entries:
        if not entry.name.startswith(base) or not _ROTATED_SUFFIX.match(entry.name[len(base):]):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        ident = (st.st_dev, st.st_ino)
        if ident == current or not stat.S_ISREG(st.st_mode):
            continue
        if prev.moved and ident == prev.ident:
            old = Sibling(entry.path, prev.offset, ident)
        elif st.st_mtime_ns > prev.mtime_ns and ident not in retired:
            newer.append((st.st_mtime_ns, Sibling(entry.path, 0, ident), st.st_size))
    newer.sort(key=lambda item: (item[0], item[1].path))
    if old is None:
        # the old content under another inode: the copy logrotate's copytruncate made, or an
        # atomic replacement (same head, longer) that was then rotated
        for _, sib, size in newer:
            if size >= prev.offset and _head(sib.path) == prev.head:
                old = Sibling(sib.path, prev.offset, sib.ident)
                break
    out = [old] if old else []
    return out + [sib for _, sib, _ in newer if not old or sib.path != old.path]


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError:
        return b""


class LineBuffer:
    """Split bytes into complete lines; cap absurd lines (FAULTS P7).

    `feed(data)` returns (lines, consumed). Bytes after the last newline are not consumed: they
    are read again next time, when the writer has finished the line. A line longer than
    `max_line` without a newline is skipped (consumed) and the rest of it, up to its newline, is
    dropped on later reads; `skipped` counts such lines.
    """

    def __init__(self, max_line: int = 1 << 20) -> None:
        self.max_line = max_line
        self.skipping = False
        self.skipped = 0

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        consumed = 0
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return [], len(data)
            self.skipping = False
            consumed = nl + 1
        last_nl = data.rfind(b"\n", consumed)
        if last_nl < 0:
            tail_len = len(data) - consumed
            if tail_len > self.max_line:
                self.skipping = True
                self.skipped += 1
                return [], len(data)
            return [], consumed
        lines = data[consumed:last_nl].split(b"\n")
        out = []
        for line in lines:
            if len(line) > self.max_line:
                self.skipped += 1
                continue
            out.append(line.rstrip(b"\r"))
        tail_len = len(data) - (last_nl + 1)
        if tail_len > self.max_line:
            self.skipping = True
            self.skipped += 1
            return out, len(data)
        return out, last_nl + 1

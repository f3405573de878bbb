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
import threading
import time
from dataclasses import dataclass, field
from enum import Enum

HEAD_BYTES = 64
MAX_READ = 64 * 1024 * 1024  # one read: files bigger than this are read in several
PREFETCH = 1 << 20  # new bytes read during check() itself (the live-tail case)
RACY_NS = 50_000_000  # file times move by the kernel's clock tick (a few ms): a safe margin
KEEP_GENERATIONS = 64  # generations of one path remembered, so a rotated file is read once
SCRATCH_KEPT = 8 << 20  # a thread's scratch buffer (read_view) is kept for reuse up to this size


class _Scratch(threading.local):
    """One reusable read buffer per thread (see FileCursor.read_view). `fills` counts its
    fills: a view made at fill k is still valid while `fills` is k (on that thread)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.fills = 0
        self.stamp: tuple[int, int] | None = None  # (thread, fills) of the last fill

    def take(self, size: int) -> memoryview:
        """A buffer of at least `size` bytes; what an earlier view of it showed is now void."""
        self.fills += 1
        self.stamp = (threading.get_ident(), self.fills)
        if len(self.buf) >= size:
            return memoryview(self.buf)
        buf = bytearray(size)
        if size <= SCRATCH_KEPT:
            self.buf = buf
        return memoryview(buf)


_SCRATCH = _Scratch()


class Change(Enum):
    UNCHANGED = "unchanged"
    GREW = "grew"  # same file, new bytes after our offset (or a rewrite we can resume)
    RESET = "reset"  # a new generation: read again from byte 0
    GONE = "gone"
    ERROR = "error"


@dataclass
class Generation:
    """One file that a path held, and how far it was read.

    Its identity is (dev, inode) plus its first bytes plus the size it had when read: the inode
    number alone is not one (ext4 gives a freed number to the next new file at once, and a file
    truncated and written again keeps its inode). A file is this generation only if its
    (dev, inode) and head match and it is not shorter than what was read of it; a file with
    another inode but the same head and at least that size is a copy of it (logrotate's
    copytruncate, an atomic replacement by a longer copy)."""

    ident: tuple[int, int]
    head: bytes
    offset: int  # bytes read from it
    mtime_ns: int
    path: str  # where it was last found
    size: int = -1  # its size when last found

    def is_file(self, ident: tuple[int, int], head: bytes, size: int) -> bool:
        return ident == self.ident and self.has_head(head, size)

    def has_head(self, head: bytes, size: int) -> bool:
        return head[: len(self.head)] == self.head and size >= self.offset


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
    # generations the path held before this one, newest first, with how far each was read
    earlier: list[Generation] = field(default_factory=list, repr=False)
    # the generation that left the path by a rename and may still be written through the writer's
    # open handle (logrotate `create` before the writer reopens, `nocreate`, WatchedFileHandler):
    # read on at every look until the path's new file has bytes (the writer has switched)
    trailing: Generation | None = field(default=None, repr=False)
    left: bool = False  # a generation left the path since the last look: look for its siblings
    since_ns: int = -1  # rotated files modified before this were there before we looked: not ours
    folder_mtime_ns: int = -1
    racy: bool = False  # modified too close to our last look for its stat to show a rewrite
    stale: bool = False  # a read found the file changed since the look: look again, around too
    final: bool = False  # its run has ended: a last line without its newline is a line
    # its reader takes views (read_view): check() prefetches into the thread's scratch buffer
    scratch: bool = field(default=False, repr=False, compare=False)
    _prefetched: tuple[str, int, bytes | memoryview, bool, tuple[int, int] | None] | None = field(
        default=None, repr=False, compare=False
    )  # (path, offset, data, at EOF, the scratch fill a view shows: _Scratch.stamp)

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
        if (
            (st.st_dev, st.st_ino) == self.ident
            and st.st_size == self.size
            and st.st_mtime_ns == self.mtime_ns
        ):
            if not self.racy:
                return Change.UNCHANGED
            # modified within a clock tick of our last look: if it was rewritten to the same
            # size, or rotated and made again, in that tick, its stat (and its folder's) would
            # not tell (git's "racy clean"); so look inside once more, and around it
            self.left = True
        self.racy = st.st_mtime_ns >= time.time_ns() - RACY_NS
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
        continues = head[: len(self.head)] == self.head and st.st_size >= self.offset
        if continues and not first_look and ident != self.ident and self._renamed_away():
            continues = (
                False  # rotated: the new file only starts like the old one (empty, a header)
            )
        if first_look:
            if self.since_ns < 0:
                self.since_ns = st.st_mtime_ns
                self.folder_changed()
            else:  # created again after it was missing: other generations may have come and gone
                self.left = True
            change = Change.GREW if st.st_size > 0 else Change.UNCHANGED
        elif not continues:
            # truncated, replaced by other content, rewritten from the start, or rotated
            self.leave(moved=ident != self.ident)
            self.offset = 0
            self.generation += 1
            change = Change.RESET
        else:
            change = Change.GREW if st.st_size > self.offset else Change.UNCHANGED
            # replaced (by a longer copy), deleted and created again (maybe with the same inode
            # number), or emptied and written again to the same size (the mtime moved, the size
            # did not): a generation may have come and gone in between (copied away): look for it
            rewritten = st.st_size == self.size and st.st_mtime_ns != self.mtime_ns
            self.left = self.left or ident != self.ident or rewritten or self.folder_changed()
        self.ident = ident
        self.head = head
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        pending = st.st_size - self.offset
        if change is not Change.UNCHANGED and 0 < pending <= PREFETCH:
            want = pending + 4096  # a writer may have added more since the fstat
            data: bytes | memoryview
            fill = None
            if self.scratch:  # no fresh buffer per file: its first touch costs more than the read
                view = _SCRATCH.take(want)[:want]
                data, fill = view[: os.preadv(fd, [view], self.offset)], _SCRATCH.stamp
            else:
                data = os.pread(fd, want, self.offset)
            if self._still_ours(fd):  # not truncated and written again since the fstat
                self._prefetched = (self.path, self.offset, data, len(data) < want, fill)
        return change

    def folder_changed(self) -> bool:
        """Whether names were added to or removed from the file's folder since the last look
        (a rotation, a copy: what an inode number reused at once would hide)."""
        try:
            mtime = os.stat(os.path.dirname(self.key) or ".").st_mtime_ns
        except OSError:
            return False
        changed, self.folder_mtime_ns = mtime != self.folder_mtime_ns, mtime
        return changed

    def _renamed_away(self) -> bool:
        """Whether the file we read last is still there under a rotated name (then the path's
        new file is a new generation, even if it starts with the same bytes)."""
        if self.ident is None:
            return False
        return find_renamed(
            self.key, Generation(self.ident, self.head, self.offset, self.mtime_ns, self.path)
        )

    def found_late(self, since_ns: int) -> None:
        """The file was found while following, made after `since_ns` (the last walk of the
        tree): its generations rotated away since then are read too, before it."""
        self.since_ns = since_ns - RACY_NS
        self.left = True

    def leave(self, moved: bool) -> None:
        """The path no longer holds the file we read (`moved`: renamed away or deleted, rather
        than emptied in place): remember it, and how far it was read, as an earlier generation."""
        if self.ident is None:
            return
        gen = Generation(self.ident, self.head, self.offset, self.mtime_ns, self.path)
        self.remember(gen)
        self.left = True
        if moved:
            self.trailing = gen

    def vanish(self) -> None:
        """The path is gone: keep what we read of its file, start the next one at byte 0."""
        self.leave(moved=True)
        self.offset, self.ident, self.head, self.size = 0, None, b"", -1
        self.generation += 1

    def remember(self, gen: Generation) -> None:
        if gen not in self.earlier:
            self.earlier.insert(0, gen)
            del self.earlier[KEEP_GENERATIONS:]

    def must_drain(self) -> bool:
        return self.left or self.trailing is not None

    def read(self, limit: int = MAX_READ) -> bytes:
        """Bytes from the offset to EOF (at most `limit`). Does not move the offset."""
        pre = self._take_prefetched()
        if pre is not None and len(pre[0]) <= limit:
            return bytes(pre[0])
        try:
            with open(self.path, "rb") as fh:
                if not self._still_ours(fh.fileno()):
                    self.stale = True
                    return b""
                fh.seek(self.offset)
                data = fh.read(limit)
                if not self._still_ours(fh.fileno()):
                    self.stale = True
                    return b""
                return data
        except FileNotFoundError:
            return b""

    def read_view(self, limit: int = MAX_READ) -> memoryview:
        """What `read` gives, as a view of this thread's scratch buffer: valid only until the
        next read_view or check() of a `scratch` cursor on this thread, so the caller must copy
        what it keeps. Reading a thousand 1 MB files into one buffer, rather than into a new
        bytes object each, saves the page faults of touching fresh memory: most of what reading
        a file already in the page cache costs.
        """
        pre = self._take_prefetched()
        if pre is not None and len(pre[0]) <= limit:
            return memoryview(pre[0])
        try:
            with open(self.path, "rb", buffering=0) as fh:
                fd = fh.fileno()
                if not self._still_ours(fd):
                    self.stale = True
                    return memoryview(b"")
                want = min(limit, max(0, os.fstat(fd).st_size - self.offset) + 4096)
                view = _SCRATCH.take(want)[:want]
                n = os.preadv(fd, [view], self.offset) if want else 0
                while 0 < n < want:  # pread stops short only at EOF; a pipe-like file may not
                    more = os.preadv(fd, [view[n:]], self.offset + n)
                    if more <= 0:
                        break
                    n += more
                if not self._still_ours(fd):
                    self.stale = True
                    return memoryview(b"")
                return view[:n]
        except FileNotFoundError:
            return memoryview(b"")

    def _still_ours(self, fd: int) -> bool:
        """Whether the open file is still the one `check()` classified: the path may have been
        rotated, or the file truncated and written again, between that look and this read (a
        live writer does not wait). If not, nothing is read now; the next look sorts it out."""
        st = os.fstat(fd)
        if self.ident is not None and (st.st_dev, st.st_ino) != self.ident:
            return False
        return st.st_size >= self.offset and os.pread(fd, len(self.head), 0) == self.head

    def read_all(self) -> bytes:
        pre = self._take_prefetched()
        if pre is not None and self.offset == 0 and pre[1]:  # the whole file, read to EOF
            return bytes(pre[0])
        with open(self.path, "rb") as fh:
            return fh.read()

    def _take_prefetched(self) -> tuple[bytes | memoryview, bool] | None:
        """The bytes check() read ahead, if they are still those at the offset (and, read into
        the scratch buffer, not overwritten since by another read)."""
        pre, self._prefetched = self._prefetched, None
        if pre is None or pre[0] != self.path or pre[1] != self.offset:
            return None
        if pre[4] is not None and pre[4] != _SCRATCH.stamp:  # refilled, or another thread's
            return None
        return pre[2], pre[3]

    def advance(self, nbytes: int) -> None:
        self.offset += nbytes


_ROTATED_SUFFIX = re.compile(
    r"^[.\-_](?:\d{1,4}|\d{4}-?\d{2}-?\d{2}(?:[_T\-]?\d{2}(?:-?\d{2}){0,2})?|old|bak)$"
)


def is_rotated_name(name: str, base: str) -> bool:
    """`name` is a rotation of `base`: `train.log.1`, `train.log-20261123`, `train.log.old`."""
    return name.startswith(base) and bool(_ROTATED_SUFFIX.match(name[len(base) :]))


def rotation_bases(path: str) -> list[str]:
    """The paths whose rotated sibling `path` could be (`a/train.log.1` -> [`a/train.log`])."""
    folder, name = os.path.split(path)
    out = []
    for i in range(max(1, len(name) - 24), len(name)):
        if name[i] in ".-_" and _ROTATED_SUFFIX.match(name[i:]):
            out.append(os.path.join(folder, name[:i]))
    return out


@dataclass
class Sibling:
    """A rotated file to read: where, from which offset, and the generation it is (new ones are
    made here; the caller records how far it read them)."""

    path: str
    offset: int
    generation: Generation
    mtime_ns: int = 0


def rotated_siblings(
    path: str, earlier: list[Generation], current: Generation | None, since_ns: int
) -> tuple[list[Sibling], dict[tuple[int, int], Generation]]:
    """The rotation-named files next to `path` (`train.log.1`, `train.log-20261123`,
    `train.log.old`; never a `.tmp` being written) that hold bytes we have not read, oldest
    first, each with the offset to read it from:
    - an earlier generation of the path found again (renamed), if it grew past what was read;
    - a copy of an earlier generation whose original is gone or rewritten (copytruncate, an
      atomic replacement by a longer copy that was then rotated): from where that one stopped;
    - any other file modified since `since_ns`: a whole generation that came and went between
      two looks, from byte 0.
    Also returned: the generation each rotated file now is, by (dev, inode)."""
    found: list[tuple[os.stat_result, str, bytes]] = []
    for where in rotated_names(path):
        seen = _stat_and_head(where)
        if seen is None or (current and (seen[0].st_dev, seen[0].st_ino) == current.ident):
            continue
        found.append((seen[0], where, seen[1]))
    found.sort(key=lambda f: (f[0].st_mtime_ns, -_rotation_number(f[1])))
    if current is not None:
        earlier = [current, *earlier]
    matched = [(st, where, head, *_best_match(earlier, st, head)) for st, where, head in found]
    intact: list[Generation] = []  # earlier generations still there under their own inode
    for st, where, head, gen, same in matched:
        if gen is not None and same:  # its head now: what it started with, and more
            gen.path, gen.size, gen.head = where, st.st_size, head
            intact.append(gen)
    present = {id(gen) for gen in intact}
    if current is not None:
        present.add(id(current))
    out: list[Sibling] = []
    here: dict[tuple[int, int], Generation] = {}
    for st, where, head, gen, same in matched:
        ident = (st.st_dev, st.st_ino)
        if gen is not None and same:
            here[ident] = gen
            if st.st_size > gen.offset:
                out.append(Sibling(where, gen.offset, gen, st.st_mtime_ns))
        elif gen is not None and id(gen) not in present:  # a copy: on from where the file stopped
            present.add(id(gen))
            gen.size = st.st_size  # a second copy of it, no longer than this, is a backup
            here[ident] = Generation(ident, head, gen.offset, st.st_mtime_ns, where, st.st_size)
            out.append(Sibling(where, gen.offset, here[ident], st.st_mtime_ns))
        elif gen is not None and st.st_size <= gen.size and gen.head[: len(head)] == head:
            continue  # an earlier copy of a file that is still there (a backup): read there
        elif _being_copied(earlier, head, st):
            continue  # a copy still being written, not yet as long as what we read: next look
        elif st.st_mtime_ns >= since_ns:
            here[ident] = Generation(ident, head, 0, st.st_mtime_ns, where, st.st_size)
            out.append(Sibling(where, 0, here[ident], st.st_mtime_ns))
    out.sort(key=lambda s: (s.mtime_ns, -_rotation_number(s.path)))
    return out, here


def _being_copied(earlier: list[Generation], head: bytes, st: os.stat_result) -> bool:
    """A file that starts like one we read but is shorter than what we read of it, modified
    just now: logrotate's copy, caught half-written. Read from 0 now, it would double."""
    if st.st_mtime_ns < time.time_ns() - RACY_NS:
        return False
    return any(
        g.offset > st.st_size and g.head[: len(head)] == head[: len(g.head)] for g in earlier
    )


def _best_match(
    earlier: list[Generation], st: os.stat_result, head: bytes
) -> tuple[Generation | None, bool]:
    """The generation a rotated file is (its inode, head and size) or is a copy of (its head
    and size), the one whose head agrees on the most bytes; and whether it is that file itself.
    (A freed inode number is given to the next new file at once: a copy of what we read last
    may carry the number of an older file that only starts the same way.)"""
    ident = (st.st_dev, st.st_ino)
    best: Generation | None = None
    best_key = (-1, False)
    for gen in earlier:
        same = gen.is_file(ident, head, st.st_size)
        if not same and not (gen.offset > 0 and gen.has_head(head, st.st_size)):
            continue
        key = (len(gen.head), same)
        if key > best_key:
            best, best_key = gen, key
    return best, best_key[1]


def find_renamed(path: str, gen: Generation) -> bool:
    """Whether `gen` is still there under a rotation name of `path`."""
    for where in rotated_names(path):
        seen = _stat_and_head(where)
        if seen is not None and gen.is_file(
            (seen[0].st_dev, seen[0].st_ino), seen[1], seen[0].st_size
        ):
            return True
    return False


def _stat_and_head(path: str) -> tuple[os.stat_result, bytes] | None:
    """A regular file's stat and first bytes, from one open file: both of the same file even if
    the name is given to another one meanwhile (a writer rotating while we look)."""
    try:
        if not stat.S_ISREG(os.stat(path, follow_symlinks=False).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        return (st, os.pread(fd, HEAD_BYTES, 0)) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


_LISTINGS: dict[
    str, tuple[int, int, dict[str, list[str]]]
] = {}  # folder -> (mtime, listed at, base -> names)


def rotated_names(path: str) -> list[str]:
    """The rotation-named files next to `path`. A folder is listed again only when its mtime
    moved (or was too close to the last listing to be trusted), so a folder of 10,000 files
    costs one listing per change, not one per file per look."""
    folder, base = os.path.split(path)
    folder = folder or "."
    try:
        mtime = os.stat(folder).st_mtime_ns
    except OSError:
        return []
    cached = _LISTINGS.get(folder)
    if cached is None or cached[0] != mtime or mtime >= cached[1] - RACY_NS:
        by_base: dict[str, list[str]] = {}
        listed_ns = time.time_ns()
        try:
            names = os.listdir(folder)
        except OSError:
            return []
        for name in names:
            for b in rotation_bases(name):
                by_base.setdefault(b, []).append(name)
        if len(_LISTINGS) >= 4096:
            _LISTINGS.clear()
        _LISTINGS[folder] = cached = (mtime, listed_ns, by_base)
    return [os.path.join(folder, name) for name in cached[2].get(base, ())]


def _rotation_number(path: str) -> int:
    tail = path.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else 0


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

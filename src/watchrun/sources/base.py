"""What every source shares: a set of tailed files of one run, polled for new bytes."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from typing import Any

from watchrun.store import Store
from watchrun.tail import MAX_READ, Change, FileCursor, Generation, LineBuffer, rotated_siblings

STEP_MIN, STEP_MAX = -(1 << 63), (1 << 63) - 1  # a step is stored as int64
MAX_DEPTH = 32  # nesting kept when flattening a JSON/YAML document


def to_float(text: str | bytes | float | int | None) -> float | None:
    """Parse a number as training libraries write them ('0.5', 'nan', 'inf', 'NA' -> None)."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        try:
            return float(text)
        except OverflowError:  # an integer past 1e308 is as out of range as the text "1e999"
            return math.inf if text > 0 else -math.inf
    if isinstance(text, float):
        return text
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text or text in ("NA", "N/A", "None", "null", "-", "''"):
        return None
    if text.startswith("tensor(") and text.endswith(")"):
        text = text[7:-1].split(",")[0]
    try:
        return float(text)
    except ValueError:
        low = text.lower()
        if low in ("nan", "-nan"):
            return math.nan
        if low in ("inf", "+inf", "infinity"):
            return math.inf
        if low in ("-inf", "-infinity"):
            return -math.inf
        return None


def numbers(entries: dict[Any, Any], skip: str | None = None) -> dict[str, float]:
    """The entries of a logged dict that read as numbers (see `to_float`), keyed by their text;
    the key `skip` is left out."""
    out: dict[str, float] = {}
    for k, v in entries.items():
        number = to_float(v) if k != skip else None
        if number is not None:
            out[str(k)] = number
    return out


def to_step(value: object) -> int | None:
    """A step as training libraries write it (7, 7.0, '7', '7.0'); None when it is not one or
    does not fit the int64 the series store (2**63, 1e19, 'nan')."""
    if isinstance(value, str) and 0 < len(value) <= 19 and value.isascii() and value.isdigit():
        step = int(value)  # exact, where float() would round a long integer
    else:
        f = value if isinstance(value, int) else to_float(value)  # type: ignore[arg-type]
        if f is None or isinstance(f, float) and not math.isfinite(f):
            return None
        step = int(f)
    return step if STEP_MIN <= step <= STEP_MAX else None


def to_wall(milliseconds: float) -> float:
    """A wall-clock time in seconds from a writer's epoch milliseconds; NaN for one no clock
    gives (before 1970 minus a day, or past the year 5000: a corrupt or hostile timestamp)."""
    seconds = milliseconds / 1000.0
    return seconds if -86_400 <= seconds <= 1e11 else math.nan


def flatten(obj: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a/b": 1}`. Levels past MAX_DEPTH are dropped, never recursed
    into (a hostile document must not exhaust the stack)."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            if depth < MAX_DEPTH:
                out.update(flatten(v, name + "/", depth + 1))
        else:
            out[name] = v
    return out


class Lines:
    """Complete lines of one file generation, numbered from 1 (for "skipped ... at line N")."""

    def __init__(self, max_line: int = 1 << 20) -> None:
        self.buffer = LineBuffer(max_line)
        self.number = 0

    def feed(self, data: bytes) -> tuple[list[tuple[int, bytes]], int]:
        """(line number, line) for each complete line in `data`, and the bytes consumed."""
        skipped = self.buffer.skipped
        lines, consumed = self.buffer.feed(data)
        first = self.number + 1
        self.number += len(lines) + self.buffer.skipped - skipped
        return list(zip(range(first, first + len(lines)), lines, strict=True)), consumed

    @property
    def skipped(self) -> int:
        return self.buffer.skipped


class Head(bytes):
    """The first bytes of a file as discovery read them (at most probe.HEAD_BYTES), with the
    file's `size` and, for a text file longer than the head, its last bytes in `tail`."""

    size: int = 0
    tail: bytes = b""

    @classmethod
    def of(cls, data: bytes, size: int, tail: bytes = b"") -> Head:
        head = cls(data)
        head.size, head.tail = size, tail
        return head


class Source:
    """A group of files of one run that one parser reads. Subclasses implement `read`.

    What the registry (sources/__init__.py) asks of each source class, before any instance exists:
    `format` (its id), `stream`, `step_unit`, `claims(path, head)` (is this file mine, by its
    content), `place(path, dirs)` (which run it belongs to) and `create(store, key, root)`.

    `richness`: how complete this format's points are, for when two sources of one run give one
    metric and the store keeps one of them (store.py). Higher is richer:
    4 a text history written row by row at full precision (CSV/TSV, JSON lines, a JSON history,
      dvclive): the training loop's own record, every metric of a step in one row;
    3 a tracking store (MLflow, W&B, trackio): full precision and a wall time per point, but a
      copy made by a callback (Ultralytics' MLflow steps count epochs from 0, its results.csv
      from 1, as its args.yaml plans them);
    2 TensorBoard: values as float32, written through a buffer;
    1 trainer_state.json: rewritten only at each save, so it lags the run (a copy can be a stale
      snapshot of half the run);
    0 a console: numbers rounded for print, steps inferred from the lines around them."""

    format = "unknown"
    stream = "unknown"
    richness = 2
    whole_when_parsed = False  # a record cut short fails to parse (see read_last_lines)
    step_unit = "step"  # what one step of this format counts: "epoch" for one row per epoch
    listed_when_empty = True  # False: a run made only of such files is listed once it has points
    attaches = 0  # 1: the file joins the run of its directory; 2: or the run of the parent dir
    standalone = True  # for an attaching file: a run of its own when there is none to join
    reads = (
        True  # False: a file known to be no log (it is claimed so that no other format reads it)
    )

    @classmethod
    def claims(cls, path: str, head: Head | None) -> bool:
        """Is this file one this source reads? Decided by `head`, its first bytes (a `Head`);
        None when the file could not be read (a guess by name may then keep the file's run and
        its "permission denied" on screen until it can be read)."""
        return False

    @classmethod
    def by_name(cls, path: str, head: Head | None) -> bool:
        """A last resort, asked when no source claims the file by its content: is it this
        format's by its name alone?"""
        return False

    @classmethod
    def place(cls, path: str, dirs: Any) -> tuple[str, dict[str, Any]]:
        """(the run's root, the options for `add_file`): by default the file is a run of its own
        until evidence joins it to its neighbours. `dirs` lists directories (probe.Dirs)."""
        return path, {}

    @classmethod
    def create(cls, store: Store, key: str, root: str, path: str = "") -> Source:
        """The source for run `key` rooted at `root`, made when its first file `path` is found."""
        return cls(store, key)

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.key = key
        store.rank_stream(self.stream, self.richness)
        self.cursors: dict[str, FileCursor] = {}
        self.options: dict[str, dict] = {}
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self.skipped: dict[str, int] = {}  # bad records skipped, per file
        self._last_skip: dict[
            str, tuple[str, str, str]
        ] = {}  # file -> (kind, where, why), unreported

    def add_file(self, path: str, **options: object) -> bool:
        if path in self.cursors:
            return False
        self.cursors[path] = FileCursor(path)
        self.options[path] = dict(options)
        self.store.update(
            self.key, files={path}, formats={self.format}, file_formats={path: self.format}
        )
        return True

    def files(self) -> list[str]:
        return list(self.cursors)

    def poll(self, only: set[str] | None = None) -> int:
        """Read what is new in every file (or only in `only`); return points added."""
        added = 0
        now = time.monotonic()
        for path in self.ordered_paths(only):
            if self._retry_at.get(path, 0.0) > now:
                continue
            try:
                added += self._poll_file(self.cursors[path])
            finally:
                self.report_skips()
        return added

    def read_last_lines(self) -> int:
        """Its run has ended: a last line that the writer never terminated (a writer that puts
        the newline first, a file written as "\n".join(rows)) is read as a line, for formats
        whose records say when they are whole (`whole_when_parsed`: a JSON object cut short
        does not parse). A CSV row or a console line cut short still parses, to a wrong value
        ("0.2345" cut to "0.2", FAULTS P3): theirs keep waiting, as a torn line does."""
        if not self.whole_when_parsed:
            return 0
        added = 0
        for cursor in list(self.cursors.values()):
            if cursor.error or cursor.offset >= cursor.size:
                continue
            cursor.final = True
            try:
                added += self.read(cursor)
            except OSError:
                continue  # gone meanwhile: nothing more to read from it
            finally:
                cursor.final = False
                self.report_skips()
        return added

    def ordered_paths(self, among: set[str] | None = None) -> list[str]:
        """The files in reading order (`among`: only those of them that are this source's)."""
        if among is None:
            return sorted(self.cursors)
        return sorted(p for p in among if p in self.cursors)

    def _poll_file(self, cursor: FileCursor) -> int:
        change = cursor.check()
        if change is Change.ERROR:
            n = self._failures.get(cursor.path, 0) + 1
            self._failures[cursor.key] = n
            self._retry_at[cursor.key] = time.monotonic() + min(60.0, 0.5 * 2**n)
            self.store.warn(
                self.key, f"cannot read {os.path.basename(cursor.path)}: {cursor.error}"
            )
            return 0
        if change is Change.GONE:
            added = 0
            if cursor.ident is not None:
                cursor.vanish()
                added = self._drain_rotated(cursor)  # renamed away, the path not yet created again
                self.on_gone(cursor)
            elif cursor.must_drain() or cursor.folder_changed():  # still missing: and meanwhile?
                added = self._drain_rotated(cursor)
            return added
        if self._failures.pop(cursor.path, None):
            self._retry_at.pop(cursor.path, None)
        added = self._drain_rotated(cursor) if cursor.must_drain() else 0
        if change is Change.RESET:
            self.on_reset(cursor)
        if change is not Change.UNCHANGED:
            added += self.read(cursor)
        if cursor.stale:  # changed between the look and the read: the next look starts from here
            cursor.stale, cursor.left = False, True
        else:
            cursor.since_ns = max(cursor.since_ns, cursor.mtime_ns)
        return added

    def _drain_rotated(self, cursor: FileCursor) -> int:
        """Before the path's file is read, read what earlier generations of it received after
        our last look (FAULTS F1, F3), oldest first:
        - renamed away (`train.log` -> `train.log.1`, logrotate `create`/`nocreate`, Python's
          WatchedFileHandler): the old file, from where we stopped; the writer may append to it
          through its open handle until it reopens, so it is read again at every look until the
          path's new file has bytes;
        - copied then truncated (logrotate copytruncate): the copy, from where we stopped;
        - whole generations that came and went between two looks (rotated twice, or rotated
          while the path was missing): from byte 0."""
        cursor.left = False
        saved = (
            cursor.path,
            cursor.offset,
            cursor.ident,
            cursor.head,
            cursor.size,
            cursor.mtime_ns,
        )
        current = None
        if cursor.ident is not None:
            current = Generation(
                cursor.ident, cursor.head, cursor.offset, cursor.mtime_ns, cursor.path, cursor.size
            )
        siblings, here = rotated_siblings(cursor.key, cursor.earlier, current, cursor.since_ns)
        added = 0
        for sib in siblings:
            gen = sib.generation
            # where to read, and what must still be there when it is read
            cursor.path, cursor.offset, cursor.ident, cursor.head = (
                sib.path,
                sib.offset,
                gen.ident,
                gen.head,
            )
            if sib.offset == 0:
                self.on_reset(cursor)  # a whole generation: its parse state starts afresh
            try:
                added += self.read(cursor)
            finally:
                gen.offset = cursor.offset
                cursor.remember(gen)
                (
                    cursor.path,
                    cursor.offset,
                    cursor.ident,
                    cursor.head,
                    cursor.size,
                    cursor.mtime_ns,
                ) = saved
        if cursor.trailing is not None:
            cursor.trailing = _still_written(cursor, here)
        return added

    # -- for subclasses -------------------------------------------------------------------------
    def read(self, cursor: FileCursor) -> int:
        raise NotImplementedError

    def on_reset(self, cursor: FileCursor) -> None:
        """The file is a new generation (truncated/replaced): forget per-file parse state."""

    def on_gone(self, cursor: FileCursor) -> None:
        """The file vanished: its points stay; if it comes back it is a new generation."""
        self.on_reset(cursor)

    def warn(self, message: str) -> None:
        self.store.warn(self.key, message)

    def complete_lines(
        self, cursor: FileCursor, lines: Lines, chunk: int = MAX_READ
    ) -> Iterator[list[tuple[int, bytes]]]:
        """The complete lines from the cursor's offset to EOF, numbered, one chunk's worth at a
        time: memory stays bounded by `chunk` however big the file (a 1 GB log read on first
        look). The cursor moves past each batch's lines as it is given. Lines over the cap are
        skipped and counted here; the caller isolates and counts its own bad records."""
        while True:
            data = cursor.read(chunk)
            if not data:
                return
            skipped = lines.skipped
            found, consumed = lines.feed(data)
            if cursor.final and len(data) < chunk and consumed < len(data):
                # the run has ended: what its writer never terminated is its last line
                lines.number += 1
                found.append((lines.number, data[consumed:].rstrip(b"\r")))
                consumed = len(data)
            cursor.advance(consumed)
            for _ in range(lines.skipped - skipped):
                self.skip(
                    cursor.path,
                    f"line {lines.number}",
                    f"longer than {lines.buffer.max_line} bytes",
                    "over-long",
                )
            yield found
            if len(data) < chunk or consumed == 0:
                return

    def skip(self, path: str, where: str, why: str, kind: str = "bad") -> None:
        """A bad record of `path` at `where` ("line 12", "byte 4096"): count it; the count and
        the last place are reported once per read (`report_skips`), not once per record."""
        self.skipped[path] = self.skipped.get(path, 0) + 1
        self._last_skip[path] = (kind, where, why[:200])

    def report_skips(self) -> None:
        for path, (kind, where, why) in self._last_skip.items():
            name = os.path.basename(path)
            self.store.warn(
                self.key,
                f"{name}: skipped {self.skipped[path]} {kind} record(s), "
                f"the last at {where}: {why}",
                topic=f"{name}: skipped ",
            )
        self._last_skip.clear()


class SqliteSource(Source):
    """A SQLite database written by another process. In WAL mode new rows land in `<db>-wal`
    and the main file may not change for a long while: both files' stats decide a re-read."""

    def __init__(self, store: Store, key: str) -> None:
        super().__init__(store, key)
        self._signature: dict[str, tuple] = {}
        self.db_path = key  # the database being read (bad rows are reported under its name)

    def poll(self, only: set[str] | None = None) -> int:
        added = 0
        for path, cursor in self.cursors.items():
            sig = tuple(_stat_sig(p) for p in (path, path + "-wal"))
            if sig == self._signature.get(path) and cursor.mtime_ns != -1:
                continue
            self._signature[path] = sig
            if sig[0] is None:
                continue
            cursor.mtime_ns = 0
            try:
                added += self.read(cursor)
            finally:
                self.report_skips()
        return added

    def read(self, cursor: FileCursor) -> int:
        """Open read-only, run `read_db`; a locked or half-written database is retried."""
        import sqlite3

        self.db_path = cursor.path
        try:
            con = sqlite3.connect(f"file:{cursor.path}?mode=ro", uri=True, timeout=0.5)
        except sqlite3.Error as exc:
            self.warn(f"{os.path.basename(cursor.path)}: {exc}")
            return 0
        try:
            return self.read_db(con)
        except sqlite3.OperationalError:
            cursor.mtime_ns = -1  # locked, mid-write or not created yet: look again next poll
            return 0
        except sqlite3.DatabaseError as exc:
            self.warn(f"{os.path.basename(cursor.path)}: {exc}")
            return 0
        finally:
            con.close()

    def read_db(self, con) -> int:  # type: ignore[no-untyped-def]
        raise NotImplementedError


def _still_written(
    cursor: FileCursor, here: dict[tuple[int, int], Generation]
) -> Generation | None:
    """The rotated file the writer may still hold, to read again at the next look: none once
    the path's new file has bytes (the writer has moved on to it); else the one we followed,
    whatever it now holds (emptied under the writer's handle, say), or if that is gone the
    newest rotated file (one made and renamed away between two looks)."""
    if cursor.size > 0 or not here:
        return None
    assert cursor.trailing is not None
    return here.get(cursor.trailing.ident) or max(here.values(), key=lambda g: g.mtime_ns)


def _stat_sig(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def sqlite_kind(path: str) -> str | None:
    """Which SQLite store a database is, by its tables: "mlflow-sqlite", "trackio" or None."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        try:
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            columns = (
                {r[1] for r in con.execute("PRAGMA table_info(metrics)")}
                if "metrics" in tables
                else set()
            )
        finally:
            con.close()
    except sqlite3.Error:
        return None
    if {"runs", "metrics", "experiments"} <= tables:
        return "mlflow-sqlite"
    if "metrics" in tables and columns >= {"run_name", "step", "metrics"}:
        return "trackio"
    return None

"""discover + sources + store + detectors: the one thing `check`, `ls` and the app share.

Every watchdog event only marks a path dirty ("re-read from my offset"), so a duplicate or missing
event is harmless; a full stat of every known file runs every `poll_seconds` anyway (polling is the
ground truth, inotify a hint: NFS, sshfs and exhausted inotify watches send nothing), and the tree
is walked again now and then for new runs.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from watchrun.config import Config
from watchrun.control import runs_with_live_writer, writer_alive
from watchrun.discover import Discovery, RunSpec, run_key
from watchrun.merge import RunFacts, duplicates, facts, groups
from watchrun.model import ENDED, Alert, RunStatus, Severity, stale_limit
from watchrun.snapshot import Snapshot, SnapshotBuilder
from watchrun.sources import BY_FORMAT, Source, source_class
from watchrun.store import Store
from watchrun.tail import RACY_NS, rotation_bases

if TYPE_CHECKING:
    import logging

    from watchdog.observers.api import BaseObserver

    from watchrun.detectors.runner import DetectorRunner
    from watchrun.gpu import Sampler

# inotify events that mean "a file changed": never IN_OPEN, IN_ACCESS or IN_CLOSE_NOWRITE, which
# the engine's own reads would raise (5,000 runs: the queue overflowed, 100% CPU for ever)
_WRITE_EVENTS = (
    "FileModifiedEvent", "FileCreatedEvent", "FileMovedEvent", "FileDeletedEvent",
    "FileClosedEvent", "DirCreatedEvent", "DirMovedEvent", "DirDeletedEvent",
)  # fmt: skip
_WATCHDOG_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")
OVERFLOW_POLL_SECONDS = 30.0  # after an overflow: poll alone this long
FULL_POLL_WITH_EVENTS = 15.0  # with trusted file events: a stat of every file this often
RESCAN_WITH_EVENTS = 60.0  # and a walk of the tree (a new directory triggers one at once)
IDLE_WAKE_SECONDS = 5.0  # with trusted file events: wake for statuses and stalls this often
FAST_POLL_SECONDS = 0.1  # polling while files grow: this often (or 50x a poll's cost: <= 2%)
FAST_POLL_HOLD = 5.0  # seconds after the last new data that polling stays fast
MIN_TICK_GAP = 0.01  # a burst of file events within this of the last tick is read in one tick
HIDDEN_WHEN_EMPTY = {fmt for fmt, cls in BY_FORMAT.items() if not cls.listed_when_empty}
SHOWN_SCAN_ERRORS = 20  # unreadable paths a snapshot names (the count covers the rest)
MERGE_EVERY = 5.0  # seconds between looks for runs to join while data arrives
STOP_OUTCOMES = {"stopped", "stop_requested", "stop_failed"}  # alerts not raised from points


class Engine:
    def __init__(
        self,
        paths: list[str],
        config: Config | None = None,
        poll_seconds: float | None = None,
        use_watchdog: bool = True,
        bounded: bool = False,
        follow_symlinks: bool = False,
    ) -> None:
        """`bounded`: memory per series stays flat however long a run grows (see Store); the
        CLI and the app bound, `watchrun.read()` keeps every point. A URL among `paths`
        (s3://, ssh://, mlflow+http://...) is watched through its local mirror (watchrun.remote;
        raises RemoteError when it cannot be opened at all)."""
        from watchrun.remote import open_roots

        paths, self.mirrors = open_roots(paths, poll_seconds)
        self.roots = [os.path.abspath(p) for p in paths]
        self.config = config or Config()
        self.store = Store(bounded=bounded)
        self.sources: dict[tuple[str, str], Source] = {}
        self.by_key: dict[str, list[Source]] = {}  # a run's sources, in the order they were made
        self.owner: dict[str, Source] = {}
        self.discovery = Discovery(self.roots, follow_symlinks)
        self.scan_errors: list[
            str
        ] = []  # what the last scan could not read ("permission denied: P")
        self.readable = 0  # directories and files the last scan could read
        self.unreadable: set[str] = set()  # paths the last scan could not read
        self.joined: dict[
            str, tuple[str, str]
        ] = {}  # a run root found apart -> (key, root) it joined
        self.forced_poll = poll_seconds is not None
        self.poll_seconds = poll_seconds if poll_seconds is not None else 1.0
        self.use_watchdog = use_watchdog and not self.forced_poll
        self.dirty: set[str] = set()
        self.rescan_needed = True
        self.wake = threading.Event()
        self._observer: BaseObserver | None = None
        self.watch_error: str | None = None
        self._detectors: DetectorRunner | None = None
        self.overflows = 0  # inotify queue overflows seen (events lost: rescan, poll a while)
        self._poll_until = 0.0
        self._last_full_poll = 0.0
        self._last_rescan = 0.0
        self._scan_cost = 0.0
        self._last_data = time.monotonic()
        self._last_merge = 0.0
        self._merge_pending = False
        self._overflow: logging.Handler | None = None
        self._poll_cost = 0.0
        self._folders_cost = 0.0  # a look at the folders' mtimes (polling: finds new runs)
        self._last_tick = 0.0
        self._facts: dict[str, tuple[int, RunFacts]] = {}
        self._settled = True
        self._tick_errors: set[str] = set()
        self._exited: dict[str, tuple[object, float]] = {}  # run -> (pid, last write) seen exited
        self._snapshots = SnapshotBuilder(self.store, self.visible_keys)
        self._stop_outcomes: queue.SimpleQueue[tuple[str, str, str]] = queue.SimpleQueue()
        self._folders: dict[str, int] = {}
        self._walked: set[str] = set()
        self._folders_at = 0
        self._last_scan_ns = 0
        # alerts announced once, to be kept quiet when the detectors raise them again
        self._announced: set[tuple[str, str, str, int]] = set()

    # -- discovery ----------------------------------------------------------------------------
    def scan(self, stop: threading.Event | None = None) -> list[str]:
        """Walk the roots; attach sources for runs and files not seen before (until `stop`)."""
        t0 = time.monotonic()
        started_ns = time.time_ns()
        new_keys: list[str] = []
        errors: list[str] = []
        self.readable = 0
        self.unreadable = set()
        self.discovery.folders = set()
        for root in self.roots:
            specs = self.discovery.scan(root)
            found = {f.path for spec in specs.values() for f in spec.files}
            errors += self.discovery.errors
            self.unreadable |= self.discovery.unreadable
            self.readable += self.discovery.readable
            for spec in specs.values():
                if stop is not None and stop.is_set():
                    return new_keys
                key, run_root = self.joined.get(spec.root) or (
                    self._key(spec.root, root),
                    spec.root,
                )
                if self._attach(key, run_root, spec, found):
                    new_keys.append(key)
        self.scan_errors = errors
        self._scan_cost = time.monotonic() - t0
        self._last_rescan = time.monotonic()
        self.rescan_needed = False
        if new_keys:
            self._merge_pending = True
        self._walked = set(self.discovery.folders)
        self._folders_at = time.time_ns()
        self._folders = self._folder_times()
        self._last_scan_ns = started_ns
        return new_keys

    def _key(self, run_root: str, watch_root: str) -> str:
        mirror = self.mirrors.get(watch_root)
        if mirror is not None:  # named after its host or bucket: two nodes' version_0 apart
            rel = os.path.relpath(run_root, watch_root)
            return mirror.label if rel == "." else f"{mirror.label}/{rel}"
        return (
            run_key(run_root, watch_root)
            if len(self.roots) == 1
            else _multi_key(run_root, watch_root)
        )

    def _remote_url(self, run_root: str) -> str | None:
        for local_root, mirror in self.mirrors.items():
            if run_root == local_root or run_root.startswith(local_root + os.sep):
                return mirror.url
        return None

    def mirror_problems(self) -> list[str]:
        """What is wrong with the remote roots right now (server away, credentials...)."""
        return [p for p in (m.problem() for m in self.mirrors.values()) if p]

    def close(self) -> None:
        """Stop the remote roots' polling (local roots need nothing)."""
        from watchrun.remote import OPEN

        for local_root, mirror in self.mirrors.items():
            mirror.close()
            if OPEN.get(local_root) is mirror:
                del OPEN[local_root]

    def _attach(
        self, key: str, run_root: str, spec: RunSpec, found: set[str] | None = None
    ) -> bool:
        """Sources for the files of `spec` not read yet, under run `key`; True if the run is new."""
        is_new = key not in self.store.runs
        run = self.store.run(key, root=run_root)
        if self.mirrors and is_new:
            run.remote = self._remote_url(run_root)
        for f in spec.files:
            if f.path in self.owner or self._rotated_copy(f.path, found or set()):
                continue
            src = self.sources.get((key, f.format))
            if src is None:
                src = self.sources[(key, f.format)] = source_class(f.format).create(
                    self.store, key, run_root, f.path
                )
                self.by_key.setdefault(key, []).append(src)
            src.add_file(f.path, **f.options)
            self.owner[f.path] = src
            if self._loaded:  # made since the last walk: its rotations since then too
                src.cursors[f.path].found_late(self._last_scan_ns)
            unit = source_class(f.format).step_unit
            if unit != "step":
                run.step_unit = unit
            if run.gone:
                run.gone = False
        return is_new

    def _rotated_copy(self, path: str, found: set[str]) -> bool:
        """`events.out.tfevents.X.host.1.0.1` next to `events.out.tfevents.X.host.1.0`: a rotated
        generation of a file that is read already (its cursor reads its rotations once), not a
        file of its own (it would be read twice)."""
        return any(base in self.owner or base in found for base in rotation_bases(path))

    def _folder_times(self) -> dict[str, int]:
        """The mtime of every folder walked: a new file or folder in one changes it, so polling
        finds new files at the next poll, not at the next walk (before they are rotated away)."""
        folders = self._walked | {os.path.dirname(p) for p in self.owner} | set(self.roots)
        out = {}
        for folder in folders:
            try:
                out[folder] = os.stat(folder).st_mtime_ns
            except OSError:
                out[folder] = -1
        return out

    def _folders_changed(self) -> bool:
        """A folder's mtime moved, or it moved so close to our last look that a change in the
        same clock tick would not show (then the tree is walked once more to be sure)."""
        times = self._folder_times()
        if times != self._folders:
            return True
        return max(times.values(), default=0) >= self._folders_at - RACY_NS

    # -- one training, one run ----------------------------------------------------------------
    def merge_runs(self) -> list[str]:
        """Join runs that evidence shows are one training (merge.py); their files are read
        again, from the start, as one run. The keys of the joined runs."""
        self._last_merge = time.monotonic()
        self._merge_pending = False
        with self.store.lock:
            known = [self._facts_of(r) for r in self.store.runs.values() if r.key in self.by_key]
        found = groups(known)
        roots = [self._common_root(keys) for keys, _ in found]
        shared = {r for r in roots if roots.count(r) > 1}
        made: list[str] = []
        for (keys, why), root in zip(found, roots, strict=True):
            made.append(self._join(keys, why, root, own_key=root not in shared))
        for key in made:
            self.poll(keys=[key])
            self._drop_duplicates(key)
        return made

    def _facts_of(self, run) -> RunFacts:  # type: ignore[no-untyped-def]
        cached = self._facts.get(run.key)
        if cached is None or cached[0] != run.version:
            cached = self._facts[run.key] = (
                run.version,
                facts(
                    run,
                    self._run_dir(run),
                    run.formats <= {"console"},
                    lambda n: self.store.streams_of(run.key, n),
                ),
            )
        return cached[1]

    def _run_dir(self, run) -> str:  # type: ignore[no-untyped-def]
        return os.path.dirname(run.root) if run.root in run.files else run.root

    def _common_root(self, keys: list[str]) -> str:
        return os.path.commonpath([self._run_dir(self.store.runs[k]) for k in keys])

    def _join(self, keys: list[str], why: str, root: str, own_key: bool = True) -> str:
        """Make runs `keys` one run rooted at `root`, named after it (or, when other trainings
        share that folder, after its richest member) and read again from the start. The alerts
        its detectors raise again are not announced a second time (`detect`)."""
        by_richness = sorted(
            keys,
            key=lambda k: (self.store.runs[k].formats <= {"console"}, -self.store.runs[k].points()),
        )
        watch_root = next(
            (w for w in self.roots if root == w or root.startswith(w + os.sep)), self.roots[0]
        )
        key = self._key(root, watch_root)
        if not own_key or (key in self.store.runs and key not in keys):
            key = by_richness[0]
        spec = RunSpec(root)
        for k in by_richness:
            for src in self.by_key.pop(k, []):
                self.sources.pop((k, src.format), None)
                for path in src.files():
                    self.owner.pop(path, None)
                    spec.add(src.format, path, **src.options.get(path, {}))
            old = self.store.runs[k].root
            self.joined[old] = (key, root)
            self._announced |= {_alert_id(a, key) for a in self.store.alerts_for(k)}
            self.store.drop_run(k)
            if self._detectors is not None:
                self._detectors.states.pop(k, None)
            self._facts.pop(k, None)
        for old, (k, _root) in list(self.joined.items()):  # runs joined before into one of these
            if k in keys:
                self.joined[old] = (key, root)
        self._attach(key, root, spec)
        self.store.update(key, joined=[why])
        return key

    def _drop_duplicates(self, key: str) -> None:
        run = self.store.runs.get(key)
        if run is None:
            return
        with self.store.lock:
            streams = {n: ",".join(sorted(self.store.streams_of(key, n))) for n in run.series}
            dropped = duplicates(run, streams, self.store.richness_of)
            for drop, keep in dropped.items():
                run.duplicate_of[drop] = keep
                del run.series[drop]
            if dropped:
                self.store.touch(key)

    # -- polling ------------------------------------------------------------------------------
    def poll(self, paths: set[str] | None = None, keys: list[str] | None = None) -> int:
        """Read new bytes from every source (or those owning `paths`, or runs `keys`)."""
        added = 0
        for src, only in self._poll_jobs(paths, keys):
            try:
                n = src.poll(only)
            except Exception as exc:  # noqa: BLE001 - one broken file must not stop the rest
                self.store.warn(src.key, f"{type(exc).__name__} while reading: {exc}")
                n = 0
            if n:
                added += n
                if self._loaded:
                    self.store.runs[src.key].active_this_session = True
        retaken = self.store.take_retaken()
        if retaken:
            self._detect_again(retaken)
        return added

    def _detect_again(self, keys: set[str]) -> None:
        """A richer source took over a metric of these runs (store.py): the poorer one's points
        the detectors saw are gone, so they start again on the run from its first point, as after
        a merge. What they raise again is kept, but not announced a second time (`detect`)."""
        if self._detectors is None:
            return
        with self.store.lock:
            for key in keys:
                self._detectors.states.pop(key, None)
                alerts = self.store.alerts.get(key, [])
                kept = [a for a in alerts if a.detector in STOP_OUTCOMES]
                self._announced |= {_alert_id(a) for a in alerts if a.detector not in STOP_OUTCOMES}
                if len(kept) != len(alerts):
                    self.store.alerts[key] = kept
                    self.store.touch(key)

    def _poll_jobs(
        self, paths: set[str] | None, keys: list[str] | None
    ) -> list[tuple[Source, set[str] | None]]:
        """(source, its files to read or None for all) in the order the sources were made, so
        streams of one run are always read in the same order."""
        if paths is None:
            if keys is None:
                return [(src, None) for src in list(self.sources.values())]
            return [(src, None) for key in keys for src in list(self.by_key.get(key, ()))]
        by_source: dict[Source, set[str]] = {}
        for p in paths:
            src = self.owner.get(p)
            if src is None:  # `train.log.1` written through the writer's old handle: its path's
                p = next((b for b in rotation_bases(p) if b in self.owner), p)  # cursor reads it
                src = self.owner.get(p)
            if src is not None:
                by_source.setdefault(src, set()).add(p)
        if len(by_source) == 1:
            return list(by_source.items())
        rank = {src: i for i, src in enumerate(self.sources.values())}
        return sorted(by_source.items(), key=lambda item: rank.get(item[0], 0))

    _loaded = False

    def load(
        self,
        on_progress: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
        on_scanned: Callable[[], None] | None = None,
        freeze: bool = False,
    ) -> None:
        """First full read: runs newest first, so the first results show before the end. Once
        `stop` is set (a signal), it returns before the next run: a first read of thousands of
        runs must not hold up an exit. Remote roots are loaded into their mirrors first.
        `on_scanned` runs once the walk is done, before any run is read (the app lists the runs
        found then: its first frame). `freeze`: what the read made is frozen for the cyclic
        collector (`cyclic_gc_paused`; the app only)."""
        from watchrun.remote import OPEN

        OPEN.update(self.mirrors)  # where control finds a remote run's mirror (stop requests)
        if self.store.bounded:  # the CLI and the app (a library's caller keeps its allocator)
            keep_freed_heap()
        for mirror in self.mirrors.values():
            mirror.start()
        self.scan(stop)
        if on_scanned is not None:
            on_scanned()
        with cyclic_gc_paused(self.store.bounded, freeze):
            for key in self.store.keys():  # noqa: SIM118 - a copy: runs may be added meanwhile
                if stop is not None and stop.is_set():
                    return
                self.poll(keys=[key])
                self._settle_loaded(key)
                if on_progress:
                    on_progress(key)
        for key in self.merge_runs():  # runs joined on evidence were read again as one
            self._settle_loaded(key)
        self._loaded = True
        self.update_statuses()

    def _settle_loaded(self, key: str) -> None:
        """After a run's first full read: its detectors see it all (then a bounded history may
        drop what they have consumed) and its series are compacted."""
        if self.store.bounded and self._detectors is not None:
            self._detectors.process(keys=[key])
        for s in self.store.runs[key].series.values():
            s.compact()

    @property
    def detectors(self) -> DetectorRunner:
        """The detector runner, made (and the detectors imported) when first needed: `ls`
        never needs them."""
        if self._detectors is None:
            from watchrun.detectors.runner import DetectorRunner

            self._detectors = DetectorRunner(self.store, self.config)
        return self._detectors

    def detect(self, final: bool = False) -> list[Alert]:
        """Run the detectors over what has settled; `final` settles everything."""
        alerts = self.detectors.process(final=final)
        if self._announced and alerts:
            alerts = [a for a in alerts if _alert_id(a) not in self._announced]
        return alerts

    def check(self) -> list[Alert]:
        """Batch mode: read everything, detect as if it had arrived live, return the alerts."""
        self.load()
        return self.verdict()

    def verdict(self) -> list[Alert]:
        """Detect over what has been read, then judge every run that nothing still writes as
        ended (end-of-run checks apply); the alerts raised."""
        alerts = self.detect(final=False)
        self.detectors.ended_now = self.runs_just_ended()
        if self.read_last_lines(self._ended_keys() | self.detectors.ended_now):
            alerts += self.detect(final=False)
        return alerts + self.detect(final=True)

    def read_last_lines(self, keys: set[str]) -> int:
        """The runs `keys` have ended: their files' unterminated last lines are read."""
        added = 0
        for key in keys:
            for source in self.by_key.get(key, []):
                added += source.read_last_lines()
        return added

    def runs_just_ended(self) -> set[str]:
        """Runs that look live by their mtimes (written within the stale limit) but that no
        process still writes: a training that finished moments ago, or files just copied here.
        A batch verdict judges them as ended, so end-of-run checks apply."""
        self.update_statuses()
        now = time.time()
        with self.store.lock:
            fresh = [
                r
                for r in self.store.runs.values()
                if r.status in (RunStatus.RUNNING, RunStatus.UNKNOWN)
            ]
            # finished because their named writer has gone, though written moments ago
            exited = {
                key
                for key in self._exited
                if self.store.runs[key].status is RunStatus.FINISHED
                and now - self.store.runs[key].last_write < self.stale_after(self.store.runs[key])
            }
        if not fresh:
            return exited
        # a remote run's writer cannot be seen from here: fresh files keep it in progress
        return exited | ({r.key for r in fresh if not r.remote} - runs_with_live_writer(fresh))

    # -- follow mode --------------------------------------------------------------------------
    def start_watching(self) -> None:
        if not self.use_watchdog:
            return
        try:
            import logging

            from watchdog import events
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer

            engine = self

            class Handler(FileSystemEventHandler):
                def on_any_event(self, event):  # type: ignore[no-untyped-def]
                    if event.is_directory and event.event_type in ("created", "moved", "deleted"):
                        engine.rescan_needed = True
                    for p in (event.src_path, getattr(event, "dest_path", "")):
                        if p:
                            engine.dirty.add(os.fsdecode(p))
                    if not event.is_directory and event.event_type in ("created", "moved"):
                        engine.rescan_needed = True
                    engine.wake.set()

            observer = Observer()
            for root in self.roots:
                target = root if os.path.isdir(root) else os.path.dirname(root)
                observer.schedule(
                    Handler(),
                    target,
                    recursive=True,
                    event_filter=[getattr(events, n) for n in _WRITE_EVENTS],
                )
            observer.daemon = True
            self._overflow = _overflow_signal(self)
            for name in _WATCHDOG_LOGGERS:
                logging.getLogger(name).addHandler(self._overflow)
            observer.start()
            self._observer = observer
        except (OSError, RuntimeError) as exc:  # inotify limits (ENOSPC, EMFILE): poll instead
            self.watch_error = (
                f"file events unavailable ({exc}); polling every {self.poll_seconds:g}s"
            )
            self._observer = None

    def stop_watching(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        if self._overflow is not None:
            import logging

            for name in _WATCHDOG_LOGGERS:
                logging.getLogger(name).removeHandler(self._overflow)
            self._overflow = None

    def on_overflow(self) -> None:
        """The kernel dropped file events (its queue overflowed): what changed meanwhile is
        unknown. Rescan once, and trust polling alone for a while (the burst may go on)."""
        self.overflows += 1
        self.rescan_needed = True
        self._poll_until = time.monotonic() + OVERFLOW_POLL_SECONDS
        self.wake.set()

    @property
    def events_trusted(self) -> bool:
        """File events tell every change (no recent overflow): the full poll is a slow safety
        net."""
        return self.watching and time.monotonic() >= self._poll_until

    @property
    def watching(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def tick(self) -> list[Alert]:
        """One round of follow mode: dirty files, then a full poll and rescan when they are due."""
        now = time.monotonic()
        dirty, self.dirty = self.dirty, set()
        trusted = self.events_trusted
        # with file events, changes wake us at once: the full poll and the walk are safety nets;
        # without them (polling), a new run is found at the next walk: each poll's, unless the
        # walk is costly (at most 2% of the time walking)
        if trusted:
            full_every = max(self.poll_seconds, FULL_POLL_WITH_EVENTS, 50 * self._poll_cost)
            rescan_every = max(RESCAN_WITH_EVENTS, 100 * self._scan_cost)
        else:
            full_every, rescan_every = (
                self.poll_interval(),
                max(self.poll_seconds, 50 * self._scan_cost),
            )
        if (
            dirty
            and not self.rescan_needed
            and any(p not in self.owner and self.discovery.is_source(p) for p in dirty)
        ):
            self.rescan_needed = True  # a file that said nothing before is a log now
        if not trusted and not self.rescan_needed:  # a stat per folder: cheap next to the poll
            t0 = time.monotonic()
            self.rescan_needed = self._folders_changed()
            self._folders_cost = time.monotonic() - t0
        if (self.rescan_needed or now - self._last_rescan > rescan_every) and self.scan():
            dirty = None  # type: ignore[assignment]
        added = 0
        changed: set[str] | None = None  # the runs whose files may have changed (None: any)
        if dirty is None or now - self._last_full_poll >= full_every:
            if dirty is not None and self.discovery.grown():
                self.rescan_needed = True  # picked up at the next tick
            t0 = time.monotonic()
            added += self.poll()
            self._poll_cost = time.monotonic() - t0
            self._last_full_poll = now
        else:
            if trusted:  # nothing but these files changed since the last full poll
                changed = {self.owner[p].key for p in dirty if p in self.owner}
            if dirty:
                added += self.poll(paths=dirty)
        if added:
            self._merge_pending = True
        # runs found apart are joined every MERGE_EVERY while data arrives, and at the latest
        # when it settles: before the end-of-run verdict, which must judge the joined run
        settling = not self._settled and now - self._last_data >= self.config.settle_seconds
        if self._merge_pending and (now - self._last_merge >= MERGE_EVERY or settling):
            self.merge_runs()
        ended_before = self._ended_keys()
        self.update_statuses(changed)
        # a run that has just ended (its final record read, its writer gone, quiet for far longer
        # than usual) gets its end-of-run checks once settled, as a batch verdict gives them
        just_ended = self._ended_keys() - ended_before
        if just_ended:
            added += self.read_last_lines(just_ended)
        if added or just_ended:
            self._last_data = now
            self._settled = False
        quiet = now - self._last_data >= self.config.settle_seconds
        alerts = self.detect(final=quiet and not self._settled)
        if quiet:
            self._settled = True
        alerts += self.detectors.check_stalled()
        return alerts

    sampler: Sampler | None = None  # while run_forever runs: processes and GPUs, 1/s
    on_notice: Callable[[str], None] | None = None  # the sampler's one-time notices

    def tick_safely(self, on_error: Callable[[str], None]) -> list[Alert]:
        """tick(), but an exception is reported (once per distinct message) and the follow loop
        goes on: the next tick retries, and a full poll re-reads whatever this one missed."""
        try:
            return self.tick()
        except Exception as exc:  # noqa: BLE001 - one bad tick must not end live updates
            message = f"{type(exc).__name__} while following: {exc}"
            if message not in self._tick_errors:
                self._tick_errors.add(message)
                on_error(message)
            return []

    def run_forever(
        self,
        stop: threading.Event,
        on_alerts: Callable[[list[Alert]], None],
        on_error: Callable[[str], None] = lambda message: None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """The one follow loop (`check --follow` and the app): tick, report, wait for file
        events or the poll interval. `on_tick` runs after every tick (the app publishes a
        Snapshot there); `on_error` gets a failing tick's or detector's message."""
        from watchrun.gpu import start_sampler

        self.start_watching()
        self.sampler = start_sampler(self)
        said: list[str] = []  # the remote roots' trouble, said once each as it comes
        try:
            while not stop.is_set():
                self._apply_stop_outcomes()
                said = self._say_mirror_problems(said, on_error)
                alerts = self.tick_safely(on_error)
                if alerts:
                    on_alerts(alerts)
                for message in self.detectors.take_failures():
                    on_error(message)
                if on_tick is not None:
                    on_tick()
                self.wake.wait(timeout=self._next_wake())
                self.wake.clear()
                # file events come in bursts (a writer's flush, several files): the first is read
                # at once, the rest of a burst within MIN_TICK_GAP of that read in one more tick
                gap = self._last_tick + MIN_TICK_GAP - time.monotonic()
                if gap > 0:
                    stop.wait(gap)
                self._last_tick = time.monotonic()
        finally:
            self.stop_watching()
            if self.sampler is not None:
                self.sampler.stop()
            self.close()

    def _say_mirror_problems(self, said: list[str], on_error: Callable[[str], None]) -> list[str]:
        """Each new trouble of a remote root once, and when a root that had one is back."""
        now = self.mirror_problems()
        for message in now:
            if message not in said:
                on_error(message)
        for mirror in self.mirrors.values():
            if mirror.problem() is None and any(m.startswith(mirror.url + ":") for m in said):
                on_error(f"{mirror.url}: reachable again")
        return now

    # -- readers ------------------------------------------------------------------------------
    def publish(self) -> Snapshot:
        """The immutable Snapshot of every visible run as of now (unchanged runs are reused)."""
        sampler = self.sampler
        return self._snapshots.build(
            ready=self._loaded,
            notice="; ".join(filter(None, [self.watch_error, *self.mirror_problems()])) or None,
            machine=sampler.latest if sampler is not None else None,
            scan_errors=tuple(self.scan_errors[:SHOWN_SCAN_ERRORS]),
            scan_error_count=max(len(self.unreadable), len(self.scan_errors)),
        )

    def record_stop(self, key: str, outcome: str, kind: str) -> None:
        """A stop dialog's outcome (what control.stop / control.request_stop said): the follow
        loop writes it into the store on its own thread, as an info alert of detector `kind`
        (stopped, stop_requested or stop_failed); `stopped` marks the run stopped."""
        self._stop_outcomes.put((key, outcome, kind))
        self.wake.set()

    def _apply_stop_outcomes(self) -> None:
        while not self._stop_outcomes.empty():
            key, outcome, kind = self._stop_outcomes.get()
            with self.store.lock:
                run = self.store.runs.get(key)
                if run is None:
                    continue
                if kind == "stopped":
                    run.stopped = True
                self.store.add_alert(
                    Alert(key, kind, Severity.INFO, run.last_step() or 0, [], outcome, {}, "")
                )

    def _ended_keys(self) -> set[str]:
        with self.store.lock:
            return {k for k, r in self.store.runs.items() if r.status in ENDED}

    def poll_interval(self) -> float:
        """Seconds between full polls without trusted file events: FAST_POLL_SECONDS (or 50x
        what a poll and a look at the folders cost, so at most 2% of the time) while files
        grow, that is up to FAST_POLL_HOLD after the last new data; `poll_seconds` once quiet."""
        if time.monotonic() - self._last_data >= FAST_POLL_HOLD:
            return self.poll_seconds
        cost = self._poll_cost + self._folders_cost
        return min(self.poll_seconds, max(FAST_POLL_SECONDS, 50 * cost))

    def _next_wake(self) -> float:
        """Seconds until the next round: the poll interval (file events wake it sooner), or the
        moment the last data settles, so that an alert waiting on it is raised then."""
        wait = self.poll_interval() if not self.events_trusted else IDLE_WAKE_SECONDS
        if not self._settled:
            wait = min(
                wait, max(0.0, self._last_data + self.config.settle_seconds - time.monotonic())
            )
        return wait

    # -- status -------------------------------------------------------------------------------
    def update_statuses(self, changed: set[str] | None = None) -> None:
        """Statuses from the files' mtimes. `changed`: only these runs' files can have changed
        (file events said so): the others are not stat'ed again, their status only ages."""
        now = time.time()
        with self.store.lock:
            for key, run in self.store.runs.items():
                if changed is None or key in changed:
                    self._update_last_write(run)
                status = self._status(run, now)
                if status != run.status:
                    if status in ENDED and self._loaded:
                        self._settled = False  # the next quiet tick gives it its end-of-run checks
                    run.status = status
                    self.store.touch(key)

    def _update_last_write(self, run) -> None:  # type: ignore[no-untyped-def]
        """The newest mtime of the run's files; the gaps between writes seen while watching
        give the run's usual interval (for `stale`)."""
        newest = 0.0
        present = 0
        for f in run.files:
            try:
                newest = max(newest, os.stat(f).st_mtime)
                present += 1
            except OSError:
                continue
        run.gone = bool(run.files) and present == 0
        if not newest:
            return
        if self._loaded and run.last_write and newest > run.last_write + 0.5:
            run.write_intervals.append(newest - run.last_write)
            del run.write_intervals[:-50]
        run.last_write = newest

    def _status(self, run, now: float) -> RunStatus:  # type: ignore[no-untyped-def]
        if run.gone:  # set by _update_last_write, which has just stat'ed every file
            return RunStatus.GONE
        if run.stopped:
            return RunStatus.STOPPED
        if run.explicit_status is not None:
            return run.explicit_status
        if run.last_write <= 0:
            return RunStatus.UNKNOWN
        if self._writer_exited(run):
            return RunStatus.FINISHED
        return (
            RunStatus.RUNNING if now - run.last_write < self.stale_after(run) else RunStatus.STALE
        )

    def _writer_exited(self, run) -> bool:  # type: ignore[no-untyped-def]
        """The process the run's files name as their writer has exited (with no library record
        saying how, the run is finished). An exit is final, so it is asked once per pid; a write
        after it was seen gone comes from another process, which names no pid: then the age of
        the files decides, as for any run."""
        seen = self._exited.get(run.key)
        if seen is not None and seen[0] == run.pid:
            return run.last_write <= seen[1]
        if writer_alive(run) is False:
            self._exited[run.key] = (run.pid, run.last_write)
            return True
        return False

    def stale_after(self, run) -> float:  # type: ignore[no-untyped-def]
        return stale_limit(run, self.config)

    def readable_keys(self) -> list[str]:
        """Visible runs with at least one file the last scan could read."""
        with self.store.lock:
            return [
                k for k in self.visible_keys() if not self.store.runs[k].files <= self.unreadable
            ]

    def visible_keys(self) -> list[str]:
        """Runs worth listing: skip containers and console files that hold no metric yet."""
        out = []
        with self.store.lock:
            for key, run in self.store.runs.items():
                if (
                    run.series
                    or run.explicit_status is not None
                    or not run.formats <= HIDDEN_WHEN_EMPTY
                ):
                    out.append(key)
        return out


_HEAP_KEPT = False
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


@contextlib.contextmanager
def cyclic_gc_paused(pause: bool, freeze: bool = False) -> Iterator[None]:
    """Python's cyclic collector paused while a first read runs (the CLI and the app only). A
    first read makes arrays and dicts by the hundred thousand, all kept, and few cycles: every
    gen-2 collection it set off walked all of them again, 5% of the read of 1,000 runs. Objects
    freed by their reference count go at once as always; cycles wait for the end of the read.

    With `freeze` (the app: one engine for the life of the process), what the read made is
    frozen at the end (gc.freeze): it lives as long as the runs, and the collections after the
    read would walk it all again (the first one at once: 0.1-0.2 s after 1,000 runs). The
    engine's read leaves no cyclic garbage (a test checks) but that of the modules it imports
    (a few hundred objects); what the UI thread dropped meanwhile is kept too (Textual's render
    caches: ~450 KB after the 1,000-run load of benchmarks/ui.py). Both once: later collections
    work as always. Not for a caller that makes engine after engine: an engine is a cycle (its
    snapshot builder points back at it), frozen it would never be collected."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        gc.enable()


def keep_freed_heap() -> None:
    """Have glibc keep freed memory for reuse (once per process; elsewhere nothing is done).

    By default glibc gives the free memory at the top of its heap back to the kernel as soon as
    it passes 128 KiB, and raises that limit only once a block it made with mmap is freed. A
    first read makes and frees about a megabyte of temporaries per event file (the scanner's
    buffers, the decoded points): given back after each file, those pages were faulted in again
    for the next one, a quarter of the read's CPU. The values set are the state glibc moves to
    by itself once a 32 MiB block has been freed: blocks under 32 MiB come from the heap, and
    up to 64 MiB of free heap is kept."""
    global _HEAP_KEPT
    if _HEAP_KEPT:
        return
    _HEAP_KEPT = True
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 64 << 20)
    except (OSError, ValueError, AttributeError):  # not glibc, no confstr name, no mallopt
        return


def _alert_id(alert: Alert, run: str | None = None) -> tuple[str, str, str, int]:
    """What makes an alert the same one raised again (`run`: under the key it now has)."""
    return (run or alert.run, alert.detector, alert.severity.value, alert.step)


def _multi_key(root: str, watch_root: str) -> str:
    rel = os.path.relpath(root, watch_root)
    base = os.path.basename(os.path.abspath(watch_root))
    return base if rel == "." else os.path.join(base, rel)


def _overflow_signal(engine: Engine) -> logging.Handler:
    """watchdog reports a kernel queue overflow only in a log record: a handler that turns it
    into a rescan (logging is loaded here: `ls` never watches)."""
    import logging

    class OverflowSignal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "overflow" in record.getMessage().lower():
                engine.on_overflow()

    return OverflowSignal(logging.WARNING)

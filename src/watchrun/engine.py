"""discover + sources + store + detectors: the one thing `check`, `ls` and the app share.

Every watchdog event only marks a path dirty ("re-read from my offset"), so a duplicate or missing
event is harmless; a full stat of every known file runs every `poll_seconds` anyway (polling is the
ground truth, inotify a hint: NFS, sshfs and exhausted inotify watches send nothing), and the tree
is walked again now and then for new runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from watchrun.config import Config
from watchrun.control import runs_with_live_writer
from watchrun.detectors.runner import DetectorRunner, stale_limit
from watchrun.discover import RunSpec, discover, run_key
from watchrun.model import Alert, RunStatus
from watchrun.sources.base import Source
from watchrun.sources.console import ConsoleSource
from watchrun.sources.dvclive import DvcliveSource
from watchrun.sources.hf import HfTrainerSource
from watchrun.sources.keras import KerasCsvSource
from watchrun.sources.lightning import CheckpointSource, HparamsYamlSource, LightningCsvSource
from watchrun.sources.mlflow import MlflowFileSource, MlflowSqliteSource
from watchrun.sources.runcard import RunCardSource
from watchrun.sources.table import JsonlSource, TableSource
from watchrun.sources.tensorboard import TensorBoardSource
from watchrun.sources.trackio import TrackioSource
from watchrun.store import Store
from watchrun.tail import RACY_NS, rotation_bases

STEP_UNITS = {"keras-csv": "epoch"}
HIDDEN_WHEN_EMPTY = {"console", "mlflow-sqlite", "trackio", "checkpoint", "hparams-yaml", "run-card"}


def make_source(fmt: str, store: Store, key: str, spec: RunSpec, path: str) -> Source:
    if fmt == "tensorboard":
        return TensorBoardSource(store, key)
    if fmt == "hf-trainer":
        return HfTrainerSource(store, key)
    if fmt == "lightning-csv":
        return LightningCsvSource(store, key)
    if fmt == "keras-csv":
        return KerasCsvSource(store, key)
    if fmt == "hparams-yaml":
        return HparamsYamlSource(store, key)
    if fmt == "checkpoint":
        return CheckpointSource(store, key)
    if fmt == "mlflow":
        return MlflowFileSource(store, key, spec.root)
    if fmt == "mlflow-sqlite":
        return MlflowSqliteSource(store, key)
    if fmt == "run-card":
        return RunCardSource(store, key)
    if fmt == "trackio":
        return TrackioSource(store, key)
    if fmt == "dvclive":
        return DvcliveSource(store, key, spec.root)
    if fmt == "console":
        return ConsoleSource(store, key)
    if fmt == "jsonl":
        return JsonlSource(store, key, stream="watchrun" if path.endswith("watchrun.jsonl") else "jsonl")
    return TableSource(store, key)


class Engine:
    def __init__(
        self,
        paths: list[str],
        config: Config | None = None,
        poll_seconds: float | None = None,
        use_watchdog: bool = True,
    ) -> None:
        self.roots = [os.path.abspath(p) for p in paths]
        self.config = config or Config()
        self.store = Store()
        self.sources: dict[tuple[str, str], Source] = {}
        self.owner: dict[str, Source] = {}
        self.forced_poll = poll_seconds is not None
        self.poll_seconds = poll_seconds if poll_seconds is not None else 1.0
        self.use_watchdog = use_watchdog and not self.forced_poll
        self.dirty: set[str] = set()
        self.rescan_needed = True
        self.wake = threading.Event()
        self._observer = None
        self.watch_error: str | None = None
        self.detectors = DetectorRunner(self.store, self.config)
        self._last_full_poll = 0.0
        self._last_rescan = 0.0
        self._scan_cost = 0.0
        self._last_data = time.monotonic()
        self._settled = True
        self._folders: dict[str, int] = {}
        self._walked: set[str] = set()
        self._folders_at = 0
        self._last_scan_ns = 0

    # -- discovery ----------------------------------------------------------------------------
    def scan(self) -> list[str]:
        """Walk the roots; attach sources for runs and files not seen before."""
        t0 = time.monotonic()
        started_ns = time.time_ns()
        new_keys: list[str] = []
        walked: set[str] = set()
        for root in self.roots:
            specs = discover(root, walked).values()
            found = {f.path for spec in specs for f in spec.files}
            for spec in specs:
                key = run_key(spec.root, root) if len(self.roots) == 1 else _multi_key(spec.root, root)
                is_new = key not in self.store.runs
                run = self.store.run(key, root=spec.root)
                if is_new:
                    new_keys.append(key)
                for f in spec.files:
                    if f.path in self.owner or self._rotated_copy(f.path, found):
                        continue
                    src = self.sources.get((key, f.format))
                    if src is None:
                        src = self.sources[(key, f.format)] = make_source(
                            f.format, self.store, key, spec, f.path
                        )
                    src.add_file(f.path, **f.options)
                    self.owner[f.path] = src
                    if self._loaded:  # made since the last walk: its rotations since then too
                        src.cursors[f.path].found_late(self._last_scan_ns)
                    if f.format in STEP_UNITS:
                        run.step_unit = STEP_UNITS[f.format]
                    if run.gone:
                        run.gone = False
        self._scan_cost = time.monotonic() - t0
        self._last_rescan = time.monotonic()
        self.rescan_needed = False
        self._walked = walked
        self._folders_at = time.time_ns()
        self._folders = self._folder_times()
        self._last_scan_ns = started_ns
        return new_keys

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
        return added

    def _poll_jobs(self, paths: set[str] | None, keys: list[str] | None) -> list[tuple[Source, set[str] | None]]:
        """(source, its files to read or None for all) in the order the sources were made, so
        streams of one run are always read in the same order."""
        if paths is None:
            wanted = None if keys is None else set(keys)
            return [(src, None) for (key, _fmt), src in list(self.sources.items()) if wanted is None or key in wanted]
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

    def load(self, on_progress: Callable[[str], None] | None = None) -> None:
        """First full read: runs newest first, so the first results show before the end."""
        self.scan()
        for key in self.store.keys():  # noqa: SIM118 - a copy: runs may be added meanwhile
            self.poll(keys=[key])
            for s in self.store.runs[key].series.values():
                s.compact()
            if on_progress:
                on_progress(key)
        self._loaded = True
        self.update_statuses()

    def detect(self, final: bool = False) -> list[Alert]:
        """Run the detectors over what has settled; `final` settles everything."""
        return self.detectors.process(final=final)

    def check(self) -> list[Alert]:
        """Batch mode: read everything, detect as if it had arrived live, return the alerts."""
        self.load()
        return self.verdict()

    def verdict(self) -> list[Alert]:
        """Detect over what has been read, then judge every run that nothing still writes as
        ended (end-of-run checks apply); the alerts raised."""
        alerts = self.detect(final=False)
        self.detectors.ended_now = self.runs_just_ended()
        return alerts + self.detect(final=True)

    def runs_just_ended(self) -> set[str]:
        """Runs that look live by their mtimes (written within the stale limit) but that no
        process still writes: a training that finished moments ago, or files just copied here.
        A batch verdict judges them as ended, so end-of-run checks apply."""
        self.update_statuses()
        with self.store.lock:
            fresh = [r for r in self.store.runs.values() if r.status in (RunStatus.RUNNING, RunStatus.UNKNOWN)]
        if not fresh:
            return set()
        return {r.key for r in fresh} - runs_with_live_writer(fresh)

    # -- follow mode --------------------------------------------------------------------------
    def start_watching(self) -> None:
        if not self.use_watchdog:
            return
        try:
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
                observer.schedule(Handler(), target, recursive=True)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except (OSError, RuntimeError) as exc:  # inotify limits (ENOSPC, EMFILE): poll instead
            self.watch_error = f"file events unavailable ({exc}); polling every {self.poll_seconds:g}s"
            self._observer = None

    def stop_watching(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None

    @property
    def watching(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def tick(self) -> list[Alert]:
        """One round of follow mode: dirty files, then a full poll and rescan when they are due."""
        now = time.monotonic()
        dirty, self.dirty = self.dirty, set()
        full_every = self.poll_seconds if not self.watching else max(self.poll_seconds, 2.0)
        # with file events, creations trigger a rescan at once; the timed walk is a safety net
        rescan_every = max(30.0 if self.watching else 10.0, 50 * self._scan_cost)
        if not self.watching and not self.rescan_needed:  # a stat per folder: cheap next to the poll
            self.rescan_needed = self._folders_changed()
        if (self.rescan_needed or now - self._last_rescan > rescan_every) and self.scan():
            dirty = None  # type: ignore[assignment]
        added = 0
        if dirty is None or now - self._last_full_poll >= full_every:
            added += self.poll()
            self._last_full_poll = now
        elif dirty:
            added += self.poll(paths=dirty)
        if added:
            self._last_data = now
            self._settled = False
        self.update_statuses()
        quiet = now - self._last_data >= self.config.settle_seconds
        alerts = self.detect(final=quiet and not self._settled)
        if quiet:
            self._settled = True
        alerts += self.detectors.check_stalled()
        return alerts

    def run_forever(self, stop: threading.Event, on_alerts: Callable[[list[Alert]], None]) -> None:
        self.start_watching()
        try:
            while not stop.is_set():
                alerts = self.tick()
                if alerts:
                    on_alerts(alerts)
                self.wake.wait(timeout=self.poll_seconds if not self.watching else 2.0)
                self.wake.clear()
                # let a burst of writes land before reading it
                if not stop.is_set():
                    time.sleep(0.05)
        finally:
            self.stop_watching()

    # -- status -------------------------------------------------------------------------------
    def update_statuses(self) -> None:
        now = time.time()
        with self.store.lock:
            for key, run in self.store.runs.items():
                self._update_last_write(run)
                status = self._status(run, now)
                if status != run.status:
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
        return RunStatus.RUNNING if now - run.last_write < self.stale_after(run) else RunStatus.STALE

    def stale_after(self, run) -> float:  # type: ignore[no-untyped-def]
        return stale_limit(run, self.config)

    def visible_keys(self) -> list[str]:
        """Runs worth listing: skip containers and console files that hold no metric yet."""
        out = []
        with self.store.lock:
            for key, run in self.store.runs.items():
                if run.series or run.explicit_status is not None or not run.formats <= HIDDEN_WHEN_EMPTY:
                    out.append(key)
        return out


def _multi_key(root: str, watch_root: str) -> str:
    rel = os.path.relpath(root, watch_root)
    base = os.path.basename(os.path.abspath(watch_root))
    return base if rel == "." else os.path.join(base, rel)

"""An MLflow tracking server, mirrored as a local MLflow file store that sources/mlflow.py reads.

`watchrun mlflow+http://host:5000` (or `mlflow+https://`); the URL's query narrows and tunes it:

- `experiment=NAME` (repeatable): only these experiments (default: every active one);
- `run=NAME` / `run_id=ID`: only runs of that name / that id;
- `filter=EXPR`: any MLflow search filter, e.g. `filter=params.model = 'resnet'`;
- `poll=SECONDS`: the poll interval while a run is RUNNING (default 2; 5x that when none is;
  `--poll` fixes it).

The mirror writes `<exp>/<run name>/{meta.yaml, params/<key>, metrics/<key>}` (metrics lines are
`timestamp value step`, appended; meta.yaml, with the run's status, replaced atomically and
written last in each poll), so statuses and hparams reach the engine unchanged.

Requests (MLflow runs carry no update time to search on): each poll is two `runs/search`, one for
the RUNNING runs and one for the runs whose end_time is past the last poll (less ENDED_WINDOW, for
clock skew); their answers hold each run's latest value per metric. Only the metrics whose
latest (step, timestamp) is past the mirror's are read, from the last step seen on, through the
UI's `get-history-bulk-interval` endpoint (one request per metric key for up to 100 runs). It
returns every point of a step range unless the range holds more than 2,500 per run, when it
samples: then, or where the server lacks the endpoint, that metric is read whole with the REST
`get-history` and only the points past the mirror's are kept. The experiments are listed every
LISTING_SECONDS (a new one's runs are listed whole), and all runs every SWEEP_SECONDS, for deleted
runs and the rare run that the end_time window missed. A metric logged without `step=` (every
point at step 0) is re-read whole when it changes: MLflow has no other cursor for it. Points
logged at a step below one already mirrored are not mirrored.

The transport is the mlflow client's own (`mlflow.utils.rest_utils.http_request` with the
credentials of `MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN` and its TLS settings), called with no
retries of its own and a short timeout: MlflowClient retries for minutes by default, which would
hide a server that went away. The mirror retries with a backoff and says what is wrong in
`problem()`; nothing it has not written is taken as seen, so nothing is lost when the server
returns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from watchrun.remote import MARKER, OPEN, RemoteError, hold_cache, release_cache
from watchrun.sources.base import STEP_MIN

log = logging.getLogger(__name__)

KIND = "mlflow"
TEMP_PREFIX = "watchrun-mlflow-"  # a mirror of its own, when another watchrun holds the cache
DEFAULT_POLL = 2.0
IDLE_FACTOR = 5  # no RUNNING run: poll this many times slower
LISTING_SECONDS = 60.0  # experiments listed (new ones: all their runs listed at once)
SWEEP_SECONDS = 300.0  # all runs listed: deleted runs, and what the ended window missed
ENDED_WINDOW = 60.0  # runs ended since the last poll, less this much: the trainer's clock sets
# end_time, and it may differ from ours
MAX_BACKOFF = 30.0
BACKOFF_POLLS = 15
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
PAGE = 1000  # runs per search page (the server's default cap is far higher)
BULK_RUNS = 100  # the server's cap of run_ids per get-history-bulk-interval request
BULK_POINTS = 2500  # and of points per run: a range that holds more comes back sampled
HISTORY_PAGE = 25000
ACTIVE = ("RUNNING", "SCHEDULED")
NO_STOP = (
    "MLflow has no way to ask a run to stop: stop it where it runs (its host, its job "
    "scheduler); its status here follows the server's."
)


class ServerError(Exception):
    """The server could not be asked, or answered with an error: the message says which;
    `status` and `code` are the HTTP status and MLflow's error_code where it answered."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Target:
    """What a `mlflow+http(s)://` URL asks for."""

    base: str  # http(s)://host:port[/prefix]
    experiments: tuple[str, ...] = ()
    run_name: str | None = None
    run_id: str | None = None
    filter: str | None = None
    poll: float = DEFAULT_POLL

    def run_filter(self) -> str:
        """The user's narrowing as one MLflow filter (its clauses joined with AND)."""
        clauses = []
        if self.run_name is not None:
            clauses.append(f"attributes.run_name = {_quote(self.run_name)}")
        if self.run_id is not None:
            clauses.append(f"attributes.run_id = {_quote(self.run_id)}")
        if self.filter:
            clauses.append(self.filter)
        return " and ".join(clauses)


def parse_url(url: str) -> Target:
    """`mlflow+https://h:5000/p?experiment=a&poll=1` -> Target; RemoteError says what is
    wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("mlflow+http", "mlflow+https") or not parts.netloc:
        raise RemoteError(f"not an MLflow server URL: {url!r} (mlflow+http://host:port)")
    query = parse_qs(parts.query, keep_blank_values=False)
    known = {"experiment", "run", "run_id", "filter", "poll"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise RemoteError(f"{url}: unknown option {', '.join(unknown)} (known: {sorted(known)})")
    poll = DEFAULT_POLL
    if "poll" in query:
        try:
            poll = float(query["poll"][-1])
        except ValueError:
            poll = -1.0
        if not 0.05 <= poll <= 3600:
            raise RemoteError(f"{url}: poll must be seconds between 0.05 and 3600")
    return Target(
        base=f"{scheme.removeprefix('mlflow+')}://{parts.netloc}{parts.path.rstrip('/')}",
        experiments=tuple(query.get("experiment", ())),
        run_name=query.get("run", [None])[-1],
        run_id=query.get("run_id", [None])[-1],
        filter=query.get("filter", [None])[-1],
        poll=poll,
    )


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _and(*clauses: str) -> str:
    return " and ".join(c for c in clauses if c)


class Api:
    """The REST calls the mirror makes, through the mlflow client's transport; counts requests
    and bytes per endpoint (the benchmark and the tests read them)."""

    def __init__(self, base: str) -> None:
        try:
            from mlflow.utils.credentials import get_default_host_creds
        except ImportError as exc:
            raise RemoteError(
                f"MLflow servers are read with the mlflow client: pip install 'watchrun[mlflow]' "
                f"(mlflow-skinny) ({exc})"
            ) from exc

        self.base = base
        self.creds = get_default_host_creds(base)
        self.requests: Counter[str] = Counter()
        self.bytes_in = 0

    def call(self, method: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        from mlflow.utils.rest_utils import http_request

        self.requests[endpoint.rsplit("/mlflow/", 1)[-1]] += 1
        payload = {"params": body} if method == "GET" else {"json": body}
        try:
            response = http_request(
                self.creds,
                endpoint,
                method,
                max_retries=0,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                **payload,
            )
        except Exception as exc:  # noqa: BLE001 - the client wraps every transport error
            raise ServerError(self._transport_problem(exc)) from exc
        self.bytes_in += len(response.content)
        if response.status_code != 200:
            raise self._status_problem(response.status_code, response.text, endpoint)
        try:
            answer = response.json()
        except ValueError:
            raise ServerError(
                f"{self.base} answered {endpoint} with something that is not MLflow's JSON: "
                "is this an MLflow tracking server?"
            ) from None
        if not isinstance(answer, dict):
            raise ServerError(f"{self.base} answered {endpoint} with unexpected JSON")
        return answer

    def _transport_problem(self, exc: BaseException) -> str:
        import requests

        chain: list[BaseException] = []
        e: BaseException | None = exc
        while e is not None and len(chain) < 10:
            chain.append(e)
            e = e.__cause__ or e.__context__
        if any(isinstance(x, requests.exceptions.Timeout) for x in chain):
            return f"MLflow server {self.base} did not answer within {READ_TIMEOUT:.0f} s"
        if any(isinstance(x, requests.exceptions.SSLError) for x in chain):
            return f"TLS failed with {self.base}: {_short(chain[-1])}"
        if any(isinstance(x, requests.exceptions.RetryError) for x in chain):
            return f"MLflow server {self.base} answered with server errors (5xx / 429)"
        if any(isinstance(x, requests.exceptions.ConnectionError) for x in chain):
            return f"MLflow server {self.base} not reachable (connection refused or host unknown)"
        return f"MLflow server {self.base}: {_short(exc)}"

    def _status_problem(self, status: int, text: str, endpoint: str) -> ServerError:
        try:
            error = json.loads(text)
            code, message = str(error["error_code"]), str(error.get("message", ""))
        except (ValueError, TypeError, KeyError):
            code, message = None, ""
        if status in (401, 403):
            why = (
                f"{self.base} refused the credentials (HTTP {status}): set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
            )
        elif code is not None:
            why = f"{self.base} answered {endpoint} with {code}: {message[:300]}"
        elif status == 404:
            why = f"{self.base} has no {endpoint} (HTTP 404): is the URL an MLflow server's?"
        else:
            why = f"{self.base} answered HTTP {status} to {endpoint}: {text[:200]}"
        return ServerError(why, status, code)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


@dataclass
class MetricCursor:
    """Where a run's metric stands in the mirror: the last step written and the (timestamp,
    value) pairs written at that step (several values may share a step; step=0 everywhere is
    common), so that a point is never written twice nor skipped."""

    last_step: int | None = None
    at_last: set[tuple[int, str]] = field(default_factory=set)
    broken: bool = False  # its file could not be written (a key that collides with a folder)

    def has(self, step: int, timestamp: int, value: float) -> bool:
        if self.last_step is None:
            return False
        if step != self.last_step:
            return step < self.last_step
        return (timestamp, repr(value)) in self.at_last

    def take(self, points: list[tuple[int, int, float]]) -> list[str]:
        """The lines for the points (step, timestamp, value) not written yet, in step order."""
        lines = []
        for step, timestamp, value in sorted(points, key=lambda p: (p[0], p[1])):
            if self.has(step, timestamp, value):
                continue
            if step != self.last_step:
                self.last_step, self.at_last = step, set()
            self.at_last.add((timestamp, repr(value)))
            lines.append(f"{timestamp} {value!r} {step}\n")
        return lines


@dataclass
class RunState:
    run_id: str
    directory: str  # where its files are written: the staging folder until its first meta.yaml
    final: str  # where the engine sees it
    meta: dict[str, Any] = field(default_factory=dict)  # as last written to meta.yaml
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, MetricCursor] = field(default_factory=lambda: defaultdict(MetricCursor))

    @property
    def active(self) -> bool:
        return self.meta.get("status") in ACTIVE


@dataclass
class RemoteRun:
    """One run as `runs/search` or `runs/get` gives it."""

    run_id: str
    experiment_id: str
    meta: dict[str, Any]
    params: dict[str, str]
    latest: dict[str, tuple[int, int, float]]  # metric key -> (step, timestamp, value)


Moved = tuple[RunState, tuple[int, int, float]]  # a run and its metric's latest (step, ts, value)


class MlflowMirror:
    """An MLflow tracking server kept as a local MLflow file store (see the module docstring)."""

    kind = KIND

    def __init__(self, url: str, cache_dir: str, poll_seconds: float | None = None) -> None:
        self.url = url
        self.target = parse_url(url)
        self.poll_seconds = poll_seconds  # `--poll`: this interval always, not the adaptive one
        host = urlsplit(self.target.base).netloc
        self.label = f"mlflow:{host}"
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", host)
        digest = hashlib.sha1(url.encode()).hexdigest()[:8]
        self.api = Api(self.target.base)
        self._lock_fd, self.cache_dir = hold_cache(cache_dir, TEMP_PREFIX)
        self.local_root = os.path.join(self.cache_dir, f"mlflow-{slug}-{digest}")
        self.staging_root = self.local_root + ".staging"  # new runs, until complete
        self.runs: dict[str, RunState] = {}
        self.experiments: dict[str, str] = {}  # id -> local folder name
        self.polls = 0
        self._problem: str | None = None
        self._failures = 0
        self._last_sweep: float | None = None
        self._last_listing = 0.0
        self._unlisted: set[str] = set()  # experiments found whose runs were not listed yet
        self._last_ok = 0.0  # wall time at which the last poll that went through began
        self._missing: list[str] = []  # asked-for experiments the server lacks
        self._bulk = True  # the server has get-history-bulk-interval (until it says 404)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the Mirror protocol ------------------------------------------------------------------
    def start(self) -> None:
        """Prepare the local root and do the first load here (bounded by the request timeouts,
        so that `watchrun check` sees the runs), then poll in a background thread."""
        self.prepare()
        OPEN[os.path.abspath(self.local_root)] = self
        self.poll_safely()
        self._thread = threading.Thread(target=self._follow, name="mlflow-mirror", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(READ_TIMEOUT + CONNECT_TIMEOUT)
        OPEN.pop(os.path.abspath(self.local_root), None)
        release_cache(self._lock_fd, self.cache_dir, TEMP_PREFIX)
        self._lock_fd = None

    def problem(self) -> str | None:
        return self._problem

    def request_stop(self, local_path: str) -> str:
        """Nothing to do: MLflow has no stop channel, and watchrun's training-side callback
        polls a file in its run directory, which a tracking server does not reach. Raised as
        an OSError, so that the stop is shown as not done (the app's "could not stop: ...")."""
        raise OSError(NO_STOP)

    # -- polling ------------------------------------------------------------------------------
    def _follow(self) -> None:
        while not self._stop.wait(self.next_delay()):
            self.poll_safely()

    def next_delay(self) -> float:
        base = self.poll_seconds or self.target.poll
        if self._failures:  # backoff: 2x, 4x, ... the poll interval, up to 15x (or 30 s)
            cap = min(BACKOFF_POLLS * base, MAX_BACKOFF)
            return min(base * 2 ** min(self._failures, 20), cap)
        if self.poll_seconds or any(r.active for r in self.runs.values()):
            return base
        return base * IDLE_FACTOR

    def poll_safely(self) -> bool:
        """One poll; a failure becomes problem() and a longer wait, never an exception."""
        try:
            self.poll_once()
        except ServerError as exc:
            self._failed(str(exc))
            return False
        except OSError as exc:
            self._failed(f"cannot write the mirror under {self.local_root}: {exc}")
            return False
        self._failures = 0
        return True

    def _failed(self, message: str) -> None:
        self._failures += 1
        self._problem = f"{message}; retrying in {self.next_delay():.0f} s"
        log.warning("%s", self._problem)

    def poll_once(self) -> None:
        """One round: a search, the new metric points of the runs it shows moved, then their
        meta.yaml. Raises ServerError; what was written stays written and counted as seen."""
        with self._lock:
            now, wall = time.monotonic(), time.time()
            sweep = self._last_sweep is None or now - self._last_sweep >= SWEEP_SECONDS
            if sweep or now - self._last_listing >= LISTING_SECONDS:
                self._missing = self._list_experiments()
                self._last_listing = now
            if sweep:
                remote = self._search(self.target.run_filter())
            else:
                remote = self._search(
                    _and("attributes.status = 'RUNNING'", self.target.run_filter())
                )
                since = int((self._last_ok - ENDED_WINDOW) * 1000)
                remote.update(
                    self._search(_and(f"attributes.end_time >= {since}", self.target.run_filter()))
                )
                if self._unlisted:  # experiments new since the last poll: all their runs
                    remote.update(self._search(self.target.run_filter(), self._unlisted))
                gone = [i for i, r in self.runs.items() if r.active and i not in remote]
                remote.update(self._by_ids(gone))
            self._mirror(remote)
            self._unlisted = set()
            if sweep:
                self._drop_absent(remote)
                self._last_sweep = now
            self.polls += 1
            self._last_ok = wall
            self._problem = self._missing_problem()

    def _missing_problem(self) -> str | None:
        if self._missing:
            names = ", ".join(repr(n) for n in self._missing)
            return f"{self.target.base} has no experiment named {names} (yet)"
        return None

    def _list_experiments(self) -> list[str]:
        """Refresh the experiments to follow; return the asked-for names the server lacks."""
        found: dict[str, str] = {}
        token = None
        while True:
            body: dict[str, Any] = {"max_results": PAGE}
            if token:
                body["page_token"] = token
            answer = self.api.call("POST", "/api/2.0/mlflow/experiments/search", body)
            for exp in answer.get("experiments", []):
                if isinstance(exp, dict) and "experiment_id" in exp:
                    found[str(exp["experiment_id"])] = str(exp.get("name", exp["experiment_id"]))
            token = answer.get("next_page_token")
            if not token:
                break
        wanted = set(self.target.experiments)
        if wanted:
            found = {i: n for i, n in found.items() if n in wanted}
        for exp_id, name in found.items():
            if exp_id not in self.experiments:
                self.experiments[exp_id] = self._folder_for(name, exp_id)
                self._unlisted.add(exp_id)
        return sorted(wanted - set(found.values()))

    def _folder_for(self, name: str, exp_id: str) -> str:
        folder = _safe_part(name) or exp_id
        if folder in self.experiments.values():
            folder = f"{folder}-{exp_id}"
        return folder

    def _search(self, run_filter: str, experiments: set[str] | None = None) -> dict[str, RemoteRun]:
        """The runs matching `run_filter` in these experiments (default: all followed)."""
        runs: dict[str, RemoteRun] = {}
        ids = sorted(self.experiments if experiments is None else experiments)
        for i in range(0, len(ids), BULK_RUNS):
            token = None
            while True:
                body: dict[str, Any] = {
                    "experiment_ids": ids[i : i + BULK_RUNS],
                    "filter": run_filter,
                    "run_view_type": "ACTIVE_ONLY",
                    "max_results": PAGE,
                }
                if token:
                    body["page_token"] = token
                answer = self.api.call("POST", "/api/2.0/mlflow/runs/search", body)
                for raw in answer.get("runs", []):
                    run = _remote_run(raw)
                    if run is not None and run.experiment_id in self.experiments:
                        runs[run.run_id] = run
                token = answer.get("next_page_token")
                if not token:
                    break
        return runs

    def _by_ids(self, run_ids: list[str]) -> dict[str, RemoteRun]:
        """Runs last seen active that neither search showed (deleted, or SCHEDULED): one search
        by id per 100; those the server no longer has leave the mirror."""
        runs: dict[str, RemoteRun] = {}
        for i in range(0, len(run_ids), BULK_RUNS):
            chunk = ", ".join(_quote(r) for r in run_ids[i : i + BULK_RUNS])
            runs.update(
                self._search(_and(f"attributes.run_id IN ({chunk})", self.target.run_filter()))
            )
        for run_id in run_ids:
            if run_id not in runs:  # deleted (or no longer matching): its mirror goes
                self._remove(run_id)
        return runs

    def _drop_absent(self, remote: dict[str, RemoteRun]) -> None:
        for run_id in [r for r in self.runs if r not in remote]:
            self._remove(run_id)

    def _remove(self, run_id: str) -> None:
        state = self.runs.pop(run_id, None)
        if state is not None:
            shutil.rmtree(state.directory, ignore_errors=True)
            shutil.rmtree(state.final, ignore_errors=True)

    # -- writing the mirror -------------------------------------------------------------------
    def _mirror(self, remote: dict[str, RemoteRun]) -> None:
        moved: dict[str, list[Moved]] = defaultdict(list)
        for run in remote.values():
            state = self._state(run)
            self._write_params(state, run.params)
            for key, latest in run.latest.items():
                cursor = state.metrics[key]
                if not cursor.broken and not cursor.has(*latest):
                    moved[key].append((state, latest))
        for key, items in moved.items():
            self._read_history(key, items)
        for run in remote.values():  # last: a FINISHED run's points are all on disk before
            self._write_meta(self.runs[run.run_id], run.meta)

    def _state(self, run: RemoteRun) -> RunState:
        state = self.runs.get(run.run_id)
        if state is None:
            final = self._run_folder(run)
            staging = os.path.join(self.staging_root, _safe_part(run.run_id))
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
            state = self.runs[run.run_id] = RunState(run.run_id, staging, final)
        return state

    def _run_folder(self, run: RemoteRun) -> str:
        """<experiment>/<run name>, as the MLflow UI names it (the run id when it has no name;
        the name and the id's first 8 characters when the name is taken)."""
        experiment = os.path.join(self.local_root, self.experiments[run.experiment_id])
        taken = {s.final for s in self.runs.values()}
        name = _safe_part(str(run.meta.get("run_name") or "")) or _safe_part(run.run_id)
        folder = os.path.join(experiment, name)
        if folder in taken or os.path.lexists(folder):
            folder = f"{folder}-{_safe_part(run.run_id)[:8]}"
        return folder

    def _write_params(self, state: RunState, params: dict[str, str]) -> None:
        for key, value in params.items():
            if state.params.get(key) != value:
                path = _path_under(state.directory, "params", key)
                if path is not None:
                    _write_atomic(path, value)
                state.params[key] = value  # an unwritable one is not tried at every poll

    def _write_meta(self, state: RunState, meta: dict[str, Any]) -> None:
        if meta != state.meta:
            path = os.path.join(state.directory, "meta.yaml")
            if _write_atomic(path, yaml.safe_dump(meta, sort_keys=True)):
                state.meta = dict(meta)
        if state.directory != state.final:
            self._publish(state)

    def _publish(self, state: RunState) -> None:
        """Move a new run's folder, whole, from staging to where the engine looks: discovery
        judges a file once per version, and a metrics file seen before its run's meta.yaml
        existed would stay unclaimed."""
        os.makedirs(os.path.dirname(state.final), exist_ok=True)
        shutil.rmtree(state.final, ignore_errors=True)
        os.rename(state.directory, state.final)
        state.directory = state.final

    def _read_history(self, key: str, items: list[Moved]) -> None:
        for i in range(0, len(items), BULK_RUNS):
            chunk = items[i : i + BULK_RUNS]
            try:
                self._read_chunk(key, chunk)
            except ServerError as exc:
                if exc.code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                # a run deleted since the search: the next search no longer shows it

    def _read_chunk(self, key: str, chunk: list[Moved]) -> None:
        points = self._bulk_interval(key, chunk) if self._bulk else None
        for state, latest in chunk:
            got = points.get(state.run_id) if points is not None else None
            if got is not None and len(got) >= BULK_POINTS and len(chunk) > 1:
                # sampled: the chunk's range may be wider than this run's own
                alone = self._bulk_interval(key, [(state, latest)])
                got = alone.get(state.run_id) if alone is not None else None
            if got is None or len(got) >= BULK_POINTS:  # no endpoint, or still sampled
                got = self._full_history(state.run_id, key)
            self._append(state, key, got)

    def _bulk_interval(
        self, key: str, chunk: list[Moved]
    ) -> dict[str, list[tuple[int, int, float]]] | None:
        """The points of `key` from the chunk's lowest last-seen step to its highest latest
        step, by run; None when the server has no such endpoint."""
        starts = [s.metrics[key].last_step for s, _ in chunk]
        start = min((s for s in starts if s is not None), default=STEP_MIN)
        if any(s is None for s in starts):
            start = STEP_MIN
        end = max(latest[0] for _, latest in chunk)
        body = {
            "run_ids": [s.run_id for s, _ in chunk],
            "metric_key": key,
            "start_step": start,
            "end_step": max(end, start),
            "max_results": BULK_POINTS,
        }
        try:
            answer = self.api.call(
                "GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", body
            )
        except ServerError as exc:
            if exc.status != 404 or exc.code not in (None, "ENDPOINT_NOT_FOUND"):
                raise
            self._bulk = False  # an older server, or one that serves the REST API only
            return None
        points: dict[str, list[tuple[int, int, float]]] = {s.run_id: [] for s, _ in chunk}
        for m in answer.get("metrics", []):
            point = _point(m)
            if point is not None and m.get("run_id") in points:
                points[m["run_id"]].append(point)
        return points

    def _full_history(self, run_id: str, key: str) -> list[tuple[int, int, float]]:
        points: list[tuple[int, int, float]] = []
        token = None
        while True:
            body: dict[str, Any] = {
                "run_id": run_id,
                "metric_key": key,
                "max_results": HISTORY_PAGE,
            }
            if token:
                body["page_token"] = token
            answer = self.api.call("GET", "/api/2.0/mlflow/metrics/get-history", body)
            points.extend(p for p in map(_point, answer.get("metrics", [])) if p is not None)
            token = answer.get("next_page_token")
            if not token:
                return points

    def _append(self, state: RunState, key: str, points: list[tuple[int, int, float]]) -> None:
        cursor = state.metrics[key]
        before = (cursor.last_step, set(cursor.at_last))
        lines = cursor.take(points)
        if not lines:
            return
        path = _path_under(state.directory, "metrics", key)
        try:
            if path is None:
                raise OSError(f"unsafe metric name {key!r}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("".join(lines))
        except OSError as exc:
            cursor.last_step, cursor.at_last = before
            if isinstance(exc, (IsADirectoryError, NotADirectoryError, FileExistsError)):
                cursor.broken = True  # `a` and `a/b` both metrics: a file cannot be a folder
                log.warning("metric %r of run %s not mirrored: %s", key, state.run_id, exc)
                return
            raise

    def prepare(self) -> None:
        """The local root, taken up where an earlier watchrun left it (so that only what
        changed since is read), or made. New runs it had not finished writing are dropped:
        they are read again whole."""
        marker = os.path.join(self.local_root, MARKER)
        if os.path.isfile(marker):
            self._resume()
        elif os.path.isdir(self.local_root) and os.listdir(self.local_root):
            raise ValueError(f"{self.local_root} exists and is not a watchrun mirror")
        shutil.rmtree(self.staging_root, ignore_errors=True)
        os.makedirs(self.local_root, exist_ok=True)
        os.makedirs(self.staging_root)
        info = {"url": self.url, "label": self.label, "kind": KIND}
        _write_atomic(marker, json.dumps(info, indent=1) + "\n")

    def _resume(self) -> None:
        """Each run's state from its files: meta.yaml (run and experiment ids, status), params,
        and the metrics files, whose last lines say the step reached."""
        for folder in sorted(os.listdir(self.local_root)):
            exp_dir = os.path.join(self.local_root, folder)
            if not os.path.isdir(exp_dir):
                continue
            for name in sorted(os.listdir(exp_dir)):
                state = _run_state_of(os.path.join(exp_dir, name))
                if state is None:  # not one this mirror wrote whole
                    shutil.rmtree(os.path.join(exp_dir, name), ignore_errors=True)
                    continue
                self.experiments.setdefault(str(state.meta["experiment_id"]), folder)
                self.runs[state.run_id] = state


def _run_state_of(run_dir: str) -> RunState | None:
    try:
        with open(os.path.join(run_dir, "meta.yaml"), encoding="utf-8") as fh:
            meta = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(meta, dict) or not meta.get("run_id") or "experiment_id" not in meta:
        return None
    state = RunState(str(meta["run_id"]), run_dir, run_dir, meta=meta)
    for kind, key, path in _files_of(run_dir):
        if kind == "params":
            with open(path, encoding="utf-8") as fh:
                state.params[key] = fh.read()
        else:
            state.metrics[key] = _cursor_of(path)
    return state


def _files_of(run_dir: str) -> Iterator[tuple[str, str, str]]:
    """(params|metrics, key, path) of a mirrored run's files (`/` in a key is a subfolder)."""
    for kind in ("params", "metrics"):
        top = os.path.join(run_dir, kind)
        for folder, _, names in os.walk(top):
            for name in names:
                if not name.startswith("."):  # an atomic write's leftover
                    path = os.path.join(folder, name)
                    yield kind, os.path.relpath(path, top).replace(os.sep, "/"), path


def _cursor_of(path: str) -> MetricCursor:
    """Where a mirrored metrics file stands; a last line cut short (watchrun ended mid-write)
    is cut off, to be read again."""
    with open(path, "rb+") as fh:
        data = fh.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            fh.truncate(end)
    cursor = MetricCursor()
    points = []
    for line in data[:end].decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) == 3 and _int(fields[0]) is not None and _int(fields[2]) is not None:
            try:
                points.append((int(fields[2]), int(fields[0]), float(fields[1])))
            except ValueError:
                continue
    cursor.take(points)
    return cursor


# -- the REST answers ---------------------------------------------------------------------------
def _remote_run(raw: Any) -> RemoteRun | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("info"), dict):
        return None
    info = raw["info"]
    data: dict[str, Any] = raw["data"] if isinstance(raw.get("data"), dict) else {}
    run_id = info.get("run_id") or info.get("run_uuid")
    if not isinstance(run_id, str) or not run_id:
        return None
    experiment_id = str(info.get("experiment_id", ""))
    meta = {
        "run_id": run_id,
        "run_name": str(info.get("run_name") or ""),
        "experiment_id": experiment_id,
        "status": str(info.get("status", "RUNNING")),
        "start_time": _int(info.get("start_time")),
        "end_time": _int(info.get("end_time")),
        "lifecycle_stage": str(info.get("lifecycle_stage", "active")),
    }
    params = {
        str(p["key"]): str(p.get("value", ""))
        for p in data.get("params", [])
        if isinstance(p, dict) and "key" in p
    }
    latest = {}
    for m in data.get("metrics", []):
        point = _point(m)
        if point is not None:
            latest[str(m["key"])] = point
    return RemoteRun(run_id, experiment_id, meta, params, latest)


def _point(m: Any) -> tuple[int, int, float] | None:
    """(step, timestamp ms, value) of one metric in MLflow's JSON (int64 may come as text,
    NaN and infinities as "NaN", "Infinity", "-Infinity"; the SQL store writes an infinity as
    the largest float, which no training logs: it is read back as the infinity it was)."""
    if not isinstance(m, dict) or not isinstance(m.get("key"), str):
        return None
    step, timestamp = _int(m.get("step", 0)), _int(m.get("timestamp", 0))
    try:
        value = float(m.get("value"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if step is None or timestamp is None:
        return None
    if abs(value) == sys.float_info.max:  # how MLflow's SQL store keeps an infinity
        value = math.copysign(math.inf, value)
    return step, timestamp, value


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value):
        return int(value)
    return None


# -- files --------------------------------------------------------------------------------------
def _safe_part(name: str) -> str:
    """One path component from a server-given name: no separators, no `.`/`..`, no control
    characters, at most 200 bytes."""
    text = re.sub(r"[\x00-\x1f/\\]+", "_", name).strip()
    if text in ("", ".", ".."):
        text = text.replace(".", "_") or "_"
    return text.encode()[:200].decode("utf-8", "ignore")


def _path_under(directory: str, kind: str, key: str) -> str | None:
    """metrics/<key> with `/` in the key as subfolders (as MLflow's file store does), or None
    for a key that is empty or would leave the folder."""
    parts = [_safe_part(p) for p in key.split("/")]
    if not key or any(not p for p in parts):
        return None
    return os.path.join(directory, kind, *parts)


def _write_atomic(path: str, text: str) -> bool:
    """Replace `path` whole (the reader sees the old file or the new one, never half)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except (IsADirectoryError, NotADirectoryError) as exc:
        log.warning("not mirrored: %s (%s)", path, exc)
        return False
    return True

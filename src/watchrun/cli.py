"""Command line: `watchrun [PATH...]` (the app), `watchrun ls`, `watchrun check`, `watchrun demo`,
`watchrun export`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

from watchrun.config import ConfigError, check_key_ids, load_config
from watchrun.model import Alert, Severity
from watchrun.textsafe import printable

COMMANDS = ("ls", "check", "demo", "export", "app")
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a writer killed by SIGPIPE
MAX_SHOWN_ERRORS = 20  # unreadable paths printed; the count of the rest follows
POLL_HELP = "poll instead of file events: every SECONDS once quiet, faster while files grow"


def main(argv: list[str] | None = None) -> int:
    """The command, with a reader that went away (`| head -1`) and Ctrl-C ending it quietly."""
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader is gone: send what is left nowhere, so the final flush at exit is silent
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"watchrun {version('watchrun')}")
        return 0
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "app"
    parser = _parser(command)
    args = parser.parse_args(argv)
    from watchrun.remote import RemoteError

    try:
        return _run(command, args)
    except RemoteError as exc:  # a URL root that cannot be opened (its package missing...)
        print(f"watchrun: {printable(str(exc))}", file=sys.stderr)
        return 2


def _run(command: str, args: argparse.Namespace) -> int:
    paths = args.paths or (["."] if command != "demo" else [])
    unreadable = [msg for msg in (_path_problem(p) for p in paths) if msg]
    if unreadable:
        for msg in unreadable:
            print(f"watchrun: {printable(msg)}", file=sys.stderr)
        return 2
    try:
        config = load_config(
            paths,
            getattr(args, "config", None),
            getattr(args, "target", None),
            theme=getattr(args, "theme", None),
            ascii=getattr(args, "ascii", None) or None,
            on_alert=getattr(args, "on_alert", None),
            allow_other_users=getattr(args, "allow_other_users", None) or None,
        )
    except ConfigError as exc:
        return _config_error(exc)
    if command in ("app", "demo") and not getattr(args, "headless", False):
        problem = terminal_problem()
        if problem:
            print(f"watchrun: {problem}", file=sys.stderr)
            return 2
        from watchrun.app.app import WatchrunApp

        try:
            check_key_ids(config, WatchrunApp.binding_ids())
        except ConfigError as exc:
            return _config_error(exc)
    if command == "ls":
        return cmd_ls(paths, config, args.json, args.follow_symlinks)
    if command == "check":
        return cmd_check(paths, config, args)
    if command == "export":
        return cmd_export(paths, config, args.format, args.output)
    if command == "demo":
        from watchrun.demo import run_demo

        return run_demo(config, args)
    from watchrun.app.app import run_app

    return run_app(
        paths, config, poll=args.poll, quiet=args.quiet, follow_symlinks=args.follow_symlinks
    )


def _config_error(exc: ConfigError) -> int:
    for line in str(exc).splitlines():
        print(f"watchrun: {printable(line)}", file=sys.stderr)
    return 2


def terminal_problem() -> str | None:
    """Why the terminal UI cannot run here (no terminal, or one that cannot draw it), or None."""
    fix = "use `watchrun check --follow PATH` for a plain stream of alerts"
    if not all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout)):
        return f"the terminal UI needs a terminal (stdin and stdout are not both a tty): {fix}"
    if os.environ.get("TERM", "") in ("dumb", "unknown"):
        return f"TERM={os.environ['TERM']} cannot draw the terminal UI: {fix}"
    return None


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"watchrun {command}" if command != "app" else "watchrun",
        description={
            "app": "Watch training runs under PATH in a terminal UI.",
            "ls": "List the runs found under PATH.",
            "check": "Run the detectors headless; exit 1 if a warning or critical alert fired.",
            "demo": "Start simulated training runs and watch them.",
            "export": "Write every point of the runs under PATH as one table "
            "(run, metric, step, value, wall_time, source).",
        }[command],
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="a folder or file, or a remote root: s3://, gs://, az://, ssh://user@host/path",
    )
    p.add_argument("--config", metavar="FILE", help="watchrun.toml to use")
    if command in ("ls", "check"):
        p.add_argument("--json", action="store_true", help="one JSON object per line")
    if command in ("ls", "check", "app"):
        p.add_argument(
            "--follow-symlinks",
            action="store_true",
            help="follow symlinks that lead outside PATH (by default only those inside)",
        )
    if command == "check":
        p.add_argument(
            "--follow", "-f", action="store_true", help="keep watching, print alerts as they fire"
        )
        p.add_argument(
            "--target", action="append", metavar="METRIC<=VALUE", help="a target to reach"
        )
        p.add_argument("--poll", type=float, metavar="SECONDS", help=POLL_HELP)
    if command == "export":
        p.add_argument(
            "--format", choices=EXPORT_FORMATS, default="csv", help="table format (default: csv)"
        )
        p.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            help="write here (default: stdout; parquet needs a file)",
        )
    if command in ("app", "demo"):
        p.add_argument(
            "--theme", help="watchrun-dark, watchrun-light, watchrun-contrast or a Textual theme"
        )
        p.add_argument("--ascii", action="store_true", help="no Unicode box or braille characters")
        p.add_argument(
            "--on-alert",
            metavar="CMD",
            help="run CMD with each new critical alert as JSON on stdin",
        )
        p.add_argument("--poll", type=float, metavar="SECONDS", help=POLL_HELP)
        p.add_argument(
            "--quiet", action="store_true", help="no toasts, bell or desktop notifications"
        )
    if command == "app":
        p.add_argument(
            "--target", action="append", metavar="METRIC<=VALUE", help="a target to reach"
        )
        p.add_argument(
            "--allow-other-users",
            action="store_true",
            help="as root, let the stop dialog signal other users' verified processes",
        )
    if command == "demo":
        p.add_argument("--dir", help="write the demo runs here (default: a temporary directory)")
        p.add_argument("--speed", type=float, default=1.0, help="pace multiplier")
        p.add_argument("--headless", action="store_true", help="only write the runs, no UI")
    return p


def _engine(
    paths: list[str], config: Any, poll: float | None = None, follow_symlinks: bool = False
) -> Any:
    from watchrun.engine import Engine

    return Engine(paths, config, poll_seconds=poll, bounded=True, follow_symlinks=follow_symlinks)


def _path_problem(path: str) -> str | None:
    """Why a PATH given on the command line cannot be watched, or None (a URL of a remote root
    is looked at by its mirror: trouble there is said while watching, not fatal)."""
    from watchrun.remote import scheme_of

    if scheme_of(path) is not None:
        return None
    if "://" in path and not os.path.exists(path):
        return f"no backend reads {path.partition('://')[0]}:// URLs ({path})"
    try:
        os.stat(path)
    except PermissionError:
        return f"permission denied: {path}"
    except FileNotFoundError:
        return f"no such file or directory: {path}"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


def report_unreadable(engine: Any) -> int:
    """Say on stderr what the scan could not read; 2 when that leaves no run that could be read
    (an empty listing would claim there is nothing to see), else 0."""
    errors = engine.scan_errors
    if not errors:
        return 0
    for message in errors[:MAX_SHOWN_ERRORS]:
        print(f"watchrun: {printable(message)}", file=sys.stderr)
    more = engine.discovery.error_count - min(len(errors), MAX_SHOWN_ERRORS)
    if more > 0:
        print(f"watchrun: ... and {more} more path(s) that cannot be read", file=sys.stderr)
    if engine.readable_keys():
        return 0
    print("watchrun: no run could be read", file=sys.stderr)
    return 2


def report_remote(engine: Any) -> int:
    """Say on stderr what is wrong with the remote roots (server away, credentials, empty
    bucket); 2 when nothing at all could be listed, as for unreadable local paths, else 0."""
    problems = engine.mirror_problems()
    _print_failures(problems)
    return 2 if problems and not engine.visible_keys() else 0


def cmd_ls(paths: list[str], config: Any, as_json: bool, follow_symlinks: bool = False) -> int:
    engine = _engine(paths, config, follow_symlinks=follow_symlinks)
    engine.load()
    engine.close()
    keys = engine.visible_keys()
    rows = [ls_row(engine, key) for key in keys]
    status = max(report_unreadable(engine), report_remote(engine))
    if as_json:  # with each run's GPUs and process tree (the table shows neither: not looked at)
        from watchrun.gpu import look_once

        looked = look_once([engine.store.runs[k] for k in keys])
        rows = [dict(row, **looked[key]) for row, key in zip(rows, keys, strict=True)]
        for row in rows:
            print(json.dumps(row))
        return status
    if not rows:
        if status == 0:
            print("no runs found")
        return status
    header = ("RUN", "FORMATS", "METRICS", "POINTS", "LAST STEP", "STATUS", "WARNINGS")
    table = [header] + [
        (
            printable(r["run"]),
            ",".join(r["formats"]),
            str(len(r["metrics"])),
            str(r["points"]),
            "" if r["last_step"] is None else str(r["last_step"]),
            r["status"],
            printable("; ".join(r["warnings"])),
        )
        for r in rows
    ]
    widths = [min(60, max(len(row[i]) for row in table)) for i in range(len(header) - 1)]
    for row in table:
        cells = [row[i][: widths[i]].ljust(widths[i]) for i in range(len(widths))]
        print("  ".join(cells + [row[-1]]).rstrip())
    return status


def ls_row(engine: Any, key: str) -> dict[str, Any]:
    run = engine.store.runs[key]
    return {
        "run": key,
        "formats": sorted(run.formats),
        "metrics": sorted(run.series),
        "points": run.points(),
        "last_step": run.last_step(),
        "step_unit": run.step_unit,
        "status": run.status.value,
        "pid": run.pid,
        "host": run.host,
        "remote": run.remote,
        "warnings": list(run.warnings),
        "files": dict(sorted(run.file_formats.items())),  # path -> format: what makes up the run
        "joined": list(run.joined),  # why files found apart are one run (merge.py)
    }


EXPORT_FORMATS = ("csv", "parquet", "jsonl")


def cmd_export(paths: list[str], config: Any, fmt: str, output: str | None) -> int:
    """The long table of `watchrun.read(...).scalars()`, for notebooks and other tools."""
    if fmt == "parquet":
        if not output:
            print("watchrun: parquet is binary: give a file with -o FILE", file=sys.stderr)
            return 2
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            print(
                "watchrun: parquet export needs pyarrow: pip install 'watchrun[parquet]'",
                file=sys.stderr,
            )
            return 2
    try:
        from watchrun.api import read
    except ImportError:
        print("watchrun: export needs pandas: pip install 'watchrun[dataframe]'", file=sys.stderr)
        return 2
    table = read(paths, config).scalars()
    try:
        if fmt == "parquet":
            table.to_parquet(output, index=False)
        elif fmt == "csv":
            table.to_csv(output or sys.stdout, index=False, na_rep="nan")
        else:
            table.to_json(output or sys.stdout, orient="records", lines=True)
    except BrokenPipeError:  # `watchrun export . | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if output:
        print(
            f"{len(table)} points of {table['run'].nunique()} run(s) written to {output}",
            file=sys.stderr,
        )
    return 0


def cmd_check(paths: list[str], config: Any, args: argparse.Namespace) -> int:
    engine = _engine(paths, config, args.poll, args.follow_symlinks)
    engine.detectors.watch_roots = engine.roots
    if not args.follow:
        engine.check()
        engine.close()
        _print_failures(engine.detectors.take_failures())
        if max(report_unreadable(engine), report_remote(engine)):
            return 2
        alerts = [a for key in engine.store.runs for a in engine.store.alerts_for(key)]
        _print_alerts(alerts, args.json, header=True)
        if not alerts and not args.json:
            print(f"no alerts in {len(engine.visible_keys())} run(s)")
        return 1 if any(a.severity is not Severity.INFO for a in alerts) else 0
    return _follow(engine, args)


def _follow(engine: Any, args: argparse.Namespace) -> int:
    stop = threading.Event()
    fired: list[Alert] = []

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        engine.wake.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    engine.on_notice = lambda message: print(f"watchrun: {message}", file=sys.stderr, flush=True)
    engine.load(stop=stop)  # returns early once a signal has set `stop`
    if stop.is_set():
        return 0
    report_unreadable(engine)  # following: runs may still come, so no early exit
    first = engine.detect(final=False)
    first += engine.detect(final=True)
    _print_failures(engine.detectors.take_failures())
    _print_alerts(first, args.json, header=True)
    fired += first

    def on_alerts(alerts: list[Alert]) -> None:
        fired.extend(alerts)
        _print_alerts(alerts, args.json, header=False)

    engine.run_forever(stop, on_alerts, on_error=lambda message: _print_failures([message]))
    return 1 if any(a.severity is not Severity.INFO for a in fired) else 0


def _print_failures(messages: list[str]) -> None:
    """watchrun's own trouble (a detector or a tick that raised): on stderr, once each."""
    for message in messages:
        print(f"watchrun: {printable(message)}", file=sys.stderr, flush=True)


def _print_alerts(alerts: list[Alert], as_json: bool, header: bool) -> None:
    if as_json:
        for a in alerts:
            print(json.dumps(a.to_json()), flush=True)
        return
    for a in alerts:
        glyph = {"critical": "!!", "warning": "! ", "info": "i "}[a.severity.value]
        run, detector = printable(a.run), printable(a.detector)
        print(f"{glyph} {a.severity.value:<8} {run}  [{detector}] step {a.step}", flush=True)
        print(f"     {printable(a.message)}", flush=True)
        print(f"     -> {printable(a.action)}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""watchrun.toml + CLI flags -> one frozen Config.

```toml
[detectors.overfitting]      # any threshold of any detector (see detectors/*.py DEFAULTS)
min_rise = 0.15
[detectors.grad_spike]
enabled = false
[targets]                    # metric -> bound, as with --target
val_rmse = "<=0.15"
[metrics]                    # names the built-in vocabulary misses -> role
"my_dev_objective" = "val_loss"
[keys]                       # binding id -> keys
stop_run = "x,ctrl+k"
[ui]
theme = "watchrun-light"
```
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from watchrun.lazy import lazy

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy("yaml")  # PyYAML loads when a YAML file is read

if TYPE_CHECKING:
    import difflib

    import tomllib
else:  # loaded when a watchrun.toml is read, when a name is misspelt
    difflib = lazy("difflib")
    tomllib = lazy("tomllib" if sys.version_info >= (3, 11) else "tomli")


CONFIG_NAME = "watchrun.toml"
_TARGET = re.compile(r"^\s*([^<>=!]+?)\s*(<=|>=|<|>)\s*(-?[\d.]+(?:e[+-]?\d+)?)\s*$")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    metric: str
    op: str  # "<=", "<", ">=", ">"
    value: float

    @property
    def lower_is_better(self) -> bool:
        return self.op in ("<=", "<")

    def met(self, x: float) -> bool:
        return {
            "<=": x <= self.value,
            "<": x < self.value,
            ">=": x >= self.value,
            ">": x > self.value,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def parse_target(text: str) -> Target:
    m = _TARGET.match(text)
    if not m:
        raise ConfigError(f"bad target {text!r}: write METRIC<=VALUE or METRIC>=VALUE")
    return Target(m.group(1), m.group(2), float(m.group(3)))


@dataclass(frozen=True)
class Config:
    settle_seconds: float = 0.5  # quiet time after which the last points count as complete
    stale_seconds: float = 120.0
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: tuple[Target, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    theme: str = "watchrun-dark"
    ascii: bool = False
    on_alert: str | None = None
    source: str | None = None
    allow_other_users: bool = False  # as root, the stop dialog may signal other users' processes

    def detector(self, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
        merged = dict(defaults)
        merged.update(self.detectors.get(name, {}))
        return merged

    def enabled(self, name: str) -> bool:
        return bool(self.detectors.get(name, {}).get("enabled", True))


def load_config(
    paths: list[str],
    config_file: str | None = None,
    targets: list[str] | None = None,
    **overrides: Any,
) -> Config:
    """Find watchrun.toml (given, or in the first PATH), validate it, apply --target and other
    flags. Every problem in the file is a ConfigError naming the file, line and key."""
    doc: dict[str, Any] = {}
    source = config_file
    if source is None:
        for p in paths:
            candidate = os.path.join(
                p if os.path.isdir(p) else os.path.dirname(p) or ".", CONFIG_NAME
            )
            if os.path.isfile(candidate):
                source = candidate
                break
    if source is not None:
        try:
            with open(source, "rb") as fh:
                raw = fh.read()
            doc = tomllib.loads(raw.decode("utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {source}") from exc
        except OSError as exc:
            raise ConfigError(f"{source}: {exc.strerror or exc}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        doc = _Validator(source, raw.decode("utf-8")).validated(doc)
    all_targets = [_target_from_toml(k, v) for k, v in (doc.get("targets") or {}).items()]
    all_targets += [parse_target(t) for t in targets or []]
    ui = doc.get("ui") or {}
    kwargs: dict[str, Any] = {
        "detectors": {k: dict(v) for k, v in (doc.get("detectors") or {}).items()},
        "targets": tuple(all_targets),
        "aliases": {str(k): str(v) for k, v in (doc.get("metrics") or {}).items()},
        "keys": {str(k): str(v) for k, v in (doc.get("keys") or {}).items()},
        "source": source,
    }
    for name in TOP_LEVEL_NUMBERS:
        if name in doc:
            kwargs[name] = float(doc[name])
    if "theme" in ui:
        kwargs["theme"] = str(ui["theme"])
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**kwargs)


def check_key_ids(config: Config, binding_ids: list[str]) -> None:
    """`[keys]` may name only the app's binding ids; the app knows them (it calls this before it
    starts: the headless commands never read `[keys]`)."""
    unknown = [k for k in config.keys if k not in binding_ids]
    if not unknown or config.source is None:
        return
    with open(config.source, encoding="utf-8") as fh:
        validator = _Validator(config.source, fh.read())
    for k in unknown:
        validator.bad(
            ("keys", k),
            "unknown binding id"
            + _did_you_mean(k, binding_ids)
            + f"; the ids are {', '.join(sorted(binding_ids))}",
        )
    raise ConfigError("\n".join(validator.problems))


def _target_from_toml(metric: str, value: Any) -> Target:
    if isinstance(value, str):
        return parse_target(metric + value)
    if isinstance(value, dict):
        if "max" in value:
            return Target(metric, "<=", float(value["max"]))
        if "min" in value:
            return Target(metric, ">=", float(value["min"]))
    raise ConfigError(f'target {metric}: write "<=0.15" or {{max = 0.15}}')


# -- validation of watchrun.toml -------------------------------------------------------------------
TOP_LEVEL_NUMBERS = ("settle_seconds", "stale_seconds")
SECTIONS = ("detectors", "targets", "metrics", "keys", "ui")
UI_KEYS = ("theme",)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _did_you_mean(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Validator:
    """Checks a parsed watchrun.toml against what watchrun knows: sections, detector names, each
    detector's parameters (their types and signs from the detector's own DEFAULTS), targets,
    metric roles. Collects every problem, then raises one ConfigError listing them all."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()
        self.problems: list[str] = []

    def bad(self, path: tuple[str, ...], message: str) -> None:
        line = key_line(self.lines, path)
        where = f"{self.source}:{line}" if line else self.source
        self.problems.append(f"{where}: {'.'.join(path)}: {message}")

    def validated(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The document with detector parameters normalised (integral floats as int)."""
        out = dict(doc)
        for key, value in doc.items():
            if key in TOP_LEVEL_NUMBERS:
                if not _is_number(value) or not math.isfinite(value) or value <= 0:
                    self.bad((key,), f"expected a number of seconds > 0, got {value!r}")
            elif key not in SECTIONS:
                self.bad(
                    (key,), "unknown setting" + _did_you_mean(key, SECTIONS + TOP_LEVEL_NUMBERS)
                )
            elif not isinstance(value, dict):
                self.bad((key,), f"expected a table [{key}], got {value!r}")
        if isinstance(doc.get("detectors"), dict):
            out["detectors"] = self._detectors(doc["detectors"])
        for section, check in (
            ("targets", self._target),
            ("metrics", self._metric),
            ("keys", self._keys),
            ("ui", self._ui),
        ):
            if isinstance(doc.get(section), dict):
                for k, v in doc[section].items():
                    check((section, k), v)
        if self.problems:
            raise ConfigError("\n".join(self.problems))
        return out

    def _detectors(self, table: dict[str, Any]) -> dict[str, dict[str, Any]]:
        defaults = detector_defaults()
        out: dict[str, dict[str, Any]] = {}
        for name, params in table.items():
            if name not in defaults:
                self.bad(("detectors", name), "unknown detector" + _did_you_mean(name, defaults))
                continue
            if not isinstance(params, dict):
                self.bad(
                    ("detectors", name), f"expected a table [detectors.{name}], got {params!r}"
                )
                continue
            out[name] = {}
            for param, value in params.items():
                path = ("detectors", name, param)
                known = {**defaults[name], "enabled": True}
                if param not in known:
                    self.bad(
                        path,
                        f"unknown parameter of {name}"
                        + _did_you_mean(param, known)
                        + f"; it takes {', '.join(sorted(known))}",
                    )
                    continue
                problem, clean = _check_param(value, known[param])
                if problem:
                    self.bad(path, problem)
                else:
                    out[name][param] = clean
        return out

    def _target(self, path: tuple[str, ...], value: Any) -> None:
        if isinstance(value, dict):
            ok = len(value) == 1 and set(value) <= {"max", "min"}
            ok = ok and _is_number(next(iter(value.values())))
        else:
            try:
                ok = bool(_target_from_toml(path[-1], value))
            except ConfigError:
                ok = False
        if not ok:
            self.bad(
                path, f'expected "<=0.15", ">=0.9", {{max = 0.15}} or {{min = 0.9}}, got {value!r}'
            )

    def _metric(self, path: tuple[str, ...], value: Any) -> None:
        from watchrun.semantics import classify

        if not isinstance(value, str) or classify(value).kind == "other":
            self.bad(
                path,
                f"expected the name of a role watchrun knows (val_loss, train_loss, "
                f"val_accuracy, val_f1...), got {value!r}",
            )

    def _keys(self, path: tuple[str, ...], value: Any) -> None:
        if not isinstance(value, str) or not all(k.strip() for k in value.split(",")):
            self.bad(path, f'expected keys separated by commas ("x,ctrl+k"), got {value!r}')

    def _ui(self, path: tuple[str, ...], value: Any) -> None:
        if path[-1] not in UI_KEYS:
            self.bad(path, "unknown setting" + _did_you_mean(path[-1], UI_KEYS))
        elif not isinstance(value, str):
            self.bad(path, f"expected a theme name, got {value!r}")


def _check_param(value: Any, default: Any) -> tuple[str | None, Any]:
    """(problem, cleaned value) for a detector parameter whose default is `default`: the same
    type (an integral float passes as an int), finite, and not negative when the default is not."""
    if isinstance(default, bool):
        return (
            (None, value)
            if isinstance(value, bool)
            else (f"expected true or false, got {value!r}", None)
        )
    if isinstance(default, str):
        return (
            (None, value) if isinstance(value, str) else (f"expected a string, got {value!r}", None)
        )
    if not _is_number(value) or not math.isfinite(value):
        return f"expected a number, got {value!r}", None
    if isinstance(default, int):
        if value != int(value):
            return f"expected a whole number, got {value!r}", None
        value = int(value)
    if isinstance(default, (int, float)) and default >= 0 and value < 0:
        return f"expected a number >= 0, got {value!r}", None
    return None, float(value) if isinstance(default, float) else value


def detector_defaults() -> dict[str, dict[str, Any]]:
    """Each detector's parameters as its class declares them (imported here, late: the
    detectors import this module)."""
    from watchrun.detectors import ALL_DETECTORS

    found = {cls.id: dict(cls.DEFAULTS) for cls in ALL_DETECTORS}
    found["stalled"] = {}  # the runner's own (its limit is stale_seconds): only `enabled`
    return found


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(r"^\s*((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-.\s])+?)\s*=")


def _dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([^.\s]+)", text)
    return tuple(a or b or c for a, b, c in parts)


def key_line(lines: list[str], path: tuple[str, ...]) -> int | None:
    """The 1-based line of `path` (("detectors", "overfitting", "min_rise")) in a TOML text, found
    by scanning headers and assignments; an inline table's line when the key sits in one; the
    table's header line when only the table is found."""
    table: tuple[str, ...] = ()
    inline = header = None
    for i, line in enumerate(lines, 1):
        m = _HEADER.match(line)
        if m:
            table = _dotted(m.group(1))
            if table == path[:-1] and header is None:
                header = i
            if table == path and header is None:
                header = i
            continue
        m = _ASSIGN.match(line)
        if not m:
            continue
        full = table + _dotted(m.group(1))
        if full == path:
            return i
        if (
            inline is None
            and len(full) < len(path)
            and path[: len(full)] == full
            and re.search(rf"(?<![\w-])[\"']?{re.escape(path[-1])}[\"']?\s*=", line[m.end() :])
        ):
            inline = i
    return inline or header


def run_targets(run_root: str, watch_root: str) -> list[Target]:
    """targets.json / targets.yaml in the run directory or any parent up to the watched root."""
    found: list[Target] = []
    d = run_root if os.path.isdir(run_root) else os.path.dirname(run_root)
    stop = os.path.abspath(watch_root)
    while True:
        for name in ("targets.json", "targets.yaml", "targets.yml"):
            path = os.path.join(d, name)
            if os.path.isfile(path):
                try:
                    with open(path, encoding="utf-8") as fh:
                        doc = json.load(fh) if name.endswith(".json") else yaml.safe_load(fh)
                    for metric, bound in (doc or {}).items():
                        found.append(_target_from_toml(str(metric), bound))
                except (OSError, ValueError, yaml.YAMLError, ConfigError):
                    continue
        if os.path.abspath(d) == stop or os.path.dirname(d) == d or not d.startswith(stop):
            break
        d = os.path.dirname(d)
    return found

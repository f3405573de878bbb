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
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import yaml

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

    def detector(self, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
        merged = dict(defaults)
        merged.update(self.detectors.get(name, {}))
        return merged

    def enabled(self, name: str) -> bool:
        return bool(self.detectors.get(name, {}).get("enabled", True))


def load_config(
    paths: list[str], config_file: str | None = None, targets: list[str] | None = None, **overrides: Any
) -> Config:
    """Find watchrun.toml (given, or in the first PATH), apply --target and other flags."""
    doc: dict[str, Any] = {}
    source = config_file
    if source is None:
        for p in paths:
            candidate = os.path.join(p if os.path.isdir(p) else os.path.dirname(p) or ".", CONFIG_NAME)
            if os.path.isfile(candidate):
                source = candidate
                break
    if source is not None:
        try:
            with open(source, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {source}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
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
    for name in ("settle_seconds", "stale_seconds"):
        if name in doc:
            kwargs[name] = float(doc[name])
    if "theme" in ui:
        kwargs["theme"] = str(ui["theme"])
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**kwargs)


def _target_from_toml(metric: str, value: Any) -> Target:
    if isinstance(value, str):
        return parse_target(metric + value)
    if isinstance(value, dict):
        if "max" in value:
            return Target(metric, "<=", float(value["max"]))
        if "min" in value:
            return Target(metric, ">=", float(value["min"]))
    raise ConfigError(f"target {metric}: write \"<=0.15\" or {{max = 0.15}}")


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

"""Modules loaded when first used, so that `import watchrun` and `watchrun ls` stay fast.

crc32c, protobuf (the event protos), psutil and PyYAML each cost tens of milliseconds to import
and many paths never touch them (the compiled TFRecord scanner needs no crc32c and no protobuf
for scalar events; `ls` of CSV runs needs no YAML). `lazy("psutil")` stands for the module and
imports it at the first attribute access, `except psutil.Error` included.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r}, {state}>"


def lazy(name: str) -> Any:
    """A stand-in for module `name` that imports it when first used."""
    return LazyModule(name)

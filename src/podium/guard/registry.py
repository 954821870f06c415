"""Scanners by name: the built-in ones register at import (`podium.guard.scanners`), plugins through the
`podium.guard.scanners` entry-point group (each entry a `Scanner` subclass), as gateway guardrails and
evaluators do."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from podium.guard.base import Scanner, ScannerError

GROUP = "podium.guard.scanners"
log = logging.getLogger("podium.guard")
S = TypeVar("S", bound=type[Scanner])

_builtin: dict[str, type[Scanner]] = {}
_loaded = False


def register(cls: S) -> S:
    """Class decorator: make a scanner buildable by its `name`."""
    if cls.name in _builtin and _builtin[cls.name] is not cls:
        raise ValueError(f"a scanner named {cls.name!r} is registered already")
    _builtin[cls.name] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        importlib.import_module("podium.guard.scanners")
        _loaded = True


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def scanner_class(name: str) -> type[Scanner]:
    """The class of a scanner: built in, or from the entry-point group; `ScannerError` lists the known ones."""
    _load_builtins()
    if name in _builtin:
        return _builtin[name]
    plugins = _plugins()
    if name in plugins:
        cls = plugins[name].load()
        if not (isinstance(cls, type) and issubclass(cls, Scanner)):
            raise ScannerError(f"entry point {name!r} of {GROUP} is not a Scanner subclass")
        return cls
    raise ScannerError(f"unknown scanner {name!r}; known scanners: {', '.join(known_names())}", "type")


def known_names() -> list[str]:
    """Every scanner name that can be built here."""
    _load_builtins()
    return sorted(set(_builtin) | set(_plugins()))


def build(name: str, settings: dict[str, Any] | None = None, **injected: Any) -> Scanner:
    """A scanner built from its name and settings. `injected` passes collaborators (an embedder, a model
    caller) to scanners whose constructor takes them; the others ignore them."""
    cls = scanner_class(name)
    accepted = getattr(cls, "injects", ())
    kwargs = {k: v for k, v in injected.items() if k in accepted and v is not None}
    return cls(settings, **kwargs) if kwargs else cls(settings)


@dataclass(frozen=True)
class ScannerInfo:
    """What `podium guard scanners` lists."""

    name: str
    stages: list[str]
    description: str
    settings: dict[str, Any]  # JSON Schema of the settings
    plugin: bool


def describe_all() -> list[ScannerInfo]:
    """Every scanner with its stages, description and settings schema (a plugin that fails to load is skipped)."""
    out = []
    for name in known_names():
        try:
            cls = scanner_class(name)
        except Exception as exc:  # a broken plugin must not hide the others from the listing
            log.warning("scanner plugin %s does not load: %s", name, exc)
            continue
        out.append(
            ScannerInfo(
                name, sorted(cls.stages), cls.description, cls.Settings.model_json_schema(), name not in _builtin
            )
        )
    return out

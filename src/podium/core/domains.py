"""Domains declare themselves: what each one brings to the server, the CLI and the database.

A domain is a package (`podium.models`, `podium.prompts`, …) with a `domain.py` holding one `Domain`. The
server, the `podium` command, the migrations and the artifact garbage collector find every domain through
the `podium.domains` entry-point group (as Datasette and `llm` find their plugins), so adding a domain, or
a plugin package that is one, means declaring it in its own `pyproject.toml` and nowhere else.

Everything a `Domain` names is a `"module:attribute"` string, loaded only when it is used: the CLI imports
no web framework and the server imports no command-line code.
"""

from __future__ import annotations

import graphlib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from podium.core.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from podium.core.runtime import Runtime

GROUP = "podium.domains"


@dataclass(frozen=True)
class NavEntry:
    """A section of the dashboard's navigation; shown to principals holding at least `role`."""

    label: str
    href: str
    role: str = "viewer"


@dataclass(frozen=True)
class Domain:
    """What one domain brings, by reference (`"module:attribute"`); every field but `name` is optional."""

    name: str
    requires: tuple[str, ...] = ()  # domains whose `setup` runs before this one's
    tables: tuple[str, ...] = ()  # modules defining its tables (imported so migrations see them)
    api: tuple[str, ...] = ()  # FastAPI routers of its `/api` interface
    pages: tuple[str, ...] = ()  # FastAPI routers of its dashboard pages
    nav: tuple[NavEntry, ...] = ()  # its dashboard sections
    http: tuple[str, ...] = ()  # functions(runtime) -> raw Starlette routes, outside FastAPI (the `/v1` hot path)
    cli: tuple[tuple[str, str], ...] = ()  # (sub-command, Typer app) pairs of the `podium` command
    commands: tuple[tuple[str, str], ...] = ()  # (command, function) pairs at the top level of `podium`
    jobs: tuple[str, ...] = ()  # modules that register job kinds when imported
    setup: str | None = None  # a function(runtime) building its process objects, hooks and loops
    blobs: tuple[str, ...] = ()  # functions(session, digests) -> the digests among them it still refers to
    uploads: tuple[str, ...] = ()  # regexes of `/api` paths taking files: bodies up to max_upload_bytes


def load(ref: str) -> Any:
    """The object a `"module:attribute"` reference names."""
    module, _, attr = ref.partition(":")
    value: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        value = getattr(value, part)
    return value


@cache
def domains() -> tuple[Domain, ...]:
    """Every installed domain, each after the domains it requires (ties by name, so the order is stable)."""
    found: dict[str, Domain] = {}
    for ep in entry_points(group=GROUP):
        domain = ep.load()
        if not isinstance(domain, Domain):
            raise ConfigError(f"entry point {ep.name!r} of group {GROUP} is not a podium Domain: {ep.value}")
        if domain.name in found:
            raise ConfigError(f"two packages declare the domain {domain.name!r}; uninstall one of them")
        found[domain.name] = domain
    if not found:
        raise ConfigError(
            f"no podium domains are installed (entry-point group {GROUP}); reinstall podium with `make install`"
        )
    order = graphlib.TopologicalSorter({n: sorted(d.requires) for n, d in sorted(found.items())})
    try:
        names = list(order.static_order())
    except graphlib.CycleError as exc:
        raise ConfigError(f"domains require each other in a circle: {' -> '.join(exc.args[1])}") from None
    missing = [f"{n} requires {r}" for n, d in found.items() for r in d.requires if r not in found]
    if missing:
        raise ConfigError(f"a required domain is not installed: {'; '.join(missing)}")
    return tuple(found[n] for n in names)


def import_tables() -> None:
    """Import every domain's table modules, so the shared metadata holds every table."""
    for d in domains():
        for module in d.tables:
            importlib.import_module(module)


@cache
def import_job_kinds() -> None:
    """Import the modules that register every domain's job kinds (once per process)."""
    for d in domains():
        for module in d.jobs:
            importlib.import_module(module)


def setup_all(runtime: Runtime) -> None:
    """Run every domain's setup against the process runtime, in dependency order."""
    for d in domains():
        if d.setup is not None:
            fn: Callable[[Runtime], None] = load(d.setup)
            fn(runtime)


def upload_paths() -> tuple[str, ...]:
    """Regexes of the paths whose bodies may be as large as the upload limit (every domain's `uploads`)."""
    return tuple(p for d in domains() for p in d.uploads)


def nav_entries() -> list[NavEntry]:
    """The dashboard's navigation, in domain order."""
    return [entry for d in domains() for entry in d.nav]


def still_referenced(session: Session, digests: Iterable[str]) -> set[str]:
    """Which of `digests` any domain still refers to (blobs are shared by content across domains, so a
    blob is free only when every domain says it no longer needs it)."""
    wanted = set(digests)
    found: set[str] = set()
    for d in domains():
        for ref in d.blobs:
            if not wanted - found:
                return found
            fn: Callable[[Session, set[str]], set[str]] = load(ref)
            found |= fn(session, wanted - found) & wanted
    return found

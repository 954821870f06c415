"""The auth domain: projects, users, roles, API keys, the audit log, and the authenticator every request uses."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.identity import Authenticator
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Provide the process's key cache as its `Authenticator` (flushing keys' last-used times, watching the
    access epoch) and the count of failed sign-ins per address."""
    from podium.auth.authn import WATCH_EVERY, key_cache
    from podium.auth.pages import SignInFailures
    from podium.core.periodic import run_every

    keys = key_cache(runtime.platform.db)
    runtime.provide(Authenticator, keys)  # type: ignore[type-abstract]
    runtime.flusher(keys.flush_usage)
    runtime.loop("access epoch watcher", lambda: run_every(WATCH_EVERY, keys.watch, "reading the access epoch failed"))
    runtime.provide(SignInFailures, SignInFailures())


DOMAIN = Domain(
    name="auth",
    tables=("podium.auth.store",),
    api=("podium.auth.routes:router",),
    pages=("podium.auth.pages:router",),
    nav=(NavEntry("Projects", "/projects"), NavEntry("API keys", "/keys"), NavEntry("Audit log", "/audit", "admin")),
    cli=(
        ("projects", "podium.auth.cli:projects_app"),
        ("users", "podium.auth.cli:users_app"),
        ("keys", "podium.auth.cli:keys_app"),
        ("audit", "podium.auth.cli:audit_app"),
    ),
    commands=(("whoami", "podium.auth.cli:whoami"),),
    setup="podium.auth.domain:setup",
)

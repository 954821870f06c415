"""Gateway routes: create, replace, list, show and remove; credentials encrypted at rest, never returned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from podium.auth.service import record_audit
from podium.core.config import Settings
from podium.core.db import utcnow
from podium.core.errors import ConfigError, Conflict, InvalidInput, NotFound, validated
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.gateway.guardrails import build_guardrails
from podium.gateway.spec import RouteSpec
from podium.gateway.store import GatewayRoute
from podium.models import service as models


class DeploymentInfo(BaseModel):
    """A deployment as shown: everything but the credential, which is only said to be set."""

    name: str
    provider: str
    model: str
    base_url: str | None
    api_key_set: bool
    weight: float
    price: dict[str, float] | None
    context_window: int | None
    timeouts: dict[str, float]


class RouteInfo(BaseModel):
    """A stored route."""

    id: str
    name: str
    description: str
    strategy: str
    deployments: list[DeploymentInfo]
    fallbacks: list[str]
    options: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime


def parse_spec(data: Any) -> RouteSpec:
    """Validate a route definition; `InvalidInput` names the first wrong field."""
    spec = validated(RouteSpec, data, "route", default="route")
    build_guardrails(spec.guardrails)  # an unknown type or a bad pattern fails here, before anything is stored
    return spec


def _options(spec: RouteSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude={"name", "description", "strategy", "deployments", "fallbacks"})


def _stored_deployments(platform: Platform, spec: RouteSpec) -> list[dict[str, Any]]:
    """Deployments as stored: the API key and the extra headers (which often carry credentials too)
    encrypted."""
    rows = []
    for d in spec.deployments:
        row = d.model_dump(mode="json", exclude={"api_key", "headers"})
        row["api_key_enc"] = platform.box.encrypt(d.api_key.get_secret_value()) if d.api_key else None
        row["headers_enc"] = platform.box.encrypt(orjson.dumps(d.headers).decode()) if d.headers else None
        rows.append(row)
    return rows


def rotate_secrets(platform: Platform) -> int:
    """Re-encrypt every route's stored credentials under the current secret key (after a rotation;
    `podium serve` calls it when `secret_key_previous` is set). Returns how many routes changed."""
    changed = 0
    with platform.db.session() as s:
        for row in s.scalars(select(GatewayRoute)):
            deployments = []
            for d in row.deployments:
                d = dict(d)
                if d.get("headers"):  # saved in clear by an earlier version
                    d["headers_enc"] = platform.box.encrypt(orjson.dumps(d.pop("headers")).decode())
                for key in ("api_key_enc", "headers_enc"):
                    if d.get(key):
                        d[key] = platform.box.rotate(d[key])
                deployments.append(d)
            if deployments != row.deployments:
                row.deployments = deployments
                changed += 1
    return changed


def _info(r: GatewayRoute) -> RouteInfo:
    deps = [
        DeploymentInfo(
            name=d["name"],
            provider=d["provider"],
            model=d["model"],
            base_url=d.get("base_url"),
            api_key_set=bool(d.get("api_key_enc")),
            weight=d.get("weight", 1.0),
            price=d.get("price"),
            context_window=d.get("context_window"),
            timeouts=d.get("timeouts") or {},
        )
        for d in r.deployments
    ]
    return RouteInfo(
        id=r.id,
        name=r.name,
        description=r.description,
        strategy=r.strategy,
        deployments=deps,
        fallbacks=list(r.fallbacks),
        options=dict(r.options),
        created_by=r.created_by,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _check_name(platform: Platform, name: str) -> None:
    if models.is_registered(platform, name):
        raise Conflict(
            f"{name!r} is a registered model, which is a route already; pick another name for the route",
            details={"field": "name"},
        )


def create_route(platform: Platform, actor: Actor, data: Any) -> RouteInfo:
    """Add a route (admin). Fails whole on a bad field or an existing name."""
    actor.require_admin("manage gateway routes")
    spec = parse_spec(data)
    _check_name(platform, spec.name)
    try:
        with platform.db.session() as s:
            if s.scalar(select(GatewayRoute.id).where(GatewayRoute.name == spec.name)) is not None:
                raise Conflict(f"route {spec.name!r} exists already; use PUT /api/routes/{spec.name} to replace it")
            now = utcnow()
            row = GatewayRoute(
                id=new_id("rte"),
                name=spec.name,
                description=spec.description,
                strategy=spec.strategy,
                deployments=_stored_deployments(platform, spec),
                fallbacks=spec.fallbacks,
                options=_options(spec),
                created_by=actor.label,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            record_audit(s, actor, "route.create", "route", row.id, details={"name": spec.name})
            s.flush()
            return _info(row)
    except IntegrityError:
        raise Conflict(f"route {spec.name!r} exists already") from None


def replace_route(platform: Platform, actor: Actor, name: str, data: Any) -> RouteInfo:
    """Replace a route's definition (admin); a deployment given without `api_key` keeps its stored one."""
    actor.require_admin("manage gateway routes")
    if isinstance(data, dict):
        data = {**data, "name": data.get("name", name)}
    spec = parse_spec(data)
    if spec.name != name:
        raise InvalidInput(f"the body names route {spec.name!r} but the path names {name!r}", details={"field": "name"})
    with platform.db.session() as s:
        row = _row(s, name)
        before = {d["name"]: d for d in row.deployments}
        stored = _stored_deployments(platform, spec)
        for d in stored:
            old = before.get(d["name"])
            if d["api_key_enc"] is not None or old is None or not old.get("api_key_enc"):
                continue
            # a stored key is kept only for the upstream it was given for: never sent to another host
            if (old.get("provider"), old.get("base_url")) != (d.get("provider"), d.get("base_url")):
                raise InvalidInput(
                    f"deployment {d['name']!r} moves to another upstream ({d.get('provider')}"
                    f" {d.get('base_url') or 'default URL'}): give its api_key again",
                    details={"field": "deployments.api_key"},
                )
            d["api_key_enc"] = old["api_key_enc"]
        row.description = spec.description
        row.strategy = spec.strategy
        row.deployments = stored
        row.fallbacks = spec.fallbacks
        row.options = _options(spec)
        row.updated_at = utcnow()
        record_audit(s, actor, "route.update", "route", row.id, details={"name": name})
        s.flush()
        return _info(row)


def list_routes(platform: Platform, actor: Actor) -> list[RouteInfo]:
    """Every stored route (any role)."""
    actor.require("viewer", "list gateway routes")
    with platform.db.read_session() as s:
        return [_info(r) for r in s.scalars(select(GatewayRoute).order_by(GatewayRoute.name))]


def _row(s: Any, name: str) -> GatewayRoute:
    row: GatewayRoute | None = s.scalar(select(GatewayRoute).where(GatewayRoute.name == name))
    if row is None:
        raise NotFound(f"route {name!r} not found")
    return row


def get_route(platform: Platform, actor: Actor, name: str) -> RouteInfo:
    """One stored route."""
    actor.require("viewer", "read gateway routes")
    with platform.db.read_session() as s:
        return _info(_row(s, name))


def delete_route(platform: Platform, actor: Actor, name: str) -> None:
    """Remove a route (admin)."""
    actor.require_admin("manage gateway routes")
    with platform.db.session() as s:
        row = _row(s, name)
        record_audit(s, actor, "route.delete", "route", row.id, details={"name": name})
        s.delete(row)


def load_route_specs(platform: Platform) -> list[RouteSpec]:
    """Every stored route as a spec with decrypted credentials, for the route table."""
    with platform.db.read_session() as s:
        rows = list(s.scalars(select(GatewayRoute).order_by(GatewayRoute.name)))
    specs = []
    for r in rows:
        deps = []
        for d in r.deployments:
            d = dict(d)
            enc = d.pop("api_key_enc", None)
            d["api_key"] = platform.box.decrypt(enc) if enc else None
            headers = d.pop("headers_enc", None)
            if headers:
                d["headers"] = orjson.loads(platform.box.decrypt(headers))
            deps.append(d)
        data = {
            **r.options,
            "name": r.name,
            "description": r.description,
            "strategy": r.strategy,
            "deployments": deps,
            "fallbacks": r.fallbacks,
        }
        specs.append(RouteSpec.model_validate(data))
    return specs


def config_route_specs(settings: Settings) -> list[RouteSpec]:
    """Routes defined in `podium.toml` (`[[routes]]`); a bad one stops startup with a `ConfigError`."""
    specs = []
    for i, data in enumerate(settings.routes):
        try:
            specs.append(parse_spec(data))
        except InvalidInput as exc:
            raise ConfigError(f"config 'routes[{i}]': {exc.message}", details={"key": f"routes[{i}]"}) from None
    return specs

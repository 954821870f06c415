"""`/api/routes` and `/api/limits`: gateway routes and limits over HTTP (the management API; `/v1` is in
`routes.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, status

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.core.runtime import Runtime
from podium.gateway import admin, limits
from podium.gateway.admin import RouteInfo
from podium.gateway.governor import Governor
from podium.gateway.limits import LimitInfo
from podium.gateway.table import RouteTable

router = APIRouter(prefix="/api/routes", tags=["gateway"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
RouteBody = Annotated[
    dict[str, Any],
    Body(
        examples=[
            {
                "name": "support-model",
                "strategy": "weighted",
                "deployments": [
                    {"provider": "openai", "base_url": "http://10.0.0.5:8000/v1", "model": "llama-3-8b", "weight": 3},
                    {"provider": "anthropic", "model": "claude-haiku-4-5", "api_key": "sk-ant-…", "weight": 1},
                ],
                "fallbacks": ["smollm2-135m-instruct"],
            }
        ]
    ),
]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _refresh(request: Request) -> None:
    table = _runtime(request).find(RouteTable)
    if table is not None:
        table.refresh()  # this process applies the change at once; others within their refresh period


@router.get("")
def list_routes(actor: ActorDep, platform: PlatformDep) -> list[RouteInfo]:
    """Stored routes (credentials are never returned)."""
    return admin.list_routes(platform, actor)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_route(body: RouteBody, request: Request, actor: ActorDep, platform: PlatformDep) -> RouteInfo:
    """Add a route: a public model name over deployments, with strategy, fallbacks, retries and caching."""
    info = admin.create_route(platform, actor, body)
    _refresh(request)
    return info


@router.get("/{name:path}")
def get_route(name: str, actor: ActorDep, platform: PlatformDep) -> RouteInfo:
    """One route."""
    return admin.get_route(platform, actor, name)


@router.put("/{name:path}")
def replace_route(name: str, body: RouteBody, request: Request, actor: ActorDep, platform: PlatformDep) -> RouteInfo:
    """Replace a route; deployments sent without `api_key` keep their stored key."""
    info = admin.replace_route(platform, actor, name, body)
    _refresh(request)
    return info


@router.delete("/{name:path}", status_code=status.HTTP_204_NO_CONTENT)
def delete_route(name: str, request: Request, actor: ActorDep, platform: PlatformDep) -> None:
    """Remove a route."""
    admin.delete_route(platform, actor, name)
    _refresh(request)


limits_router = APIRouter(prefix="/api/limits", tags=["gateway"])
LimitsBody = Annotated[
    dict[str, Any],
    Body(examples=[{"allowed_models": ["smollm2-*", "support-model"], "rpm": 60, "daily_budget_usd": "5.00"}]),
]


def _refresh_limits(request: Request) -> None:
    governor = _runtime(request).find(Governor)
    if governor is not None:
        governor.refresh()  # this process applies the change at once; others within their refresh period


@limits_router.get("")
def list_limits(actor: ActorDep, platform: PlatformDep) -> list[LimitInfo]:
    """Every key, project and user with limits, with what it spent today and this month."""
    return limits.list_limits(platform, actor)


@limits_router.get("/{scope}/{ref}")
def get_limits(scope: str, ref: str, actor: ActorDep, platform: PlatformDep) -> LimitInfo:
    """One scope's limits (`key` by id or prefix, `project` or `user` by name or id)."""
    return limits.get_limits(platform, actor, scope, ref)


@limits_router.put("/{scope}/{ref}")
def set_limits(
    scope: str, ref: str, body: LimitsBody, request: Request, actor: ActorDep, platform: PlatformDep
) -> LimitInfo:
    """Set (replace) a scope's allowed models, requests and tokens per minute, and daily/monthly budgets."""
    info = limits.set_limits(platform, actor, scope, ref, body)
    _refresh_limits(request)
    return info


@limits_router.delete("/{scope}/{ref}", status_code=status.HTTP_204_NO_CONTENT)
def delete_limits(scope: str, ref: str, request: Request, actor: ActorDep, platform: PlatformDep) -> None:
    """Remove a scope's limits."""
    limits.delete_limits(platform, actor, scope, ref)
    _refresh_limits(request)

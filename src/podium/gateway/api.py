"""`/api/routes`: gateway routes over HTTP (the management API; `/v1` is in `routes.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, status

from podium.core.auth.service import Actor
from podium.core.http import current_actor, get_platform
from podium.core.platform import Platform
from podium.gateway import service
from podium.gateway.service import RouteInfo

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


def _refresh(request: Request) -> None:
    table = getattr(request.app.state, "routes", None)
    if table is not None:
        table.refresh()  # this process applies the change at once; others within their refresh period


@router.get("")
def list_routes(actor: ActorDep, platform: PlatformDep) -> list[RouteInfo]:
    """Stored routes (credentials are never returned)."""
    return service.list_routes(platform, actor)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_route(body: RouteBody, request: Request, actor: ActorDep, platform: PlatformDep) -> RouteInfo:
    """Add a route: a public model name over deployments, with strategy, fallbacks, retries and caching."""
    info = service.create_route(platform, actor, body)
    _refresh(request)
    return info


@router.get("/{name:path}")
def get_route(name: str, actor: ActorDep, platform: PlatformDep) -> RouteInfo:
    """One route."""
    return service.get_route(platform, actor, name)


@router.put("/{name:path}")
def replace_route(name: str, body: RouteBody, request: Request, actor: ActorDep, platform: PlatformDep) -> RouteInfo:
    """Replace a route; deployments sent without `api_key` keep their stored key."""
    info = service.replace_route(platform, actor, name, body)
    _refresh(request)
    return info


@router.delete("/{name:path}", status_code=status.HTTP_204_NO_CONTENT)
def delete_route(name: str, request: Request, actor: ActorDep, platform: PlatformDep) -> None:
    """Remove a route."""
    service.delete_route(platform, actor, name)
    _refresh(request)

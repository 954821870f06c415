"""`/api/prompts`: the prompt registry over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict
from starlette.responses import StreamingResponse

from podium.core import sse
from podium.core.http import current_actor, get_platform, request_id
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.gateway.service import Gateway
from podium.prompts import playground, service
from podium.prompts.playground import RunRequest, RunResult
from podium.prompts.service import Created, Diff, PromptDetail, PromptInfo, Rendered, VersionInfo
from podium.web.shell import key_or_session_actor

router = APIRouter(prefix="/api/prompts", tags=["prompts"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


class LabelBody(BaseModel):
    """Body of `PUT /api/prompts/{name}/labels/{label}`: a version number, `latest`, or a version id."""

    model_config = ConfigDict(extra="forbid")

    version: str | int


class RenderBody(BaseModel):
    """Body of `POST /api/prompts/{name}/render`."""

    model_config = ConfigDict(extra="forbid")

    version: str | int | None = None
    label: str | None = None
    variables: dict[str, Any] = {}


@router.get("")
def list_prompts(actor: ActorDep, platform: PlatformDep) -> list[PromptInfo]:
    """The prompts you see (your project's and global ones) with their latest version and labels."""
    return service.list_prompts(platform.db, actor)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_version(
    response: Response,
    actor: ActorDep,
    platform: PlatformDep,
    body: Annotated[Any, Body()] = None,
    dry_run: bool = False,
) -> Created:
    """Push a version (template or messages, variables, model parameters, tools, response schema).
    Content equal to the latest version creates nothing: 200 with `created: false`. `?dry_run=true`
    validates and answers what would happen, writing nothing."""
    result = service.create_version(platform.db, actor, body, dry_run=dry_run)
    if not result.created or dry_run:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/versions/{version_id}")
def get_version_by_id(version_id: str, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """One version by id (`prv_…`), as traces link to it."""
    return service.get_version_by_id(platform.db, actor, version_id)


@router.get("/{name}")
def get_prompt(name: str, actor: ActorDep, platform: PlatformDep) -> PromptDetail:
    """A prompt with its versions and label history."""
    return service.get_prompt(platform.db, actor, name)


@router.get("/{name}/versions/{ref}")
def get_version(name: str, ref: str, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """One version, by number, label or `latest`."""
    return service.get_version(platform.db, actor, name, ref)


@router.get("/{name}/diff")
def diff(name: str, a: str, b: str, actor: ActorDep, platform: PlatformDep) -> Diff:
    """Compare two versions (numbers or labels)."""
    return service.diff(platform.db, actor, name, a, b)


@router.put("/{name}/labels/{label}")
def set_label(name: str, label: str, body: LabelBody, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """Point a label at a version of this prompt (atomic; the move is recorded)."""
    return service.set_label(platform.db, actor, name, label, body.version)


@router.delete("/{name}/labels/{label}", status_code=status.HTTP_204_NO_CONTENT)
def remove_label(name: str, label: str, actor: ActorDep, platform: PlatformDep) -> None:
    """Delete a label."""
    service.remove_label(platform.db, actor, name, label)


@router.post("/{name}/render")
def render(name: str, body: RenderBody, actor: ActorDep, platform: PlatformDep) -> Rendered:
    """Render a version (by `version` or `label`; latest by default) with variables."""
    ref = body.version if body.version is not None else body.label
    return service.render(platform.db, actor, name, ref, body.variables)


playground_router = APIRouter(prefix="/api/playground", tags=["prompts"])
CallerDep = Annotated[Actor, Depends(key_or_session_actor)]


@playground_router.post("/run", response_model=RunResult, responses={200: {"content": {"text/event-stream": {}}}})
async def run(body: RunRequest, request: Request, actor: CallerDep, platform: PlatformDep) -> Any:
    """Render a draft or a saved version with variables and run it on a gateway model or route, as the caller:
    limits, guardrails, fallbacks and the trace apply as on `/v1`; the response cache does not. The gateway's
    errors come back in the result (`ok: false`, `status`, `error`). With `stream: true` the answer is
    server-sent events: the model's chunks as `data:` events, then an `event: result` with the summary,
    then `data: [DONE]`. Takes an API key, or the dashboard session with its CSRF token."""
    gateway = request.app.state.runtime.get(Gateway)
    rid = request_id(request)
    if not body.stream:
        return await playground.run(gateway, platform.db, actor, body, request_id=rid)
    answer, used = await playground.start(gateway, platform.db, actor, body, request_id=rid)
    return StreamingResponse(_events(playground.events(body, answer, used)), media_type="text/event-stream")


async def _events(events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
    async for kind, data in events:
        if kind == "chunk":
            yield sse.frame(data)
        elif kind == "keepalive":
            yield sse.KEEPALIVE
        else:
            yield sse.named("result", data.model_dump(mode="json"))
    yield sse.DONE

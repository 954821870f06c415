"""`/api/chains`: chain versions, labels, diffs and runs over HTTP (a run as JSON, or as server-sent events of
its steps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from podium.chains import service
from podium.chains.engine import Event
from podium.chains.service import ApprovalInfo, ChainDetail, ChainInfo, Diff, Pushed, RunInfo, ToolList, VersionInfo
from podium.chains.spec import MAX_YAML_BYTES
from podium.core.errors import InvalidInput, PodiumError
from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform

router = APIRouter(prefix="/api/chains", tags=["chains"])
approvals_router = APIRouter(prefix="/api/chain-approvals", tags=["chains"])
tools_router = APIRouter(prefix="/api/chain-tools", tags=["chains"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
MAX_INPUT_BYTES = 1024 * 1024


class PushBody(BaseModel):
    """Body of `POST /api/chains/{name}/versions`: the chain as YAML (`source`) or as an object (`spec`)."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, max_length=MAX_YAML_BYTES)
    spec: dict[str, Any] | None = None
    message: str = Field("", max_length=service.MAX_MESSAGE)
    description: str | None = Field(None, max_length=2000)


class LabelBody(BaseModel):
    """Body of `PUT /api/chains/{name}/labels/{label}`: a version number, `latest`, a label or a version id."""

    model_config = ConfigDict(extra="forbid")

    version: str | int


class RunBody(BaseModel):
    """Body of `POST /api/chains/{name}/run`: the inputs, the version (number or label; default the latest),
    and `stream` for server-sent events of the steps (`step_started`, `step_finished`, …, `run_finished`)."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict)
    version: str | int | None = None
    stream: bool = False


@router.get("")
def list_chains(actor: ActorDep, platform: PlatformDep) -> list[ChainInfo]:
    """The chains you see."""
    return service.list_chains(platform, actor)


@router.post("/{name}/versions", status_code=status.HTTP_201_CREATED)
def push(name: str, body: PushBody, actor: ActorDep, platform: PlatformDep, response: Response) -> Pushed:
    """Check a chain whole and add it as the next version (200, not 201, when it equals the latest)."""
    if (body.source is None) == (body.spec is None):
        raise InvalidInput(
            "give the chain as 'source' (YAML) or as 'spec' (an object), not both", details={"field": "source"}
        )
    pushed = service.push(
        platform,
        actor,
        name,
        body.source if body.source is not None else body.spec,
        message=body.message,
        description=body.description,
    )
    if not pushed.created:
        response.status_code = status.HTTP_200_OK
    return pushed


@router.get("/{name}")
def get_chain(name: str, actor: ActorDep, platform: PlatformDep) -> ChainDetail:
    """A chain with its versions (newest first) and label history."""
    return service.get_chain(platform, actor, name)


@router.get("/{name}/versions/{ref}")
def get_version(name: str, ref: str, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """One version: a number, a label or `latest`."""
    return service.get_version(platform, actor, f"{name}@{ref}")


@router.get("/{name}/diff")
def diff(
    name: str, actor: ActorDep, platform: PlatformDep, a: Annotated[str, Query()], b: Annotated[str, Query()]
) -> Diff:
    """A unified diff of two versions' YAML."""
    return service.diff(platform, actor, name, a, b)


@router.put("/{name}/labels/{label}")
def set_label(name: str, label: str, body: LabelBody, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """Point a label at a version (atomic; the move is recorded)."""
    return service.set_label(platform, actor, name, label, body.version)


@router.delete("/{name}/labels/{label}", status_code=status.HTTP_204_NO_CONTENT)
def remove_label(name: str, label: str, actor: ActorDep, platform: PlatformDep) -> None:
    """Delete a label (the removal is recorded in its history)."""
    service.remove_label(platform, actor, name, label)


@router.post("/{name}/run", response_model=RunInfo, responses={200: {"content": {"text/event-stream": {}}}})
async def run(name: str, body: RunBody, actor: ActorDep, platform: PlatformDep) -> Any:
    """Run a version on `inputs`: the run as recorded (status `ok` with its output, or `error` naming the
    step that failed), or with `stream` its events as they happen, the last one `run_finished`."""
    if len(orjson.dumps(body.inputs)) > MAX_INPUT_BYTES:
        raise InvalidInput(f"inputs may be at most {MAX_INPUT_BYTES // 1024} KB of JSON", details={"field": "inputs"})
    ref = name if body.version is None else f"{name}@{body.version}"
    if not body.stream:
        return await service.run(platform, actor, ref, body.inputs)
    return StreamingResponse(_events(platform, actor, ref, body.inputs), media_type="text/event-stream")


async def _events(platform: Platform, actor: Actor, ref: str, inputs: dict[str, Any]) -> AsyncIterator[bytes]:
    """The run's events as server-sent events; an error before the run starts is one `error` event."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def put(event: Event) -> None:
        await queue.put(event.as_dict())

    async def go() -> None:
        try:
            result = await service.run(platform, actor, ref, inputs, on_event=put)
            await queue.put({"type": "run", "run": result.model_dump(mode="json")})
        except PodiumError as exc:
            await queue.put({"type": "error", "status": exc.status, "code": exc.code, "message": exc.message})
        finally:
            await queue.put(None)

    task = asyncio.create_task(go())
    try:
        while (item := await queue.get()) is not None:
            yield b"data: " + orjson.dumps(item, default=str) + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        if not task.done():
            task.cancel()


@router.get("/{name}/runs")
def list_runs(
    name: str, actor: ActorDep, platform: PlatformDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[RunInfo]:
    """The newest runs of a chain."""
    return service.list_runs(platform, actor, name, limit=limit)


@router.get("/{name}/runs/{run_id}")
def get_run(name: str, run_id: str, actor: ActorDep, platform: PlatformDep) -> RunInfo:
    """One run, with its step timeline and trace id."""
    return service.get_run(platform, actor, run_id, chain=name)


class DecisionBody(BaseModel):
    """Body of `POST /api/chain-approvals/{id}/approve` (or `/reject`)."""

    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=service.MAX_COMMENT)


@approvals_router.get("")
def list_approvals(
    actor: ActorDep,
    platform: PlatformDep,
    status: Annotated[str | None, Query(description="pending (default), approved, rejected or all")] = "pending",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ApprovalInfo]:
    """The approval queue: tool calls agents asked for that wait for a person (or, by status, decided ones)."""
    return service.list_approvals(platform, actor, status=None if status == "all" else status, limit=limit)


@approvals_router.post("/{approval_id}/approve")
def approve(approval_id: str, body: DecisionBody, actor: ActorDep, platform: PlatformDep) -> ApprovalInfo:
    """Let the tool call run; the waiting run goes on."""
    return service.decide(platform, actor, approval_id, True, body.comment)


@approvals_router.post("/{approval_id}/reject")
def reject(approval_id: str, body: DecisionBody, actor: ActorDep, platform: PlatformDep) -> ApprovalInfo:
    """Refuse the tool call; the agent is told it was rejected (with the comment) and goes on."""
    return service.decide(platform, actor, approval_id, False, body.comment)


@tools_router.get("")
def list_tools(actor: ActorDep, platform: PlatformDep) -> ToolList:
    """The tools chains may call on this server (Python tools and MCP servers' tools), and the MCP servers
    that could not be listed at start, with why."""
    return service.list_tools(platform, actor)

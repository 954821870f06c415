"""`/api/datasets`: datasets, versions, imports, preparation, cards, diffs and downloads over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from podium.core.errors import PodiumError
from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.data import card, jobs, service, traces, uploads
from podium.data.card import Card, VersionDiff
from podium.data.service import DatasetDetail, DatasetInfo, ImportResult, RowsPage, VersionInfo
from podium.data.traces import TraceSelection
from podium.jobs.service import JobInfo

router = APIRouter(prefix="/api/datasets", tags=["datasets"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
MEDIA = {"parquet": "application/vnd.apache.parquet", "jsonl": "application/x-ndjson", "csv": "text/csv"}


class LabelBody(BaseModel):
    """Body of `PUT /api/datasets/{name}/labels/{label}`: a version number, `latest`, a label or a version id."""

    model_config = ConfigDict(extra="forbid")

    version: str | int


class TracesBody(TraceSelection):
    """Body of `POST /api/datasets/{name}/import-traces`."""

    message: str = Field("", max_length=10_000)
    description: str = Field("", max_length=10_000)


class PrepBody(BaseModel):
    """Body of `POST /api/datasets/{name}/prep`: the pipeline (YAML text or `{seed, steps}`), the source
    version (default: latest) and the dataset receiving the result (default: this one)."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str | dict[str, Any] | list[Any]
    version: str | int = "latest"
    into: str | None = None
    message: str = Field("", max_length=10_000)


@router.get("")
def list_datasets(actor: ActorDep, platform: PlatformDep) -> list[DatasetInfo]:
    """The datasets you see, with their latest version, rows and labels."""
    return service.list_datasets(platform, actor)


@router.post(
    "/{name}/import",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    },
)
async def import_file(
    name: str,
    request: Request,
    response: Response,
    actor: ActorDep,
    platform: PlatformDep,
    format: Annotated[
        str | None, Query(description="Required: jsonl, csv, parquet, folder or hf (a tar archive of the folder).")
    ] = None,
    on_error: Annotated[str, Query(description="skip: leave malformed rows out; fail: import nothing.")] = "fail",
    filename: Annotated[str | None, Query(description="The file's name, for reports (500 characters at most).")] = None,
    message: Annotated[str, Query(description="10,000 characters at most.")] = "",
    description: Annotated[str, Query(description="10,000 characters at most.")] = "",
) -> ImportResult:
    """Import the request body (a file's bytes; a tar archive for `folder` and `hf`) as the next version.
    Malformed rows are reported with file and line; under `on_error=fail` nothing is committed. The same rows
    as an existing version make no new one: 200 with `created: false`."""
    try:  # refuse before receiving the body; parameters are checked here, not by FastAPI, for the same reason
        format = service.check_import(format, on_error, filename=filename, message=message, description=description)
        await run_in_threadpool(service.check_writable, platform, actor, name)
    except PodiumError:
        # read what is left of a small body: the server must not parse its unread bytes as the next request
        await uploads.drain(request.stream(), platform.settings.max_body_bytes)
        raise
    with service.workspace(platform) as folder:
        body = folder / "upload"
        await uploads.receive(request.stream(), body)
        path: Path = body
        if format in ("folder", "hf"):
            path = await run_in_threadpool(uploads.unpack, body, folder / "unpacked")
        result = await run_in_threadpool(
            service.import_file,
            platform,
            actor,
            name,
            path,
            format,
            on_error=on_error,
            message=message,
            description=description,
            source=filename or name,
        )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return result


@router.post("/{name}/import-traces", status_code=status.HTTP_201_CREATED)
def import_traces(
    name: str, body: TracesBody, response: Response, actor: ActorDep, platform: PlatformDep
) -> ImportResult:
    """Traces matching the filters (those of `/api/traces`) and score conditions, one row each with its
    input, output, messages, metadata, scores and feedback, linked by `trace_id`."""
    selection = TraceSelection(**body.model_dump(exclude={"message", "description"}))
    result = traces.import_traces(platform, actor, name, selection, message=body.message, description=body.description)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/{name}")
def get_dataset(name: str, actor: ActorDep, platform: PlatformDep) -> DatasetDetail:
    """A dataset with its versions (newest first) and label history."""
    return service.get_dataset(platform, actor, name)


@router.get("/{name}/versions/{ref}")
def get_version(name: str, ref: str, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """One version by number, label, id or `latest`: schema, rows, statistics, parents and lineage."""
    return service.get_version(platform, actor, f"{name}@{ref}")


@router.get("/{name}/versions/{ref}/rows")
def rows(
    name: str,
    ref: str,
    actor: ActorDep,
    platform: PlatformDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=service.MAX_HEAD_ROWS)] = 20,
    q: Annotated[str | None, Query(max_length=service.MAX_QUERY_CHARS, description="Text to find.")] = None,
    column: Annotated[str | None, Query(max_length=200, description="Search this column only.")] = None,
) -> RowsPage:
    """A page of rows; with `q`, of the rows where a text column contains it (case-insensitive)."""
    return service.head(platform, actor, f"{name}@{ref}", offset=offset, limit=limit, q=q, column=column)


@router.get("/{name}/versions/{ref}/card")
def get_card(name: str, ref: str, actor: ActorDep, platform: PlatformDep) -> Card:
    """The dataset card: rows, columns, histograms, languages, and what preparation removed."""
    return card.card(platform, actor, f"{name}@{ref}")


@router.get(
    "/{name}/versions/{ref}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {m: {} for m in MEDIA.values()}}},
)
def download(
    name: str,
    ref: str,
    actor: ActorDep,
    platform: PlatformDep,
    format: Annotated[str, Query(description="parquet, jsonl or csv.")] = "parquet",
) -> StreamingResponse:
    """The version's rows as a file, streamed."""
    info, chunks = service.version_chunks(platform, actor, f"{name}@{ref}", format)
    filename = f"{info.dataset}-v{info.version}.{format}"
    headers = {"content-disposition": f'attachment; filename="{filename}"', "x-podium-version": info.id}
    return StreamingResponse(chunks, media_type=MEDIA[format], headers=headers)


@router.get("/{name}/diff")
def diff(
    name: str,
    a: str,
    b: str,
    actor: ActorDep,
    platform: PlatformDep,
    key: Annotated[str | None, Query(max_length=200, description="Column matching rows (default: `id`).")] = None,
) -> VersionDiff:
    """Compare two versions (`a` before, `b` after; numbers, labels, ids, or `other-dataset@ref`)."""
    return card.diff(platform, actor, _ref(name, a), _ref(name, b), key=key)


def _ref(name: str, ref: str) -> str:
    return ref if "@" in ref else f"{name}@{ref}"


@router.post("/{name}/prep", status_code=status.HTTP_202_ACCEPTED)
def run_prep(name: str, body: PrepBody, actor: ActorDep, platform: PlatformDep) -> JobInfo:
    """Check a preparation pipeline whole, then run it as a job (follow it at `/api/jobs/{id}`); its result
    names the new version."""
    return jobs.submit(platform, actor, f"{name}@{body.version}", body.pipeline, into=body.into, message=body.message)


@router.put("/{name}/labels/{label}")
def set_label(name: str, label: str, body: LabelBody, actor: ActorDep, platform: PlatformDep) -> VersionInfo:
    """Point a label at a version of this dataset (atomic; the move is recorded)."""
    return service.set_label(platform, actor, name, label, body.version)


@router.delete("/{name}/labels/{label}", status_code=status.HTTP_204_NO_CONTENT)
def remove_label(name: str, label: str, actor: ActorDep, platform: PlatformDep) -> None:
    """Delete a label."""
    service.remove_label(platform, actor, name, label)

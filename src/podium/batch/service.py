"""Batch inference: run a model, or any name the gateway serves, over a dataset version, writing the answers as
a new dataset version (the input columns plus an output column and, per row, its error, latency, tokens,
finish reason and trace).

Calls go through the in-process gateway as the caller (routing, limits, budgets, guardrails and a trace per
call, marked `batch`), up to `concurrency` at once, so a local model worker batches them. A row whose call
fails keeps its error in `<output>_error` and a null output; the rows are never dropped. Everything is
checked before the job is queued (the model for this caller, the dataset version, the columns and their
types, the right to write the output) and again when it runs; a cancelled or failed job writes no version.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from podium.core.errors import Forbidden, InvalidInput, NotFound
from podium.core.identity import Actor, Principal
from podium.core.platform import Platform
from podium.data import service as data
from podium.gateway import bridge
from podium.gateway.errors import GatewayError
from podium.gateway.guardrails import response_text
from podium.gateway.service import Gateway, Incoming
from podium.jobs import service as jobs
from podium.jobs.service import JobInfo

ORIGIN = "batch"  # the source of these calls' traces: told apart from traffic and evaluations
MAX_ROWS = 100_000  # rows one batch answers; more take `limit` (or a sampled dataset)
CHUNK_ROWS = 256  # rows read, answered and spooled at a time
CHECK_TIMEOUT = 60.0  # seconds for the gateway to say whether the caller may use the model
ROLES = ("system", "user", "assistant", "tool")
Progress = Callable[[float, str], None]


class BatchParams(BaseModel):
    """Sampling parameters sent with every call (the model's defaults where absent; temperature 0 if unset)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, ge=1, le=32_768)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)


class BatchSpec(BaseModel):
    """What to run over which rows, and where the answers go."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(..., min_length=1, max_length=200, description="A model reference or gateway route.")
    dataset: str = Field(..., min_length=1, max_length=300, description="The input version: name@version or @label.")
    input_column: str | None = Field(None, min_length=1, max_length=200, description="A text column: the prompt.")
    messages_column: str | None = Field(
        None, min_length=1, max_length=200, description="A column of chat messages ({role, content} lists)."
    )
    system: str | None = Field(None, max_length=100_000, description="A system message put before every row's.")
    output_dataset: str | None = Field(None, max_length=200, description="Where the version goes (default: dataset).")
    output_column: str = Field("output", min_length=1, max_length=100)
    params: BatchParams = BatchParams()
    concurrency: int = Field(8, ge=1, le=64)
    limit: int | None = Field(None, ge=1, le=MAX_ROWS, description="Answer only the first N rows.")
    message: str = Field("", max_length=10_000, description="The new version's message.")


class BatchResult(BaseModel):
    """A finished batch: the version written, where it came from, and how many rows failed."""

    version: data.VersionInfo
    created: bool  # False: the answers were exactly an existing version's, which is returned
    source: str  # the input version (`name@N`)
    model: str
    route: str  # the route the gateway took for the model
    rows: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    output_column: str


@dataclass(frozen=True)
class Checked:
    """A batch checked whole: the input version, the output dataset's name and the gateway's route."""

    source: data.VersionInfo
    target: str
    route: str
    rows: int


def output_columns(name: str) -> dict[str, pa.DataType]:
    """The columns a batch adds, with their types."""
    return {
        name: pa.string(),
        f"{name}_error": pa.string(),
        f"{name}_latency_ms": pa.float64(),
        f"{name}_prompt_tokens": pa.int64(),
        f"{name}_completion_tokens": pa.int64(),
        f"{name}_finish_reason": pa.string(),
        f"{name}_trace_id": pa.string(),
    }


def _principal(actor: Actor) -> Principal:
    if actor.principal is None:
        raise InvalidInput("batch inference calls models as its caller: use an API key or a dashboard session")
    return actor.principal


def _check_columns(spec: BatchSpec, source: data.VersionInfo) -> None:
    """The prompt (or messages) column exists and holds text (or lists); the output columns are new."""
    types = {c.name: c.type for c in source.columns}
    listed = ", ".join(types)
    if (spec.input_column is None) == (spec.messages_column is None):
        raise InvalidInput(
            "give input_column (a text column holding each row's prompt) or messages_column (a column of chat"
            f" messages), exactly one; the columns of {source.ref}: {listed}",
            details={"field": "input_column", "columns": list(types)},
        )
    field_name, column = (
        ("input_column", spec.input_column)
        if spec.input_column is not None
        else ("messages_column", spec.messages_column)
    )
    assert column is not None
    if column not in types:
        raise InvalidInput(
            f"dataset {source.ref} has no column {column!r} ({field_name}); its columns: {listed}",
            details={"field": field_name, "column": column, "columns": list(types)},
        )
    kind = types[column]
    if field_name == "input_column" and kind not in ("string", "large_string"):
        raise InvalidInput(
            f"column {column!r} of {source.ref} holds {kind}, not text; input_column must name a text column"
            " (a column of chat messages goes in messages_column)",
            details={"field": field_name, "column": column, "type": kind},
        )
    if field_name == "messages_column" and not kind.startswith(("list<", "large_list<")):
        raise InvalidInput(
            f"column {column!r} of {source.ref} holds {kind}, not lists of chat messages ({{role, content}});"
            " a text column goes in input_column",
            details={"field": field_name, "column": column, "type": kind},
        )
    name = spec.output_column
    if not name.strip() or name != name.strip() or "\x00" in name:
        raise InvalidInput(
            f"output_column {name!r} must be a name without surrounding spaces or NUL",
            details={"field": "output_column"},
        )
    taken = [c for c in output_columns(name) if c in types]
    if taken:
        raise InvalidInput(
            f"dataset {source.ref} already has the column{'s' if len(taken) > 1 else ''} {', '.join(taken)}; choose"
            " another output_column",
            details={"field": "output_column", "columns": taken},
        )


def _check_model(platform: Platform, principal: Principal, model: str) -> str:
    """The route the gateway would take for a chat call to `model` by this caller."""
    gateway = bridge.current(platform).gateway
    try:
        return bridge.run(platform, gateway.check_model(principal, "chat", model.strip()), CHECK_TIMEOUT)
    except GatewayError as exc:
        kind = {404: NotFound, 403: Forbidden}.get(exc.status, InvalidInput)
        raise kind(f"model {model!r} cannot be used: {exc.message}", details={"field": "model"}) from None


def check_batch(platform: Platform, actor: Actor, spec: BatchSpec) -> Checked:
    """Everything a batch needs before its first call: the caller may run it, sees the dataset version and
    the model, the columns are right, the rows are within bounds and the output dataset is writable."""
    principal = _principal(actor)
    actor.require("member", "run batch inference")
    source = data.get_version(platform, actor, spec.dataset)
    _check_columns(spec, source)
    rows = source.row_count if spec.limit is None else min(spec.limit, source.row_count)
    if rows == 0:
        raise InvalidInput(f"dataset {source.ref} has no rows to answer", details={"field": "dataset"})
    if spec.limit is None and source.row_count > MAX_ROWS:
        raise InvalidInput(
            f"dataset {source.ref} has {source.row_count:,} rows; a batch answers at most {MAX_ROWS:,}: set limit, or"
            " sample the dataset first (podium data prep with a sample step)",
            details={"field": "limit", "rows": source.row_count, "max": MAX_ROWS},
        )
    target = data.check_writable(platform, actor, spec.output_dataset or source.dataset)
    route = _check_model(platform, principal, spec.model)
    return Checked(source, target, route, rows)


def start_batch(platform: Platform, actor: Actor, spec: BatchSpec) -> JobInfo:
    """Check a batch and queue it as a `models.batch` job pinned to the dataset version resolved now."""
    checked = check_batch(platform, actor, spec)
    pinned = spec.model_copy(update={"dataset": f"{checked.source.dataset}@{checked.source.id}"})
    key_id = actor.principal.key_id if actor.principal is not None else None
    params = {"spec": pinned.model_dump(mode="json"), "key_id": key_id}
    return jobs.submit(platform.db, actor, "models.batch", params, internal=True)


# --- running (on a job thread) --------------------------------------------------------------------


@dataclass
class _Answer:
    text: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    trace_id: str | None = None


@dataclass
class _Tally:
    total: int
    done: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_error: str | None = None

    def add(self, answer: _Answer) -> None:
        self.done += 1
        self.prompt_tokens += answer.prompt_tokens or 0
        self.completion_tokens += answer.completion_tokens or 0
        if answer.error is not None:
            self.failed += 1
            self.first_error = self.first_error or answer.error

    def line(self) -> str:
        return f"{self.done:,} of {self.total:,} rows answered ({self.failed:,} failed)"


@dataclass
class _Caller:
    gateway: Gateway
    principal: Principal
    model: str
    system: str | None
    params: dict[str, Any]
    slots: asyncio.Semaphore
    tally: _Tally
    last_route: list[str] = field(default_factory=list)

    async def answer(self, messages: list[dict[str, Any]] | str) -> _Answer:
        """One row's call; a failure is the row's answer, not the batch's."""
        if isinstance(messages, str):  # the row itself is unusable: say why, without a call
            out = _Answer(error=messages)
            self.tally.add(out)
            return out
        if self.system is not None:
            messages = [{"role": "system", "content": self.system}, *messages]
        body = {"temperature": 0, **self.params, "model": self.model, "messages": messages}
        raw = orjson.dumps(body)
        async with self.slots:
            t0 = time.perf_counter()
            answer = await self.gateway.handle(
                self.principal,
                Incoming(kind="chat", body=body, body_bytes=len(raw), raw=raw),
                use_cache=False,
                origin=ORIGIN,
            )
            latency = round((time.perf_counter() - t0) * 1000, 3)
        call = answer.call
        trace_id = call.trace_id if call is not None else answer.headers.get("x-podium-trace-id")
        if answer.status >= 400 or not isinstance(answer.body, dict):
            error = answer.body.get("error") if isinstance(answer.body, dict) else None
            message = (call.error if call is not None else None) or (
                str(error.get("message")) if isinstance(error, dict) else f"the call failed ({answer.status})"
            )
            out = _Answer(error=message, latency_ms=latency, trace_id=trace_id)
        else:
            choices = answer.body.get("choices") or [{}]
            found = answer.body.get("usage")
            usage: dict[str, Any] = found if isinstance(found, dict) else {}
            out = _Answer(
                text=response_text(answer.body),
                latency_ms=latency,
                prompt_tokens=call.prompt_tokens if call is not None else int(usage.get("prompt_tokens") or 0),
                completion_tokens=call.completion_tokens
                if call is not None
                else int(usage.get("completion_tokens") or 0),
                finish_reason=choices[0].get("finish_reason") if isinstance(choices[0], dict) else None,
                trace_id=trace_id,
            )
        self.tally.add(out)
        return out

    async def answer_all(self, requests: list[list[dict[str, Any]] | str]) -> list[_Answer]:
        return list(await asyncio.gather(*(self.answer(r) for r in requests)))


def _messages_of(value: Any, column: str, *, chat: bool) -> list[dict[str, Any]] | str:
    """A row's messages, or why the row cannot be asked (the row's error)."""
    if value is None:
        return f"the row has no value in column {column!r}"
    if not chat:
        return [{"role": "user", "content": str(value)}]
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in value)
    )
    if not ok:
        return f"column {column!r} of the row is not a list of {{role, content}} messages (roles: {', '.join(ROLES)})"
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _wait(future: Future[list[_Answer]], progress: Progress, tally: _Tally) -> list[_Answer]:
    """The chunk's answers, reporting progress meanwhile; a cancel (raised by `progress`) cancels the calls."""
    try:
        while True:
            try:
                return future.result(timeout=0.5)
            except FutureTimeout:
                progress(min(0.99, tally.done / max(1, tally.total)), tally.line())
    except BaseException:
        future.cancel()
        raise


def _with_answers(table: pa.Table, name: str, answers: list[_Answer]) -> pa.Table:
    values = {
        name: [a.text for a in answers],
        f"{name}_error": [a.error for a in answers],
        f"{name}_latency_ms": [a.latency_ms for a in answers],
        f"{name}_prompt_tokens": [a.prompt_tokens for a in answers],
        f"{name}_completion_tokens": [a.completion_tokens for a in answers],
        f"{name}_finish_reason": [a.finish_reason for a in answers],
        f"{name}_trace_id": [a.trace_id for a in answers],
    }
    for column, kind in output_columns(name).items():
        table = table.append_column(pa.field(column, kind), pa.array(values[column], kind))
    return table


def run_batch(
    platform: Platform, actor: Actor, spec: BatchSpec, progress: Progress, *, job_id: str | None = None
) -> BatchResult:
    """Answer every row (checked again first: rights may have changed since it was queued) and write the new
    version. `progress` is called about twice a second and raises to cancel; the version is committed only
    after the last row, so a cancelled or failed batch leaves none. A batch whose every row failed writes none
    either and fails with the first error."""
    checked = check_batch(platform, actor, spec)
    source = checked.source
    principal = _principal(actor)
    tally = _Tally(total=checked.rows)
    caller = _Caller(
        bridge.current(platform).gateway,
        principal,
        spec.model.strip(),
        spec.system,
        spec.params.model_dump(exclude_none=True),
        asyncio.Semaphore(spec.concurrency),
        tally,
    )
    column = spec.input_column or spec.messages_column
    assert column is not None
    chat = spec.messages_column is not None

    def answered() -> Iterator[pa.Table]:
        left = checked.rows
        with data.open_rows(platform, actor, f"{source.dataset}@{source.id}") as (_, parquet):
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
                if left <= 0:
                    break
                table = pa.Table.from_batches([batch]).slice(0, left)
                left -= table.num_rows
                requests = [_messages_of(v, column, chat=chat) for v in table.column(column).to_pylist()]
                answers = _wait(bridge.submit(platform, caller.answer_all(requests)), progress, tally)
                progress(min(0.99, tally.done / max(1, tally.total)), tally.line())
                yield _with_answers(table, spec.output_column, answers)
        if tally.failed == tally.done:
            raise InvalidInput(
                f"every one of the {tally.done:,} rows failed, so no version was written; the first error:"
                f" {tally.first_error}",
                details={"field": "model"},
            )

    lineage = {
        "kind": "batch",
        "source": source.id,
        "source_ref": source.ref,
        "model": spec.model,
        "route": checked.route,
        "input_column": spec.input_column,
        "messages_column": spec.messages_column,
        "output_column": spec.output_column,
        "system": spec.system,
        "params": spec.params.model_dump(exclude_none=True),
        "concurrency": spec.concurrency,
        "job": job_id,
    }
    imported = data.import_batches(
        platform,
        actor,
        checked.target,
        answered(),
        lineage=lineage,
        parents=[source.id],
        message=spec.message or f"{spec.model} over {source.ref} ({tally.total:,} rows)",
    )
    return BatchResult(
        version=imported.version,
        created=imported.created,
        source=source.ref,
        model=spec.model,
        route=checked.route,
        rows=tally.done,
        failed=tally.failed,
        prompt_tokens=tally.prompt_tokens,
        completion_tokens=tally.completion_tokens,
        output_column=spec.output_column,
    )

"""Running a target over rows and scoring them: the part of an eval run that lives on the event loop.

Rows go in chunks. For each chunk: the target's requests are built and their cached answers fetched in one
query; the misses are called through the gateway (bounded by the run's concurrency); then each evaluator's
verdicts are looked up in one query (keyed by the evaluator's settings and the sample) and the misses
evaluated. A row whose target fails is marked failed and the run goes on; an evaluator that raises or cannot
parse its judge gives an error verdict (with the raw text), counted, never a zero. Finished rows and new
cache entries are handed to `save` per chunk, which writes them off the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from podium.core.version import __version__
from podium.evals.calls import GatewayModels, call_key
from podium.evals.evaluators.base import Evaluator, FunctionEvaluator, Sample, Verdict
from podium.evals.spec import OutputIn, RunSpec
from podium.gateway.prompting import PromptUse
from podium.prompts.playground import chat_body
from podium.prompts.service import VersionInfo, render_version

CHUNK = 128


@dataclass
class RowOut:
    """A finished row, as stored."""

    idx: int
    inputs: dict[str, Any]
    reference: Any
    output: str | None
    status: str = "ok"
    error: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    latency_ms: float | None = None
    cost_micros: int = 0  # spent by this run on this row (a cached call spends nothing)
    call_cost_micros: int = 0  # what the target call cost when it was made
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    context: tuple[str, ...] = ()  # the passages a retrieval-augmented target cited


@dataclass
class Progress:
    """Counters the job thread reads to report progress."""

    total: int
    done: int = 0


@dataclass
class Plan:
    """A checked run: the spec, its built evaluators (with the specs they came from), the prompt version of a
    prompt target, and the rows."""

    spec: RunSpec
    evaluators: list[tuple[Evaluator, Any]]
    rows: list[dict[str, Any]]
    prompt: VersionInfo | None = None
    project_id: str | None = None


def _jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def sample_of(plan: Plan, row: Mapping[str, Any], out: RowOut) -> Sample:
    """The sample evaluators see for a row and its output."""
    f = plan.spec.fields
    context = row.get(f.context)
    if context is None:
        passages: tuple[str, ...] = out.context  # what a retrieval-augmented target cited, if anything
    elif isinstance(context, list | tuple):
        passages = tuple(str(c) for c in context)
    else:
        passages = (str(context),)
    return Sample(
        inputs=row,
        output=out.output,
        reference=row.get(f.reference),
        context=passages,
        latency_ms=out.latency_ms,
        cost_micros=out.call_cost_micros,
        prompt_tokens=out.prompt_tokens,
        completion_tokens=out.completion_tokens,
    )


def request_of(plan: Plan, row: Mapping[str, Any]) -> tuple[dict[str, Any], PromptUse | None]:
    """The chat request a row sends to a model or prompt target."""
    t, f = plan.spec.target, plan.spec.fields
    if t.type == "prompt":
        assert plan.prompt is not None
        v = plan.prompt
        rendered = render_version(v, {k: row[k] for k in v.variables if k in row})
        body = chat_body(
            t.model or "",
            rendered.text,
            rendered.messages,
            {**rendered.model, **t.params},
            rendered.tools,
            rendered.response_format,
        )
        if t.retrieval is not None:
            body["retrieval"] = t.retrieval
        return body, PromptUse(v.prompt, v.version, v.id)
    if f.messages is not None and isinstance(row.get(f.messages), list):
        messages = list(row[f.messages])
    else:
        messages = [{"role": "user", "content": str(row.get(f.input, ""))}]
    if t.system:
        messages = [{"role": "system", "content": t.system}, *messages]
    if t.type == "chain":  # run through the gateway as the model `chain:<ref>`
        run: dict[str, Any] = {"model": f"chain:{t.chain}", "messages": messages}
        if t.inputs is not None:
            run["inputs"] = {name: row.get(column) for name, column in t.inputs.items()}
        return run, None
    body = {"temperature": 0, **t.params, "model": t.model, "messages": messages}
    if t.retrieval is not None:
        body["retrieval"] = t.retrieval
    return body, None


def verdict_key(
    project_id: str | None, spec: Any, sample: Sample, defaults: tuple[str | None, ...] = (), *, measures: bool = False
) -> str:
    """The cache key of a verdict: the evaluator's settings, the run's default judge and embedding models,
    Podium's version and the sample (with the call's latency, cost and tokens for evaluators that read them)."""
    fields: list[Any] = [sample.inputs, sample.output, sample.reference, sample.context]
    if measures:
        fields += [sample.latency_ms, sample.cost_micros, sample.prompt_tokens, sample.completion_tokens]
    blob = orjson.dumps(
        {"p": project_id, "v": __version__, "e": spec, "d": defaults, "s": fields},
        default=str,
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.sha256(blob).hexdigest()


def _stored(v: Verdict) -> dict[str, Any]:
    """A verdict as the cache keeps it."""
    return {"scores": v.scores, "label": v.label, "explanation": v.explanation, "cost_micros": v.cost_micros}


def _cacheable(ev: Evaluator) -> bool:
    return not isinstance(ev, FunctionEvaluator)  # a custom function's code may change between runs


class Runner:
    """Runs one plan through `models`, handing finished chunks to `save`."""

    def __init__(
        self,
        plan: Plan,
        models: GatewayModels,
        save: Callable[[list[RowOut]], Awaitable[None]],
        progress: Progress,
        outputs: Sequence[OutputIn] | None = None,
    ):
        self.plan = plan
        self.models = models
        self.save = save
        self.progress = progress
        self.outputs = {o.index: o for o in outputs or ()}

    async def run(self) -> None:
        """Every row, chunk by chunk."""
        rows = self.plan.rows
        for start in range(0, len(rows), CHUNK):
            chunk = list(enumerate(rows[start : start + CHUNK], start))
            outs = await self._targets(chunk)
            await self._evaluate(chunk, outs)
            await self.save(outs)
            self.progress.done += len(outs)

    # --- targets ---------------------------------------------------------------------------------

    async def _targets(self, chunk: list[tuple[int, dict[str, Any]]]) -> list[RowOut]:
        t = self.plan.spec.target
        if t.type == "outputs":
            return [self._given(i, row) for i, row in chunk]
        requests: list[tuple[dict[str, Any], PromptUse | None] | str] = []
        for _, row in chunk:
            try:
                requests.append(request_of(self.plan, row))
            except Exception as exc:  # a row that cannot be rendered fails alone
                requests.append(f"{type(exc).__name__}: {exc}")
        if self.models.use_cache:
            keys = [
                call_key(self.models.principal.project_id, "chat", r[0]) for r in requests if not isinstance(r, str)
            ]
            await self.models.prefetch(keys)
        return list(await asyncio.gather(*(self._call(i, row, r) for (i, row), r in zip(chunk, requests, strict=True))))

    def _given(self, i: int, row: dict[str, Any]) -> RowOut:
        out = RowOut(i, _jsonable(row), _jsonable(row.get(self.plan.spec.fields.reference)), None)
        given = self.outputs.get(i)
        if given is None:
            out.status, out.error = "failed", "the caller sent no output for this row"
            return out
        out.output, out.latency_ms, out.trace_id = given.output, given.latency_ms, given.trace_id
        if given.error is not None:
            out.status, out.error = "failed", given.error
        out.scores.update({k: v for k, v in given.scores.items() if math.isfinite(v)})
        return out

    async def _call(
        self, i: int, row: dict[str, Any], request: tuple[dict[str, Any], PromptUse | None] | str
    ) -> RowOut:
        out = RowOut(i, _jsonable(row), _jsonable(row.get(self.plan.spec.fields.reference)), None)
        if isinstance(request, str):
            out.status, out.error = "failed", request
            return out
        body, used = request
        try:
            reply = await self.models.request("chat", body, prompt=used)
        except Exception as exc:  # the target failed on this row: marked, and the run goes on
            out.status, out.error = "failed", str(exc) or type(exc).__name__
            out.trace_id = getattr(exc, "trace_id", None)  # the gateway's trace of the failed call
            return out
        out.output, out.latency_ms, out.trace_id, out.cached = (
            reply.text,
            reply.latency_ms,
            reply.trace_id,
            reply.cached,
        )
        out.call_cost_micros = reply.call_cost_micros
        out.context = reply.context
        out.cost_micros, out.prompt_tokens, out.completion_tokens = (
            reply.cost_micros,
            reply.prompt_tokens,
            reply.completion_tokens,
        )
        return out

    # --- evaluation ------------------------------------------------------------------------------

    async def _evaluate(self, chunk: list[tuple[int, dict[str, Any]]], outs: list[RowOut]) -> None:
        plan, models = self.plan, self.models
        work: list[tuple[RowOut, Evaluator, Sample, str | None]] = []
        for (_, row), out in zip(chunk, outs, strict=True):
            if out.status != "ok":
                continue
            sample = sample_of(plan, row, out)
            for ev, spec in plan.evaluators:
                key = None
                if models.use_cache and _cacheable(ev):
                    defaults = (models.judge_model, models.embedding_model)
                    measures = bool(getattr(ev, "measures", False))
                    key = verdict_key(plan.project_id, spec, sample, defaults, measures=measures)
                work.append((out, ev, sample, key))
        keys = [k for *_, k in work if k is not None]
        known = await models.lookup_many(keys) if keys else {}
        verdicts: list[Verdict | None] = [
            _replayed(known[k]) if k is not None and k in known else None for *_, k in work
        ]
        todo = [i for i, v in enumerate(verdicts) if v is None]  # only what was never judged runs as a task
        made = await asyncio.gather(*(self._verdict(work[i][1], work[i][2], work[i][3]) for i in todo))
        for i, v in zip(todo, made, strict=True):
            verdicts[i] = v
        for (out, ev, _, _), maybe in zip(work, verdicts, strict=True):
            verdict = maybe or Verdict(error="not evaluated")
            detail: dict[str, Any] = {}
            if verdict.error is not None:
                detail["error"] = verdict.error
                if verdict.raw is not None:
                    detail["raw"] = verdict.raw[:4000]
            else:
                out.scores.update({k: v for k, v in verdict.scores.items() if math.isfinite(v)})
            for name in ("label", "explanation"):
                if getattr(verdict, name) is not None:
                    detail[name] = getattr(verdict, name)
            if verdict.cost_micros:
                detail["cost_micros"] = verdict.cost_micros
                out.cost_micros += verdict.cost_micros
            out.details[ev.name] = detail

    async def _verdict(self, ev: Evaluator, sample: Sample, key: str | None) -> Verdict:
        try:
            verdict = await ev.evaluate(sample, self.models)
        except Exception as exc:  # an evaluator's failure is that row's error for that evaluator
            return Verdict(error=f"{type(exc).__name__}: {exc}")
        if key is not None and verdict.error is None:
            self.models.fresh[key] = ("verdict", _stored(verdict))
        return verdict


def _replayed(value: dict[str, Any]) -> Verdict:
    """A cached verdict: judged before, so free this time."""
    return Verdict(
        scores=dict(value.get("scores") or {}), label=value.get("label"), explanation=value.get("explanation")
    )

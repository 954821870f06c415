"""Eval runs: checking a run whole before anything runs, queueing it as a job, running it (on the job thread,
with its model calls on the server's loop), its summary with bootstrap intervals and the gate's checks,
reading runs and rows, and comparing two runs.

Every run belongs to the project of the caller that started it: viewers read, members run (calls cost money).
A run's job acts as the key that queued it, with the rights its user has when it runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any, Protocol

import orjson
from pydantic import BaseModel
from sqlalchemy import delete, func, insert, literal, select, update

from podium.core.db import utcnow
from podium.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.platform import Platform
from podium.core.version import __version__
from podium.data import service as data
from podium.evals import bias as bias_lib
from podium.evals import cache
from podium.evals.calls import GatewayModels
from podium.evals.compare import Comparison, RowResult, compare, default_higher_is_better
from podium.evals.evaluators.base import Evaluator, FunctionEvaluator, build
from podium.evals.runner import Plan, Progress, RowOut, Runner
from podium.evals.spec import MAX_ROWS, RunSpec, Threshold
from podium.evals.stats import bootstrap_many
from podium.evals.store import EvalRow, EvalRun
from podium.gateway import bridge
from podium.gateway.errors import GatewayError
from podium.gateway.retrieval import parse_spec
from podium.prompts import service as prompts

log = logging.getLogger("podium.evals")
MAX_LIST = 500
MAX_PAGE = 500
FINISHED = ("succeeded", "failed", "cancelled")


class Check(BaseModel):
    """One gate check and how it went."""

    name: str
    passed: bool
    message: str
    value: float | None = None
    threshold: str | None = None


class RunInfo(BaseModel):
    """An eval run as the API shows it."""

    id: str
    name: str
    kind: str
    status: str
    project_id: str | None
    job_id: str | None
    dataset: str
    dataset_version_id: str
    target: dict[str, Any]
    target_label: str
    evaluators: list[Any]
    config: dict[str, Any]
    summary: dict[str, Any]
    row_count: int
    rows_done: int
    failed_rows: int
    evaluator_errors: int
    model_calls: int
    cached_calls: int
    cost_micros: int
    error: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def checks(self) -> list[Check]:
        """The gate's checks recorded at the end of the run."""
        return [Check.model_validate(c) for c in self.summary.get("checks") or []]


class RowInfo(BaseModel):
    """One row of a run."""

    index: int
    inputs: dict[str, Any]
    reference: Any
    output: str | None
    status: str
    error: str | None
    scores: dict[str, float]
    details: dict[str, Any]
    trace_id: str | None
    latency_ms: float | None
    cost_micros: int
    cached: bool


class RowsPage(BaseModel):
    """A page of a run's rows."""

    run_id: str
    total: int
    offset: int
    rows: list[RowInfo]


def _info(r: EvalRun) -> RunInfo:
    return RunInfo.model_validate(r, from_attributes=True)


def _row_info(r: EvalRow) -> RowInfo:
    return RowInfo(
        index=r.idx,
        inputs=r.inputs,
        reference=(r.reference or {}).get("value"),
        output=r.output,
        status=r.status,
        error=r.error,
        scores=r.scores,
        details=r.details,
        trace_id=r.trace_id,
        latency_ms=r.latency_ms,
        cost_micros=r.cost_micros,
        cached=r.cached,
    )


# --- checking ----------------------------------------------------------------------------------------


def _build_evaluators(specs: list[Any]) -> list[tuple[Evaluator, Any]]:
    built = [(build(spec), spec) for spec in specs]
    names = [ev.name for ev, _ in built]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise InvalidInput(
            f"two evaluators are named {', '.join(doubled)}; give one a 'name'", details={"names": doubled}
        )
    return built


def _needs(
    spec: RunSpec, evaluators: list[tuple[Evaluator, Any]], prompt: prompts.VersionInfo | None
) -> dict[str, list[str]]:
    """The dataset columns the run reads, each with who needs it."""
    f, t = spec.fields, spec.target
    needed: dict[str, list[str]] = {}
    if t.type == "model" or (t.type == "chain" and t.inputs is None):
        needed.setdefault(f.messages or f.input, []).append("the target")
    for name, source in (t.inputs or {}).items():
        needed.setdefault(source, []).append(f"the chain's input {name!r}")
    if prompt is not None:
        for name, var in prompt.variables.items():
            if "default" not in var:
                needed.setdefault(name, []).append(f"prompt {prompt.prompt}@{prompt.version}")
    for ev, _ in evaluators:
        for need in ev.needs:
            if need == "context" and t.retrieval is not None:
                continue  # a retrieval-augmented target's citations are the context
            column = {"reference": f.reference, "context": f.context}.get(need)
            if column is not None:
                needed.setdefault(column, []).append(ev.name)
    if spec.bias is not None:
        for field in spec.bias.fields:
            needed.setdefault(field, []).append("the bias test")
    return needed


def _check_chain(platform: Platform, actor: Actor, ref: str) -> None:
    """A chain target names a chain version the caller may run (checked through the gateway's chain server)."""
    gateway = bridge.current(platform).gateway
    if gateway.chains is None or actor.principal is None:
        raise InvalidInput("chain targets need the chains domain", details={"field": "target.chain"})
    try:
        bridge.run(platform, gateway.chains.check(actor.principal, ref), 60.0)
    except GatewayError as exc:
        kind = {404: NotFound, 403: Forbidden}.get(exc.status, InvalidInput)
        raise kind(f"target.chain: {exc.message}", details={"field": "target.chain"}) from None


def _check_retrieval(platform: Platform, actor: Actor, retrieval: dict[str, Any]) -> None:
    """A retrieval-augmented target's `retrieval` field, checked by the gateway's retriever with one search
    (unknown or still-building knowledge bases and bad filters are refused before any row is run)."""
    gateway = bridge.current(platform).gateway
    if gateway.retriever is None or actor.principal is None:
        raise InvalidInput("retrieval targets need the knowledge-base domain", details={"field": "target.retrieval"})
    try:
        spec = parse_spec(retrieval)
        bridge.run(platform, gateway.retriever.retrieve(actor.principal, spec, "retrieval check"), 60.0)
    except GatewayError as exc:
        kind = {404: NotFound, 409: Conflict}.get(exc.status, InvalidInput)
        raise kind(f"target.retrieval: {exc.message}", details={"field": "target.retrieval"}) from None


def plan_run(platform: Platform, actor: Actor, spec: RunSpec) -> tuple[Plan, data.VersionInfo]:
    """Check a run whole and load its rows: the dataset version exists and is visible, every evaluator builds,
    the prompt version renders, and the dataset has every field the suite needs (all missing ones named at
    once). Nothing is called yet."""
    actor.require("member", "run evaluations")
    if spec.target.type == "chain":
        _check_chain(platform, actor, spec.target.chain or "")
    evaluators = _build_evaluators(spec.evaluators)
    if spec.bias is not None:
        spec.bias.term_lists()  # a bad term list is refused now, not when the job runs
    prompt = None
    if spec.target.type == "prompt":
        name, _, ref = (spec.target.prompt or "").partition("@")
        prompt = prompts.get_version(platform.db, actor, name, ref or None)
    if spec.target.retrieval is not None:
        _check_retrieval(platform, actor, spec.target.retrieval)
    with data.open_rows(platform, actor, spec.dataset) as (version, parquet):
        columns = [c.name for c in version.columns]
        needed = _needs(spec, evaluators, prompt)
        missing = {column: who for column, who in needed.items() if column not in columns}
        if missing:
            listed = "; ".join(f"{c} (for {', '.join(who)})" for c, who in sorted(missing.items()))
            raise InvalidInput(
                f"dataset {spec.dataset} lacks fields the run needs: {listed}. Its columns: {', '.join(columns)}; "
                "map other columns with 'fields' (input, reference, context, messages)",
                details={"missing": sorted(missing), "needed_by": missing, "columns": columns},
            )
        rows_in = parquet.metadata.num_rows
        if spec.limit is None and rows_in > MAX_ROWS:
            raise InvalidInput(
                f"dataset {spec.dataset} has {rows_in:,} rows; a run evaluates at most {MAX_ROWS:,}: set 'limit', "
                "or sample the dataset first (podium data prep with a sample step)",
                details={"rows": rows_in, "max": MAX_ROWS},
            )
        table = parquet.read()
    if spec.limit is not None:
        table = table.slice(0, spec.limit)
    rows = table.to_pylist()
    if spec.outputs is not None:
        beyond = [o.index for o in spec.outputs if o.index >= len(rows)]
        if beyond:
            raise InvalidInput(
                f"outputs name rows the dataset does not have: {beyond[:10]}", details={"rows": len(rows)}
            )
    project = actor.principal.project_id if actor.principal is not None else None
    return Plan(spec, evaluators, rows, prompt, project), version


def start(platform: Platform, actor: Actor, specs: list[RunSpec]) -> list[RunInfo]:
    """Check every run of a suite, then create them and queue one job each (a bad suite creates none)."""
    from podium.evals.jobs import submit as submit_job

    if actor.principal is None:
        raise InvalidInput("eval runs call models as their caller: use an API key or a dashboard session")
    planned = [(spec, *plan_run(platform, actor, spec)) for spec in specs]
    for spec in specs:
        for t in spec.thresholds:
            if t.baseline is not None:
                get_run(platform, actor, t.baseline)
    made = []
    for spec, plan, version in planned:
        run_id = _insert_run(platform, actor, spec, plan, version)
        job = submit_job(platform, actor, run_id, spec)
        with platform.db.session() as s:
            s.execute(update(EvalRun).where(EvalRun.id == run_id).values(job_id=job.id))
        made.append(get_run(platform, actor, run_id))
    return made


def _insert_run(platform: Platform, actor: Actor, spec: RunSpec, plan: Plan, version: data.VersionInfo) -> str:
    run_id = new_id("evr")
    with platform.db.session() as s:
        s.add(
            EvalRun(
                id=run_id,
                project_id=plan.project_id,
                name=spec.name,
                kind="bias" if spec.bias is not None else "eval",
                dataset=spec.dataset,
                dataset_version_id=version.id,
                target=spec.target.model_dump(exclude_none=True),
                target_label=spec.target.describe(),
                evaluators=spec.evaluators,
                config=spec.model_dump(mode="json", exclude={"outputs", "target", "evaluators", "dataset", "name"}),
                suite=spec.model_dump(mode="json", exclude={"outputs"}),
                row_count=len(plan.rows),
                created_by=actor.label,
            )
        )
    return run_id


def run_here(platform: Platform, actor: Actor, spec: RunSpec, report: Callable[[float, str], None]) -> RunInfo:
    """Check, record and run one eval on the calling thread (for another domain's job that needs the result
    before it goes on, e.g. a fine-tune's evaluate stage), instead of queueing a job of its own."""
    if actor.principal is None:
        raise InvalidInput("eval runs call models as their caller: use an API key or a dashboard session")
    plan, version = plan_run(platform, actor, spec)
    run_id = _insert_run(platform, actor, spec, plan, version)
    return execute(platform, actor, run_id, spec, report)


# --- running (on a job thread) --------------------------------------------------------------------


def execute(
    platform: Platform,
    actor: Actor,
    run_id: str,
    spec: RunSpec,
    report: Callable[[float, str], None],
) -> RunInfo:
    """Run a queued run to its end: plan it again (the dataset and prompt may have moved labels since: the
    version recorded at queueing is used), call and score every row on the server's loop, write rows as they
    finish, then the summary. `report` is called about twice a second and raises to cancel."""
    with platform.db.read_session() as s:
        run = s.get(EvalRun, run_id)
        if run is None:
            raise NotFound(f"eval run {run_id!r} not found")
        pinned = spec.model_copy(update={"dataset": f"{run.dataset.partition('@')[0]}@{run.dataset_version_id}"})
    try:
        return _execute(platform, actor, run_id, pinned, report)
    except BaseException as exc:
        status = "cancelled" if type(exc).__name__ == "JobCancelled" else "failed"
        _finish(platform, run_id, status, str(exc) or type(exc).__name__)
        raise


def _execute(
    platform: Platform, actor: Actor, run_id: str, spec: RunSpec, report: Callable[[float, str], None]
) -> RunInfo:
    plan, _ = plan_run(platform, actor, spec)
    if spec.bias is not None:  # the swapped copies are rows of the run too
        plan.rows = _with_counterfactuals(plan.rows, spec)
        with platform.db.session() as s:
            s.execute(update(EvalRun).where(EvalRun.id == run_id).values(row_count=len(plan.rows)))
    assert actor.principal is not None
    attached = bridge.current(platform)
    db = platform.db

    models = GatewayModels.over(
        attached.gateway,
        actor.principal,
        db,
        concurrency=spec.concurrency,
        judge_model=spec.judge,
        embedding_model=spec.embedder,
        use_cache=spec.cache,
    )
    progress = Progress(total=len(plan.rows))

    done: list[RowOut] = []  # the summary is made from these, not read back

    async def save(outs: list[RowOut]) -> None:
        done.extend(outs)
        fresh, models.fresh = models.fresh, {}
        counters = {"calls": models.calls, "cached": models.cached, "cost": models.cost_micros}
        await asyncio.to_thread(_save_rows, platform, run_id, outs, fresh, counters)

    key = plan_key(plan, spec)
    with db.session() as s:  # a job requeued after a crash starts over (its calls are cached by then)
        s.execute(delete(EvalRow).where(EvalRow.run_id == run_id))
        s.execute(
            update(EvalRun)
            .where(EvalRun.id == run_id)
            .values(status="running", started_at=utcnow(), rows_done=0, failed_rows=0, evaluator_errors=0, plan_key=key)
        )
    replayed = _replay(platform, run_id, key) if key is not None else None
    if replayed is not None:
        _finish(platform, run_id, "succeeded", None, spec=spec, actor=actor, summary=replayed)
        return get_run(platform, actor, run_id)
    future = bridge.submit(platform, Runner(plan, models, save, progress, spec.outputs).run())
    try:
        while True:
            try:
                future.result(timeout=0.5)
                break
            except FutureTimeout:
                report(progress.done / max(1, progress.total), f"{progress.done} of {progress.total} rows")
    except BaseException:
        future.cancel()
        raise
    _finish(platform, run_id, "succeeded", None, spec=spec, actor=actor, rows=done)
    return get_run(platform, actor, run_id)


def plan_key(plan: Plan, spec: RunSpec) -> str | None:
    """What decides every row of a run: project, dataset version and rows, the target (with the prompt
    version a label resolved to), evaluators, field mapping, default judge and embedder, bias test and
    Podium's version. None when a run cannot be replayed: no cache, or custom Python evaluators (their code
    may change), or outputs computed by the caller."""
    if not spec.cache or spec.target.type not in ("model", "prompt"):
        return None
    if any(isinstance(ev, FunctionEvaluator) for ev, _ in plan.evaluators):
        return None
    blob = orjson.dumps(
        {
            "project": plan.project_id,
            "dataset": spec.dataset.rpartition("@")[2],
            "limit": spec.limit,
            "target": spec.target.model_dump(mode="json"),
            "prompt": plan.prompt.id if plan.prompt is not None else None,
            "evaluators": spec.evaluators,
            "fields": spec.fields.model_dump(mode="json"),
            "judge": spec.judge,
            "embedder": spec.embedder,
            "bias": spec.bias.model_dump(mode="json") if spec.bias is not None else None,
            "version": __version__,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(blob).hexdigest()


def _replay(platform: Platform, run_id: str, key: str) -> dict[str, Any] | None:
    """Copy the rows of the newest clean run with the same plan (every row scored, no failed row, no evaluator
    error) into this one, in SQL: the calls and verdicts it would make are all cached, so the result is the
    same, without evaluating a row. Copied rows are marked cached and cost nothing."""
    with platform.db.session() as s:
        found = s.execute(
            select(EvalRun.id, EvalRun.summary)
            .where(
                EvalRun.plan_key == key,
                EvalRun.id != run_id,
                EvalRun.status == "succeeded",
                EvalRun.failed_rows == 0,
                EvalRun.evaluator_errors == 0,
                EvalRun.rows_done == EvalRun.row_count,
            )
            .order_by(EvalRun.finished_at.desc())
            .limit(1)
        ).first()
        if found is None:
            return None
        source, summary = found
        columns = (
            *("idx", "inputs", "reference", "output", "status", "error", "scores", "details", "trace_id"),
            *("latency_ms", "prompt_tokens", "completion_tokens"),
        )
        copied = select(
            literal(run_id).label("run_id"),
            *(getattr(EvalRow, c) for c in columns),
            literal(0).label("cost_micros"),
            literal(True).label("cached"),
        ).where(EvalRow.run_id == source)
        names = ["run_id", *columns, "cost_micros", "cached"]
        done = s.execute(insert(EvalRow).from_select(names, copied)).rowcount  # type: ignore[attr-defined]
        s.execute(
            update(EvalRun)
            .where(EvalRun.id == run_id)
            .values(rows_done=done, row_count=done, cached_calls=done, model_calls=0, cost_micros=0)
        )
    log.info("eval run %s replayed the rows of %s (same plan, all cached)", run_id, source)
    aggregates = {k: v for k, v in summary.items() if k not in ("checks", "passed")}
    return {**aggregates, "replayed_from": source}


def _with_counterfactuals(rows: list[dict[str, Any]], spec: RunSpec) -> list[dict[str, Any]]:
    """The rows, then their counterfactual copies (marked with the row they come from and the swaps made)."""
    assert spec.bias is not None
    lists = spec.bias.term_lists()
    extra = []
    for cf in bias_lib.counterfactuals(rows, spec.bias.fields, lists):
        extra.append({**cf.row, "_counterfactual_of": cf.index, "_swaps": [list(s) for s in cf.swaps]})
    return rows + extra


def _save_rows(
    platform: Platform,
    run_id: str,
    outs: list[RowOut],
    fresh: dict[str, tuple[str, dict[str, Any]]],
    counters: dict[str, int],
) -> None:
    cache.write_now(platform.db, fresh)
    with platform.db.session() as s:
        s.execute(  # one many-row INSERT (ORM objects cost more than the rows' whole evaluation)
            insert(EvalRow),
            [
                {
                    "run_id": run_id,
                    "idx": o.idx,
                    "inputs": o.inputs,
                    "reference": {"value": o.reference},
                    "output": o.output,
                    "status": o.status,
                    "error": o.error,
                    "scores": o.scores,
                    "details": o.details,
                    "trace_id": o.trace_id,
                    "latency_ms": o.latency_ms,
                    "cost_micros": o.cost_micros,
                    "prompt_tokens": o.prompt_tokens,
                    "completion_tokens": o.completion_tokens,
                    "cached": o.cached,
                }
                for o in outs
            ],
        )
        s.execute(
            update(EvalRun)
            .where(EvalRun.id == run_id)
            .values(
                rows_done=EvalRun.rows_done + len(outs),
                failed_rows=EvalRun.failed_rows + sum(o.status != "ok" for o in outs),
                evaluator_errors=EvalRun.evaluator_errors
                + sum(1 for o in outs for d in o.details.values() if "error" in d),
                model_calls=counters["calls"],
                cached_calls=counters["cached"],
                cost_micros=counters["cost"],
            )
        )


class RowLike(Protocol):
    """What a summary reads of a row: a stored `EvalRow`, or the runner's `RowOut` still in memory."""

    idx: int
    inputs: dict[str, Any]
    output: str | None
    status: str
    scores: dict[str, Any]
    details: dict[str, Any]


def summarise(rows: Sequence[RowLike]) -> dict[str, Any]:
    """Aggregates of a run's rows: each score's mean with a 95% bootstrap interval, each evaluator's errors
    and labels, counts of failed rows."""
    originals = [r for r in rows if "_counterfactual_of" not in r.inputs]
    values: dict[str, list[float]] = {}
    for r in originals:
        for name, v in r.scores.items():
            values.setdefault(name, []).append(float(v))
    scores = {}
    for name, est in sorted(bootstrap_many(values).items()):
        scores[name] = {
            "n": est.n,
            "mean": est.mean,
            "low": est.low,
            "high": est.high,
            "lower_is_better": not default_higher_is_better(name),
        }
    evaluators: dict[str, dict[str, Any]] = {}
    for r in originals:
        for name, d in r.details.items():
            e = evaluators.setdefault(name, {"errors": 0, "labels": {}})
            if "error" in d:
                e["errors"] += 1
            if "label" in d:
                e["labels"][d["label"]] = e["labels"].get(d["label"], 0) + 1
    summary: dict[str, Any] = {
        "rows": len(originals),
        "failed_rows": sum(r.status != "ok" for r in originals),
        "evaluator_errors": sum(e["errors"] for e in evaluators.values()),
        "scores": scores,
        "evaluators": evaluators,
    }
    counterfactual = [r for r in rows if "_counterfactual_of" in r.inputs]
    if counterfactual:
        summary["bias"] = _bias_summary(originals, counterfactual)
    return summary


def _bias_summary(originals: list[RowLike], counterfactual: list[RowLike]) -> dict[str, Any]:
    by_index = {r.idx: r for r in originals}
    pairs = []
    for c in counterfactual:
        o = by_index.get(int(c.inputs["_counterfactual_of"]))
        if o is not None and o.status == "ok" and c.status == "ok":
            pairs.append((o.scores, c.scores, o.output, c.output))
    report = bias_lib.bias_report(pairs)
    return dict(report.model_dump(mode="json"), counterfactual_rows=len(counterfactual))


def gate_checks(platform: Platform, actor: Actor, summary: dict[str, Any], thresholds: list[Threshold]) -> list[Check]:
    """The gate: each threshold checked against the run's summary (and its baseline run's)."""
    checks = []
    scores = summary.get("scores") or {}
    for t in thresholds:
        got = scores.get(t.score)
        mean = got.get("mean") if got else None
        if t.max_failed_rows is not None:
            failed = int(summary.get("failed_rows") or 0)
            checks.append(
                Check(
                    name=f"failed rows <= {t.max_failed_rows}",
                    passed=failed <= t.max_failed_rows,
                    message=f"{failed} rows failed",
                    value=failed,
                    threshold=f"<= {t.max_failed_rows}",
                )
            )
        if mean is None:
            if t.min is not None or t.max is not None or t.baseline is not None:
                checks.append(Check(name=t.score, passed=False, message=f"no row has a {t.score!r} score"))
            continue
        for op, bound, holds in ((">=", t.min, mean >= (t.min or 0)), ("<=", t.max, mean <= (t.max or 0))):
            if bound is not None:
                checks.append(
                    Check(
                        name=f"{t.score} {op} {bound}",
                        passed=holds,
                        message=f"mean {mean:.4f}",
                        value=mean,
                        threshold=f"{op} {bound}",
                    )
                )
        if t.baseline is not None and t.max_drop is not None:
            base = get_run(platform, actor, t.baseline).summary.get("scores", {}).get(t.score)
            base_mean = base.get("mean") if base else None
            name = f"{t.score} vs {t.baseline} (max drop {t.max_drop})"
            if base_mean is None:
                checks.append(Check(name=name, passed=False, message=f"the baseline run has no {t.score!r} score"))
                continue
            drop = (mean - base_mean) if not default_higher_is_better(t.score) else (base_mean - mean)
            checks.append(
                Check(
                    name=name,
                    passed=drop <= t.max_drop + 1e-12,
                    message=f"mean {mean:.4f}, baseline {base_mean:.4f}, worse by {max(0.0, drop):.4f}",
                    value=mean,
                    threshold=f"worse than {base_mean:.4f} by <= {t.max_drop}",
                )
            )
    return checks


def _finish(
    platform: Platform,
    run_id: str,
    status: str,
    error: str | None,
    *,
    spec: RunSpec | None = None,
    actor: Actor | None = None,
    rows: Sequence[RowLike] | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """Record how a run ended, with its summary (given, or made from the rows in memory, else as stored)
    and the gate's checks."""
    if summary is None:
        if rows is None:
            with platform.db.read_session() as s:
                rows = list(s.scalars(select(EvalRow).where(EvalRow.run_id == run_id).order_by(EvalRow.idx)))
        summary = summarise(rows)
    if spec is not None and actor is not None:
        try:
            checks = gate_checks(platform, actor, summary, spec.thresholds)
        except NotFound as exc:
            checks = [Check(name="baseline", passed=False, message=exc.message)]
        summary["checks"] = [c.model_dump() for c in checks]
        summary["passed"] = all(c.passed for c in checks) if checks else None  # no thresholds: no verdict
    with platform.db.session() as s:
        s.execute(
            update(EvalRun)
            .where(EvalRun.id == run_id)
            .values(status=status, error=error, summary=summary, finished_at=utcnow())
        )


# --- reading ------------------------------------------------------------------------------------------


def _run(platform: Platform, actor: Actor, run_id: str) -> EvalRun:
    actor.require("viewer", "read eval runs")
    with platform.db.read_session() as s:
        run = s.get(EvalRun, run_id)
    if run is None or not actor.sees(run.project_id):
        raise NotFound(f"eval run {run_id!r} not found", details={"hint": "list runs with GET /api/evals/runs"})
    return run


def get_run(platform: Platform, actor: Actor, run_id: str) -> RunInfo:
    """One run the actor may see."""
    return _info(_run(platform, actor, run_id))


def list_runs(platform: Platform, actor: Actor, *, name: str | None = None, limit: int = 100) -> list[RunInfo]:
    """The newest runs the actor sees (optionally of one suite name)."""
    actor.require("viewer", "read eval runs")
    limit = max(1, min(limit, MAX_LIST))
    q = select(EvalRun).order_by(EvalRun.created_at.desc(), EvalRun.id.desc()).limit(limit)
    scope = actor.scope()
    if scope is not None:
        q = q.where(EvalRun.project_id.in_([p for p in scope if p is not None]))
    if name:
        q = q.where(EvalRun.name == name)
    with platform.db.read_session() as s:
        return [_info(r) for r in s.scalars(q)]


def rows_page(
    platform: Platform, actor: Actor, run_id: str, *, offset: int = 0, limit: int = 50, failed: bool = False
) -> RowsPage:
    """A page of a run's rows in dataset order (only failed or errored ones with `failed`)."""
    _run(platform, actor, run_id)
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    q = select(EvalRow).where(EvalRow.run_id == run_id)
    if failed:
        q = q.where(EvalRow.status != "ok")
    with platform.db.read_session() as s:
        total = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
        rows = [_row_info(r) for r in s.scalars(q.order_by(EvalRow.idx).offset(offset).limit(limit))]
    return RowsPage(run_id=run_id, total=total, offset=offset, rows=rows)


def _results(platform: Platform, run_id: str) -> list[RowResult]:
    with platform.db.read_session() as s:
        rows = s.scalars(select(EvalRow).where(EvalRow.run_id == run_id).order_by(EvalRow.idx))
        return [
            RowResult(index=r.idx, inputs=r.inputs, output=r.output, scores=r.scores, error=r.error)
            for r in rows
            if "_counterfactual_of" not in r.inputs
        ]


def compare_runs(platform: Platform, actor: Actor, a: str, b: str, *, max_rows: int | None = None) -> Comparison:
    """Run `b` against run `a` row by row: per-row outputs and score deltas, wins, losses and ties, a paired
    significance test per score, regressions first. Both runs must be finished and over the same dataset
    version."""
    ra, rb = _run(platform, actor, a), _run(platform, actor, b)
    for r in (ra, rb):
        if r.status not in FINISHED:
            raise Conflict(f"eval run {r.id} is still {r.status}; compare finished runs")
    if ra.dataset_version_id != rb.dataset_version_id:
        raise InvalidInput(
            f"runs {a} and {b} evaluated different dataset versions ({ra.dataset_version_id}, "
            f"{rb.dataset_version_id}); compare runs over the same rows",
            details={"a": ra.dataset_version_id, "b": rb.dataset_version_id},
        )
    # model-made numbers (embeddings in different batches) wobble in the last float digits: not a change
    cmp = compare(_results(platform, a), _results(platform, b), tie=1e-6)
    if max_rows is not None:  # the first rows only: regressions come first (`paired` counts them all)
        cmp.rows = cmp.rows[:max_rows]
    return cmp


def wait(platform: Platform, actor: Actor, run_id: str, timeout: float) -> RunInfo:
    """The run once it has finished, or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        run = get_run(platform, actor, run_id)
        if run.status in FINISHED or time.monotonic() >= deadline:
            return run
        time.sleep(0.2)


def finite(value: float | None) -> float | None:
    """A value for JSON: None for NaN and infinities."""
    return value if value is not None and math.isfinite(value) else None

"""The evals SDK: `podium.evals.run(dataset, target, evaluators)`.

A target that is a model, route or prompt runs on the server as a job (calls through the gateway, cached).
A target that is a Python callable runs here: each row's fields go to the function (bounded by
`concurrency` threads), its outputs go to the server, which scores them with the named evaluators and stores
the run like any other. Custom Python evaluators (plain functions of a `Sample`) are scored here too, for a
callable target, and sent along with the outputs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from podium.core.client import Client
from podium.core.errors import InvalidInput, PodiumError
from podium.evals.evaluators.base import FunctionEvaluator, Sample, Verdict, as_verdict


@dataclass
class EvalRun:
    """A finished (or timed-out) run as the server describes it."""

    info: dict[str, Any]
    url: str | None = None
    api_key: str | None = None

    @property
    def id(self) -> str:
        """The run id (`evr_…`)."""
        return str(self.info["id"])

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed or cancelled."""
        return str(self.info["status"])

    @property
    def scores(self) -> dict[str, dict[str, Any]]:
        """Each score's mean with its 95% bootstrap interval."""
        return dict(self.info["summary"].get("scores") or {})

    @property
    def passed(self) -> bool | None:
        """Whether every threshold held (None without thresholds or before the end)."""
        value = self.info["summary"].get("passed")
        return None if value is None else bool(value)

    def rows(self, limit: int = 500, offset: int = 0) -> list[dict[str, Any]]:
        """A page of the run's rows."""
        with Client(self.url, self.api_key) as c:
            return list(c.get(f"/api/evals/runs/{self.id}/rows", limit=limit, offset=offset)["rows"])


def _local_evaluators(evaluators: Sequence[Any]) -> tuple[list[Any], list[FunctionEvaluator]]:
    """Specs for the server, and the Python functions scored here."""
    specs: list[Any] = []
    local: list[FunctionEvaluator] = []
    for ev in evaluators:
        if isinstance(ev, str | dict):
            specs.append(ev)
        elif callable(ev):
            local.append(FunctionEvaluator(getattr(ev, "__name__", "custom"), ev))
        else:
            raise InvalidInput(f"an evaluator is a type name, a spec dict or a function, not {type(ev).__name__}")
    return specs, local


def _score_locally(local: list[FunctionEvaluator], sample: Sample) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ev in local:
        result = ev.fn(sample)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        verdict: Verdict = as_verdict(ev.name, result)
        scores.update(verdict.scores)
    return scores


def _call_rows(
    fn: Callable[[dict[str, Any]], Any],
    rows: list[dict[str, Any]],
    local: list[FunctionEvaluator],
    reference: str,
    concurrency: int,
    version_id: str,
) -> list[dict[str, Any]]:
    """Each row through `fn` inside a trace of its own (its instrumented model calls nest under it), so every
    row of the run links to what the callable did."""
    from podium.tracing.sdk import span

    def one(item: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        i, row = item
        t0 = time.perf_counter()
        with span(f"eval row {i}", "chain", input=row, dataset_version_id=version_id) as sp:
            try:
                result = fn(row)
            except Exception as exc:  # a target that raises on a row: that row fails, the run goes on
                sp.set_attributes(error=f"{type(exc).__name__}: {exc}"[:2000])
                return {"index": i, "error": f"{type(exc).__name__}: {exc}"[:10_000], "trace_id": sp.trace_id}
            latency = (time.perf_counter() - t0) * 1000
            trace_id = sp.trace_id
            if isinstance(result, dict):
                trace_id = result.get("trace_id") or trace_id
                result = result.get("output")
            sp.set_output(result)
        output = None if result is None else str(result)
        out: dict[str, Any] = {"index": i, "output": output, "latency_ms": latency, "trace_id": trace_id}
        if local:
            sample = Sample(inputs=row, output=output, reference=row.get(reference), latency_ms=latency)
            out["scores"] = _score_locally(local, sample)
        return out

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, enumerate(rows)))


def run(
    dataset: str,
    target: Any,
    evaluators: Sequence[Any],
    *,
    name: str = "eval",
    fields: dict[str, str] | None = None,
    judge: str | None = None,
    embedder: str | None = None,
    concurrency: int = 8,
    limit: int | None = None,
    cache: bool = True,
    thresholds: list[dict[str, Any]] | None = None,
    wait: bool = True,
    timeout: float = 3600.0,
    url: str | None = None,
    api_key: str | None = None,
) -> EvalRun:
    """Evaluate `target` over a dataset version: `target` is a gateway model or route name, a target dict
    (`{"type": "prompt", "prompt": "name@prod", "model": ...}`), or a Python callable taking a row and
    returning its output (or `{"output", "trace_id"}`)."""
    specs, local = _local_evaluators(evaluators)
    body: dict[str, Any] = {
        "name": name,
        "dataset": dataset,
        "evaluators": specs,
        "judge": judge,
        "embedder": embedder,
        "concurrency": concurrency,
        "limit": limit,
        "cache": cache,
        "thresholds": thresholds or [],
    }
    if fields:
        body["fields"] = fields
    if callable(target):
        from podium.data.sdk import get as get_dataset

        version = get_dataset(dataset, url=url, api_key=api_key)
        rows = list(version.rows())[:limit] if limit else list(version.rows())
        reference = (fields or {}).get("reference", "reference")
        body["dataset"] = f"{version.info['dataset']}@{version.info['id']}"  # the very version the rows came from
        body["target"] = {"type": "outputs", "label": getattr(target, "__name__", "callable")}
        body["outputs"] = _call_rows(target, rows, local, reference, concurrency, version.info["id"])
        from podium.tracing.sdk import flush

        flush()  # the rows' traces are stored before the run links them
    else:
        if local:
            raise InvalidInput(
                "custom Python evaluators run where the outputs are made: use a callable target, or install them "
                "on the server as a plugin (entry point group `podium.evaluators`)"
            )
        body["target"] = {"type": "model", "model": target} if isinstance(target, str) else target
    with Client(url, api_key, timeout=600.0) as c:
        info = c.post("/api/evals/runs", body)
        deadline = time.monotonic() + timeout
        while wait and info["status"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
            info = c.get(f"/api/evals/runs/{info['id']}")
    if info["status"] == "failed":
        raise PodiumError(f"eval run {info['id']} failed: {info.get('error')}")
    return EvalRun(info, url, api_key)


def compare(a: str, b: str, *, rows: int = 200, url: str | None = None, api_key: str | None = None) -> dict[str, Any]:
    """Run `b` against run `a` (see `GET /api/evals/compare`): the statistics over every paired row, and the
    first `rows` rows, regressions first."""
    with Client(url, api_key) as c:
        return dict(c.get("/api/evals/compare", a=a, b=b, rows=rows))

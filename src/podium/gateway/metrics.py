"""Prometheus metrics of gateway calls, per route and upstream model: calls by status, latency and time to
first token, tokens, cost, cache outcomes and errors. Label values stay bounded: `route` is a configured
route or registered model (a name that resolved to nothing counts as `unknown`), `model` the upstream
model of the deployment that answered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from podium.gateway.dispatch import Call

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("podium_gateway_requests_total", "Gateway calls answered.", ["route", "model", "status"])
ERRORS = Counter(
    "podium_gateway_errors_total", "Gateway calls that failed (error status or broken stream).", ["route", "model"]
)
LATENCY = Histogram(
    "podium_gateway_request_duration_seconds",
    "Gateway call time, to the end of the answer.",
    ["route"],
    buckets=_BUCKETS,
)
TTFT = Histogram(
    "podium_gateway_time_to_first_token_seconds",
    "Time to the first token of streamed calls.",
    ["route"],
    buckets=_BUCKETS,
)
TOKENS = Counter(
    "podium_gateway_tokens_total", "Tokens of gateway calls (prompt, completion).", ["route", "model", "type"]
)
COST = Counter("podium_gateway_cost_usd_total", "Cost of gateway calls in USD.", ["route", "model"])
CACHE = Counter(
    "podium_gateway_cache_total", "Cache outcomes of gateway calls (hit, semantic-hit, miss…).", ["route", "status"]
)

# labelled children by (route, model, status, cache): `labels()` costs a few microseconds each; this is per call
_children: dict[tuple[str, str, str, str], tuple[Any, ...]] = {}


def observe(call: Call, latency_s: float) -> None:
    """Count one finished call."""
    route = call.route or "unknown"
    model = call.upstream_model or call.route or "unknown"
    key = (route, model, str(call.status), call.cache)
    kids = _children.get(key)
    if kids is None:
        if len(_children) > 10_000:
            _children.clear()
        kids = _children[key] = (
            REQUESTS.labels(route, model, key[2]),
            ERRORS.labels(route, model),
            LATENCY.labels(route),
            TTFT.labels(route),
            TOKENS.labels(route, model, "prompt"),
            TOKENS.labels(route, model, "completion"),
            COST.labels(route, model),
            CACHE.labels(route, call.cache),
        )
    requests, errors, latency, ttft, prompt, completion, cost, cache = kids
    requests.inc()
    if call.error is not None or call.status >= 400:
        errors.inc()
    latency.observe(latency_s)
    if call.ttft_ms is not None and call.stream:
        ttft.observe(call.ttft_ms / 1000)
    if call.prompt_tokens:
        prompt.inc(call.prompt_tokens)
    if call.completion_tokens:
        completion.inc(call.completion_tokens)
    if call.cost_micros:
        cost.inc(call.cost_micros / 1_000_000)
    if call.cache != "none":
        cache.inc()

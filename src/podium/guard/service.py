"""The scan API's logic: run scanners on a text, apply their actions, list what can be run.

`scan_text` is what `POST /api/guard/scan` and `podium guard test` call; `run_scanners` is the part without
roles or bounds, for the gateway and monitors that build on it. Built scanners are kept by their settings
(loading a model or embedding a topic list happens once per process, not per request).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from podium.core.errors import ConfigError, InvalidInput, PodiumError
from podium.core.identity import Actor, Principal
from podium.core.platform import Platform
from podium.gateway.guarding import GUARD_ORIGIN
from podium.guard import actions, registry
from podium.guard.base import Action, Finding, ScanContext, Scanner, ScannerError, Stage
from podium.guard.embedding import Embedder, Vectors
from podium.guard.scanners.judge import JudgeError, ModelCaller

MAX_TEXT = 100_000  # characters of text (and of prompt) one scan takes
MAX_SCANNERS = 20
ORIGIN = GUARD_ORIGIN  # the traces of scanners' own calls say where they came from (no policy applies to them)

# What runs when a request names no scanners: the ones that need no per-deployment settings.
DEFAULT_INPUT: tuple[tuple[str, dict[str, Any]], ...] = (
    ("pii", {}),
    ("secrets", {}),
    ("prompt_injection", {}),
    ("toxicity", {}),
    ("invisible_text", {}),
)
DEFAULT_OUTPUT: tuple[tuple[str, dict[str, Any]], ...] = (
    ("pii", {}),
    ("secrets", {}),
    ("toxicity", {}),
    ("invisible_text", {}),
)


class ScannerSpec(BaseModel):
    """One scanner to run: its type and settings."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100, description="Scanner name, as `GET /api/guard/scanners` lists.")
    settings: dict[str, Any] = Field(default_factory=dict, description="The scanner's settings.")


class ScanRequest(BaseModel):
    """`POST /api/guard/scan`."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_TEXT, description="The text to scan.")
    stage: Stage = Field("input", description="`input` (a prompt) or `output` (an answer).")
    prompt: str | None = Field(None, max_length=MAX_TEXT, description="For output scans: the prompt answered.")
    scanners: list[ScannerSpec] | None = Field(
        None, max_length=MAX_SCANNERS, description="Scanners to run (default: the stage's default set)."
    )
    action: Action | None = Field(None, description="Apply this action to every finding instead of each one's own.")


class ScannerRun(BaseModel):
    """How one scanner went."""

    scanner: str
    findings: int
    latency_ms: float
    error: str | None = None


class ScanResult(BaseModel):
    """The findings, whether the text is blocked, the text after the actions, and each scanner's run."""

    stage: Stage
    blocked: bool
    text: str
    findings: list[dict[str, Any]]
    scanners: list[ScannerRun]
    redactions: int = Field(description="Placeholders put in the text (values kept server-side, never returned).")


class ScannerView(BaseModel):
    """A scanner that can be run here."""

    name: str
    stages: list[str]
    description: str
    settings: dict[str, Any]
    plugin: bool


# --- built scanners, kept by settings ----------------------------------------------------------------------

_cache: OrderedDict[str, Scanner] = OrderedDict()
_cache_lock = threading.Lock()
CACHE_SIZE = 64


def get_scanner(name: str, settings: dict[str, Any] | None = None, **injected: Any) -> Scanner:
    """A built scanner (kept by name and settings; scanners needing an injected collaborator are not kept)."""
    try:
        key = name + "\x00" + json.dumps(settings or {}, sort_keys=True)
    except (TypeError, ValueError):
        raise ScannerError(f"scanner {name!r}: settings must be JSON values", "settings") from None
    injected = {k: v for k, v in injected.items() if v is not None}
    if injected:
        return registry.build(name, settings, **injected)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    scanner = registry.build(name, settings)
    with _cache_lock:
        _cache[key] = scanner
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return scanner


async def run_scanners(
    scanners: Sequence[Scanner], text: str, context: ScanContext, *, offload: bool = False
) -> tuple[list[Finding], list[ScannerRun]]:
    """Run scanners in order; a scanner that fails is reported (its error), never silently skipped. With
    `offload` (on a server's event loop), `blocking` scanners (model forward passes) run on a thread."""
    found: list[Finding] = []
    runs: list[ScannerRun] = []
    for scanner in scanners:
        started = time.perf_counter()
        error = None
        result: list[Finding] = []
        try:
            if offload and scanner.blocking:
                result = await asyncio.to_thread(scanner.check, text, context)
            else:
                result = await scanner.scan(text, context)
        except (ScannerError, JudgeError, PodiumError) as exc:
            error = str(exc)
        found.extend(result)
        runs.append(ScannerRun(scanner=scanner.name, findings=len(result), latency_ms=0.0, error=error))
        runs[-1].latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return found, runs


class GatewayCaller:
    """A `ModelCaller` over the in-process gateway of the running server, as the calling principal."""

    def __init__(self, platform: Platform, principal: Principal):
        self.platform = platform
        self.principal = principal

    async def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> str:
        """The answer's text; the call runs on the server's loop (the scan runs on a worker thread's own loop)."""
        from podium.gateway import bridge

        return await asyncio.wrap_future(bridge.submit(self.platform, self._chat(model, messages, params)))

    async def _chat(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
        from podium.gateway import bridge
        from podium.gateway.guardrails import response_text
        from podium.gateway.service import Incoming

        body = {**params, "model": model, "messages": messages}
        raw = orjson.dumps(body)
        gateway = bridge.current(self.platform).gateway
        answer = await gateway.handle(
            self.principal, Incoming(kind="chat", body=body, body_bytes=len(raw), raw=raw), origin=ORIGIN
        )
        if answer.status >= 400 or not isinstance(answer.body, dict):
            detail = answer.call.error if answer.call is not None and answer.call.error else str(answer.body)[:300]
            raise JudgeError(f"the judge model {model!r} failed: {detail}")
        return response_text(answer.body)


class GatewayEmbedder:
    """An `Embedder` over the built-in `minilm-l6-v2` served by the running server's gateway (its model worker),
    so the server process itself never loads torch. Called from a worker thread, never on the event loop."""

    model = "minilm-l6-v2"
    cache_key = "gateway:minilm-l6-v2"  # the same vectors as the in-process model: corpus vectors are shared

    def __init__(self, platform: Platform, principal: Principal):
        self.platform = platform
        self.principal = principal

    def embed(self, texts: list[str]) -> Vectors:
        from podium.gateway import bridge

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        vectors: Vectors = bridge.run(self.platform, self._embed(texts), timeout=60)
        return vectors

    async def _embed(self, texts: list[str]) -> Vectors:
        from podium.gateway import bridge
        from podium.gateway.service import Incoming

        body = {"model": self.model, "input": texts}
        raw = orjson.dumps(body)
        gateway = bridge.current(self.platform).gateway
        answer = await gateway.handle(
            self.principal, Incoming(kind="embedding", body=body, body_bytes=len(raw), raw=raw), origin=ORIGIN
        )
        if answer.status >= 400 or not isinstance(answer.body, dict):
            raise ScannerError(f"embedding with {self.model!r} through the gateway failed: {str(answer.body)[:300]}")
        vectors = np.asarray([d["embedding"] for d in answer.body["data"]], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit


def _embedder(platform: Platform, actor: Actor) -> Embedder | None:
    """The gateway's MiniLM when a server runs in this process; None (the in-process model) otherwise."""
    from podium.gateway import bridge

    if actor.principal is None:
        return None
    try:
        bridge.current(platform)
    except ConfigError:
        return None
    return GatewayEmbedder(platform, actor.principal)


def _build(platform: Platform, actor: Actor, specs: Sequence[ScannerSpec], stage: Stage) -> list[Scanner]:
    out = []
    embedder = None
    for i, spec in enumerate(specs):
        try:
            cls = registry.scanner_class(spec.type)
            if stage not in cls.stages:
                raise ScannerError(
                    f"scanner {spec.type!r} runs on {' and '.join(sorted(cls.stages))} only, not on {stage}", "stage"
                )
            if "caller" in getattr(cls, "injects", ()):
                if actor.principal is None:
                    raise ScannerError(f"scanner {spec.type!r} calls a model and needs a signed-in caller", "type")
                scanner = get_scanner(spec.type, spec.settings, caller=_caller(platform, actor.principal))
            elif "embedder" in getattr(cls, "injects", ()):
                embedder = embedder or _embedder(platform, actor)
                scanner = get_scanner(spec.type, spec.settings, embedder=embedder)
            else:
                scanner = get_scanner(spec.type, spec.settings)
        except ScannerError as exc:
            field = f"scanners.{i}.settings.{exc.setting}" if exc.setting not in (None, "type") else f"scanners.{i}"
            raise InvalidInput(str(exc), details={"field": field}) from None
        out.append(scanner)
    return out


def _caller(platform: Platform, principal: Principal) -> ModelCaller:
    from podium.gateway import bridge

    bridge.current(platform)  # ConfigError when no server runs in this process: a judge needs the gateway
    return GatewayCaller(platform, principal)


def scan_text(platform: Platform, actor: Actor, request: ScanRequest) -> ScanResult:
    """Run the requested scanners (or the stage's defaults) on the text and apply their actions. Needs role
    member (a scan may call models). Redacted values stay on the server: the result says how many."""
    actor.require("member", "scan text with guardrails")
    if "\x00" in request.text or (request.prompt and "\x00" in request.prompt):
        raise InvalidInput("text and prompt must not contain NUL characters", details={"field": "text"})
    if request.scanners is None:
        defaults = DEFAULT_INPUT if request.stage == "input" else DEFAULT_OUTPUT
        specs = [ScannerSpec(type=n, settings=s) for n, s in defaults]
    else:
        specs = request.scanners
    scanners = _build(platform, actor, specs, request.stage)
    context = ScanContext(stage=request.stage, prompt=request.prompt)
    # on this worker thread's own loop: model calls hop to the server's loop (gateway/bridge.py)
    found, runs = asyncio.run(run_scanners(scanners, request.text, context))
    outcome = actions.apply(request.text, found, request.action)
    return ScanResult(
        stage=request.stage,
        blocked=outcome.blocked,
        text=outcome.text,
        findings=[f.to_dict() for f in found],
        scanners=runs,
        redactions=len(outcome.vault.values),
    )


def list_scanners(platform: Platform, actor: Actor) -> list[ScannerView]:
    """Every scanner that can be run here (built-in and plugins), with its stages and settings schema."""
    actor.require("viewer", "list guardrail scanners")
    return [ScannerView(**vars(info)) for info in registry.describe_all()]


def default_names(stage: Literal["input", "output"]) -> list[str]:
    """The scanners a scan runs when it names none."""
    return [n for n, _ in (DEFAULT_INPUT if stage == "input" else DEFAULT_OUTPUT)]

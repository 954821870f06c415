"""Policies in the gateway's request path: the gateway's `GuardHook`, over an in-memory book of policies.

`PolicyBook` keeps every policy in memory, by project and place (key, route, project), rebuilt from the table in
a worker thread when this process changes one and every few seconds (changes made by another worker or host are
seen within that interval), so finding a call's policy is three dictionary lookups. `Enforcer.open` gives a call
its `PolicyCall`, which runs the policy's scanners on the request (blocking ones on a thread, each under its
timeout), redacts what they ask into a `Vault`, scans the answer (whole, or a stream over a sliding window) and
puts redacted values back when the policy says `deanonymize`. Every scanner's decision is kept for the trace.

A stream (`StreamCheck`) sends text only once it is checked: pattern scanners run at each completed word,
model-based ones every `HEAVY_EVERY` characters, each on the new text plus `stream_overlap` characters before
it; a word or placeholder still arriving is held back. A policy with a scanner that judges whole answers
(`Scanner.whole`: JSON schema, relevance, an LLM judge) holds the stream and checks it once at its end.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from prometheus_client import Counter
from sqlalchemy import select

from podium.core.db import utcnow
from podium.core.identity import Principal
from podium.core.periodic import run_every
from podium.core.platform import Platform
from podium.gateway.guarding import StageRun
from podium.gateway.guardrails import GuardrailViolation
from podium.guard import actions, registry
from podium.guard.base import Finding, ScanContext, Scanner, Stage
from podium.guard.policy import OnError, PolicySpec, ScannerEntry, on_error, scanner_settings
from podium.guard.store import GuardPolicy

log = logging.getLogger("podium.guard.enforce")

BLOCKED = Counter(
    "podium_guard_blocked_total", "Gateway calls blocked by a guardrail policy.", ["route", "policy", "stage"]
)
FLAGGED = Counter(
    "podium_guard_findings_total", "Findings of guardrail policies' scanners in gateway calls.", ["policy", "scanner"]
)
_RANK = {"block": 5, "redact": 4, "mask": 3, "hash": 2, "warn": 1}
MAX_RECORDED = 50  # findings of one scanner kept on a trace (the count of the rest is kept beside them)
HEAVY_EVERY = 160  # characters of a streamed answer between two runs of its model-based scanners
HOLD_MAX = 256  # characters of a streamed answer held back at most while a word (or placeholder) arrives
PLACEHOLDER_MAX = 48  # characters of the longest placeholder `[TYPE_N]` that a stream's end may be cut inside


@dataclass(frozen=True)
class Entry:
    """One scanner of a compiled policy."""

    spec: ScannerEntry
    settings: dict[str, Any]
    on_error: OnError
    timeout: float  # seconds
    kept: dict[str, Any] = field(default_factory=dict, compare=False)  # what it needs, and its scanner, once built

    def injects(self) -> tuple[str, ...]:
        """The collaborators its scanner takes (an embedder, a model caller), looked up once."""
        found = self.kept.get("injects")
        if found is None:
            cls = registry.scanner_class(self.spec.type)
            found = self.kept["injects"] = tuple(i for i in getattr(cls, "injects", ()) if i in ("embedder", "caller"))
        return tuple(found)


@dataclass(frozen=True)
class Compiled:
    """A policy ready for the hot path."""

    id: str
    project_id: str
    name: str
    version: int
    scope: str
    target: str
    spec: PolicySpec
    input: tuple[Entry, ...]
    output: tuple[Entry, ...]

    @classmethod
    def of(cls, row: GuardPolicy) -> Compiled:
        spec = PolicySpec.model_validate(row.spec)

        def entries(stage: Stage) -> tuple[Entry, ...]:
            return tuple(
                Entry(e, scanner_settings(e), on_error(e, stage), (e.timeout_ms or spec.timeout_ms) / 1000)
                for e in spec.entries(stage)
            )

        return cls(
            row.id,
            row.project_id,
            row.name,
            row.version,
            row.scope,
            row.target,
            spec,
            entries("input"),
            entries("output"),
        )


class PolicyBook:
    """Every policy in memory, by (project, scope, target); see the module docstring for staleness."""

    def __init__(self, platform: Platform, every: float = 2.0):
        self.platform = platform
        self.every = every
        self._by_place: dict[tuple[str, str, str], Compiled] = {}
        self._lock = threading.Lock()  # one refresh at a time

    def refresh(self) -> None:
        """Reload from the table (in a worker thread); unchanged policies keep their compiled form."""
        with self._lock:
            with self.platform.db.read_session() as s:
                rows = list(s.scalars(select(GuardPolicy)))
            old = {c.id: c for c in self._by_place.values()}
            fresh: dict[tuple[str, str, str], Compiled] = {}
            for row in rows:
                known = old.get(row.id)
                try:
                    compiled = known if known is not None and known.version == row.version else Compiled.of(row)
                except Exception:  # a row no longer valid (a plugin scanner removed): skipped, said once per refresh
                    log.exception(
                        "guard policy %s of project %s does not load; it is not applied", row.name, row.project_id
                    )
                    continue
                fresh[(row.project_id, row.scope, row.target)] = compiled
            self._by_place = fresh

    async def run_refresher(self) -> None:
        """Reload every `every` seconds until cancelled."""
        await run_every(self.every, self.refresh, "reloading guard policies failed; keeping the previous ones")

    def find(
        self, project_id: str, key_id: str | None, route: str | None, key_prefix: str | None = None
    ) -> Compiled | None:
        """The policy a call falls under: its key's (named by id or prefix), else its route's, else its
        project's (most specific wins)."""
        book = self._by_place
        if not book:
            return None
        found = book.get((project_id, "key", key_id)) if key_id else None
        if found is None and key_prefix:
            found = book.get((project_id, "key", key_prefix))
        if found is None and route:
            found = book.get((project_id, "route", route))
        if found is None:
            found = book.get((project_id, "project", ""))
        return found


class Enforcer:
    """The gateway's `GuardHook`: a `PolicyCall` for each call a policy applies to."""

    def __init__(self, platform: Platform, book: PolicyBook):
        self.platform = platform
        self.book = book

    def open(self, principal: Principal, route: str, kind: str, origin: str = "gateway") -> PolicyCall | None:
        policy = self.book.find(principal.project_id, principal.key_id, route, principal.key_prefix)
        if policy is None or origin not in policy.spec.sources:  # the most specific policy decides, alone
            return None
        return PolicyCall(policy, Runner(self.platform, principal), route, kind)


_built: OrderedDict[tuple[str, str, str], Scanner] = OrderedDict()  # scanners that call the gateway, by key
_built_lock = threading.Lock()
BUILT_SIZE = 256


class Runner:
    """Builds and runs scanners for one caller. A scanner that embeds or calls a model does so through the
    gateway as this caller's key; it is built on a thread (its constructor may embed, e.g. a topic list) and
    kept per key and settings, so that work happens once, not per call."""

    def __init__(self, platform: Platform | None, principal: Principal | None):
        self.platform = platform
        self.principal = principal

    def _injected(self, entry: Entry) -> tuple[str, str, str] | None:
        if self.platform is None or self.principal is None or not entry.injects():
            return None
        return (entry.spec.type, json.dumps(entry.settings, sort_keys=True), self.principal.key_id)

    def build(self, entry: Entry) -> Scanner:
        """The scanner of an entry (kept: on the compiled entry, or by key for those that call the gateway)."""
        from podium.guard import service

        key = self._injected(entry)
        if key is None:
            found = entry.kept.get("scanner")
            if found is None:
                found = entry.kept["scanner"] = service.get_scanner(entry.spec.type, entry.settings)
            return cast(Scanner, found)
        with _built_lock:
            found = _built.get(key)
            if found is not None:
                _built.move_to_end(key)
                return found
        assert self.platform is not None and self.principal is not None
        injects = entry.injects()
        scanner = service.get_scanner(
            entry.spec.type,
            entry.settings,
            embedder=service.GatewayEmbedder(self.platform, self.principal) if "embedder" in injects else None,
            caller=service.GatewayCaller(self.platform, self.principal) if "caller" in injects else None,
        )
        with _built_lock:
            _built[key] = scanner
            while len(_built) > BUILT_SIZE:
                _built.popitem(last=False)
        return scanner

    async def _scanner(self, entry: Entry) -> Scanner:
        key = self._injected(entry)
        if key is None:
            return self.build(entry)
        found = _built.get(key)
        return found if found is not None else await asyncio.to_thread(self.build, entry)

    async def run(self, entry: Entry, text: str, context: ScanContext) -> tuple[list[Finding], str | None, float]:
        """The scanner's findings, its error (crash, timeout, cannot be built) and its latency in ms; the timeout
        covers building it too (a build that runs over still finishes on its thread and is kept)."""
        started = time.perf_counter()
        try:
            ready = entry.kept.get("scanner") if not entry.injects() else None
            if ready is not None and not ready.blocking and type(ready).scan is Scanner.scan:
                # a cheap synchronous check runs inline (a timeout could not interrupt it anyway)
                found: list[Finding] = ready.check(text, context)
                return list(found), None, (time.perf_counter() - started) * 1000
        except Exception as exc:  # a scanner is a plugin: whatever it raises follows its on_error
            return [], f"{type(exc).__name__}: {exc}"[:500], (time.perf_counter() - started) * 1000

        async def work() -> list[Finding]:
            scanner = await self._scanner(entry)
            if scanner.blocking:
                return await asyncio.to_thread(scanner.check, text, context)
            return await scanner.scan(text, context)

        try:
            found = await asyncio.wait_for(work(), entry.timeout)
            error = None
        except TimeoutError:
            found, error = [], f"timed out after {round(entry.timeout * 1000)} ms"
        except Exception as exc:  # a scanner is a plugin: whatever it raises follows its on_error
            found, error = [], f"{type(exc).__name__}: {exc}"[:500]
        return list(found), error, (time.perf_counter() - started) * 1000


@dataclass
class Verdict:
    """One stage's scan of one text: findings to apply, and why it blocks (None: it does not)."""

    findings: list[Finding]
    reason: str | None
    decisions: list[dict[str, Any]]
    latency_ms: float


def _finding(f: Finding, offset: int = 0) -> dict[str, Any]:
    return {"type": f.type, "score": round(f.score, 4), "start": f.start + offset, "end": f.end + offset}


async def scan_stage(
    policy: Compiled,
    runner: Runner,
    stage: Stage,
    text: str,
    context: ScanContext,
    offset: int = 0,
    entries: Sequence[Entry] | None = None,
) -> Verdict:
    """Run a stage's scanners (or `entries` of them) in order on `text`; in enforce mode the first block stops
    the rest."""
    if entries is None:
        entries = policy.input if stage == "input" else policy.output
    enforce = policy.spec.mode == "enforce"
    kept: list[Finding] = []
    decisions: list[dict[str, Any]] = []
    reason: str | None = None
    total = 0.0
    what = "request" if stage == "input" else "answer"
    for entry in entries:
        found, error, latency = await runner.run(entry, text, context)
        total += latency
        decision: dict[str, Any] = {
            "stage": stage,
            "scanner": entry.spec.type,
            "action": "pass",
            "findings": [_finding(f, offset) for f in found[:MAX_RECORDED]],
            "latency_ms": round(latency, 3),
            "error": error,
        }
        if error is not None:
            decision["on_error"] = entry.on_error
            if entry.on_error == "closed":
                decision["action"] = "block"
                reason = reason or (
                    f"the {what} was blocked by policy {policy.name!r}: scanner {entry.spec.type} failed ({error}) "
                    "and the policy fails closed"
                )
            else:
                decision["action"] = "allow"
        elif found:
            worst = max(found, key=lambda f: (_RANK[f.action], f.score))
            decision["action"] = worst.action
            if worst.action == "block":
                reason = reason or (
                    f"the {what} was blocked by policy {policy.name!r}: scanner {entry.spec.type} found "
                    f"{worst.type} (score {worst.score:.2f})"
                )
            kept.extend(f for f in found if f.action != "block")
        if len(found) > MAX_RECORDED:
            decision["findings_total"] = len(found)
        if not enforce and decision["action"] != "pass":
            decision["enforced"] = False
        decisions.append(decision)
        if reason is not None and enforce:
            break
    return Verdict(kept if enforce else [], reason if enforce else None, decisions, total)


# --- request texts -----------------------------------------------------------------------------------------

Path = tuple[str | int, ...]


def text_parts(body: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """Where the caller's text is in a chat, completion or embeddings request, in `request_text`'s order."""
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, m in enumerate(messages):
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                yield ("messages", i, "content"), content
            elif isinstance(content, list):
                for j, p in enumerate(content):
                    if isinstance(p, dict) and isinstance(p.get("text"), str):
                        yield ("messages", i, "content", j, "text"), p["text"]
    for key in ("prompt", "input"):
        value = body.get(key)
        if isinstance(value, str):
            yield (key,), value
        elif isinstance(value, list):
            for j, v in enumerate(value):
                if isinstance(v, str):
                    yield (key, j), v


def _set(obj: Any, path: Path, value: str) -> None:
    for step in path[:-1]:
        obj = obj[step]
    obj[path[-1]] = value


def _apply(text: str, findings: list[Finding], offset: int, vault: actions.Vault) -> str:
    """Apply the findings that fall in `text` (which starts at `offset` of the scanned text), clipped to it."""
    end = offset + len(text)
    mine = [
        replace(f, start=max(f.start, offset) - offset, end=min(f.end, end) - offset)
        for f in findings
        if f.start < end and f.end > offset
    ]
    if not mine:
        return text
    return actions.apply(text, mine, vault=vault).text


def _choice_texts(result: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    for i, c in enumerate(result.get("choices") or []):
        if not isinstance(c, dict):
            continue
        message = c.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            yield ("choices", i, "message", "content"), message["content"]
        elif isinstance(c.get("text"), str):
            yield ("choices", i, "text"), c["text"]


def _tool_arguments(result: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """The arguments (JSON text) of the tool calls in a non-streamed answer."""
    for i, c in enumerate(result.get("choices") or []):
        message = c.get("message") if isinstance(c, dict) else None
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for j, call in enumerate(calls if isinstance(calls, list) else []):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                yield ("choices", i, "message", "tool_calls", j, "function", "arguments"), function["arguments"]


# --- one call ------------------------------------------------------------------------------------------------


class PolicyCall:
    """A call under a policy (the gateway's `CallGuard`)."""

    def __init__(self, policy: Compiled, runner: Runner, route: str = "", kind: str = "chat"):
        self.compiled = policy
        self.policy = policy.name
        self.runner = runner
        self.route = route
        self.kind = kind
        self.vault = actions.Vault()  # input redactions: restored in the answer with `deanonymize`
        self.prompt: str | None = None
        self.runs: list[StageRun] = []
        self.streams: list[StreamCheck] = []
        self._holds: bool | None = None
        self._split: tuple[list[Entry], list[Entry]] | None = None
        self.blocked: str | None = None

    def stream_entries(self) -> tuple[list[Entry], list[Entry]]:
        """The output scanners a stream runs at each word (cheap ones) and every `HEAVY_EVERY` characters (those
        that run a model on a thread or call the gateway)."""
        if self._split is None:
            light: list[Entry] = []
            heavy: list[Entry] = []
            for e in self.compiled.output:
                try:
                    cls = registry.scanner_class(e.spec.type)
                    (heavy if cls.blocking or e.injects() else light).append(e)
                except Exception:  # a plugin that no longer loads: its failure is the scan's to report
                    light.append(e)
            self._split = (light, heavy)
        return self._split

    @property
    def holds_stream(self) -> bool:
        """Whether a streamed answer is held whole and checked once at its end: when an output scanner judges a
        whole answer (`json_schema`, `relevance`, `llm_judge`: a window of it would be invalid JSON, off-topic,
        or a model call per word), so nothing it has not passed is sent."""
        if self._holds is None:
            try:
                self._holds = any(registry.scanner_class(e.spec.type).whole for e in self.compiled.output)
            except Exception:  # a plugin that no longer loads: its failure is the scan's to report
                self._holds = False
        return self._holds

    def _record(self, stage: Stage, started: Any, verdict: Verdict) -> StageRun:
        run = StageRun(stage, started, utcnow(), verdict.latency_ms, verdict.reason is not None, verdict.decisions)
        self.runs.append(run)
        self._count(verdict.decisions)
        if verdict.reason is not None:
            self._block(stage, verdict.reason)
        return run

    def _count(self, decisions: list[dict[str, Any]]) -> None:
        for d in decisions:
            if d["findings"]:
                FLAGGED.labels(self.policy, d["scanner"]).inc(len(d["findings"]))

    def _block(self, stage: Stage, reason: str) -> None:
        self.blocked = stage
        BLOCKED.labels(self.route or "unknown", self.policy, stage).inc()
        raise GuardrailViolation(self.policy, stage, reason)

    async def check_input(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        if not self.compiled.input:
            self.prompt = "\n".join(t for _, t in text_parts(body))
            return body
        started = utcnow()
        parts = list(text_parts(body))
        text = "\n".join(t for _, t in parts)
        self.prompt = text
        verdict = await scan_stage(self.compiled, self.runner, "input", text, ScanContext("input"))
        self._record("input", started, verdict)
        if not verdict.findings:
            return body
        out = copy.deepcopy(body)
        at = 0
        changed = False
        for path, part in parts:
            new = _apply(part, verdict.findings, at, self.vault)
            if new != part:
                _set(out, path, new)
                changed = True
            at += len(part) + 1
        return out if changed else body

    def _output_vault(self) -> actions.Vault:
        """A vault for the answer's own redactions, numbered after the request's (never restored)."""
        vault = actions.Vault()
        vault._counts.update(self.vault._counts)
        return vault

    def _finish_text(self, text: str, findings: list[Finding], offset: int, vault: actions.Vault) -> str:
        if findings:
            text = _apply(text, findings, offset, vault)
        if self.compiled.spec.deanonymize and self.vault.values:
            text = self.vault.restore(text)
        return text

    async def check_output(self, result: dict[str, Any]) -> dict[str, Any]:
        if not self.compiled.output and not (self.compiled.spec.deanonymize and self.vault.values):
            return result
        started = utcnow()
        vault = self._output_vault()
        out: dict[str, Any] | None = None
        decisions: list[dict[str, Any]] = []
        latency = 0.0
        reason = None
        for path, text in _choice_texts(result):
            findings: list[Finding] = []
            if self.compiled.output:
                context = ScanContext("output", prompt=self.prompt)
                verdict = await scan_stage(self.compiled, self.runner, "output", text, context)
                decisions += verdict.decisions
                latency += verdict.latency_ms
                findings = verdict.findings
                if verdict.reason is not None:
                    reason = verdict.reason
                    break
            new = self._finish_text(text, findings, 0, vault)
            if new != text:
                if out is None:
                    out = copy.deepcopy(result)
                _set(out, path, new)
        if self.compiled.output:
            self._record("output", started, Verdict([], reason, decisions, latency))
        if self.compiled.spec.deanonymize and self.vault.values:  # a tool call's arguments get the values back
            for path, args in _tool_arguments(out if out is not None else result):
                restored = self.vault.restore(args)
                if restored != args:
                    if out is None:
                        out = copy.deepcopy(result)
                    _set(out, path, restored)
        return out if out is not None else result

    def stream(self) -> StreamCheck:
        check = StreamCheck(self)
        self.streams.append(check)
        return check

    def stages(self) -> list[StageRun]:
        """The stages run, with what an unfinished stream (the client left) had decided so far."""
        partial = [run for run in (c.partial() for c in self.streams) if run is not None]
        return self.runs + partial

    def meta(self) -> dict[str, Any]:
        decisions = [d for run in self.stages() for d in run.decisions]
        flagged = any(d["findings"] or d["error"] for d in decisions)
        return {
            "policy": self.policy,
            "version": self.compiled.version,
            "scope": self.compiled.scope,
            "mode": self.compiled.spec.mode,
            "blocked": self.blocked,
            "flagged": flagged or self.blocked is not None,
            "redactions": len(self.vault.values),
            "decisions": decisions,
        }

    def tags(self) -> list[str]:
        m = self.meta()
        return ["guard"] if m["flagged"] else []


@dataclass
class StreamCheck:
    """A streamed answer under a policy: each new piece is scanned with up to `stream_overlap` characters before
    it (a sliding window, never the whole text again); text is sent only once scanned, a word still arriving
    (and a placeholder cut in two) is held back until it is whole, and findings are applied before it is sent."""

    call: PolicyCall
    text: str = ""  # the upstream's answer so far
    sent: int = 0  # characters of `text` sent (as their checked, restored form)
    scanned: int = 0  # characters of `text` scanned by the cheap scanners
    heavy_scanned: int = 0  # ... and by the model-based ones
    findings: list[Finding] = field(default_factory=list)  # to apply, offsets in `text`
    seen: set[tuple[str, str, int, int]] = field(default_factory=set)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by scanner, summed over the pieces
    latency_ms: float = 0.0
    scans: int = 0
    started: Any = None
    vault: actions.Vault | None = None

    async def _scan(self, final: bool = False) -> None:
        """Scan what is new: cheap scanners at every call, model-based ones every `HEAVY_EVERY` characters (and
        at the end), each on its new text with up to `stream_overlap` characters before it."""
        call = self.call
        if not call.compiled.output:
            self.scanned = self.heavy_scanned = len(self.text)
            return
        light, heavy = call.stream_entries()
        if not heavy:
            self.heavy_scanned = len(self.text)
        elif self.heavy_scanned < len(self.text) and (final or len(self.text) - self.heavy_scanned >= HEAVY_EVERY):
            self.heavy_scanned = await self._run(heavy, self.heavy_scanned)
        if not light:
            self.scanned = len(self.text)
        elif self.scanned < len(self.text):
            self.scanned = await self._run(light, self.scanned)

    async def _run(self, entries: list[Entry], scanned: int) -> int:
        """Run `entries` on the text from `scanned` (with the overlap before it); the new scanned length."""
        call = self.call
        if self.started is None:
            self.started = utcnow()
        base = max(0, scanned - call.compiled.spec.stream_overlap)
        window = self.text[base:]
        context = ScanContext("output", prompt=call.prompt)
        verdict = await scan_stage(call.compiled, call.runner, "output", window, context, base, entries)
        self.scans += 1
        self.latency_ms += verdict.latency_ms
        for d in verdict.decisions:
            total = self.decisions.get(d["scanner"])
            fresh = [f for f in d["findings"] if (d["scanner"], f["type"], f["start"], f["end"]) not in self.seen]
            self.seen.update((d["scanner"], f["type"], f["start"], f["end"]) for f in fresh)
            if total is None:
                self.decisions[d["scanner"]] = {**d, "findings": fresh, "findings_total": len(fresh), "scans": 1}
            else:
                total["findings"] += fresh[: max(0, MAX_RECORDED - len(total["findings"]))]
                total["findings_total"] += len(fresh)
                total["latency_ms"] = round(total["latency_ms"] + d["latency_ms"], 3)
                total["scans"] += 1
                if _RANK.get(d["action"], 0) > _RANK.get(total["action"], 0):
                    total["action"] = d["action"]
                total["error"] = total["error"] or d["error"]
        for f in verdict.findings:
            shifted = replace(f, start=f.start + base, end=f.end + base)
            if shifted.end > self.sent:
                self.findings.append(shifted)
        if verdict.reason is not None:
            self._record(verdict.reason)
        return len(self.text)

    def _record(self, reason: str | None = None) -> None:
        if not self.call.compiled.output or self.started is None:
            return
        run = StageRun(
            "output", self.started, utcnow(), self.latency_ms, reason is not None, list(self.decisions.values())
        )
        self.started = None  # recorded once
        self.call.runs.append(run)
        self.call._count(run.decisions)
        if reason is not None:
            self.call._block("output", reason)

    def partial(self) -> StageRun | None:
        """What this stream's checks decided, if it ended before being recorded (the client went away)."""
        if self.started is None or not self.decisions:
            return None
        return StageRun("output", self.started, utcnow(), self.latency_ms, False, list(self.decisions.values()))

    def _release(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        for f in self.findings:  # a finding that straddles the cut goes out whole
            if f.start < upto < f.end:
                upto = min(f.end, len(self.text))
        piece = self.text[self.sent : upto]
        vault = self.vault = self.vault or self.call._output_vault()
        out = self.call._finish_text(piece, self.findings, self.sent, vault)
        self.sent = upto
        self.findings = [f for f in self.findings if f.end > upto]
        return out

    async def feed(self, text: str) -> str:
        if not text:
            return ""
        self.text += text
        if self.call.holds_stream:
            return ""  # checked whole at the end (a model judges it once)
        if not any(c in text for c in " \n") and len(self.text) - self.sent <= HOLD_MAX:
            return ""  # a word still arriving: nothing more could go out, so nothing is scanned yet
        await self._scan()
        checked = min(self.scanned, self.heavy_scanned)  # text goes out only once every scanner has seen it
        pending = self.text[self.sent : checked]
        cut = max(pending.rfind(" "), pending.rfind("\n"))
        upto = self.sent + cut + 1 if cut >= 0 else self.sent
        if checked - upto > HOLD_MAX:  # no space for long: send, keeping a possible placeholder back
            upto = checked
        opening = self.text.rfind("[", upto - PLACEHOLDER_MAX if upto > PLACEHOLDER_MAX else 0, upto)
        if opening >= 0 and "]" not in self.text[opening:upto]:
            upto = opening
        return self._release(upto)

    async def close(self) -> str:
        await self._scan(final=True)
        out = self._release(len(self.text))
        self._record()
        return out

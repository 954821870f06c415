"""How parts of a trace (spans arriving in several batches: the SDK, OTLP, a gateway call under a client's
span or a chain step) settle into the stored trace, inside the writer's transaction, before they are merged.

Three rules, so that a trace's totals (`span_count`, tokens, cost) and the rollup built from them are the
same whatever order parts arrive in and however often:

- **A re-sent span changes nothing.** OTLP exporters and the SDK retry, so a span may arrive twice, in one
  batch or in two. A span whose id is stored already (or came earlier in the batch) is dropped, and what
  it added to its part's totals is taken back out.
- **One model call is counted once.** When an `llm` or `embedding` span reporting usage has an `llm` or
  `embedding` child reporting usage too, both saw the same call at two layers (an instrumented client's
  span and the gateway's span under it, through `traceparent`; or two instrumentations of one client), and
  the child, the layer closer to the model, owns the usage: the parent keeps its figures on its row (they
  are shown) but they leave the trace's totals, whichever of the two arrives first. For calls through the
  gateway the gateway's span is that child: its usage is what the upstream reported, priced with the
  route's prices and counted by budgets.
- **A part never writes into another project's trace.** The first project to write a trace id holds it. A
  part sent by another project with that id (a gateway call whose `traceparent` names a trace of another
  project, or spans racing the ingest check) is written to a trace of its own, `scoped_trace_id(id,
  project)`: that project sees its call, the holder's trace is untouched.

On PostgreSQL the parts' trace ids are locked first (`rollup.lock_parts`), so concurrent writers settle the
parts of one trace one after the other; SQLite serialises writers itself.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from podium.tracing import rollup

log = logging.getLogger("podium.tracing.parts")

USAGE_KINDS = ("llm", "embedding")
_SUMS = ("span_count", "prompt_tokens", "completion_tokens", "cost_micros")
_CHUNK = 500


def scoped_trace_id(trace_id: str, project_id: str) -> str:
    """The id under which a project's part goes when another project holds `trace_id`: the id (cut to 32
    characters) and a hash of both, so each project's parts of that id land together, apart from the holder's."""
    digest = hashlib.blake2b(f"{project_id}\x00{trace_id}".encode(), digest_size=4).hexdigest()[:7]
    return f"{trace_id[:32]}.{digest}"


def _has_usage(span: dict[str, Any]) -> bool:
    return bool(span.get("prompt_tokens") or span.get("completion_tokens") or span.get("cost_micros"))


def _owns_usage_kind(span: dict[str, Any]) -> bool:
    return span.get("kind") in USAGE_KINDS and _has_usage(span)


def _chunks(values: Iterable[str]) -> list[list[str]]:
    ordered = sorted(set(values))
    return [ordered[i : i + _CHUNK] for i in range(0, len(ordered), _CHUNK)]


def _marks(backend: str, n: int) -> str:
    return ", ".join(("?" if backend == "sqlite" else "%s") for _ in range(n))


def _select(s: Session, backend: str, sql: str, *lists: list[str]) -> list[tuple[Any, ...]]:
    """Run `sql`, whose `{0}`, `{1}`… are IN lists, with these values bound."""
    text = sql.format(*(_marks(backend, len(values)) for values in lists))
    params = tuple(v for values in lists for v in values)
    return [tuple(row) for row in s.connection().exec_driver_sql(text, params)]


def _owners(s: Session, backend: str, ids: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in _chunks(ids):
        sql = "SELECT id, project_id FROM traces WHERE id IN ({0})"
        for tid, project in _select(s, backend, sql, chunk):
            found[str(tid)] = project or ""
    return found


def _stored_span_ids(s: Session, backend: str, ids: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        for (sid,) in _select(s, backend, "SELECT id FROM spans WHERE id IN ({0})", chunk):
            found.add(str(sid))
    return found


_USAGE = "kind IN ('llm', 'embedding') AND (prompt_tokens > 0 OR completion_tokens > 0 OR cost_micros > 0)"


def _covered(s: Session, backend: str, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of these (trace id, span id), the spans that already have a stored child reporting usage."""
    found: set[tuple[str, str]] = set()
    traces = sorted({t for t, _ in keys})
    spans = sorted({sid for _, sid in keys})
    for t_chunk in _chunks(traces):
        for s_chunk in _chunks(spans):
            sql = (
                "SELECT DISTINCT trace_id, parent_id FROM spans"  # nosec B608  # placeholders only
                f" WHERE trace_id IN ({{0}}) AND parent_id IN ({{1}}) AND {_USAGE}"
            )
            for tid, pid in _select(s, backend, sql, t_chunk, s_chunk):
                if (tid, pid) in keys:
                    found.add((str(tid), str(pid)))
    return found


def _stored_usage(s: Session, backend: str, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Usage of these stored (trace id, span id) that are `llm`/`embedding` spans reporting it."""
    found: dict[tuple[str, str], tuple[int, int, int]] = {}
    for chunk in _chunks(sid for _, sid in keys):
        sql = (
            "SELECT trace_id, id, prompt_tokens, completion_tokens, cost_micros FROM spans"  # nosec B608  # placeholders only
            f" WHERE id IN ({{0}}) AND {_USAGE}"
        )
        for tid, sid, pt, ct, cost in _select(s, backend, sql, chunk):
            if (tid, sid) in keys:
                found[(str(tid), str(sid))] = (int(pt or 0), int(ct or 0), int(cost or 0))
    return found


def settle(
    s: Session, backend: str, traces: list[dict[str, Any]], spans: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The trace and span rows of a batch with its parts settled (see the module's rules): re-sent spans
    left out, parts' totals corrected, parts of another project's trace moved to their own trace. Rows of
    parts carry `_merge` (traces) and `_part`, the index of their part in `traces` (spans)."""
    parts = [i for i, row in enumerate(traces) if row.get("_merge")]
    merged_spans = [sp for sp in spans if sp.get("_merge")]
    if not parts and not merged_spans:
        return traces, spans
    traces = list(traces)
    moved: dict[int, str] = {}  # part index -> the trace id its rows go to
    dropped: set[int] = set()

    # 1. whose trace is it: the stored holder, else the batch's first part with that id
    rollup.lock_parts(s, backend, sorted({traces[i]["id"] for i in parts}))
    owners = _owners(s, backend, {traces[i]["id"] for i in parts})
    for i in parts:
        row = traces[i]
        project = row.get("project_id") or ""
        holder = owners.setdefault(row["id"], project)
        if holder != project:
            moved[i] = scoped_trace_id(row["id"], project)
    if moved:
        rollup.lock_parts(s, backend, sorted(set(moved.values())))
        scoped_owners = _owners(s, backend, set(moved.values()))
        for i, tid in moved.items():
            project = traces[i].get("project_id") or ""
            if scoped_owners.setdefault(tid, project) != project:  # a client took that id too: nowhere to go
                log.warning("a trace part of project %s has no trace it may write to (%s); dropped", project, tid)
                dropped.add(i)
            else:
                traces[i] = {**traces[i], "id": tid}

    # 2. spans re-sent (stored already, or earlier in this batch) are left out, and leave their part's totals
    deltas: dict[int, list[int]] = {}

    def take(part: int | None, values: Sequence[int]) -> None:
        if part is None:
            return
        d = deltas.setdefault(part, [0, 0, 0, 0])
        for k, v in enumerate(values):
            d[k] -= v

    stored = _stored_span_ids(s, backend, (sp["id"] for sp in merged_spans))
    seen: set[str] = set()
    kept: list[dict[str, Any]] = []
    for sp in spans:
        if not sp.get("_merge"):
            kept.append(sp)
            continue
        part = sp.get("_part")
        if part in dropped:
            continue
        if sp["id"] in stored or sp["id"] in seen:
            take(part, (1, *(int(sp.get(c) or 0) for c in _SUMS[1:])))
            continue
        seen.add(sp["id"])
        if part in moved:
            sp = {**sp, "trace_id": moved[part]}
        kept.append(sp)

    # 3. one model call, counted once: the innermost llm/embedding span reporting usage owns it
    new = [sp for sp in kept if sp.get("_merge") and _owns_usage_kind(sp)]
    if new:
        mine = {(sp["trace_id"], sp["id"]): sp for sp in new}
        parents = {(sp["trace_id"], sp["parent_id"]) for sp in new if sp.get("parent_id")}
        covered = _covered(s, backend, set(mine) | parents)
        for key, sp in mine.items():
            if key in covered or key in parents:  # it has a child that owns its usage
                take(sp.get("_part"), (0, *(int(sp.get(c) or 0) for c in _SUMS[1:])))
        # stored parents that counted until now: a child arrived, so their usage leaves the trace's totals
        uncounted = {key for key in parents if key not in mine and key not in covered}
        first_part: dict[str, int] = {}
        for i, row in enumerate(traces):
            if row.get("_merge") and i not in dropped:
                first_part.setdefault(row["id"], i)
        for (tid, _), usage in _stored_usage(s, backend, uncounted).items():
            take(first_part.get(tid), (0, *usage))

    for i, d in deltas.items():
        if i in dropped:
            continue
        row = traces[i] = {**traces[i]}
        for name, delta in zip(_SUMS, d, strict=True):
            row[name] = int(row.get(name) or 0) + delta
    return [row for i, row in enumerate(traces) if i not in dropped], kept

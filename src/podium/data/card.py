"""The dataset card (what a version holds and what preparation did to it) and the diff of two versions."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import orjson
from pydantic import BaseModel

from podium.core.errors import InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.data import service
from podium.data.service import ColumnInfo, VersionInfo

MAX_EXAMPLES = 20
MAX_ANCESTORS = 50


class Card(BaseModel):
    """A version's card: size and columns, length and token histograms, languages, and what preparation
    removed (duplicates, PII, quality-filter drops per rule) along its lineage."""

    version: VersionInfo
    rows: int
    columns: list[ColumnInfo]
    text_lengths: dict[str, dict[str, Any]]
    tokens: dict[str, Any] | None
    languages: dict[str, int]
    splits: dict[str, int]
    duplicates_removed: dict[str, int]
    pii: dict[str, int]
    quality_drops: dict[str, int]
    steps: list[dict[str, Any]]
    lineage: list[dict[str, Any]]


def _ancestry(platform: Platform, actor: Actor, version: VersionInfo) -> list[VersionInfo]:
    """The version and the versions it was prepared from (first parents), newest first."""
    chain = [version]
    while chain[-1].parents and len(chain) < MAX_ANCESTORS:
        parent = chain[-1].parents[0]
        if parent.dataset is None:
            break
        try:
            chain.append(service.get_version(platform, actor, f"{parent.dataset}@{parent.id}"))
        except (NotFound, InvalidInput):  # a parent the reader cannot see (another project's) ends the walk
            break
    return chain


def card(platform: Platform, actor: Actor, ref: str) -> Card:
    """The card of a version."""
    v = service.get_version(platform, actor, ref)
    columns = v.stats.get("columns", {})
    lengths = {n: st for n, st in columns.items() if "histogram" in st and n != "n_tokens" and "values" not in st}
    tokens = None
    if "n_tokens" in columns and "histogram" in columns["n_tokens"]:
        tokens = {**columns["n_tokens"], "edges": v.stats.get("token_edges", [])}
    dupes: Counter[str] = Counter()
    pii: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    steps: list[dict[str, Any]] = []
    chain = _ancestry(platform, actor, v)
    for ancestor in reversed(chain):
        for step in ancestor.lineage.get("steps", []):
            name, report = step.get("step"), step.get("report", {})
            steps.append({"version": ancestor.version, "dataset": ancestor.dataset, **step})
            if name in ("dedup", "near_dedup"):
                dupes[name] += int(report.get("duplicates", 0))
            elif name == "pii":
                for entity, n in (report.get("counts") or report.get("entities") or {}).items():
                    if n:
                        pii[entity] += int(n)
            elif name == "quality":
                for rule, n in (report.get("dropped") or {}).items():
                    drops[rule] += int(n)
            if tokens is None and name == "tokenize" and report.get("histogram"):
                tokens = {"histogram_from_step": report["histogram"], **report}
    lineage = [
        {
            "id": a.id,
            "dataset": a.dataset,
            "version": a.version,
            "kind": a.lineage.get("kind"),
            "rows": a.row_count,
            "steps": [s.get("step") for s in a.lineage.get("steps", [])],
        }
        for a in chain
    ]
    return Card(
        version=v,
        rows=v.row_count,
        columns=v.columns,
        text_lengths=lengths,
        tokens=tokens,
        languages=dict(columns.get("lang", {}).get("values", {})),
        splits=dict(columns.get("split", {}).get("values", {})),
        duplicates_removed=dict(dupes),
        pii=dict(pii),
        quality_drops=dict(drops),
        steps=steps,
        lineage=lineage,
    )


def _scalar(kind: str) -> bool:
    """Whether an Arrow type (as its name) holds single values that can key rows."""
    return not kind.startswith(("list", "large_list", "struct", "map", "binary", "large_binary", "fixed_size"))


class VersionDiff(BaseModel):
    """Two versions compared: columns added and removed, and rows added, removed and changed (by `key`; by
    whole-row content when there is no key, where a change shows as one removal and one addition)."""

    a: VersionInfo
    b: VersionInfo
    key: str | None
    columns_added: list[str]
    columns_removed: list[str]
    columns_retyped: list[str]
    rows_added: int
    rows_removed: int
    rows_changed: int
    rows_unchanged: int
    added: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    changed: list[dict[str, Any]]


def _row_hash(row: dict[str, Any]) -> bytes:
    return hashlib.blake2b(orjson.dumps(row, option=orjson.OPT_SORT_KEYS, default=str), digest_size=12).digest()


def _index(
    platform: Platform, actor: Actor, ref: str, key: str | None
) -> tuple[dict[Any, bytes] | None, Counter[bytes]]:
    """Key → row hash (with a key; None when the key repeats or is missing in some row, so rows cannot be
    matched by it), and the multiset of row hashes."""
    by_key: dict[Any, bytes] | None = {} if key else None
    multiset: Counter[bytes] = Counter()
    for batch in service.iter_batches(platform, actor, ref):
        keys = batch.column(key).to_pylist() if key else None
        for i, row in enumerate(batch.to_pylist()):
            h = _row_hash(row)
            multiset[h] += 1
            if by_key is not None and keys is not None:
                k = keys[i]
                if k is None or k in by_key:
                    by_key = None
                else:
                    by_key[k] = h
    return by_key, multiset


def _examples(platform: Platform, actor: Actor, ref: str, wanted: set[Any], key: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not wanted:
        return out
    for batch in service.iter_batches(platform, actor, ref):
        for row in batch.to_pylist():
            ident = row[key] if key else _row_hash(row)
            if ident in wanted:
                out.append(service._jsonable(row))
                wanted.discard(ident)
                if len(out) >= MAX_EXAMPLES or not wanted:
                    return out
    return out


def diff(platform: Platform, actor: Actor, a_ref: str, b_ref: str, *, key: str | None = None) -> VersionDiff:
    """Compare version `a_ref` (before) with `b_ref` (after). Rows match by `key` (default: an `id` column
    both have), else by their whole content."""
    a = service.get_version(platform, actor, a_ref)
    b = service.get_version(platform, actor, b_ref)
    a_cols = {c.name: c.type for c in a.columns}
    b_cols = {c.name: c.type for c in b.columns}
    if key is not None and (key not in a_cols or key not in b_cols):
        raise InvalidInput(f"key column {key!r} is not in both versions", details={"field": "key"})
    if key is not None and not _scalar(a_cols[key]):
        raise InvalidInput(
            f"key column {key!r} holds {a_cols[key]}: a key is a text or number column", details={"field": "key"}
        )
    if key is None and "id" in a_cols and "id" in b_cols and _scalar(a_cols["id"]) and _scalar(b_cols["id"]):
        key = "id"
    a_ref_id, b_ref_id = f"{a.dataset}@{a.id}", f"{b.dataset}@{b.id}"
    a_keys, a_set = _index(platform, actor, a_ref_id, key)
    b_keys, b_set = _index(platform, actor, b_ref_id, key)
    if a_keys is None or b_keys is None:
        key = None  # a repeated or missing key cannot match rows: compare whole rows
    if key is not None and a_keys is not None and b_keys is not None:
        added_k = [k for k in b_keys if k not in a_keys]
        removed_k = [k for k in a_keys if k not in b_keys]
        changed_k = [k for k in b_keys if k in a_keys and a_keys[k] != b_keys[k]]
        unchanged = len(b_keys) - len(added_k) - len(changed_k)
        added = _examples(platform, actor, b_ref_id, set(added_k[:MAX_EXAMPLES]), key)
        removed = _examples(platform, actor, a_ref_id, set(removed_k[:MAX_EXAMPLES]), key)
        after = _examples(platform, actor, b_ref_id, set(changed_k[:MAX_EXAMPLES]), key)
        before = {r[key]: r for r in _examples(platform, actor, a_ref_id, set(changed_k[:MAX_EXAMPLES]), key)}
        changed = [
            {
                "key": r[key],
                "fields": sorted(
                    f for f in set(r) | set(before.get(r[key], {})) if r.get(f) != before.get(r[key], {}).get(f)
                ),
                "before": before.get(r[key]),
                "after": r,
            }
            for r in after
        ]
        n_added, n_removed, n_changed = len(added_k), len(removed_k), len(changed_k)
    else:
        plus, minus = b_set - a_set, a_set - b_set
        n_added, n_removed, n_changed = sum(plus.values()), sum(minus.values()), 0
        unchanged = sum((a_set & b_set).values())
        added = _examples(platform, actor, b_ref_id, set(list(plus)[:MAX_EXAMPLES]), None)
        removed = _examples(platform, actor, a_ref_id, set(list(minus)[:MAX_EXAMPLES]), None)
        changed = []
    return VersionDiff(
        a=a,
        b=b,
        key=key,
        columns_added=[c for c in b_cols if c not in a_cols],
        columns_removed=[c for c in a_cols if c not in b_cols],
        columns_retyped=[c for c in b_cols if c in a_cols and a_cols[c] != b_cols[c]],
        rows_added=n_added,
        rows_removed=n_removed,
        rows_changed=n_changed,
        rows_unchanged=unchanged,
        added=added,
        removed=removed,
        changed=changed,
    )

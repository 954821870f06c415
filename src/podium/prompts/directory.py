"""Prompt versions and running experiments for the gateway's hot path, without a database round trip.

A background task rebuilds a snapshot every second: per prompt name its labels, its latest version number,
the versions those point at, and its running experiment (arms, shares, what assignment is sticky by). The
hot path only reads the snapshot. A label move, a new version or an experiment change made anywhere (this
process's API, another worker, the CLI) is therefore seen within one refresh interval plus the time of one
refresh (about a second); `refresh()` applies it at once. Versions are immutable, so one loaded version is
kept as long as something points at it, and an older version pinned by number is read once, in a thread,
into a bounded cache.

Memory stays bounded by what is referenced: labelled, latest and experiment-arm versions of every prompt,
plus at most `max_pinned` versions asked for by number.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from podium.core.identity import Actor, Principal
from podium.core.periodic import run_every
from podium.core.platform import Platform
from podium.core.registry import KNOWN_LISTED
from podium.prompts.experiments import assign
from podium.prompts.service import Rendered, get_version, render_version
from podium.prompts.store import PROMPTS, Experiment, ExperimentArm, Prompt, PromptLabel, PromptVersion

log = logging.getLogger("podium.prompts.directory")


@dataclass(frozen=True)
class Version:
    """One immutable prompt version: what rendering and the model call need."""

    id: str
    prompt: str
    version: int
    kind: str  # text or chat
    template: str | None
    messages: list[dict[str, Any]] | None
    variables: dict[str, Any]
    model: dict[str, Any]
    tools: list[dict[str, Any]] | None
    response_format: dict[str, Any] | None

    @classmethod
    def of(cls, v: Any, prompt: str) -> Version:
        """The snapshot's copy of a version: a `PromptVersion` row or the registry's `VersionInfo`."""
        return cls(
            id=v.id,
            prompt=prompt,
            version=v.version,
            kind=v.kind,
            template=v.template,
            messages=v.messages,
            variables=v.variables or {},
            model=v.model or {},
            tools=v.tools,
            response_format=v.response_format,
        )

    @property
    def ref(self) -> str:
        """`name@N`."""
        return f"{self.prompt}@{self.version}"

    def render(self, values: Mapping[str, Any] | None) -> Rendered:
        """Render with variables (typed, defaults applied); every missing name in one `InvalidInput`."""
        return render_version(self, values)


@dataclass(frozen=True)
class RunningExperiment:
    """A prompt's running experiment: arms as (version id, share) in version order, sticky by user or session."""

    id: str
    name: str
    sticky_by: str
    arms: tuple[tuple[str, float], ...]
    label: str | None = None  # only requests for this label (`latest`: none named) are assigned


@dataclass(frozen=True)
class Entry:
    """What the snapshot knows of one prompt."""

    id: str
    name: str
    latest: int  # 0 while the prompt has no versions
    labels: dict[str, int]  # label -> version number
    versions: dict[int, Version]  # the versions labels, `latest` and experiment arms point at
    by_id: dict[str, Version]
    experiment: RunningExperiment | None = None
    project_id: str | None = None  # the owning project (None: global)


@dataclass(frozen=True)
class Choice:
    """The version a request gets, and the experiment arm that chose it (if one did)."""

    version: Version
    experiment_id: str | None = None
    arm: int | None = None  # the arm's version number


@dataclass
class _Snapshot:
    entries: dict[str, Entry] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)  # sorted, for "not found" messages


class PromptDirectory:
    """Prompt references resolved from an in-memory snapshot; see the module docstring for staleness."""

    def __init__(self, platform: Platform, every: float = 1.0, max_pinned: int = 1024):
        self.platform = platform
        self.every = every
        self.max_pinned = max_pinned
        self._snap = _Snapshot()
        self._pinned: OrderedDict[tuple[str, int], Version] = OrderedDict()  # (prompt id, number), LRU
        self._fetching: dict[tuple[str, int], asyncio.Future[Version]] = {}
        self._lock = threading.Lock()  # one refresh at a time, so the newest read is the one that stays

    # --- lookups (event loop) ------------------------------------------------------------------

    def entry(self, name: str, principal: Principal | None = None) -> Entry:
        """The prompt's snapshot entry, or `NotFound` naming the known prompts (the registry's wording). With
        `principal`, only prompts it sees exist: its project's and global ones (every one for a server admin),
        and only their names are listed."""
        snap = self._snap
        found = snap.entries.get(name)
        if found is None or not _sees(principal, found.project_id):
            visible = [n for n in snap.names if _sees(principal, snap.entries[n].project_id)]
            raise PROMPTS.not_found(name, visible[:KNOWN_LISTED], field="prompt.name")
        return found

    async def resolve(
        self,
        name: str,
        label: str | None = None,
        number: int | None = None,
        user: str | None = None,
        session: str | None = None,
        principal: Principal | None = None,
    ) -> Choice:
        """The version for a reference (among the prompts `principal` sees). An explicit `number` is used as
        is; otherwise the label (`latest` by default) must exist, and a running experiment on the prompt picks
        the arm, sticky by its key."""
        entry = self.entry(name, principal)
        if number is not None:
            return Choice(await self._numbered(entry, number))
        if label is None or label == "latest":
            if entry.latest == 0:
                raise PROMPTS.no_versions(name, field="prompt.name")
            version = entry.versions[entry.latest]
        else:
            at = entry.labels.get(label)
            if at is None:
                raise PROMPTS.no_label(name, label, sorted(entry.labels), field="prompt.label")
            version = entry.versions[at]
        exp = entry.experiment
        if exp is None or (exp.label is not None and exp.label != (label or "latest")):
            return Choice(version)
        key = session if exp.sticky_by == "session" else user
        chosen = entry.by_id[assign.pick(exp.id, exp.arms, key)]
        return Choice(chosen, exp.id, chosen.version)

    async def _numbered(self, entry: Entry, number: int) -> Version:
        loaded = entry.versions.get(number)
        if loaded is not None:
            return loaded
        if number < 1 or number > entry.latest:  # numbers run 1..latest without gaps
            raise PROMPTS.no_version(entry.name, number, field="prompt.version")
        key = (entry.id, number)
        cached = self._pinned.get(key)
        if cached is not None:
            self._pinned.move_to_end(key)
            return cached
        pending = self._fetching.get(key)
        if pending is None:  # one read per version however many requests wait for it
            pending = asyncio.ensure_future(asyncio.to_thread(self._fetch, entry.name, number))
            self._fetching[key] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(key, None))
        version = await asyncio.shield(pending)
        self._pinned[key] = version
        while len(self._pinned) > self.max_pinned:
            self._pinned.popitem(last=False)
        return version

    def _fetch(self, name: str, number: int) -> Version:
        v = get_version(self.platform.db, Actor.system(), name, number)  # the caller was checked on its entry
        return Version.of(v, v.prompt)

    # --- reloading (worker thread) ---------------------------------------------------------------

    def refresh(self) -> None:
        """Rebuild the snapshot from the database (blocking; a few small queries, versions read only once)."""
        with self._lock, self.platform.db.read_session() as s:
            self._snap = self._load(s, self._snap)

    def _load(self, s: Session, old: _Snapshot) -> _Snapshot:
        prompts: dict[str, str] = {pid: name for pid, name in s.execute(select(Prompt.id, Prompt.name))}
        owners: dict[str, str | None] = {pid: owner for pid, owner in s.execute(select(Prompt.id, Prompt.project_id))}
        labels: dict[str, dict[str, str]] = {}
        for pid, label, vid in s.execute(select(PromptLabel.prompt_id, PromptLabel.label, PromptLabel.version_id)):
            labels.setdefault(pid, {})[label] = vid
        newest = (
            select(PromptVersion.prompt_id, func.max(PromptVersion.version).label("top"))
            .group_by(PromptVersion.prompt_id)
            .subquery()
        )
        on_top = and_(PromptVersion.prompt_id == newest.c.prompt_id, PromptVersion.version == newest.c.top)
        latest: dict[str, str] = {
            pid: vid for pid, vid in s.execute(select(PromptVersion.prompt_id, PromptVersion.id).join(newest, on_top))
        }
        running: dict[str, Experiment] = {}
        for row in s.scalars(
            select(Experiment).where(Experiment.status == "running").order_by(Experiment.created_at, Experiment.id)
        ):
            running[row.prompt_id] = row  # at most one per prompt; should two be running, the newest wins
        arms: dict[str, list[tuple[str, float]]] = {}
        if running:
            ids = [e.id for e in running.values()]
            for arm in s.scalars(select(ExperimentArm).where(ExperimentArm.experiment_id.in_(ids))):
                arms.setdefault(arm.experiment_id, []).append((arm.version_id, float(arm.share)))

        known: dict[str, Version] = {v.id: v for e in old.entries.values() for v in e.by_id.values()}
        wanted = set(latest.values())
        for per_prompt in labels.values():
            wanted |= set(per_prompt.values())
        for pairs in arms.values():
            wanted |= {vid for vid, _ in pairs}
        missing = sorted(wanted - set(known))
        for vid, version in self._read_versions(s, missing, prompts):
            known[vid] = version

        entries: dict[str, Entry] = {}
        for pid, name in prompts.items():
            ids_here = {latest[pid]} if pid in latest else set()
            ids_here |= set(labels.get(pid, {}).values())
            exp = running.get(pid)
            exp_arms = [(vid, share) for vid, share in arms.get(exp.id, []) if vid in known] if exp else []
            ids_here |= {vid for vid, _ in exp_arms}
            by_id = {vid: known[vid] for vid in ids_here if vid in known and known[vid].prompt == name}
            experiment = None
            if exp is not None and exp_arms and all(vid in by_id for vid, _ in exp_arms):
                exp_arms.sort(key=lambda a: by_id[a[0]].version)  # a stable order keeps assignment sticky
                scope = (exp.config or {}).get("label")
                experiment = RunningExperiment(exp.id, exp.name, exp.sticky_by, tuple(exp_arms), scope)
            elif exp is not None:
                log.warning("experiment %s of prompt %s has no usable arms; ignoring it", exp.id, name)
            top = by_id.get(latest.get(pid, ""))
            entries[name] = Entry(
                id=pid,
                name=name,
                latest=top.version if top is not None else 0,
                labels={lab: by_id[vid].version for lab, vid in labels.get(pid, {}).items() if vid in by_id},
                versions={v.version: v for v in by_id.values()},
                by_id=by_id,
                experiment=experiment,
                project_id=owners.get(pid),
            )
        return _Snapshot(entries, sorted(entries))

    @staticmethod
    def _read_versions(s: Session, ids: list[str], prompts: dict[str, str]) -> Iterable[tuple[str, Version]]:
        for start in range(0, len(ids), 500):
            rows = s.scalars(select(PromptVersion).where(PromptVersion.id.in_(ids[start : start + 500])))
            for v in rows:
                yield v.id, Version.of(v, prompts.get(v.prompt_id, ""))

    async def run_refresher(self) -> None:
        """Rebuild the snapshot every `every` seconds until cancelled."""
        await run_every(self.every, self.refresh, "reloading prompts failed; keeping the previous snapshot")


def _sees(principal: Principal | None, project_id: str | None) -> bool:
    """Whether a caller sees a prompt of `project_id` (no caller: the platform itself, which sees all)."""
    return principal is None or project_id is None or principal.admin or project_id == principal.project_id

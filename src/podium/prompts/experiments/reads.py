"""Reading experiments: the views of an experiment and its arms, and the lookups the service (create, stop,
shares, results) and the bandit share; `load` gathers each arm's traces and latest scores from tracing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from podium.core.db import Database
from podium.core.errors import NotFound
from podium.prompts.store import Experiment, ExperimentArm, Prompt, PromptVersion
from podium.tracing.scores import service as score_store


class ArmInfo(BaseModel):
    """An arm: the version and its current share of the traffic."""

    version: int
    version_id: str
    share: float


class ExperimentInfo(BaseModel):
    """An experiment in listings, with its arms ordered by version."""

    id: str
    prompt: str
    name: str
    status: str
    mode: str
    sticky_by: str
    score: str | None
    direction: str
    min_samples: int
    max_shift: float
    floor: float
    label: str | None = None
    created_by: str
    created_at: datetime
    stopped_at: datetime | None
    arms: list[ArmInfo]


def arms(s: Session, experiment_id: str) -> list[tuple[ExperimentArm, int]]:
    """The arms with their version numbers, ordered by version (the order assignment uses)."""
    q = (
        select(ExperimentArm, PromptVersion.version)
        .join(PromptVersion, PromptVersion.id == ExperimentArm.version_id)
        .where(ExperimentArm.experiment_id == experiment_id)
        .order_by(PromptVersion.version)
    )
    return [(arm, number) for arm, number in s.execute(q)]


def info(s: Session, e: Experiment, prompt_name: str | None = None) -> ExperimentInfo:
    """The experiment as the API shows it, with its arms."""
    if prompt_name is None:
        p = s.get(Prompt, e.prompt_id)
        prompt_name = p.name if p else "?"
    return ExperimentInfo(
        id=e.id,
        prompt=prompt_name,
        name=e.name,
        status=e.status,
        mode=e.mode,
        sticky_by=e.sticky_by,
        score=e.score_name,
        direction=str(e.config.get("direction", "higher")),
        min_samples=e.min_samples,
        max_shift=e.max_shift,
        floor=float(e.config.get("floor", 0.0)),
        label=e.config.get("label"),
        created_by=e.created_by,
        created_at=e.created_at,
        stopped_at=e.stopped_at,
        arms=[ArmInfo(version=n, version_id=a.version_id, share=a.share) for a, n in arms(s, e.id)],
    )


def find(s: Session, experiment_id: str, *, lock: bool = False) -> Experiment:
    """The experiment, or `NotFound`; `lock` holds its row until the transaction ends."""
    q = select(Experiment).where(Experiment.id == experiment_id)
    e = s.scalar(q.with_for_update() if lock else q)
    if e is None:
        raise NotFound(f"experiment {experiment_id!r} not found", details={"experiment": experiment_id})
    return e


def running(s: Session, prompt_id: str) -> Experiment | None:
    """The prompt's running experiment, if any (at most one runs at a time)."""
    q = select(Experiment).where(Experiment.prompt_id == prompt_id, Experiment.status == "running")
    return s.scalar(q.limit(1))


def shares(rows: list[tuple[ExperimentArm, int]]) -> dict[str, float]:
    """Version number (as a string) → share, as shifts log them."""
    return {str(n): a.share for a, n in rows}


def fmt_shares(by_version: dict[str, float]) -> str:
    """`v1 0.300, v2 0.700`."""
    return ", ".join(f"v{k} {v:.3f}" for k, v in by_version.items())


@dataclass
class ArmData:
    """An arm with what tracing knows of it: its traces' outcomes and their latest scores."""

    version: int
    version_id: str
    share: float
    outcomes: list[score_store.TraceOutcome]
    scores: dict[str, dict[str, float]]  # name -> trace id -> latest value


def load(
    db: Database, experiment_id: str, limit: int, names: Sequence[str] | None = None
) -> tuple[ExperimentInfo, list[ArmData], bool]:
    """The experiment, and per arm its traces and their latest scores (of `names`, or of every name)."""
    with db.read_session() as s:
        found = info(s, find(s, experiment_id))
    data = []
    truncated = False
    for arm in found.arms:
        outcomes, more = score_store.version_traces(
            db, arm.version_id, found.created_at, found.stopped_at, limit=limit, experiment_id=found.id
        )
        truncated |= more
        scored = score_store.latest_scores(db, [o.trace_id for o in outcomes], names)
        data.append(ArmData(arm.version, arm.version_id, arm.share, outcomes, scored))
    return found, data, truncated

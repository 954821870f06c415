"""Experiments: a prompt's traffic split between versions (arms), the evidence for each, and a bandit.

- **Arms** are versions of the experiment's prompt with shares of the traffic summing to 1. The gateway
  assigns requests with `assign.pick` over the arms ordered by version number, sticky by user or session.
  One experiment per prompt runs at a time.
- **Results** come from the traces of each arm (traces having a span with the arm's `prompt_version_id`
  that started while the experiment ran, at most `scores.MAX_VERSION_TRACES` newest per arm) and from the
  scores on those traces (the latest score of each name per trace). Means carry 95% intervals (Student's t;
  Wilson for rates and 0/1 scores) and, for each score, the probability that each arm is best, estimated
  by Monte Carlo from posteriors (Beta(1 + successes, 1 + failures) for 0/1 scores, a normal
  N(mean, sd/√n) otherwise) with a fixed seed, so a page shows the same figures on every load.
- **Auto mode** runs Thompson sampling on the declared score: once every arm has `min_samples` scored
  traces, the target allocation is the fraction of posterior draws in which each arm is best (with a
  `floor` share kept for every arm), and each step moves each share toward it by at most `max_shift`.
  `bandit_loop` steps every running auto experiment once a minute; every change of shares, by hand or by
  the bandit, is logged as an `ExperimentShift` with its reason.

Score direction: the declared score's `direction` (`higher` or `lower` is better) decides which arm is
best; other scores are read as higher-is-better.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podium.auth.service import record_audit
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound, validated
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.periodic import run_every
from podium.prompts.service import LABEL_RE, _find_prompt, check_name, check_owner
from podium.prompts.store import Experiment, ExperimentArm, ExperimentShift, Prompt, PromptLabel, PromptVersion
from podium.tracing.scores import service as score_store

log = logging.getLogger("podium.prompts.experiments.service")

MAX_ARMS = 10
DRAWS = 2_000  # posterior draws per Thompson step and per probability-of-best estimate
RESULTS_SEED = 0
MAX_SCORE_NAMES = 20  # score names shown in results (the declared one first, then by sample count)
MAX_SHIFTS_SHOWN = 500
SHARE_TOLERANCE = 1e-6
MIN_MOVE = 0.01  # a bandit step that would move no share by this much (or by max_shift) is skipped
BANDIT = "bandit"
Z95 = 1.959963984540054
# two-sided 95% quantiles of Student's t for 1-30 degrees of freedom; above 30 a Cornish-Fisher expansion
_T95 = (
    12.706205,
    4.302653,
    3.182446,
    2.776445,
    2.570582,
    2.446912,
    2.364624,
    2.306004,
    2.262157,
    2.228139,
    2.200985,
    2.178813,
    2.160369,
    2.144787,
    2.131450,
    2.119905,
    2.109816,
    2.100922,
    2.093024,
    2.085963,
    2.079614,
    2.073873,
    2.068658,
    2.063899,
    2.059539,
    2.055529,
    2.051831,
    2.048407,
    2.045230,
    2.042272,
)


# --- specs and views ------------------------------------------------------------------------------


class ArmSpec(BaseModel):
    """One arm as created: a version (number, `v3`, label, or `prv_…` id of this prompt) and its share."""

    model_config = ConfigDict(extra="forbid")

    version: int | str
    share: float | None = Field(None, ge=0, le=1)


class ExperimentSpec(BaseModel):
    """Body of `POST /api/prompts/{name}/experiments`. Shares: give one for every arm (summing to 1) or for
    none (equal split). `score` is required in auto mode."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arms: list[ArmSpec] = Field(min_length=2, max_length=MAX_ARMS)
    mode: Literal["fixed", "auto"] = "fixed"
    sticky_by: Literal["user", "session"] = "user"
    score: str | None = Field(None, min_length=1, max_length=120, description="The score the bandit maximises.")
    direction: Literal["higher", "lower"] = Field("higher", description="Whether a higher score is better.")
    min_samples: int = Field(100, ge=1, le=1_000_000, description="Scored traces every arm needs before a shift.")
    max_shift: float = Field(0.1, gt=0, le=1, description="Largest change of any share in one bandit step.")
    floor: float = Field(0.01, ge=0, lt=0.5, description="Smallest share the bandit leaves an arm.")
    label: str | None = Field(
        None,
        description="Only requests for this label are assigned (`latest` is a request without one); others get"
        " their label's version. By default every request that does not pin a version is assigned.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is not None and value != "latest" and not LABEL_RE.match(value):
            raise ValueError("a lowercase word starting with a letter, or `latest`")
        return value


class ArmInfo(BaseModel):
    """An arm: the version and its current share of the traffic."""

    version: int
    version_id: str
    share: float


class ShiftInfo(BaseModel):
    """One change of shares: `before`/`after` map version numbers (as strings) to shares."""

    at: datetime
    actor: str
    reason: str
    before: dict[str, float]
    after: dict[str, float]


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


class ExperimentDetail(ExperimentInfo):
    """An experiment with its log of share changes, newest first (at most 500)."""

    shifts: list[ShiftInfo]


class Estimate(BaseModel):
    """A mean (or a rate) over `n` samples with its 95% interval; `low`/`high` are null below two samples
    (rates: below one), `mean` is null with none."""

    n: int
    mean: float | None
    low: float | None
    high: float | None


class LatencyStats(Estimate):
    """Trace latency in milliseconds: the mean with its interval, and percentiles."""

    p50: float | None
    p95: float | None


class ScoreStats(Estimate):
    """A score of an arm: mean with its interval (Wilson when the score is 0/1 across the experiment), and
    the probability that this arm is the best on it (null when some arm has too few samples: under two for
    a non-0/1 score)."""

    binary: bool
    prob_best: float | None


class ArmResult(BaseModel):
    """What an arm's traces and scores say. Rates and means are per trace; cost is in USD."""

    version: int
    version_id: str
    share: float
    traces: int
    errors: int
    error_rate: Estimate
    latency_ms: LatencyStats
    cost_usd: Estimate
    tokens: Estimate
    scores: dict[str, ScoreStats]


class ExperimentResults(BaseModel):
    """`GET /api/experiments/{id}/results`: each arm with intervals and the probability of being best.

    `start`/`end` bound the traces read (end is null while the experiment runs); `truncated` says an arm
    had more than `limit` traces and only its newest were read; `score_names` lists the scores present,
    the declared one first; `draws` is the Monte Carlo sample size behind `prob_best`."""

    experiment: ExperimentInfo
    start: datetime
    end: datetime | None
    limit: int
    truncated: bool
    score_names: list[str]
    draws: int
    arms: list[ArmResult]


class RebalanceResult(BaseModel):
    """One bandit step: whether shares moved, why (or why not), the Thompson allocation it aimed at and
    the scored traces per arm (all keyed by version number)."""

    shifted: bool
    reason: str
    samples: dict[str, int]
    allocation: dict[str, float] | None = None
    before: dict[str, float]
    after: dict[str, float]


# --- statistics -----------------------------------------------------------------------------------


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if df <= len(_T95):
        return _T95[df - 1]
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval(values: Sequence[float]) -> Estimate:
    """The mean with a 95% Student's t interval."""
    n = len(values)
    if n == 0:
        return Estimate(n=0, mean=None, low=None, high=None)
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if n < 2:
        return Estimate(n=n, mean=mean, low=None, high=None)
    half = t95(n - 1) * float(arr.std(ddof=1)) / math.sqrt(n)
    return Estimate(n=n, mean=mean, low=mean - half, high=mean + half)


def wilson(successes: float, n: int) -> Estimate:
    """A proportion with its 95% Wilson score interval."""
    if n == 0:
        return Estimate(n=0, mean=None, low=None, high=None)
    p = successes / n
    z2 = Z95 * Z95
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # rounded: at p = 0 or 1 the bound is exactly 0 or 1 but floating point leaves 1e-17
    return Estimate(n=n, mean=p, low=round(max(0.0, center - half), 12), high=round(min(1.0, center + half), 12))


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0-100) of sorted values, interpolating linearly between ranks."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def is_binary(samples: Sequence[Sequence[float]]) -> bool:
    """Whether every value of every arm is 0 or 1 (and there is at least one)."""
    seen = False
    for values in samples:
        for v in values:
            if v not in (0.0, 1.0):
                return False
            seen = True
    return seen


def posterior_draws(
    samples: Sequence[Sequence[float]], binary: bool, draws: int, rng: np.random.Generator
) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """Draws of each arm's mean from its posterior, shape (arms, draws); None when some arm of a non-0/1
    score has under two samples (no spread to draw from)."""
    rows = []
    for values in samples:
        n = len(values)
        if binary:
            hits = float(sum(values))
            rows.append(rng.beta(1 + hits, 1 + n - hits, draws))
            continue
        if n < 2:
            return None
        arr = np.asarray(values, dtype=float)
        se = max(float(arr.std(ddof=1)) / math.sqrt(n), 1e-12)
        rows.append(rng.normal(float(arr.mean()), se, draws))
    return np.vstack(rows)


def prob_best(draws: np.ndarray[Any, np.dtype[np.float64]], higher_is_better: bool = True) -> list[float]:
    """For each arm (row), the fraction of draws (columns) in which it is the best."""
    winners = draws.argmax(axis=0) if higher_is_better else draws.argmin(axis=0)
    counts = np.bincount(winners, minlength=draws.shape[0])
    return [float(c) / draws.shape[1] for c in counts]


def step_shares(current: Sequence[float], target: Sequence[float], max_shift: float) -> list[float]:
    """Move `current` toward `target` (both summing to 1) with no share changing by more than `max_shift`:
    each change is clipped, then the side (gains or losses) with more mass is scaled down to match the
    other, so the shares still sum to 1 and every share ends between where it was and its target."""
    deltas = [min(max(t - c, -max_shift), max_shift) for c, t in zip(current, target, strict=True)]
    gains = sum(d for d in deltas if d > 0)
    losses = -sum(d for d in deltas if d < 0)
    if gains <= 0 or losses <= 0:
        return list(current)
    if gains > losses:
        deltas = [d * losses / gains if d > 0 else d for d in deltas]
    else:
        deltas = [d * gains / losses if d < 0 else d for d in deltas]
    after = [max(c + d, 0.0) for c, d in zip(current, deltas, strict=True)]
    total = sum(after)
    return [a / total for a in after]


def with_floor(allocation: Sequence[float], floor: float) -> list[float]:
    """An allocation squeezed so every arm keeps at least `floor` (floor * arms must stay under 1)."""
    k = len(allocation)
    return [floor + (1 - k * floor) * a for a in allocation]


# --- lookups --------------------------------------------------------------------------------------


def _arms(s: Session, experiment_id: str) -> list[tuple[ExperimentArm, int]]:
    """The arms with their version numbers, ordered by version (the order assignment uses)."""
    q = (
        select(ExperimentArm, PromptVersion.version)
        .join(PromptVersion, PromptVersion.id == ExperimentArm.version_id)
        .where(ExperimentArm.experiment_id == experiment_id)
        .order_by(PromptVersion.version)
    )
    return [(arm, number) for arm, number in s.execute(q)]


def _info(s: Session, e: Experiment, prompt_name: str | None = None) -> ExperimentInfo:
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
        arms=[ArmInfo(version=n, version_id=a.version_id, share=a.share) for a, n in _arms(s, e.id)],
    )


def _find(s: Session, experiment_id: str, *, lock: bool = False) -> Experiment:
    q = select(Experiment).where(Experiment.id == experiment_id)
    e = s.scalar(q.with_for_update() if lock else q)
    if e is None:
        raise NotFound(f"experiment {experiment_id!r} not found", details={"experiment": experiment_id})
    return e


def _running(s: Session, prompt_id: str) -> Experiment | None:
    q = select(Experiment).where(Experiment.prompt_id == prompt_id, Experiment.status == "running")
    return s.scalar(q.limit(1))


def _shares(arms: list[tuple[ExperimentArm, int]]) -> dict[str, float]:
    return {str(n): a.share for a, n in arms}


def _fmt_shares(shares: dict[str, float]) -> str:
    return ", ".join(f"v{k} {v:.3f}" for k, v in shares.items())


# --- create, list, stop, set shares ---------------------------------------------------------------


def parse_spec(data: Any) -> ExperimentSpec:
    """Validate an experiment body; errors name the field (`arms[1].share`, `score`)."""
    if not isinstance(data, dict):
        raise InvalidInput("an experiment must be a JSON object with `name` and `arms`", details={"field": "body"})
    spec = validated(ExperimentSpec, data, "experiment")
    if spec.mode == "auto" and not spec.score:
        raise InvalidInput(
            "auto mode needs `score`: the name of the score the bandit maximises", details={"field": "score"}
        )
    if spec.floor * len(spec.arms) >= 1:
        raise InvalidInput(
            f"floor {spec.floor} for {len(spec.arms)} arms leaves nothing to share;"
            f" use a floor under {1 / len(spec.arms):.3f}",
            details={"field": "floor"},
        )
    return spec


def _initial_shares(spec: ExperimentSpec) -> list[float]:
    given = [a.share for a in spec.arms]
    if all(g is None for g in given):
        return [1 / len(given)] * len(given)
    if any(g is None for g in given):
        i = given.index(None)
        raise InvalidInput(
            f"arms[{i}] has no share: give a share for every arm, or for none (an equal split)",
            details={"field": f"arms[{i}].share"},
        )
    shares = [float(g) for g in given if g is not None]
    total = sum(shares)
    if abs(total - 1) > SHARE_TOLERANCE:
        raise InvalidInput(f"arm shares sum to {total:g}, not 1", details={"field": "arms", "sum": total})
    return [x / total for x in shares]


def _resolve_version(s: Session, p: Prompt, ref: int | str, field: str) -> PromptVersion:
    tag = str(ref).strip()
    v: PromptVersion | None
    if tag.startswith("prv_"):
        v = s.get(PromptVersion, tag)
        if v is not None and v.prompt_id != p.id:
            owner = s.get(Prompt, v.prompt_id)
            raise InvalidInput(
                f"{field}: version {tag} belongs to prompt {owner.name if owner else '?'!r}, not {p.name!r};"
                " an experiment's arms are versions of its own prompt",
                details={"field": field},
            )
    elif tag.isdigit() or (tag.startswith("v") and tag[1:].isdigit()):
        number = int(tag.removeprefix("v"))
        v = s.scalar(select(PromptVersion).where(PromptVersion.prompt_id == p.id, PromptVersion.version == number))
    elif tag == "latest":
        v = s.scalar(
            select(PromptVersion).where(PromptVersion.prompt_id == p.id).order_by(PromptVersion.version.desc()).limit(1)
        )
    else:
        label = s.get(PromptLabel, (p.id, tag))
        v = s.get(PromptVersion, label.version_id) if label is not None else None
    if v is None:
        raise InvalidInput(f"{field}: prompt {p.name!r} has no version {tag!r}", details={"field": field})
    return v


def create_experiment(db: Database, actor: Actor, prompt: str, data: Any) -> ExperimentDetail:
    """Start an experiment on a prompt; 409 if another one is running on it or the name is taken."""
    actor.require("member", "start prompt experiments")
    spec = parse_spec(data)
    shares = _initial_shares(spec)
    try:
        with db.session() as s:
            p = _find_prompt(s, prompt)
            check_owner(s, actor, p.id)
            s.scalar(select(Prompt).where(Prompt.id == p.id).with_for_update())  # serialises starts per prompt
            versions = [_resolve_version(s, p, a.version, f"arms[{i}].version") for i, a in enumerate(spec.arms)]
            seen: dict[str, int] = {}
            for i, v in enumerate(versions):
                if v.id in seen:
                    raise InvalidInput(
                        f"arms[{i}] and arms[{seen[v.id]}] are both version {v.version};"
                        " each arm is a different version",
                        details={"field": f"arms[{i}].version"},
                    )
                seen[v.id] = i
            running = _running(s, p.id)
            if running is not None:
                raise Conflict(
                    f"prompt {p.name!r} already runs experiment {running.name!r} ({running.id}); stop it first",
                    details={"experiment": running.id, "name": running.name},
                )
            if s.scalar(select(Experiment.id).where(Experiment.prompt_id == p.id, Experiment.name == spec.name)):
                raise Conflict(
                    f"prompt {p.name!r} already has an experiment named {spec.name!r}", details={"field": "name"}
                )
            now = utcnow()
            e = Experiment(
                id=new_id("exp"),
                prompt_id=p.id,
                name=spec.name,
                status="running",
                mode=spec.mode,
                sticky_by=spec.sticky_by,
                score_name=spec.score,
                min_samples=spec.min_samples,
                max_shift=spec.max_shift,
                config={"direction": spec.direction, "floor": spec.floor, "label": spec.label},
                created_by=actor.label,
                created_at=now,
            )
            s.add(e)
            s.flush()
            s.add_all(
                ExperimentArm(experiment_id=e.id, version_id=v.id, share=share)
                for v, share in zip(versions, shares, strict=True)
            )
            after = {str(v.version): share for v, share in sorted(zip(versions, shares, strict=True), key=_by_version)}
            s.add(
                ExperimentShift(
                    id=new_id("exs"),
                    experiment_id=e.id,
                    before={},
                    after=after,
                    reason="start",
                    actor=actor.label,
                    at=now,
                )
            )
            s.flush()
            record_audit(
                s,
                actor,
                "prompt.experiment.create",
                "prompt_experiment",
                e.id,
                details={"prompt": p.name, "name": e.name, "mode": e.mode, "shares": after},
            )
            return _detail(s, e, p.name)
    except IntegrityError:  # the same name created concurrently
        raise Conflict(f"prompt {prompt!r} already has an experiment named {spec.name!r}") from None


def _by_version(pair: tuple[PromptVersion, float]) -> int:
    return pair[0].version


def _detail(s: Session, e: Experiment, prompt_name: str | None = None) -> ExperimentDetail:
    rows = s.scalars(
        select(ExperimentShift)
        .where(ExperimentShift.experiment_id == e.id)
        .order_by(ExperimentShift.at.desc(), ExperimentShift.id.desc())
        .limit(MAX_SHIFTS_SHOWN)
    ).all()
    shifts = [ShiftInfo(at=r.at, actor=r.actor, reason=r.reason, before=r.before, after=r.after) for r in rows]
    return ExperimentDetail(**_info(s, e, prompt_name).model_dump(), shifts=shifts)


def list_experiments(db: Database, prompt: str) -> list[ExperimentInfo]:
    """A prompt's experiments, newest first."""
    with db.read_session() as s:
        p = _find_prompt(s, prompt)
        rows = s.scalars(
            select(Experiment).where(Experiment.prompt_id == p.id).order_by(Experiment.created_at.desc())
        ).all()
        return [_info(s, e, p.name) for e in rows]


def get_experiment(db: Database, experiment_id: str) -> ExperimentDetail:
    """An experiment with its arms and its log of share changes."""
    with db.read_session() as s:
        return _detail(s, _find(s, experiment_id))


def stop_experiment(db: Database, actor: Actor, experiment_id: str) -> ExperimentDetail:
    """Stop an experiment: its traffic goes back to the prompt's label, its results stay readable."""
    actor.require("member", "stop prompt experiments")
    with db.session() as s:
        e = _find(s, experiment_id, lock=True)
        check_owner(s, actor, e.prompt_id)
        if e.status != "running":
            raise Conflict(f"experiment {e.name!r} ({e.id}) is already stopped", details={"experiment": e.id})
        e.status = "stopped"
        e.stopped_at = utcnow()
        record_audit(s, actor, "prompt.experiment.stop", "prompt_experiment", e.id, details={"name": e.name})
        s.flush()
        return _detail(s, e)


def set_shares(db: Database, actor: Actor, experiment_id: str, data: Any) -> ExperimentDetail:
    """Set the shares by hand: `{"shares": {"1": 0.3, "2": 0.7}, "reason": "…"}` (version number → share,
    every arm, summing to 1); logged as a shift by the actor."""
    actor.require("member", "change experiment shares")
    if not isinstance(data, dict) or not isinstance(data.get("shares"), dict):
        raise InvalidInput('the body must be {"shares": {"<version>": share, ...}}', details={"field": "shares"})
    unknown = set(data) - {"shares", "reason"}
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}", details={"field": sorted(unknown)[0]})
    reason = data.get("reason") or "set by hand"
    if not isinstance(reason, str) or len(reason) > 1000:
        raise InvalidInput("reason must be text of at most 1000 characters", details={"field": "reason"})
    wanted: dict[str, float] = {}
    for key, value in data["shares"].items():
        field = f"shares.{key}"
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InvalidInput(f"{field} must be a number between 0 and 1", details={"field": field})
        wanted[str(key).removeprefix("v")] = float(value)
    with db.session() as s:
        e = _find(s, experiment_id, lock=True)
        check_owner(s, actor, e.prompt_id)
        if e.status != "running":
            raise Conflict(
                f"experiment {e.name!r} is stopped; its shares no longer change", details={"experiment": e.id}
            )
        arms = _arms(s, e.id)
        numbers = {str(n) for _, n in arms}
        extra = sorted(set(wanted) - numbers)
        if extra:
            raise InvalidInput(
                f"version {extra[0]} is not an arm of this experiment (arms: {', '.join(sorted(numbers, key=int))})",
                details={"field": f"shares.{extra[0]}"},
            )
        missing = sorted(numbers - set(wanted), key=int)
        if missing:
            raise InvalidInput(
                f"no share for version {missing[0]}: give every arm's share", details={"field": "shares"}
            )
        total = sum(wanted.values())
        if abs(total - 1) > SHARE_TOLERANCE:
            raise InvalidInput(f"shares sum to {total:g}, not 1", details={"field": "shares", "sum": total})
        before = _shares(arms)
        for arm, n in arms:
            arm.share = wanted[str(n)] / total
        after = _shares(arms)
        s.add(
            ExperimentShift(
                id=new_id("exs"),
                experiment_id=e.id,
                before=before,
                after=after,
                reason=reason,
                actor=actor.label,
                at=utcnow(),
            )
        )
        record_audit(
            s, actor, "prompt.experiment.shares", "prompt_experiment", e.id, details={"before": before, "after": after}
        )
        s.flush()
        return _detail(s, e)


# --- results --------------------------------------------------------------------------------------


@dataclass
class _ArmData:
    version: int
    version_id: str
    share: float
    outcomes: list[score_store.TraceOutcome]
    scores: dict[str, dict[str, float]]  # name -> trace id -> latest value


def _load(
    db: Database, experiment_id: str, limit: int, names: Sequence[str] | None = None
) -> tuple[ExperimentInfo, list[_ArmData], bool]:
    """The experiment, and per arm its traces and their latest scores (of `names`, or of every name)."""
    with db.read_session() as s:
        e = _find(s, experiment_id)
        info = _info(s, e)
    arms = []
    truncated = False
    for arm in info.arms:
        outcomes, more = score_store.version_traces(
            db, arm.version_id, info.created_at, info.stopped_at, limit=limit, experiment_id=info.id
        )
        truncated |= more
        scored = score_store.latest_scores(db, [o.trace_id for o in outcomes], names)
        arms.append(_ArmData(arm.version, arm.version_id, arm.share, outcomes, scored))
    return info, arms, truncated


def results(
    db: Database,
    experiment_id: str,
    *,
    seed: int = RESULTS_SEED,
    draws: int = DRAWS,
    limit: int = score_store.MAX_VERSION_TRACES,
) -> ExperimentResults:
    """Each arm's traces and scores summarised with 95% intervals and the probability of being best."""
    info, arms, truncated = _load(db, experiment_id, limit)
    counts: dict[str, int] = {}
    for a in arms:
        for name, by_trace in a.scores.items():
            counts[name] = counts.get(name, 0) + len(by_trace)
    names = sorted(counts, key=lambda n: (n != info.score, -counts[n], n))[:MAX_SCORE_NAMES]
    if info.score and info.score not in names:
        names.insert(0, info.score)
    per_score: dict[str, tuple[bool, list[float] | None]] = {}
    rng = np.random.default_rng(seed)
    for name in names:
        samples = [list(a.scores.get(name, {}).values()) for a in arms]
        binary = is_binary(samples)
        drawn = posterior_draws(samples, binary, draws, rng)
        higher = not (name == info.score and info.direction == "lower")
        per_score[name] = (binary, prob_best(drawn, higher) if drawn is not None else None)
    out = []
    for i, a in enumerate(arms):
        latencies = sorted(o.latency_ms for o in a.outcomes if o.latency_ms is not None)
        lat = mean_interval(latencies)
        errors = sum(1 for o in a.outcomes if o.error)
        score_stats: dict[str, ScoreStats] = {}
        for name in names:
            values = list(a.scores.get(name, {}).values())
            binary, best = per_score[name]
            est = wilson(sum(values), len(values)) if binary else mean_interval(values)
            score_stats[name] = ScoreStats(**est.model_dump(), binary=binary, prob_best=best[i] if best else None)
        out.append(
            ArmResult(
                version=a.version,
                version_id=a.version_id,
                share=a.share,
                traces=len(a.outcomes),
                errors=errors,
                error_rate=wilson(errors, len(a.outcomes)),
                latency_ms=LatencyStats(
                    **lat.model_dump(), p50=percentile(latencies, 50), p95=percentile(latencies, 95)
                ),
                cost_usd=mean_interval([o.cost_micros / 1_000_000 for o in a.outcomes]),
                tokens=mean_interval([float(o.tokens) for o in a.outcomes]),
                scores=score_stats,
            )
        )
    return ExperimentResults(
        experiment=info,
        start=info.created_at,
        end=info.stopped_at,
        limit=limit,
        truncated=truncated,
        score_names=names,
        draws=draws,
        arms=out,
    )


# --- the bandit -----------------------------------------------------------------------------------


def rebalance(
    db: Database,
    experiment_id: str,
    *,
    rng: np.random.Generator | None = None,
    now: datetime | None = None,
    min_interval: float = 0.0,
    draws: int = DRAWS,
    actor: Actor | None = None,
) -> RebalanceResult:
    """One Thompson-sampling step of an auto experiment: once every arm has `min_samples` traces scored on
    the declared score, move each share toward the fraction of posterior draws in which its arm is best (kept
    above the floor) by at most `max_shift`, and log the shift. `min_interval` (seconds) skips the step when
    the bandit moved the shares more recently, so several server processes running the loop step once.
    An `actor` (a person asking for a step now) needs the member role and is named in the reason."""
    if actor is not None:
        actor.require("member", "rebalance experiments")
    rng = rng if rng is not None else np.random.default_rng()
    now = now or utcnow()
    with db.read_session() as s:
        found = _find(s, experiment_id)
        score_name = found.score_name
        if actor is not None:
            check_owner(s, actor, found.prompt_id)
    info, arms, _ = _load(db, experiment_id, score_store.MAX_VERSION_TRACES, [score_name or ""])
    if info.status != "running":
        raise Conflict(f"experiment {info.name!r} is stopped", details={"experiment": info.id})
    if info.mode != "auto" or not info.score:
        raise InvalidInput(
            f"experiment {info.name!r} has fixed shares; only auto experiments are rebalanced",
            details={"field": "mode"},
        )
    score = info.score
    current = {str(a.version): a.share for a in arms}
    samples = [list(a.scores.get(score, {}).values()) for a in arms]
    counts = {str(a.version): len(v) for a, v in zip(arms, samples, strict=True)}

    def unchanged(reason: str, allocation: dict[str, float] | None = None) -> RebalanceResult:
        return RebalanceResult(
            shifted=False, reason=reason, samples=counts, allocation=allocation, before=current, after=current
        )

    short = [(a.version, n) for a, n in zip(arms, (len(v) for v in samples), strict=True) if n < info.min_samples]
    if short:
        listed = ", ".join(f"v{v} has {n}" for v, n in short)
        return unchanged(f"waiting for {info.min_samples} traces scored on {score!r} per arm: {listed}")
    binary = is_binary(samples)
    drawn = posterior_draws(samples, binary, draws, rng)
    assert drawn is not None  # min_samples >= 1 and every arm has that many; a non-0/1 score needs two
    allocation = prob_best(drawn, info.direction != "lower")
    by_version = {str(a.version): p for a, p in zip(arms, allocation, strict=True)}
    target = with_floor(allocation, info.floor)
    means = ", ".join(f"v{a.version} {float(np.mean(v)):.4g} (n={len(v)})" for a, v in zip(arms, samples, strict=True))
    with db.session() as s:
        e = _find(s, experiment_id, lock=True)
        if e.status != "running":
            raise Conflict(f"experiment {e.name!r} is stopped", details={"experiment": e.id})
        if min_interval > 0:
            last = s.scalar(
                select(ExperimentShift.at)
                .where(ExperimentShift.experiment_id == e.id, ExperimentShift.actor == BANDIT)
                .order_by(ExperimentShift.at.desc())
                .limit(1)
            )
            if last is not None and now - last < timedelta(seconds=min_interval):
                return unchanged(f"the bandit moved the shares at {last.isoformat()}, under {min_interval:g}s ago")
        rows = _arms(s, e.id)
        before = _shares(rows)
        new = step_shares([a.share for a, _ in rows], target, e.max_shift)
        if max(abs(x - a.share) for x, (a, _) in zip(new, rows, strict=True)) < min(MIN_MOVE, e.max_shift) - 1e-12:
            return unchanged(f"shares are at the Thompson allocation ({_fmt_shares(by_version)})", by_version)
        for arm, share in zip((a for a, _ in rows), new, strict=True):
            arm.share = share
        after = _shares(rows)
        reason = (
            f"Thompson sampling on {score!r} ({'Beta' if binary else 'normal'} posteriors, {draws} draws):"
            f" P(best) {_fmt_shares(by_version)}; means {means}; target with floor {info.floor:g}:"
            f" {_fmt_shares({k: t for k, t in zip(by_version, target, strict=True)})};"
            f" each share moved at most {e.max_shift:g}"
        )
        if actor is not None:
            reason += f"; run by {actor.label}"
        s.add(
            ExperimentShift(
                id=new_id("exs"), experiment_id=e.id, before=before, after=after, reason=reason, actor=BANDIT, at=now
            )
        )
    return RebalanceResult(
        shifted=True, reason=reason, samples=counts, allocation=by_version, before=before, after=after
    )


def rebalance_all(
    db: Database, *, min_interval: float = 0.0, now: datetime | None = None
) -> dict[str, RebalanceResult]:
    """One bandit step for every running auto experiment; a failing one is logged and the others go on."""
    with db.read_session() as s:
        ids = s.scalars(select(Experiment.id).where(Experiment.status == "running", Experiment.mode == "auto")).all()
    done: dict[str, RebalanceResult] = {}
    for experiment_id in ids:
        try:
            done[experiment_id] = rebalance(db, experiment_id, min_interval=min_interval, now=now)
        except (Conflict, NotFound):
            continue  # stopped or deleted meanwhile
        except Exception:
            log.exception("bandit step of experiment %s failed", experiment_id)
            continue
        if done[experiment_id].shifted:
            log.info("experiment %s: %s", experiment_id, done[experiment_id].reason)
    return done


async def bandit_loop(db: Database, every: float = 60.0) -> None:
    """Step every running auto experiment every `every` seconds (a server task, one per process; a step
    sooner than 0.9 intervals after the last one is skipped, so N processes still step about once an interval)."""
    await run_every(every, partial(rebalance_all, db, min_interval=every * 0.9), "bandit rebalance failed")

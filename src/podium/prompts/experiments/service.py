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

This module is the experiments' interface (specs, create, stop, shares, results). The statistics live in
`stats`, the bandit in `bandit`, the views and lookups both share in `reads`; their public names are
re-exported here (`import x as x`), so pages, routes, the domain and tests import this one module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from podium.auth.service import record_audit
from podium.core import names
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound, validated
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.prompts.experiments import reads
from podium.prompts.experiments.bandit import BANDIT as BANDIT
from podium.prompts.experiments.bandit import MIN_MOVE as MIN_MOVE
from podium.prompts.experiments.bandit import RebalanceResult as RebalanceResult
from podium.prompts.experiments.bandit import bandit_loop as bandit_loop
from podium.prompts.experiments.bandit import rebalance as rebalance
from podium.prompts.experiments.bandit import rebalance_all as rebalance_all
from podium.prompts.experiments.bandit import step_shares as step_shares
from podium.prompts.experiments.bandit import with_floor as with_floor
from podium.prompts.experiments.reads import ArmInfo as ArmInfo
from podium.prompts.experiments.reads import ExperimentInfo as ExperimentInfo
from podium.prompts.experiments.stats import DRAWS as DRAWS
from podium.prompts.experiments.stats import Z95 as Z95
from podium.prompts.experiments.stats import Estimate as Estimate
from podium.prompts.experiments.stats import is_binary as is_binary
from podium.prompts.experiments.stats import mean_interval as mean_interval
from podium.prompts.experiments.stats import percentiles as percentiles
from podium.prompts.experiments.stats import posterior_draws as posterior_draws
from podium.prompts.experiments.stats import prob_best as prob_best
from podium.prompts.experiments.stats import t95 as t95
from podium.prompts.experiments.stats import wilson as wilson
from podium.prompts.service import check_owner
from podium.prompts.store import PROMPTS, Experiment, ExperimentArm, ExperimentShift, Prompt, PromptVersion
from podium.tracing.scores import service as score_store

MAX_ARMS = 10
RESULTS_SEED = 0
MAX_SCORE_NAMES = 20  # score names shown in results (the declared one first, then by sample count)
MAX_SHIFTS_SHOWN = 500
SHARE_TOLERANCE = 1e-6


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


class ShiftInfo(BaseModel):
    """One change of shares: `before`/`after` map version numbers (as strings) to shares."""

    at: datetime
    actor: str
    reason: str
    before: dict[str, float]
    after: dict[str, float]


class ExperimentDetail(ExperimentInfo):
    """An experiment with its log of share changes, newest first (at most 500)."""

    shifts: list[ShiftInfo]


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


# --- create, list, stop, set shares ---------------------------------------------------------------


def parse_spec(data: Any) -> ExperimentSpec:
    """Validate an experiment body; errors name the field (`arms[1].share`, `score`)."""
    if not isinstance(data, dict):
        raise InvalidInput("an experiment must be a JSON object with `name` and `arms`", details={"field": "body"})
    spec = validated(ExperimentSpec, data, "experiment")
    spec.name = names.check_name(spec.name, "experiment")
    if spec.label is not None and spec.label != "latest":
        PROMPTS.check_label(spec.label)
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
    """An arm's version (a number, `v3`, `latest`, a label or a version id of this prompt); a 400 naming the
    arm's field otherwise."""
    try:
        return PROMPTS.resolve(s, p, ref, foreign="an experiment's arms are versions of its own prompt")
    except (NotFound, InvalidInput) as exc:
        raise InvalidInput(f"{field}: {exc.message}", details={"field": field}) from None


def create_experiment(db: Database, actor: Actor, prompt: str, data: Any) -> ExperimentDetail:
    """Start an experiment on a prompt; 409 if another one is running on it or the name is taken."""
    actor.require("member", "start prompt experiments")
    spec = parse_spec(data)
    shares = _initial_shares(spec)
    try:
        with db.session() as s:
            p = PROMPTS.find(s, prompt, lock=True)  # the prompt's row lock serialises starts per prompt
            check_owner(s, actor, p.id)
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
            running = reads.running(s, p.id)
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
    return ExperimentDetail(**reads.info(s, e, prompt_name).model_dump(), shifts=shifts)


def list_experiments(db: Database, actor: Actor, prompt: str) -> list[ExperimentInfo]:
    """A prompt's experiments, newest first (of a prompt the actor sees)."""
    actor.require("viewer", "read experiments")
    with db.read_session() as s:
        p = PROMPTS.find(s, prompt, projects=actor.scope())
        rows = s.scalars(
            select(Experiment).where(Experiment.prompt_id == p.id).order_by(Experiment.created_at.desc())
        ).all()
        return [reads.info(s, e, p.name) for e in rows]


def get_experiment(db: Database, actor: Actor, experiment_id: str) -> ExperimentDetail:
    """An experiment with its arms and its log of share changes (of a prompt the actor sees)."""
    with db.read_session() as s:
        return _detail(s, _visible(s, actor, experiment_id))


def _visible(s: Session, actor: Actor, experiment_id: str) -> Experiment:
    """The experiment, if the actor sees its prompt; else `NotFound`, as if it did not exist."""
    actor.require("viewer", "read experiments")
    e = reads.find(s, experiment_id)
    p = s.get(Prompt, e.prompt_id)
    if p is None or not actor.sees(p.project_id):
        raise NotFound(f"experiment {experiment_id!r} not found", details={"experiment": experiment_id})
    return e


def stop_experiment(db: Database, actor: Actor, experiment_id: str) -> ExperimentDetail:
    """Stop an experiment: its traffic goes back to the prompt's label, its results stay readable."""
    actor.require("member", "stop prompt experiments")
    with db.session() as s:
        e = reads.find(s, experiment_id, lock=True)
        check_owner(s, actor, e.prompt_id, f"experiment {experiment_id!r} not found")
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
        e = reads.find(s, experiment_id, lock=True)
        check_owner(s, actor, e.prompt_id, f"experiment {experiment_id!r} not found")
        if e.status != "running":
            raise Conflict(
                f"experiment {e.name!r} is stopped; its shares no longer change", details={"experiment": e.id}
            )
        arms = reads.arms(s, e.id)
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
        before = reads.shares(arms)
        for arm, n in arms:
            arm.share = wanted[str(n)] / total
        after = reads.shares(arms)
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


def results(
    db: Database,
    actor: Actor,
    experiment_id: str,
    *,
    seed: int = RESULTS_SEED,
    draws: int = DRAWS,
    limit: int = score_store.MAX_VERSION_TRACES,
) -> ExperimentResults:
    """Each arm's traces and scores summarised with 95% intervals and the probability of being best."""
    with db.read_session() as s:
        _visible(s, actor, experiment_id)
    info, arms, truncated = reads.load(db, experiment_id, limit)
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
        latencies = [o.latency_ms for o in a.outcomes if o.latency_ms is not None]
        lat = mean_interval(latencies)
        p50, p95 = percentiles(latencies, 50, 95)
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
                latency_ms=LatencyStats(**lat.model_dump(), p50=p50, p95=p95),
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

"""The bandit: Thompson sampling that moves an auto experiment's traffic toward its best arm.

Once every arm has `min_samples` traces scored on the declared score, the target allocation is the fraction
of posterior draws (`stats.posterior_draws`) in which each arm is best, squeezed so every arm keeps a `floor`
share; each step moves each share toward it by at most `max_shift`. `bandit_loop` steps every running auto
experiment once an interval (a server task in each process; a step sooner than 0.9 intervals after the last
one is skipped, so N processes still step about once an interval). Every shift is logged as an
`ExperimentShift` by the actor `bandit`, with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

import numpy as np
from pydantic import BaseModel
from sqlalchemy import select

from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, InvalidInput, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.periodic import run_every
from podium.prompts.experiments import reads
from podium.prompts.experiments.stats import DRAWS, is_binary, posterior_draws, prob_best
from podium.prompts.service import check_owner
from podium.prompts.store import Experiment, ExperimentShift
from podium.tracing.scores import service as score_store

log = logging.getLogger("podium.prompts.experiments.bandit")

MIN_MOVE = 0.01  # a bandit step that would move no share by this much (or by max_shift) is skipped
BANDIT = "bandit"


class RebalanceResult(BaseModel):
    """One bandit step: whether shares moved, why (or why not), the Thompson allocation it aimed at and
    the scored traces per arm (all keyed by version number)."""

    shifted: bool
    reason: str
    samples: dict[str, int]
    allocation: dict[str, float] | None = None
    before: dict[str, float]
    after: dict[str, float]


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
        found = reads.find(s, experiment_id)
        score_name = found.score_name
        if actor is not None:
            check_owner(s, actor, found.prompt_id, f"experiment {experiment_id!r} not found")
    info, arms, _ = reads.load(db, experiment_id, score_store.MAX_VERSION_TRACES, [score_name or ""])
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
        e = reads.find(s, experiment_id, lock=True)
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
        rows = reads.arms(s, e.id)
        before = reads.shares(rows)
        new = step_shares([a.share for a, _ in rows], target, e.max_shift)
        if max(abs(x - a.share) for x, (a, _) in zip(new, rows, strict=True)) < min(MIN_MOVE, e.max_shift) - 1e-12:
            return unchanged(f"shares are at the Thompson allocation ({reads.fmt_shares(by_version)})", by_version)
        for arm, share in zip((a for a, _ in rows), new, strict=True):
            arm.share = share
        after = reads.shares(rows)
        reason = (
            f"Thompson sampling on {score!r} ({'Beta' if binary else 'normal'} posteriors, {draws} draws):"
            f" P(best) {reads.fmt_shares(by_version)}; means {means}; target with floor {info.floor:g}:"
            f" {reads.fmt_shares({k: t for k, t in zip(by_version, target, strict=True)})};"
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

"""`/api/prompts/{name}/experiments` and `/api/experiments/{id}`: experiments over HTTP; the logic is in
`experiments`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, status

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.prompts.experiments import service as experiments
from podium.prompts.experiments.service import ExperimentDetail, ExperimentInfo, ExperimentResults, RebalanceResult

router = APIRouter(tags=["experiments"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]

_CREATE_EXAMPLE = {
    "name": "shorter-replies",
    "arms": [{"version": 3, "share": 0.5}, {"version": 4, "share": 0.5}],
    "mode": "auto",
    "sticky_by": "user",
    "score": "thumbs",
    "min_samples": 100,
    "max_shift": 0.1,
}


@router.post("/api/prompts/{name}/experiments", status_code=status.HTTP_201_CREATED)
def create_experiment(
    name: str, actor: ActorDep, platform: PlatformDep, body: Annotated[Any, Body(examples=[_CREATE_EXAMPLE])] = None
) -> ExperimentDetail:
    """Start an experiment splitting this prompt's traffic between versions (see `ExperimentSpec`); 409 if
    one is already running on the prompt."""
    return experiments.create_experiment(platform.db, actor, name, body)


@router.get("/api/prompts/{name}/experiments")
def list_experiments(name: str, actor: ActorDep, platform: PlatformDep) -> list[ExperimentInfo]:
    """A prompt's experiments, newest first."""
    return experiments.list_experiments(platform.db, actor, name)


@router.get("/api/experiments/{experiment_id}")
def get_experiment(experiment_id: str, actor: ActorDep, platform: PlatformDep) -> ExperimentDetail:
    """An experiment with its arms, shares and log of share changes."""
    return experiments.get_experiment(platform.db, actor, experiment_id)


@router.get("/api/experiments/{experiment_id}/results")
def get_results(experiment_id: str, actor: ActorDep, platform: PlatformDep) -> ExperimentResults:
    """Each arm's traces and scores with 95% intervals and the probability that it is best."""
    return experiments.results(platform.db, actor, experiment_id)


@router.post("/api/experiments/{experiment_id}/stop")
def stop_experiment(experiment_id: str, actor: ActorDep, platform: PlatformDep) -> ExperimentDetail:
    """Stop a running experiment."""
    return experiments.stop_experiment(platform.db, actor, experiment_id)


@router.put("/api/experiments/{experiment_id}/shares")
def set_shares(
    experiment_id: str,
    actor: ActorDep,
    platform: PlatformDep,
    body: Annotated[Any, Body(examples=[{"shares": {"3": 0.2, "4": 0.8}, "reason": "v4 looks better"}])] = None,
) -> ExperimentDetail:
    """Set the shares by hand (version number → share, every arm, summing to 1); logged as a shift."""
    return experiments.set_shares(platform.db, actor, experiment_id, body)


@router.post("/api/experiments/{experiment_id}/rebalance")
def rebalance(experiment_id: str, actor: ActorDep, platform: PlatformDep) -> RebalanceResult:
    """Run one bandit step of an auto experiment now."""
    return experiments.rebalance(platform.db, experiment_id, actor=actor)

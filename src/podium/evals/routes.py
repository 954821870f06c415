"""`/api/evals`: eval runs, their rows, comparisons, suites, evaluator types and online evaluation rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.evals import online, service
from podium.evals.compare import Comparison
from podium.evals.evaluators.base import kinds
from podium.evals.online import RuleIn, RuleInfo, Sweep
from podium.evals.service import RowsPage, RunInfo
from podium.evals.spec import RunSpec, Suite

router = APIRouter(prefix="/api/evals", tags=["evals"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


@router.get("/evaluators")
def evaluator_types(actor: ActorDep) -> dict[str, str]:
    """Every evaluator type (built-in and registered plugins) with its description."""
    actor.require("viewer", "read evaluator types")
    return kinds()


@router.post("/runs", status_code=status.HTTP_202_ACCEPTED)
def start_run(spec: RunSpec, actor: ActorDep, platform: PlatformDep) -> RunInfo:
    """Check a run whole (dataset fields, evaluators, target) and queue it as a job; poll the run or its job."""
    return service.start(platform, actor, [spec])[0]


@router.post("/suites", status_code=status.HTTP_202_ACCEPTED)
def start_suite(suite: Suite, actor: ActorDep, platform: PlatformDep) -> list[RunInfo]:
    """Queue a suite: one run per target, all checked before any is created."""
    return service.start(platform, actor, suite.runs())


@router.get("/runs")
def list_runs(
    actor: ActorDep, platform: PlatformDep, name: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[RunInfo]:
    """The newest runs you see, optionally of one suite name."""
    return service.list_runs(platform, actor, name=name, limit=limit)


@router.get("/runs/{run_id}")
def get_run(run_id: str, actor: ActorDep, platform: PlatformDep) -> RunInfo:
    """One run: status, progress counts, summary with intervals, and the gate's checks."""
    return service.get_run(platform, actor, run_id)


@router.get("/runs/{run_id}/rows")
def run_rows(
    run_id: str,
    actor: ActorDep,
    platform: PlatformDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    failed: bool = False,
) -> RowsPage:
    """A page of a run's rows: inputs, output, scores, each evaluator's verdict, trace."""
    return service.rows_page(platform, actor, run_id, offset=offset, limit=limit, failed=failed)


@router.get("/compare")
def compare_runs(
    a: Annotated[str, Query(max_length=40)],
    b: Annotated[str, Query(max_length=40)],
    actor: ActorDep,
    platform: PlatformDep,
    rows: Annotated[int, Query(ge=0, le=10_000, description="Paired rows returned, regressions first.")] = 200,
) -> Comparison:
    """Run `b` against run `a`: per-score paired tests, wins/losses/ties, per-row deltas, regressions first (the
    statistics use every paired row; `rows` bounds the rows returned)."""
    return service.compare_runs(platform, actor, a, b, max_rows=rows)


@router.get("/online")
def list_rules(actor: ActorDep, platform: PlatformDep) -> list[RuleInfo]:
    """Online evaluation rules of your project."""
    return online.list_rules(platform, actor)


@router.put("/online/{name}")
def put_rule(name: str, rule: RuleIn, actor: ActorDep, platform: PlatformDep) -> RuleInfo:
    """Create or replace a rule: evaluators run on a sample of the traces matching its filters."""
    return online.put_rule(platform, actor, name, rule)


@router.delete("/online/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rule(name: str, actor: ActorDep, platform: PlatformDep) -> None:
    """Stop and remove a rule (the scores it wrote stay)."""
    online.delete_rule(platform, actor, name)


@router.post("/online/{name}/sweep")
def sweep_rule(name: str, actor: ActorDep, platform: PlatformDep) -> Sweep:
    """Evaluate the traces that arrived since the rule's last sweep now (the background loop does it too)."""
    return online.sweep_now(platform, actor, name)

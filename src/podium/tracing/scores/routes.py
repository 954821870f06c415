"""`/api/scores`: post scores against traces (one, or a batch) and list them; the logic is in `scores`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, status

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.tracing.scores import service as scores
from podium.tracing.scores.service import ScoreInfo, ScoreList
from podium.tracing.scores.store import SCORE_SOURCES
from podium.tracing.service import int_param

router = APIRouter(prefix="/api/scores", tags=["scores"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]

_EXAMPLES = [
    {"trace_id": "trc_01J…", "name": "thumbs", "value": True, "source": "user", "comment": "spot on"},
    {"scores": [{"trace_id": "trc_01J…", "name": "helpfulness", "value": 0.8, "source": "evaluator"}]},
]


@router.post("", status_code=status.HTTP_201_CREATED)
async def post_scores(
    actor: ActorDep, platform: PlatformDep, body: Annotated[Any, Body(examples=_EXAMPLES)] = None
) -> ScoreInfo | ScoreList:
    """Score a trace: `{trace_id, span_id?, name, value, source?, comment?}` (value a number, or a boolean
    stored as 1/0), or a batch `{"scores": [...]}` stored all or none. An unknown trace is waited for briefly
    (traces are written asynchronously), then 404."""
    items, batch = scores.parse_scores(body)
    created = await scores.add_scores_async(platform.db, actor, items, batch=batch)
    return ScoreList(scores=created) if batch else created[0]


@router.get("")
def list_scores(
    actor: ActorDep,
    platform: PlatformDep,
    trace_id: Annotated[str | None, Query(description="Scores of this trace.")] = None,
    name: Annotated[str | None, Query(description="Scores of this name.")] = None,
    source: Annotated[str | None, Query(description=", ".join(SCORE_SOURCES) + ".")] = None,
    limit: Annotated[str | None, Query(description=f"1-{scores.MAX_LIST}, default {scores.DEFAULT_LIST}.")] = None,
) -> ScoreList:
    """Scores, newest first, filtered by trace, name and source (your project's, unless you are an admin)."""
    n = int_param("limit", limit, scores.DEFAULT_LIST, 1, scores.MAX_LIST)
    rows = scores.list_scores(platform.db, actor, trace_id=trace_id, name=name, source=source, limit=n)
    return ScoreList(scores=rows)

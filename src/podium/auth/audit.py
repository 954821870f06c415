"""The audit log: every mutating action, appended in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from podium.auth.lookup import find_project
from podium.auth.store import AuditRow
from podium.core.db import Database, utcnow
from podium.core.errors import InvalidInput
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.paging import Page


class AuditInfo(BaseModel):
    """One audit row."""

    id: str
    at: datetime
    actor: str
    actor_user_id: str | None
    actor_key_id: str | None
    action: str
    object_type: str
    object_id: str | None
    project_id: str | None
    request_id: str | None
    details: dict[str, Any]


def record_audit(
    session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | None,
    *,
    project_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an audit row inside the caller's transaction, so it lands with the change or not at all."""
    p = actor.principal
    session.add(
        AuditRow(
            id=new_id("aud"),
            at=utcnow(),
            actor_user_id=p.user_id if p else None,
            actor_key_id=p.key_id if p else None,
            actor=actor.label,
            action=action,
            object_type=object_type,
            object_id=object_id,
            project_id=project_id if project_id is not None else actor.project_id,
            request_id=actor.request_id,
            details=details or {},
        )
    )


def list_audit(
    db: Database,
    actor: Actor,
    *,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    project: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[AuditInfo]:
    """Audit rows, newest first, with cursor pagination: every row for a server admin, its project's for a
    project admin."""
    actor.require("admin", "read the audit log")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", details={"field": "limit"})
    with db.read_session() as s:
        q = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit + 1)
        if action:
            q = q.where(AuditRow.action.like(action.replace("*", "%")))
        if object_type:
            q = q.where(AuditRow.object_type == object_type)
        if object_id:
            q = q.where(AuditRow.object_id == object_id)
        if project:
            q = q.where(AuditRow.project_id == find_project(s, project).id)
        if not actor.is_admin:
            q = q.where(AuditRow.project_id == actor.project_id)
        if since:
            q = q.where(AuditRow.at >= since)
        if until:
            q = q.where(AuditRow.at < until)
        if cursor:
            q = q.where(AuditRow.id < cursor)
        rows = list(s.scalars(q))
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        AuditInfo(
            id=r.id,
            at=r.at,
            actor=r.actor,
            actor_user_id=r.actor_user_id,
            actor_key_id=r.actor_key_id,
            action=r.action,
            object_type=r.object_type,
            object_id=r.object_id,
            project_id=r.project_id,
            request_id=r.request_id,
            details=r.details,
        )
        for r in rows
    ]
    return Page[AuditInfo](items=items, next_cursor=rows[-1].id if more and rows else None)

"""Projects: the unit that owns models, prompts, traces, keys and every later object."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from podium.auth.audit import record_audit
from podium.auth.lookup import find_project
from podium.auth.store import Project
from podium.core.db import Database, utcnow
from podium.core.errors import Conflict, NotFound
from podium.core.identity import Actor
from podium.core.ids import new_id
from podium.core.names import check_name

DEFAULT_PROJECT = "default"


class ProjectInfo(BaseModel):
    """A project as the API shows it."""

    id: str
    name: str
    description: str
    created_at: datetime


def _project_info(p: Project) -> ProjectInfo:
    return ProjectInfo(id=p.id, name=p.name, description=p.description, created_at=p.created_at)


def create_project(db: Database, actor: Actor, name: str, description: str = "") -> ProjectInfo:
    """Create a project (admin)."""
    actor.require("admin", "create projects")
    name = check_name(name, "project", max_length=100)
    try:
        with db.session() as s:
            if s.scalar(select(Project.id).where(Project.name == name)):
                raise Conflict(f"project {name!r} exists already")
            row = Project(id=new_id("prj"), name=name, description=description, created_at=utcnow())
            s.add(row)
            s.flush()
            record_audit(s, actor, "project.create", "project", row.id, project_id=row.id, details={"name": name})
    except IntegrityError:
        raise Conflict(f"project {name!r} exists already") from None
    return _project_info(row)


def list_projects(db: Database, actor: Actor) -> list[ProjectInfo]:
    """Projects the actor may see: every one for admins, their own for others."""
    with db.read_session() as s:
        q = select(Project).order_by(Project.name)
        if actor.principal is not None and not actor.principal.has_role("admin"):
            q = q.where(Project.id == actor.principal.project_id)
        return [_project_info(p) for p in s.scalars(q)]


def get_project(db: Database, actor: Actor, ref: str) -> ProjectInfo:
    """One project by name or id, if the actor may see it."""
    with db.read_session() as s:
        p = find_project(s, ref)
        if actor.principal is not None and not actor.principal.has_role("admin") and p.id != actor.project_id:
            raise NotFound(f"project {ref!r} not found")
        return _project_info(p)


def update_project(db: Database, actor: Actor, ref: str, description: str) -> ProjectInfo:
    """Change a project's description (admin)."""
    actor.require("admin", "change projects")
    with db.session() as s:
        p = find_project(s, ref)
        p.description = description
        record_audit(s, actor, "project.update", "project", p.id, project_id=p.id)
        return _project_info(p)

"""Dashboard pages for chains: the list; one chain (a version's graph drawn as a diagram, its YAML, the
versions, label history and recent runs); one run (its step timeline, inputs, output or error, and a link to
its trace); and the approval queue, where a person approves or rejects the tool calls agents wait on.

Every figure comes from `chains.service`, called as the signed-in user; this module lays the graph out and
shapes the timeline for the templates (autoescaped: step ids, YAML and outputs are never markup).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from podium.chains import service
from podium.chains import spec as chain_spec
from podium.core.errors import InvalidInput, PodiumError
from podium.core.http import get_platform
from podium.web.shell import PageSession, check_csrf, error_page, page_session, redirect, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]

NODE_W, NODE_H = 170, 46  # a step's box
CHILD_H = 18  # a line per nested step inside its container's box
GAP_X, GAP_Y, PAD = 60, 24, 16
RUNS_SHOWN = 20


@dataclass
class Node:
    """A top-level step's box: where it is, what it is, and the steps it holds."""

    id: str
    type: str
    x: int
    y: int
    h: int
    children: list[tuple[str, str, str]] = field(default_factory=list)  # (role, id, type)


@dataclass
class Edge:
    """An arrow from a step to a step that reads it."""

    source: str
    target: str
    path: str


@dataclass
class Diagram:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def _nested(step: chain_spec.Step) -> list[tuple[str, str, str]]:
    """The steps a step holds, one line each: its cases, mapped step, parallel steps, fallback."""
    out: list[tuple[str, str, str]] = []
    if isinstance(step, chain_spec.BranchStep):
        out += [(f"case {value}", s.id, s.type) for value, s in step.cases.items()]
        if step.default is not None:
            out.append(("default", step.default.id, step.default.type))
    if isinstance(step, chain_spec.MapStep):
        out.append(("each item", step.step.id, step.step.type))
    if isinstance(step, chain_spec.ParallelStep):
        out += [("together", s.id, s.type) for s in step.steps]
    if step.fallback is not None:
        out.append(("fallback", step.fallback.id, step.fallback.type))
    return out


def diagram(spec: dict[str, Any]) -> Diagram:
    """The top-level steps in columns by wave (a step's column is after every step it reads), nested steps
    listed inside their container, and an arrow per dependency."""
    chain = chain_spec.ChainSpec.model_validate(spec)
    waves = chain_spec.order(chain)
    steps = {s.id: s for s in chain.steps}
    nodes: dict[str, Node] = {}
    height = 0
    for col, wave in enumerate(waves):
        y = PAD
        for sid in wave:
            children = _nested(steps[sid])
            h = NODE_H + CHILD_H * len(children)
            nodes[sid] = Node(sid, steps[sid].type, PAD + col * (NODE_W + GAP_X), y, h, children)
            y += h + GAP_Y
        height = max(height, y)
    edges = []
    for sid, step in steps.items():
        for dep in sorted(chain_spec.reads(step) & set(steps)):
            a, b = nodes[dep], nodes[sid]
            x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
            x2, y2 = b.x, b.y + NODE_H // 2
            mid = (x1 + x2) // 2
            edges.append(Edge(dep, sid, f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 6},{y2}"))
    width = PAD * 2 + len(waves) * NODE_W + max(0, len(waves) - 1) * GAP_X
    return Diagram(list(nodes.values()), edges, width, max(height, NODE_H + 2 * PAD))


@dataclass
class Bar:
    """A step on a run's timeline: where its bar starts and how wide it is, in percent of the run."""

    step: str
    status: str
    ms: float
    left: float
    width: float
    error: str | None


def timeline(run: service.RunInfo) -> list[Bar]:
    """The run's steps as bars over its duration (in the order they ended)."""
    if not run.steps:
        return []
    t0 = min(float(s["start"]) for s in run.steps)
    total = max(float(s["start"]) - t0 + float(s["ms"]) / 1000 for s in run.steps) or 1e-3
    bars = []
    for s in run.steps:
        left = (float(s["start"]) - t0) / total * 100
        width = max(float(s["ms"]) / 1000 / total * 100, 0.5)
        bars.append(Bar(str(s["step"]), str(s["status"]), float(s["ms"]), left, min(width, 100 - left), s.get("error")))
    return bars


def _pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


# --- pages -------------------------------------------------------------------------------------------


@router.get("/chains")
def chains_page(request: Request, session: SessionDep) -> Response:
    """Every chain the user sees, and how many tool calls wait for approval."""
    platform = get_platform(request)
    try:
        chains = service.list_chains(platform, session.actor)
        pending = service.list_approvals(platform, session.actor)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "chains/list.html", session, chains=chains, pending=len(pending))


@router.get("/chains/approvals")
def approvals_page(request: Request, session: SessionDep) -> Response:
    """The approval queue: pending tool calls with their arguments and run, and the latest decisions."""
    platform = get_platform(request)
    try:
        pending = service.list_approvals(platform, session.actor)
        decided = [
            a for a in service.list_approvals(platform, session.actor, status=None, limit=50) if a.status != "pending"
        ]
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "chains/approvals.html", session, pending=pending, decided=decided, pretty=_pretty)


@router.post("/chains/approvals/{approval_id}")
def decide_page(
    request: Request,
    approval_id: str,
    session: SessionDep,
    decision: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Approve or reject from the queue."""
    try:
        check_csrf(session, csrf)
        if decision not in ("approve", "reject"):
            raise InvalidInput("decision must be approve or reject")
        service.decide(get_platform(request), session.actor, approval_id, decision == "approve", comment.strip())
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect("/chains/approvals")


@router.get("/chains/{name}")
def chain_page(request: Request, name: str, session: SessionDep) -> Response:
    """A chain: the chosen version's graph (`?version=`, default the latest) and YAML, every version, the
    label history and the recent runs."""
    platform = get_platform(request)
    chosen = (request.query_params.get("version") or "latest").strip()
    try:
        detail = service.get_chain(platform, session.actor, name)
        version = service.get_version(platform, session.actor, f"{name}@{chosen}")
        runs = service.list_runs(platform, session.actor, name, limit=RUNS_SHOWN)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(
        request,
        "chains/detail.html",
        session,
        chain=detail,
        chosen=version,
        graph=diagram(version.spec),
        runs=runs,
        node_w=NODE_W,
        node_h=NODE_H,
        child_h=CHILD_H,
    )


@router.get("/chains/{name}/runs/{run_id}")
def run_page(request: Request, name: str, run_id: str, session: SessionDep) -> Response:
    """One run: its status, steps on a timeline, inputs, output or error, and its trace."""
    try:
        run = service.get_run(get_platform(request), session.actor, run_id, chain=name)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "chains/run.html", session, run=run, bars=timeline(run), pretty=_pretty)

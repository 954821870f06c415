"""Dashboard pages for prompts: the list, one prompt (version history, diffs, labels and their history),
the playground (edit, fill variables, run up to four version-by-model combinations side by side, save as a
new version) and experiment results.

Every figure and every write goes through the prompts services. The playground page runs its combinations
through `POST /api/playground/run` (the same endpoint as the CLI and the SDK: the gateway's request
service, as the signed-in user), with the session cookie and the CSRF token in a header; its variable
check and "save" endpoints take the same, and answer 401 (never a redirect) when the session has ended.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from podium.core.errors import InvalidInput, PodiumError, Unauthorized
from podium.core.http import get_platform
from podium.core.money import format_usd
from podium.gateway.table import RouteTable
from podium.models import service as models
from podium.prompts import playground as runs
from podium.prompts import service
from podium.prompts.experiments import service as experiments
from podium.prompts.experiments.service import ExperimentInfo, ExperimentResults
from podium.prompts.playground import Draft
from podium.prompts.service import PromptDetail, VersionInfo
from podium.web.charts import CiChart, ci_chart
from podium.web.shell import (
    CSRF_HEADER,
    PageSession,
    check_csrf,
    error_page,
    page_session,
    read_session,
    redirect,
    render,
)

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]


def json_session(request: Request) -> PageSession:
    """FastAPI dependency for the playground's JSON calls: the session (401 if it has ended) and the CSRF
    token in the `X-CSRF-Token` header (403 if missing or stale)."""
    session = read_session(request)
    if session is None:
        raise Unauthorized("your dashboard session has ended; reload the page to sign in again")
    check_csrf(session, request.headers.get(CSRF_HEADER))
    return session


JsonSessionDep = Annotated[PageSession, Depends(json_session)]


# --- list and detail -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff and how it is shown (`file`, `hunk`, `added`, `removed`, `context`)."""

    kind: str
    text: str


def diff_lines(unified: str) -> list[DiffLine]:
    """A unified diff split into classified lines for colouring."""
    out = []
    for line in unified.splitlines():
        if line.startswith(("---", "+++")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "added"
        elif line.startswith("-"):
            kind = "removed"
        else:
            kind = "context"
        out.append(DiffLine(kind, line))
    return out


@router.get("/prompts")
def prompts_page(request: Request, session: SessionDep) -> Response:
    """Every prompt with its kind, latest version, labels and last update."""
    prompts = service.list_prompts(get_platform(request).db, session.actor)
    return render(request, "prompts/list.html", session, prompts=prompts)


@router.get("/prompts/playground")
def new_playground(request: Request, session: SessionDep) -> Response:
    """The playground for a prompt that does not exist yet."""
    return _playground(request, session, None, None)


@router.get("/prompts/{name}/playground")
def playground(request: Request, name: str, session: SessionDep, start: str | None = None) -> Response:
    """The playground for a prompt, starting from version `start` (the latest by default)."""
    try:
        detail = service.get_prompt(get_platform(request).db, session.actor, name)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return _playground(request, session, detail, start)


@router.get("/prompts/versions/{version_id}")
def version_by_id(request: Request, version_id: str, session: SessionDep) -> Response:
    """A version by id (as traces link to it): its prompt's page with that version selected."""
    try:
        v = service.get_version_by_id(get_platform(request).db, session.actor, version_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/prompts/{v.prompt}?v={v.version}")


@router.get("/prompts/{name}")
def prompt_page(
    request: Request,
    name: str,
    session: SessionDep,
    v: str | None = None,
    a: str | None = None,
    b: str | None = None,
) -> Response:
    """A prompt: version history, the selected version's content, a diff of any two versions, labels."""
    db = get_platform(request).db
    try:
        detail = service.get_prompt(db, session.actor, name)
        numbers = [x.version for x in detail.versions]
        selected = _pick(detail, v) if detail.versions else None
        diff = None
        if len(numbers) >= 2 or (a and b):
            a_ref = a or str(numbers[1])
            b_ref = b or str(numbers[0])
            diff = service.diff(db, session.actor, name, a_ref, b_ref)
    except PodiumError as exc:
        return error_page(request, session, exc)
    experiments = _experiments_of(request, session, name)
    return render(
        request,
        "prompts/detail.html",
        session,
        prompt=detail,
        selected=selected,
        diff=diff,
        lines=diff_lines(diff.unified) if diff else [],
        experiments=experiments,
        can_edit=session.principal.has_role("member"),
    )


def _pick(detail: PromptDetail, ref: str | None) -> VersionInfo:
    """The version `ref` names (a number, `vN` or a label) among the detail's versions; latest by default."""
    if not ref:
        return detail.versions[0]
    tag = ref[1:] if ref.startswith("v") and ref[1:].isdigit() else ref
    for x in detail.versions:
        if str(x.version) == tag or tag in x.labels:
            return x
    raise InvalidInput(f"prompt {detail.name!r} has no version or label {ref!r}")


@router.post("/prompts/{name}/labels")
def move_label(
    request: Request,
    name: str,
    session: SessionDep,
    label: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Point a label at a version (the form on the prompt page)."""
    try:
        check_csrf(session, csrf)
        service.set_label(get_platform(request).db, session.actor, name, label.strip(), version.strip())
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/prompts/{name}")


@router.post("/prompts/{name}/labels/{label}/remove")
def drop_label(
    request: Request, name: str, label: str, session: SessionDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    """Remove a label."""
    try:
        check_csrf(session, csrf)
        service.remove_label(get_platform(request).db, session.actor, name, label)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/prompts/{name}")


# --- the playground --------------------------------------------------------------------------------


def _chat_models(request: Request, session: PageSession) -> list[str]:
    """Names the gateway answers chat requests for: registered chat models and routes."""
    table: RouteTable = request.app.state.runtime.get(RouteTable)
    names = {m.name for m in models.list_models(get_platform(request), session.actor, task="chat")}
    names |= set(table.routes)
    return sorted(names)


def _version_data(v: VersionInfo) -> dict[str, Any]:
    return {
        "version": v.version,
        "labels": v.labels,
        "kind": v.kind,
        "template": v.template,
        "messages": v.messages,
        "variables": v.variables,
        "model": v.model,
        "message": v.message,
    }


def _playground(request: Request, session: PageSession, detail: PromptDetail | None, start: str | None) -> Response:
    versions = detail.versions if detail else []
    try:
        base = _pick(detail, start) if detail and versions else None
    except PodiumError as exc:
        return error_page(request, session, exc)
    data = {
        "name": detail.name if detail else "",
        "isNew": detail is None,
        "base": base.version if base else None,
        "draft": _version_data(base)
        if base
        else {
            "kind": "chat",
            "template": None,
            "messages": [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
            "variables": {},
            "model": {},
        },
        "versions": [_version_data(x) for x in versions],
        "models": _chat_models(request, session),
        "maxCombos": runs.MAX_COMBOS,
    }
    return render(
        request,
        "prompts/playground.html",
        session,
        prompt=detail,
        data=data,
        can_save=session.principal.has_role("member"),
    )


class VariablesBody(BaseModel):
    """Body of the variables check: the draft and the saved versions the page compares with it."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    draft: Draft
    versions: list[int] = []


class SaveBody(BaseModel):
    """Body of "save as new version"."""

    model_config = ConfigDict(extra="forbid")

    name: str
    draft: Draft
    message: str = ""


@router.post("/prompts/-/variables")
def variables(request: Request, body: VariablesBody, session: JsonSessionDep) -> dict[str, Any]:
    """The variables the draft and the compared versions use, and the draft's template errors."""
    return runs.variables_report(get_platform(request).db, session.actor, body.name, body.draft, body.versions)


@router.post("/prompts/-/save")
def save(request: Request, body: SaveBody, session: JsonSessionDep) -> dict[str, Any]:
    """Save the draft as a new version of `name` (or the first version of a new prompt)."""
    created = runs.save_draft(get_platform(request).db, session.actor, body.name, body.draft, body.message)
    v = created.version
    return {"created": created.created, "name": v.prompt, "version": _version_data(v)}


# --- experiments ---------------------------------------------------------------------------------


def _experiments_of(request: Request, session: PageSession, name: str) -> list[ExperimentInfo]:
    """The prompt's experiments, newest first."""
    return experiments.list_experiments(get_platform(request).db, session.actor, name)


def fmt_value(value: float | None, unit: str = "") -> str:
    """A figure for a chart or table: three significant digits (dollars to the micro-dollar)."""
    if value is None:
        return "—"
    if unit == "$":
        return format_usd(f"{value:.6f}")
    if unit == "%":
        return f"{value * 100:.1f}%"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def _charts(res: ExperimentResults) -> list[CiChart]:
    charts = []
    for name in res.score_names:
        arms = [(f"v{a.version}", a.scores[name]) for a in res.arms if name in a.scores]
        charts.append(ci_chart(f"score-{name}", f"Score: {name}", "", arms, fmt_value))
    for key, title, unit, field in (
        ("latency", "Latency (mean)", "ms", "latency_ms"),
        ("cost", "Cost per trace", "$", "cost_usd"),
        ("tokens", "Tokens per trace", "", "tokens"),
        ("errors", "Error rate", "%", "error_rate"),
    ):
        arms = [(f"v{a.version}", getattr(a, field)) for a in res.arms]
        charts.append(ci_chart(key, title, unit, arms, functools.partial(fmt_value, unit=unit), non_negative=True))
    return charts


@router.get("/prompts/{name}/experiments/{experiment_id}")
def experiment_page(request: Request, name: str, experiment_id: str, session: SessionDep) -> Response:
    """An experiment: arms with shares and results (95% intervals, probability best), the shift log, and
    (while it runs) the stop button and the shares form."""
    db = get_platform(request).db
    try:
        detail = experiments.get_experiment(db, session.actor, experiment_id)
        if detail.prompt != name:
            return redirect(f"/prompts/{detail.prompt}/experiments/{experiment_id}")
        res = experiments.results(db, session.actor, experiment_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(
        request,
        "prompts/experiment.html",
        session,
        experiment=detail,
        results=res,
        charts=_charts(res),
        fmt=fmt_value,
        can_edit=session.principal.has_role("member"),
    )


@router.post("/prompts/{name}/experiments/{experiment_id}/stop")
def experiment_stop(
    request: Request, name: str, experiment_id: str, session: SessionDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    """Stop a running experiment."""
    try:
        check_csrf(session, csrf)
        experiments.stop_experiment(get_platform(request).db, session.actor, experiment_id)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/prompts/{name}/experiments/{experiment_id}")


@router.post("/prompts/{name}/experiments/{experiment_id}/shares")
async def experiment_shares(request: Request, name: str, experiment_id: str, session: SessionDep) -> Response:
    """Set the arms' shares by hand (percentages, one `share_<version>` field per arm, summing to 100)."""
    form = await request.form()
    try:
        check_csrf(session, str(form.get("csrf") or ""))
        shares: dict[str, float] = {}
        for key, value in form.multi_items():
            if not key.startswith("share_"):
                continue
            try:
                shares[key.removeprefix("share_")] = float(str(value)) / 100
            except ValueError:
                raise InvalidInput(f"the share of v{key.removeprefix('share_')} is not a number: {value!r}") from None
        body = {"shares": shares, "reason": str(form.get("reason") or "") or "set by hand in the dashboard"}
        await asyncio.to_thread(experiments.set_shares, get_platform(request).db, session.actor, experiment_id, body)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/prompts/{name}/experiments/{experiment_id}")


@router.post("/prompts/{name}/experiments/{experiment_id}/rebalance")
def experiment_rebalance(
    request: Request, name: str, experiment_id: str, session: SessionDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    """Run one bandit step of an auto experiment now."""
    try:
        check_csrf(session, csrf)
        experiments.rebalance(get_platform(request).db, experiment_id, actor=session.actor)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return redirect(f"/prompts/{name}/experiments/{experiment_id}")

"""Dashboard pages for guardrails: the project's policies and the recent decisions the gateway recorded under
them (filtered by policy, scanner or action); one policy (where it applies, its scanners stage by stage with
their actions, `on_error` and timeouts, the text it was written as, its versions, and its recent findings).

Every figure comes from `guard.policies`, called as the signed-in user; the templates escape everything.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from pydantic import ValidationError
from starlette.responses import Response

from podium.core.errors import InvalidInput, PodiumError
from podium.core.http import get_platform
from podium.guard import policies
from podium.guard.policies import PolicyTest, PolicyTestResult
from podium.guard.policy import PolicySpec, on_error
from podium.web.shell import PageSession, check_csrf, error_page, page_session, render

router = APIRouter(include_in_schema=False)
SessionDep = Annotated[PageSession, Depends(page_session)]
FINDINGS_SHOWN = 50


def _filters(request: Request) -> dict[str, str | None]:
    q = request.query_params
    return {k: (q.get(k) or None) for k in ("policy", "scanner", "action")}


@router.get("/guard")
def guard_page(request: Request, session: SessionDep) -> Response:
    """The project's policies and the recent findings, newest first."""
    platform = get_platform(request)
    filters = _filters(request)
    try:
        found = policies.list_policies(platform, session.actor)
        findings = policies.list_findings(platform, session.actor, limit=FINDINGS_SHOWN, **filters)
    except PodiumError as exc:
        return error_page(request, session, exc)
    return render(request, "guard/list.html", session, policies=found, findings=findings, filters=filters)


@router.get("/guard/policies/{name}")
def policy_page(request: Request, name: str, session: SessionDep) -> Response:
    """One policy: where it applies, its scanners stage by stage, its YAML, its versions and its recent
    findings, and a form to try it on a text."""
    return _policy(request, name, session)


@router.post("/guard/policies/{name}/test")
def policy_test_page(
    request: Request,
    name: str,
    session: SessionDep,
    csrf: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    stage: Annotated[str, Form()] = "input",
) -> Response:
    """Try the policy on a text from its page (a dry run: nothing is recorded)."""
    try:
        check_csrf(session, csrf)
        trial = policies.test_policy(
            get_platform(request), session.actor, name, PolicyTest.model_validate({"text": text, "stage": stage})
        )
    except PodiumError as exc:
        return error_page(request, session, exc)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        return error_page(request, session, InvalidInput(f"{field}: {err['msg']}", details={"field": field}))
    return _policy(request, name, session, trial=trial, tried=text)


def _policy(
    request: Request, name: str, session: PageSession, trial: PolicyTestResult | None = None, tried: str = ""
) -> Response:
    platform = get_platform(request)
    try:
        policy = policies.get_policy(platform, session.actor, name)
        versions = policies.policy_versions(platform, session.actor, name)
        findings = policies.list_findings(platform, session.actor, policy=name, limit=FINDINGS_SHOWN)
    except PodiumError as exc:
        return error_page(request, session, exc)
    spec = PolicySpec.model_validate(policy.spec)
    stages: list[dict[str, Any]] = []
    for stage in ("input", "output"):
        rows = [
            {
                "type": e.type,
                "action": e.action or "the scanner's default",
                "on_error": on_error(e, stage),
                "timeout_ms": e.timeout_ms or spec.timeout_ms,
                "settings": ", ".join(f"{k}={v}" for k, v in e.settings.items()),
            }
            for e in spec.entries(stage)
        ]
        stages.append({"stage": stage, "rows": rows})
    return render(
        request,
        "guard/policy.html",
        session,
        policy=policy,
        spec=spec,
        stages=stages,
        versions=versions,
        findings=findings,
        trial=trial,
        tried=tried,
    )

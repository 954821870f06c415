"""`/api/guard`: scan a text with guardrail scanners, list the scanners, manage and try policies, and list the
decisions the gateway recorded under them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.guard import policies, service
from podium.guard.policies import (
    FindingView,
    PolicyDetail,
    PolicyInfo,
    PolicyTest,
    PolicyTestResult,
    PolicyVersion,
    PolicyWrite,
)
from podium.guard.service import ScannerView, ScanRequest, ScanResult

router = APIRouter(prefix="/api/guard", tags=["guard"])
ActorDep = Annotated[Actor, Depends(current_actor)]
PlatformDep = Annotated[Platform, Depends(get_platform)]


@router.post("/scan")
def scan(request: ScanRequest, actor: ActorDep, platform: PlatformDep) -> ScanResult:
    """Run scanners (or the stage's default set) on a text; the findings, whether it is blocked, and the text
    after the actions (redacted values are never returned)."""
    return service.scan_text(platform, actor, request)


@router.get("/scanners")
def scanners(actor: ActorDep, platform: PlatformDep) -> list[ScannerView]:
    """Every scanner that can run here, with its stages and the JSON Schema of its settings."""
    return service.list_scanners(platform, actor)


@router.get("/policies")
def list_policies(actor: ActorDep, platform: PlatformDep) -> list[PolicyInfo]:
    """The policies of your project."""
    return policies.list_policies(platform, actor)


@router.post("/policies", status_code=status.HTTP_201_CREATED)
def create_policy(body: PolicyWrite, actor: ActorDep, platform: PlatformDep) -> PolicyDetail:
    """Create a policy (`source`: YAML or JSON text, or `policy`: an object); refused whole, naming the field,
    if anything in it is wrong."""
    return policies.create_policy(platform, actor, body)


@router.get("/policies/{name}")
def get_policy(name: str, actor: ActorDep, platform: PlatformDep) -> PolicyDetail:
    """One policy with its spec and the text it was written as."""
    return policies.get_policy(platform, actor, name)


@router.put("/policies/{name}")
def put_policy(
    name: str, body: PolicyWrite, actor: ActorDep, platform: PlatformDep, create: bool = False
) -> PolicyDetail:
    """Replace a policy whole (its version goes up); `?create=true` makes it when it does not exist."""
    return policies.update_policy(platform, actor, name, body, create=create)


@router.delete("/policies/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_policy(name: str, actor: ActorDep, platform: PlatformDep) -> Response:
    """Remove a policy."""
    policies.delete_policy(platform, actor, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/policies/{name}/versions")
def policy_versions(name: str, actor: ActorDep, platform: PlatformDep) -> list[PolicyVersion]:
    """The policy's versions, newest first."""
    return policies.policy_versions(platform, actor, name)


@router.get("/policies/{name}/versions/{version}")
def policy_version(name: str, version: int, actor: ActorDep, platform: PlatformDep) -> PolicyVersion:
    """One version of the policy, with its spec and the text it was written as."""
    return policies.policy_version(platform, actor, name, version)


@router.post("/policies/{name}/test")
def test_policy(name: str, body: PolicyTest, actor: ActorDep, platform: PlatformDep) -> PolicyTestResult:
    """A dry run: what the policy's input (or output) stage would decide on a text; nothing is recorded."""
    return policies.test_policy(platform, actor, name, body)


@router.get("/findings")
def findings(
    actor: ActorDep,
    platform: PlatformDep,
    policy: str | None = None,
    scanner: str | None = None,
    action: str | None = None,
    limit: Annotated[int, Query(ge=1, le=policies.MAX_FINDINGS)] = 100,
) -> list[FindingView]:
    """Recent scanner decisions with findings or errors recorded on gateway traces, newest first."""
    return policies.list_findings(platform, actor, policy=policy, scanner=scanner, action=action, limit=limit)

"""`/api/guard`: scan a text with guardrail scanners, list the scanners."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from podium.core.http import current_actor, get_platform
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.guard import service
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

"""The batch-inference domain. It sits above data and the gateway (it reads and writes dataset versions and
calls models through the in-process gateway as the caller), so it cannot live in the models domain below
them; its interface is the models' one (`/api/models/batch`, `podium models batch`)."""

from __future__ import annotations

from podium.core.domains import Domain

DOMAIN = Domain(
    name="batch",
    requires=("data", "gateway", "jobs"),
    api=("podium.batch.routes:router",),
    jobs=("podium.batch.jobs",),
)

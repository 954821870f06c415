"""The fine-tuning domain: blueprints planned against their data and stored content-hashed, served through
`/api/finetunes` and `podium finetune` (the pipeline that runs them is issue 19's next part)."""

from __future__ import annotations

from podium.core.domains import Domain

DOMAIN = Domain(
    name="finetune",
    requires=("data",),
    tables=("podium.finetune.store",),
    api=("podium.finetune.routes:router",),
    cli=(("finetune", "podium.finetune.cli:finetune_app"),),
)

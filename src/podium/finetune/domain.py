"""The fine-tuning domain: blueprints planned against their data and stored content-hashed, and runs of them
through the pipeline (prepare, train, evaluate, gate, register, deploy) as jobs, served through
`/api/finetunes`, `podium finetune` and the dashboard."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry

DOMAIN = Domain(
    name="finetune",
    requires=("data", "evals", "models", "gateway", "jobs"),
    tables=("podium.finetune.store",),
    api=("podium.finetune.routes:router",),
    pages=("podium.finetune.pages:router",),
    nav=(NavEntry("Fine-tuning", "/finetunes"),),
    cli=(("finetune", "podium.finetune.cli:finetune_app"),),
    jobs=("podium.finetune.jobs",),
)

"""The evals domain: evaluators and LLM judges, eval runs over dataset versions as jobs, comparisons, suites
with a CI gate, counterfactual bias tests, online evaluation of production traces, and the eval pages."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Run online evaluation in the background (eval jobs reach the server's loop and gateway through
    `podium.gateway.bridge`, which the gateway domain attaches)."""
    from podium.evals import online

    runtime.loop("online evaluation", online.loop_for(runtime))


DOMAIN = Domain(
    name="evals",
    requires=("data", "prompts", "gateway", "tracing", "jobs"),
    tables=("podium.evals.store",),
    api=("podium.evals.routes:router",),
    pages=("podium.evals.pages:router",),
    nav=(NavEntry("Evals", "/evals"),),
    cli=(("eval", "podium.evals.cli:eval_app"),),
    jobs=("podium.evals.jobs",),
    setup="podium.evals.domain:setup",
)

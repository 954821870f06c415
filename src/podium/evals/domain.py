"""The evals domain: evaluators and LLM judges, eval runs over dataset versions as jobs, comparisons, suites
with a CI gate, counterfactual bias tests, online evaluation of production traces, and the eval pages."""

from __future__ import annotations

from podium.core.domains import Domain, NavEntry
from podium.core.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Give eval jobs the server's event loop and gateway (they call models as the gateway's clients do), and
    run online evaluation in the background."""
    from podium.evals import bridge, online

    async def start() -> None:
        bridge.attach(runtime)

    async def stop() -> None:
        bridge.detach(runtime)

    runtime.on_start("eval runner", start)
    runtime.on_stop("eval runner", stop)
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

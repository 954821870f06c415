"""The `ray` backend: a run's compute (training, the eval answers) submitted to a Ray cluster as a task,
followed and cancelled from the job thread like the local child process.

The task runs `trainer.train` or `trainer.generate` on the run's work folder, so the cluster's workers must
see that folder (a local Ray, or a shared filesystem); setting `ray_address` names the cluster (empty: a
local `ray.init()`, started once per server process and reused).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podium.core.config import Settings
from podium.core.errors import PodiumError

POLL = 1.0
_init_lock = threading.Lock()


def _compute(what: str, folder: str) -> dict[str, Any]:
    """The task: one trainer step on the work folder (imported on the Ray worker)."""
    from podium.finetune import trainer

    return trainer.train(Path(folder)) if what == "train" else trainer.generate(Path(folder))


def connect(settings: Settings) -> Any:
    """Ray, initialised for this process (the cluster at `ray_address`, or a local one)."""
    import ray

    with _init_lock:
        if not ray.is_initialized():
            address = settings.ray_address or None
            env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
                runtime_env={"env_vars": env},
            )
    return ray


def run_on_ray(
    settings: Settings, what: str, folder: Path, follow: Callable[[], None], check_cancelled: Callable[[], None]
) -> dict[str, Any]:
    """Submit `trainer <what>` as a Ray task and wait for it, calling `follow` about once a second; cancel
    the task (forcibly: it holds the CPU in native code) if the job is cancelled."""
    ray = connect(settings)
    task = ray.remote(num_cpus=1, max_retries=0)(_compute)
    ref = task.remote(what, str(folder))
    try:
        while True:
            ready, _ = ray.wait([ref], timeout=POLL)
            follow()
            check_cancelled()
            if ready:
                break
        try:
            result: dict[str, Any] = ray.get(ref)
        except Exception as exc:  # a RayTaskError wraps the trainer's own
            cause = getattr(exc, "cause", None) or exc
            raise PodiumError(f"the Ray task failed: {type(cause).__name__}: {cause}") from None
        return result
    except BaseException:
        ray.cancel(ref, force=True)
        raise

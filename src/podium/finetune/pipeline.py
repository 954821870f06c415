"""A blueprint run through its stages, on a job thread: prepare, train, evaluate, gate, register, deploy.

Each stage records its status and outputs on the run (`stages`) when it ends, and a job requeued after a
crash or a kill skips the stages already done. Training resumes from its newest complete checkpoint; the
other stages are short and start again. What the compute stages make lives in the run's work folder
(`<home>/finetune/<run id>/`, see `trainer`); nothing is registered before the gate passes, and a
registration is one transaction (the same content registered again is the same version), so a run killed at
any point leaves checkpoints to resume from or nothing, never a half-registered model.

The compute (training, and the eval answers of the base and the tuned model) runs in a child process with the
`local` backend and as a Ray task with `ray`; the job thread follows it, copying the training telemetry onto
the run, and stops it when the run is cancelled.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess  # nosec B404  # runs our own trainer module with a fixed argv
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, update

from podium.core.db import utcnow
from podium.core.errors import PodiumError
from podium.core.identity import Actor
from podium.core.platform import Platform
from podium.data import service as data_service
from podium.evals import service as evals_service
from podium.evals.spec import Fields, OutputIn, RunSpec, Target
from podium.finetune import prepare as prep
from podium.finetune import spec as ft_spec
from podium.finetune import trainer
from podium.finetune.store import FinetuneMetric, FinetuneRun
from podium.gateway import admin as routes_admin
from podium.jobs.service import JobCancelled, JobContext
from podium.models import produced
from podium.models import service as models_service

STAGES = ("prepare", "train", "evaluate", "gate", "register", "deploy")
STABLE = "stable"  # the tuned model's alias for what serves the rest of the traffic
POLL = 1.0  # seconds between looks at a running compute step


class GateFailed(PodiumError):
    """The tuned model did not pass the blueprint's gate; the run stops before anything is registered."""


def work_folder(platform: Platform, run_id: str) -> Path:
    """Where a run's compute reads and writes."""
    return platform.settings.home_dir / "finetune" / run_id


class Pipeline:
    """One run's stages, executed in order on a job thread (`run`)."""

    def __init__(self, ctx: JobContext, run_id: str, actor: Actor, blueprint: ft_spec.Blueprint):
        self.ctx = ctx
        self.platform = ctx.platform
        self.run_id = run_id
        self.actor = actor
        self.bp = blueprint
        self.folder = work_folder(ctx.platform, run_id)
        self.stages: dict[str, Any] = {}

    # --- bookkeeping ------------------------------------------------------------------------------------

    def _load(self) -> None:
        with self.platform.db.read_session() as s:
            run = s.get(FinetuneRun, self.run_id)
            assert run is not None
            self.stages = dict(run.stages or {})

    def _write(self, **values: Any) -> None:
        with self.platform.db.session() as s:
            s.execute(update(FinetuneRun).where(FinetuneRun.id == self.run_id).values(**values))

    def _stage(self, name: str, status: str, **fields: Any) -> None:
        entry = dict(self.stages.get(name) or {})
        entry["status"] = status
        now = utcnow().isoformat()
        if status == "running":
            entry["started_at"] = now
            entry.pop("error", None)
        else:
            entry["finished_at"] = now
        entry.update(fields)
        self.stages[name] = entry
        self._write(stages=dict(self.stages), stage=name)

    def progress(self, stage: str, fraction: float, message: str) -> None:
        """Report the whole run's progress (each stage a share of it) and notice cancellation."""
        i = STAGES.index(stage)
        weights = {"prepare": 0.05, "train": 0.6, "evaluate": 0.25, "gate": 0.03, "register": 0.04, "deploy": 0.03}
        before = sum(weights[s] for s in STAGES[:i])
        self.ctx.progress(before + weights[stage] * max(0.0, min(1.0, fraction)), f"{stage}: {message}")

    # --- the run ------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Every stage not yet done, in order; the run's result."""
        self._load()
        self._write(status="running", error=None)
        self.folder.mkdir(parents=True, exist_ok=True)
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "prepare": self.prepare,
            "train": self.train,
            "evaluate": self.evaluate,
            "gate": self.gate,
            "register": self.register,
            "deploy": self.deploy,
        }
        for name in STAGES:
            if (self.stages.get(name) or {}).get("status") == "done":
                continue
            self._stage(name, "running")
            self.ctx.log(f"stage {name} started")
            try:
                outputs = steps[name]()
            except JobCancelled:  # cancelled, or the server is stopping (the job is requeued and resumes)
                self._stage(name, "interrupted" if self.ctx.stopping else "cancelled")
                raise
            except PodiumError as exc:
                self._stage(name, "failed", error=exc.message)
                raise
            except Exception as exc:
                self._stage(name, "failed", error=f"{type(exc).__name__}: {exc}")
                raise
            self._stage(name, "done", outputs=outputs)
            self.ctx.log(f"stage {name} done: {json.dumps(outputs, default=str)[:2000]}")
        result = {name: (self.stages.get(name) or {}).get("outputs") for name in STAGES}
        return result

    def outputs(self, stage: str) -> dict[str, Any]:
        """What a finished stage produced."""
        return dict((self.stages.get(stage) or {}).get("outputs") or {})

    # --- prepare ------------------------------------------------------------------------------------------

    def prepare(self) -> dict[str, Any]:
        """Render, tokenize and truncate the training and validation rows; write the eval prompts and the
        trainer's settings."""
        from podium.finetune.service import base_model, tokenizer_of

        bp, h = self.bp, self.bp.hyperparameters
        base = base_model(self.platform, self.actor, bp.base_model)
        tokenizer = tokenizer_of(base.tokenizer_folder)
        out = self.folder / "prepared"
        out.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {}
        for split, ref in (("train", bp.data.train), ("validation", bp.data.validation)):
            path = out / f"{split}.jsonl"
            if ref is None:
                path.write_text("")
                continue
            conversations: list[list[prep.Message]] = []
            for table in data_service.iter_batches(self.platform, self.actor, ref):
                conversations += prep.conversations_of(table.to_pydict(), bp.data)
                self.progress("prepare", 0.3, f"read {len(conversations)} rows of {ref}")
            done = prep.tokenize(
                tokenizer,
                conversations,
                chat_template=bp.data.chat_template,
                max_length=h.max_length,
                truncation=h.truncation,
            )
            tmp = path.with_suffix(".tmp")
            with tmp.open("w") as f:
                for row in done.rows:
                    f.write(json.dumps(row) + "\n")
            os.replace(tmp, path)
            report[split] = done.report(h.max_length)
        if not report["train"]["kept"]:
            raise PodiumError("no training row is left after truncation; check max_length and the data")
        report["eval"] = self._eval_prompts(tokenizer)
        settings = self.platform.settings
        base_version = models_service.get_version(self.platform, self.actor, bp.base_model)
        config = {
            "base_folder": base.tokenizer_folder,
            "base_sha256": base_version.sha256,
            "cache_dir": str(settings.effective_model_cache_dir),
            "dtype": settings.local_dtype,
            "method": bp.method,
            "lora": bp.lora.model_dump() if bp.lora else None,
            "hyperparameters": h.model_dump(),
            "merge": bp.artifacts.merged or bp.method == "full",
            "save_steps": _save_steps(int(self.ctx.params.get("save_steps") or 0)),
            "eval": {"max_new_tokens": bp.eval.max_new_tokens},
        }
        (self.folder / trainer.TRAIN_CONFIG).write_text(json.dumps(config, indent=1))
        return report

    def _eval_prompts(self, tokenizer: Any) -> dict[str, Any]:
        """The eval dataset's prompts as the model sees them (its chat template), in row order."""
        bp = self.bp
        path = self.folder / trainer.EVAL_PROMPTS
        ref = bp.eval.dataset or bp.data.validation
        if not bp.eval.evaluators or ref is None:
            path.write_text("")
            return {"rows": 0}
        prompts: list[str] = []
        for table in data_service.iter_batches(self.platform, self.actor, ref):
            for conversation in prep.conversations_of(table.to_pydict(), bp.data):
                history, _ = prep.split(conversation) if bp.data.messages_field else (conversation[:1], None)
                prompts.append(prep.prompt_text(tokenizer, history, bp.data.chat_template))
                if bp.eval.limit is not None and len(prompts) >= bp.eval.limit:
                    break
        with path.open("w") as f:
            for p in prompts:
                f.write(json.dumps({"prompt": p}) + "\n")
        return {"dataset": ref, "rows": len(prompts)}

    # --- compute --------------------------------------------------------------------------------------------

    def _compute(self, stage: str, what: str, follow: Callable[[], None]) -> None:
        """Run `trainer <what>` on the blueprint's backend, following it until it ends."""
        if self.bp.backend == "ray":
            from podium.finetune.raybackend import run_on_ray

            run_on_ray(self.platform.settings, what, self.folder, follow, self.ctx.check_cancelled)
            return
        _stop_leftover(self.folder)
        log = (self.folder / f"{what}.log").open("ab")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
        proc = subprocess.Popen(  # nosec B603  # our own module, fixed argv, no shell
            [sys.executable, "-m", "podium.finetune.trainer", what, str(self.folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        (self.folder / "compute.pid").write_text(str(proc.pid))
        try:
            while proc.poll() is None:
                time.sleep(POLL)
                follow()
            follow()
        except BaseException:
            _terminate(proc)
            raise
        finally:
            (self.folder / "compute.pid").unlink(missing_ok=True)
        if proc.returncode != 0:
            tail = _tail(self.folder / f"{what}.log")
            raise PodiumError(f"{stage} failed (exit {proc.returncode}): {tail}")

    def train(self) -> dict[str, Any]:
        """Train (resuming from the newest complete checkpoint), copying telemetry onto the run as it comes."""
        resume = trainer.complete_checkpoints(self.folder)
        resumed_at = int(resume[-1].name.rsplit("-", 1)[1]) if resume else 0
        with self.platform.db.session() as s:  # steps after the checkpoint are trained (and logged) again
            s.execute(
                delete(FinetuneMetric).where(FinetuneMetric.run_id == self.run_id, FinetuneMetric.step > resumed_at)
            )
        telemetry = self.folder / trainer.TELEMETRY
        _keep_lines(telemetry, lambda line: int(line.get("step", 0)) <= resumed_at)
        shutil.rmtree(self.folder / trainer.ADAPTER, ignore_errors=True)
        follower = _Follower(self, telemetry)
        if resumed_at:
            self.ctx.log(f"resuming training from checkpoint {resumed_at}")
        self._compute("train", "train", follower.poll)
        result: dict[str, Any] = json.loads((self.folder / "train_result.json").read_text())
        result["resumed_from_step"] = resumed_at or None
        return result

    def evaluate(self) -> dict[str, Any]:
        """Answer the eval prompts with the base and the tuned model, then score both answer sets as eval runs
        of the evals domain (the same evaluators, the same rows)."""
        bp = self.bp
        ref = bp.eval.dataset or bp.data.validation
        if not bp.eval.evaluators or ref is None:
            return {"skipped": "the blueprint names no evaluators (eval.evaluators)"}
        (self.folder / trainer.EVAL_OUTPUTS).unlink(missing_ok=True)
        started = time.monotonic()

        def follow() -> None:
            self.progress("evaluate", min(0.8, (time.monotonic() - started) / 120), "the models answer the eval rows")

        self._compute("evaluate", "generate", follow)
        answers = json.loads((self.folder / trainer.EVAL_OUTPUTS).read_text())
        runs = {}
        for who in ("base", "tuned"):
            label = bp.base_model if who == "base" else f"{bp.base_model} tuned ({self.run_id})"
            spec = RunSpec(
                name=f"finetune {self.run_id} {who}",
                dataset=ref,
                target=Target(type="outputs", label=label),
                evaluators=list(bp.eval.evaluators),
                fields=Fields(input=bp.data.prompt_field or bp.data.messages_field or "input"),
                limit=bp.eval.limit,
                cache=False,
                outputs=[OutputIn(index=i, output=text) for i, text in enumerate(answers[who])],
            )
            run = evals_service.run_here(
                self.platform, self.actor, spec, lambda f, m: self.progress("evaluate", 0.8 + 0.1 * f, m)
            )
            runs[who] = run.id
        score = bp.eval.score or ""
        return {
            "base_run": runs["base"],
            "tuned_run": runs["tuned"],
            "score": score,
            "base_seconds": round(answers["base_seconds"], 1),
            "tuned_seconds": round(answers["tuned_seconds"], 1),
        }

    # --- gate, register, deploy -----------------------------------------------------------------------------

    def gate(self) -> dict[str, Any]:
        """The blueprint's checks on the eval runs; a failed one stops the run here, saying which and why."""
        ev = self.outputs("evaluate")
        if "base_run" not in ev:
            return {"passed": True, "checks": [], "note": "no evaluators: nothing to gate on"}
        g = self.bp.eval
        cmp = evals_service.compare_runs(self.platform, self.actor, ev["base_run"], ev["tuned_run"], max_rows=0)
        metric = next((m for m in cmp.metrics if m.name == g.score), None)
        if metric is None:
            known = ", ".join(m.name for m in cmp.metrics) or "none"
            raise GateFailed(f"the gate reads score {g.score!r}, which the eval runs do not have (they have: {known})")
        t = metric.test
        base_mean, tuned_mean = t.mean_a or 0.0, t.mean_b or 0.0
        delta = tuned_mean - base_mean
        checks = []
        if g.min_score is not None:
            checks.append(
                {
                    "check": f"{g.score} >= {g.min_score}",
                    "value": round(tuned_mean, 4),
                    "passed": tuned_mean >= g.min_score,
                }
            )
        if g.better_than_base_by > 0:
            checks.append(
                {
                    "check": f"{g.score} better than base by >= {g.better_than_base_by}",
                    "value": round(delta, 4),
                    "passed": delta >= g.better_than_base_by,
                }
            )
            checks.append(
                {"check": f"paired test p < {g.significance}", "value": t.p_value, "passed": t.p_value < g.significance}
            )
        elif g.better_than_base_by == 0:
            checks.append({"check": f"{g.score} no worse than base", "value": round(delta, 4), "passed": delta >= 0})
        failed = [c for c in checks if not c["passed"]]
        outputs = {
            "passed": not failed,
            "score": g.score,
            "base": round(base_mean, 4),
            "tuned": round(tuned_mean, 4),
            "delta": round(delta, 4),
            "p_value": t.p_value,
            "wins": t.wins,
            "losses": t.losses,
            "checks": checks,
        }
        if failed:
            self.stages["gate"] = {**(self.stages.get("gate") or {}), "outputs": outputs}
            said = "; ".join(f"{c['check']} (got {c['value']})" for c in failed)
            raise GateFailed(f"the gate failed: {said}; nothing was registered or deployed", details=outputs)
        return outputs

    def model_name(self) -> str:
        """The registry model the tuned versions go to."""
        return self.bp.deploy.model or f"{self.bp.base_model.partition('@')[0]}-tuned"

    def register(self) -> dict[str, Any]:
        """The tuned model as a new version (adapter, or merged weights), its lineage linking the blueprint,
        the datasets, the base version, the eval runs and this run; its model's `stable` alias starts at the
        base's weights."""
        name = self.model_name()
        bp = self.bp
        base = models_service.get_version(self.platform, self.actor, bp.base_model)
        lineage = {
            "finetune_run": self.run_id,
            "blueprint": self.ctx.params.get("blueprint_id"),
            "base": f"{base.model}@{base.version}",
            "base_version_id": base.id,
            "train": bp.data.train,
            "validation": bp.data.validation,
            "eval_runs": {k: v for k, v in self.outputs("evaluate").items() if k.endswith("_run")},
        }
        for split, ref in (("train_version_id", bp.data.train), ("validation_version_id", bp.data.validation)):
            if ref is not None:
                lineage[split] = data_service.get_version(self.platform, self.actor, ref).id
        made: dict[str, Any] = {"model": name}
        if not _has_model(self.platform, self.actor, name):
            first = produced.register_copy(
                self.platform, self.actor, name, bp.base_model, message=f"the base weights of {bp.base_model}"
            )
            models_service.set_alias(self.platform, self.actor, name, STABLE, first.version)
            made["stable_version"] = first.version
        message = f"fine-tuned by {self.run_id} (blueprint {self.ctx.params.get('blueprint_id')})"
        if bp.method != "full":
            adapter = produced.register_folder(
                self.platform,
                self.actor,
                name,
                self.folder / trainer.ADAPTER,
                base=bp.base_model,
                lineage=lineage,
                message=message,
            )
            made["adapter_version"] = adapter.version
            made["version"] = adapter.version
            lineage = {**lineage, "adapter_version_id": adapter.id}
        if bp.artifacts.merged or bp.method == "full":
            merged = produced.register_folder(
                self.platform,
                self.actor,
                name,
                self.folder / trainer.MERGED,
                lineage=lineage,
                message=message + " (merged weights)",
            )
            made["merged_version"] = merged.version
            made["version"] = merged.version
        made["ref"] = f"{name}@{made['version']}"
        return made

    def deploy(self) -> dict[str, Any]:
        """Move the plan's alias to the tuned version and, with a route, send `canary_share` percent of its
        traffic there (the rest to `stable`)."""
        d = self.bp.deploy
        reg = self.outputs("register")
        name, version = reg["model"], reg["version"]
        models_service.set_alias(self.platform, self.actor, name, d.alias, version)
        out: dict[str, Any] = {"model": name, "alias": d.alias, "version": version}
        if d.promotion == "after_gate":
            models_service.set_alias(self.platform, self.actor, name, STABLE, version)
            out["promoted"] = True
        if d.route:
            out["route"] = set_route(self.platform, self.actor, d.route, name, d.alias, d.canary_share)
            out["canary_share"] = d.canary_share
        return out


def set_route(platform: Platform, actor: Actor, route: str, model: str, alias: str, share: int) -> str:
    """Create or replace the route that splits a tuned model's traffic: `share` percent to `model@alias`, the
    rest to `model@stable`."""
    deployments = []
    if share < 100:
        deployments.append({"provider": "model", "model": f"{model}@{STABLE}", "weight": 100 - share, "name": STABLE})
    if share > 0:
        deployments.append({"provider": "model", "model": f"{model}@{alias}", "weight": share, "name": alias})
    spec = {
        "name": route,
        "description": f"{model}: {share}% to {alias}, {100 - share}% to {STABLE} (podium finetune)",
        "strategy": "weighted",
        "deployments": deployments,
        "retries": 0,
    }
    existing = {r.name for r in routes_admin.list_routes(platform, actor)}
    if route in existing:
        routes_admin.replace_route(platform, actor, route, spec)
    else:
        routes_admin.create_route(platform, actor, spec)
    return route


def _has_model(platform: Platform, actor: Actor, name: str) -> bool:
    try:
        models_service.get_model(platform, actor, name)
    except PodiumError:
        return False
    return True


def _save_steps(given: int) -> int:
    """How often a checkpoint is written: every 10 steps by default (a few seconds of saving a small
    adapter against about a minute of training on 2 cores)."""
    return given if given > 0 else 10


class _Follower:
    """Copies new telemetry lines onto the run (as metrics rows) and reports training progress."""

    def __init__(self, pipeline: Pipeline, path: Path):
        self.p = pipeline
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def poll(self) -> None:
        lines: list[dict[str, Any]] = []
        if self.path.exists():
            with self.path.open() as f:
                f.seek(self.offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            self.offset += len(complete.encode())
            lines = [json.loads(x) for x in complete.splitlines() if x.strip()]
        if lines:
            with self.p.platform.db.session() as s:
                for line in lines:
                    kind = "eval" if "eval_loss" in line else "train"
                    step = int(line.get("step", 0))
                    s.execute(
                        delete(FinetuneMetric).where(
                            FinetuneMetric.run_id == self.p.run_id,
                            FinetuneMetric.step == step,
                            FinetuneMetric.kind == kind,
                        )
                    )
                    s.add(FinetuneMetric(run_id=self.p.run_id, step=step, kind=kind, values=line))
            last = lines[-1]
            steps = max(1, int(last.get("max_steps") or 1))
            loss = f", loss {last['loss']:.3f}" if "loss" in last else ""
            self.p.progress("train", int(last.get("step", 0)) / steps, f"step {last.get('step')} of {steps}{loss}")
        else:
            self.p.ctx.check_cancelled()


def _keep_lines(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and keep(json.loads(line))]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def _stop_leftover(folder: Path) -> None:
    """A compute process of an earlier attempt (its job thread died with the server) may still run: stop it
    before a new one writes the same folder."""
    pid_file = folder / "compute.pid"
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            time.sleep(0.1)
            os.kill(pid, 0)
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    pid_file.unlink(missing_ok=True)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    useful = [t for t in text if t.strip() and "Loading weights" not in t and "Warning" not in t]
    return " | ".join(useful[-lines:])[-1500:]

"""Training runs: launch (validated against the method's config), cancel, run the trainer process on a worker,
and reconcile runs whose worker died.

The trainer is a plain process (`python -m training.trainers.<method> --config run.json`, see
`training.trainers`); this module is its launcher. While it runs, the worker streams its stdout metrics into
`TrainingMetric` rows (idempotent on (run, step, name): the last value wins, as the contract asks), keeps the
tail of its stderr, beats, and watches the row for a cancel request, which becomes SIGTERM: the trainer writes
a checkpoint and exits 3. A relaunch points the trainer at the same output directory, so it resumes from the
last checkpoint. Before the trainer starts, the snapshot file is hashed again: a file changed since export fails
the run instead of training on it.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotation.models import DatasetSnapshot, Project
from annotation.services.integrity import snapshot_verify
from common.errors import Invalid

from ..jobs import runtime
from ..jobs.runtime import JobKind
from ..models import Backend, JobStatus, Model, ModelRole, TrainingMetric, TrainingMethod, TrainingRun
from ..trainers.config import ConfigError, describe_config, load_config
from ..trainers.configs import CONFIGS
from ..webhooks import run_finished
from .launch import insert_once, launched_once
from .registry import model_register

LOG_TAIL_LINES = 200
CANCEL_POLL_SECONDS = 1.0
PLATFORM_FIELDS = ("model", "data", "output_dir", "metrics_file", "metrics_stdout", "reward_model")
SNAPSHOT_FORMATS = {
    "sft": ("sft",), "reward": ("preference",), "dpo": ("preference",), "orpo": ("preference",),
    "kto": ("unpaired",), "ppo": ("sft", "preference", "unpaired", "stepwise"), "prm": ("stepwise",),
}
EXIT_CANCELLED, EXIT_INVALID_CONFIG = 3, 2
# A run is not re-queued when its worker goes silent: the trainer died with it, and a relaunch resumes the run
# from its last checkpoint (`training_run_relaunch`, which rounds do on their own).
TRAINING_RUNS = JobKind(model=TrainingRun, task="training.training_run_execute", what="training run", noun="run",
                        on_finish=lambda job_id: run_finished(run_id=job_id), claimable=(JobStatus.QUEUED,),
                        requeue_silent=False, progress=lambda run: f"at step {run.step}",
                        silence_hint="relaunch to resume from the last checkpoint", prefix="runs_")


# --- configs ---------------------------------------------------------------------------------
def config_class(method: str):
    """The trainer's config dataclass for `method` (plain Python: neither torch nor the trainer is imported)."""
    if method not in TrainingMethod.values:
        raise Invalid(f"unknown method {method!r}", fields={"method": [f"one of {', '.join(TrainingMethod.values)}"]})
    return CONFIGS[method]


def config_fields(method: str) -> list[dict]:
    """Every hyperparameter of the method (name, type, default, help), without those the platform fills in."""
    return [f for f in describe_config(config_class(method)) if f["name"].split(".")[0] not in PLATFORM_FIELDS]


def run_dir(run_id: int) -> Path:
    return Path(settings.MODEL_DIR) / "runs" / str(run_id)


def run_spec(*, method: str, base_model: Model, snapshot: DatasetSnapshot, hyperparameters: dict,
             reward_model: Model | None, output_dir: Path) -> dict:
    spec = {**hyperparameters, "method": method, "model": base_model.path, "data": snapshot.path,
            "output_dir": str(output_dir)}
    if method == TrainingMethod.PPO and reward_model is not None:
        spec["reward_model"] = reward_model.path
    return spec


def _validate_spec(method: str, spec: dict) -> None:
    try:
        load_config(config_class(method), spec)
    except ConfigError as exc:
        fields: dict[str, list[str]] = {}
        for problem in exc.problems:
            name, _, message = problem.partition(": ")
            fields.setdefault(name.strip() or "hyperparameters", []).append(message or problem)
        raise Invalid(f"invalid {method} hyperparameters: " + "; ".join(exc.problems), fields=fields) from None


# --- launching ------------------------------------------------------------------------------
@transaction.atomic
@launched_once(TrainingRun)
def training_run_create(
    *,
    project: Project,
    method: str,
    base_model: Model,
    snapshot: DatasetSnapshot,
    hyperparameters: dict | None = None,
    reward_model: Model | None = None,
    created_by: AbstractBaseUser | None = None,
    queue: str = "gpu",
    client_id: uuid.UUID | str | None = None,
) -> TrainingRun:
    """Validate the run against the trainer's own config loader, record it and queue it (after commit).

    With a `client_id` the launch is idempotent (`launch.launched_once`): a retry returns the first run."""
    if not isinstance(hyperparameters or {}, dict):
        raise Invalid("hyperparameters must be an object", fields={"hyperparameters": ["must be an object"]})
    hyperparameters = dict(hyperparameters or {})
    config_class(method)
    taken = sorted(set(hyperparameters) & set(PLATFORM_FIELDS))
    if taken:
        raise Invalid(f"set by the platform: {', '.join(taken)}", fields={k: ["set by the platform"] for k in taken})
    if snapshot.project_id != project.pk:
        raise Invalid("the snapshot belongs to another project", fields={"snapshot": ["not in this project"]})
    if snapshot.format not in SNAPSHOT_FORMATS[method]:
        raise Invalid(f"{method} trains on {' or '.join(SNAPSHOT_FORMATS[method])} snapshots, not {snapshot.format}",
                      fields={"snapshot": [f"format must be {' or '.join(SNAPSHOT_FORMATS[method])}"]})
    if not base_model.is_active or base_model.backend == Backend.OPENAI or not base_model.path:
        raise Invalid(f"model {base_model.name} has no local weights to train",
                      fields={"base_model": ["must be an active local model (transformers or vllm)"]})
    if method == TrainingMethod.PPO and (reward_model is not None or not hyperparameters.get("reward_function")):
        if reward_model is None or ModelRole.REWARD not in (reward_model.roles or []) or not reward_model.path:
            raise Invalid("PPO needs a local reward model (or a reward_function)",
                          fields={"reward_model": ["a local model with the reward role"]})
        if (reward_model.metadata or {}).get("method") == TrainingMethod.PRM:
            # A PRM is a token classifier scoring steps; PPO scores whole responses with a sequence classifier.
            raise Invalid(f"{reward_model.name} is a process reward model; PPO needs an outcome reward model",
                          fields={"reward_model": ["a reward (outcome) model, not a process reward model"]})
    elif reward_model is not None:
        raise Invalid(f"{method} takes no reward model", fields={"reward_model": ["only for ppo"]})
    spec = run_spec(method=method, base_model=base_model, snapshot=snapshot, hyperparameters=hyperparameters,
                    reward_model=reward_model, output_dir=run_dir(0))
    _validate_spec(method, spec)
    run = insert_once(
        TrainingRun, project=project, client_id=client_id, created_by=created_by, method=method, base_model=base_model,
        snapshot=snapshot, snapshot_sha256=snapshot.sha256, reward_model=reward_model, hyperparameters=hyperparameters,
        queue=queue,
    )
    if run.replayed:
        return run
    run.output_dir = str(run_dir(run.pk))
    run.save(update_fields=["output_dir"])
    runtime.enqueue(TRAINING_RUNS, run)
    return run


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Stop a run: at once while it waits in the queue; a running trainer gets SIGTERM and saves a checkpoint."""
    return runtime.cancel(TRAINING_RUNS, run)


def training_run_relaunch(*, run: TrainingRun) -> TrainingRun:
    """Queue a failed or cancelled run again; the trainer resumes from its last checkpoint in the same directory."""
    return runtime.retry(TRAINING_RUNS, run)


# --- running --------------------------------------------------------------------------------
def _heartbeat_every() -> float:
    return max(0.5, min(10.0, settings.JOB_STALE_SECONDS / 4))


def metrics_store(run_id: int, lines: list[str]) -> int:
    """Parse metrics lines and upsert them (last value per (step, name)); return the highest step seen."""
    latest: dict[tuple[int, str], float | None] = {}
    for line in lines:
        try:
            item = json.loads(line)
            key = (int(item["step"]), str(item["name"])[:200])
        except (ValueError, TypeError, KeyError):
            continue
        value = item.get("value")
        latest[key] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if not latest:
        return -1
    TrainingMetric.objects.bulk_create(
        [TrainingMetric(run_id=run_id, step=s, name=n, value=v) for (s, n), v in latest.items()],
        update_conflicts=True, unique_fields=["run", "step", "name"], update_fields=["value"], batch_size=500,
    )
    return max(s for s, _ in latest)


def _pump(stream, sink) -> None:
    for line in iter(stream.readline, ""):
        sink(line.rstrip("\n"))
    stream.close()


def training_run_execute_now(*, run_id: int, ticket: str | None = None, worker: str = "") -> str:
    """Claim the run, launch its trainer and follow it to the end; returns the final status (or "skipped").
    A message carries the run's `ticket`; without one, whatever message queued the run."""
    owner = runtime.owner_name(worker)
    if runtime.claim(TRAINING_RUNS, run_id, owner, ticket=ticket, started_at=timezone.now(), finished_at=None,
                     error="") != "claimed":
        return "skipped"
    run = TrainingRun.objects.select_related("base_model", "snapshot", "reward_model", "project").get(pk=run_id)
    check = snapshot_verify(snapshot=run.snapshot)
    if check.problem in ("sha256", "size") or (check.ok and check.actual_sha256 != run.snapshot_sha256):
        # Never train on data other than what the run names; a missing file is left to the trainer to report.
        message = (f"the snapshot file changed since export: sha256 {check.actual_sha256} instead of "
                   f"{run.snapshot_sha256} ({check.path}); export a new snapshot")
        _finish(run_id, owner, JobStatus.FAILED, error=message, log_tail=message)
        return JobStatus.FAILED
    out = Path(run.output_dir or run_dir(run.pk))
    out.mkdir(parents=True, exist_ok=True)
    spec = run_spec(method=run.method, base_model=run.base_model, snapshot=run.snapshot,
                    hyperparameters=run.hyperparameters, reward_model=run.reward_model, output_dir=out)
    (out / "run.json").write_text(json.dumps(spec, indent=2))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", f"training.trainers.{run.method}", "--config", str(out / "run.json")],
            cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            start_new_session=True,
        )
    except OSError as exc:
        _finish(run_id, owner, JobStatus.FAILED, error=f"could not start the trainer: {exc}")
        return JobStatus.FAILED
    metrics: queue.SimpleQueue[str] = queue.SimpleQueue()
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    readers = [threading.Thread(target=_pump, args=(process.stdout, metrics.put), daemon=True),
               threading.Thread(target=_pump, args=(process.stderr, tail.append), daemon=True)]
    for t in readers:
        t.start()

    def drain() -> list[str]:
        lines = []
        while True:
            try:
                lines.append(metrics.get_nowait())
            except queue.Empty:
                return lines

    signalled, last_beat, last_look, step = False, 0.0, 0.0, run.step
    while True:
        exited = process.poll() is not None
        if exited:
            for t in readers:
                t.join(timeout=10)
        step = max(step, metrics_store(run_id, drain()))
        if exited:
            break
        kept = True
        if time.monotonic() - last_beat >= _heartbeat_every():
            last_beat = time.monotonic()
            kept = bool(TrainingRun.objects.filter(pk=run_id, owner=owner).update(
                heartbeat_at=timezone.now(), step=max(step, 0), log_tail="\n".join(tail)
            ))
        if not signalled and time.monotonic() - last_look >= CANCEL_POLL_SECONDS:
            last_look = time.monotonic()
            cancel = TrainingRun.objects.filter(pk=run_id).values_list("cancel_requested", flat=True).first()
            if cancel or not kept:
                process.send_signal(signal.SIGTERM)  # the trainer finishes its step, saves a checkpoint, exits 3
                signalled = True
        time.sleep(0.25)
    code = process.returncode
    result = {}
    try:
        result = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        pass
    log_tail = "\n".join(tail)
    if code == 0 and result.get("status", "succeeded") == "succeeded":
        run.refresh_from_db()
        output = _register_output(run, out)
        _finish(run_id, owner, JobStatus.SUCCEEDED, result=result, log_tail=log_tail, step=step, output_model=output)
        return JobStatus.SUCCEEDED
    if code == EXIT_CANCELLED or signalled:
        _finish(run_id, owner, JobStatus.CANCELLED, result=result, log_tail=log_tail, step=step)
        return JobStatus.CANCELLED
    last = [line for line in tail if line.strip()][-5:]
    what = "invalid config" if code == EXIT_INVALID_CONFIG else f"the trainer exited with status {code}"
    _finish(run_id, owner, JobStatus.FAILED, result=result, log_tail=log_tail, step=step,
            error=(result.get("error") or what + (": " + " | ".join(last) if last else "")))
    return JobStatus.FAILED


def _finish(run_id: int, owner: str, status: str, *, error: str = "", result: dict | None = None,
            log_tail: str | None = None, step: int = -1, output_model: Model | None = None) -> None:
    fields = {"heartbeat_at": timezone.now()}
    if result:
        fields["result"] = result
    if log_tail is not None:
        fields["log_tail"] = log_tail
    if step >= 0:
        fields["step"] = step
    if output_model is not None:
        fields["output_model"] = output_model
    runtime.finish(TRAINING_RUNS, run_id, owner, status, error=error, **fields)


def _register_output(run: TrainingRun, out: Path) -> Model:
    rewardish = run.method in (TrainingMethod.REWARD, TrainingMethod.PRM)
    return model_register(
        name=f"{run.project.slug}-{run.method}-run{run.pk}",
        backend=Backend.TRANSFORMERS,
        path=str(out),
        roles=[ModelRole.REWARD] if rewardish else [ModelRole.POLICY],
        description=f"{run.method} run {run.pk} of {run.base_model.name} on snapshot {run.snapshot_sha256[:12]}",
        base_model=run.base_model,
        parent_run_id=run.pk,
        metadata={"training_run": run.pk, "method": run.method, "snapshot_id": run.snapshot_id,
                  "snapshot_sha256": run.snapshot_sha256, "hyperparameters": run.hyperparameters},
    )


# --- upkeep ---------------------------------------------------------------------------------
def training_runs_reconcile(*, now: datetime | None = None) -> dict:
    """Never leave a run running without a worker: a silent one is failed (cancelled when a cancel was asked);
    a relaunch resumes it from its last checkpoint. A queued run whose message never came gets another."""
    return runtime.reconcile(TRAINING_RUNS, now=now)


# --- reads ----------------------------------------------------------------------------------
def training_runs_for(*, project: Project):
    return TrainingRun.objects.filter(project=project).select_related(
        "base_model", "reward_model", "output_model", "snapshot", "created_by")


def training_run_get(*, project: Project, run_id: int) -> TrainingRun | None:
    return training_runs_for(project=project).filter(pk=run_id).first()


def training_run_series(*, run: TrainingRun, since_step: int = -1) -> dict[str, list[list]]:
    """Metrics by name as [[step, value], ...], in step order (after `since_step` when given)."""
    series: dict[str, list[list]] = {}
    rows = TrainingMetric.objects.filter(run=run, step__gt=since_step).order_by("step", "name")
    for step, name, value in rows.values_list("step", "name", "value").iterator(chunk_size=2000):
        series.setdefault(name, []).append([step, value])
    return series

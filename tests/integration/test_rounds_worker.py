"""Two full rounds of the loop through a real Celery worker process, on tiny random models: `manage.py loop` queues
round 1; the worker generates, selects pairs by the reward model's uncertainty, labels them with the AI judge,
exports the snapshot, trains DPO with LoRA in a trainer process, evaluates, and starts round 2 with round 1's
model. The lineage model → tasks → annotations → snapshot sha256 → run → model is checked link by link."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from annotation import services as annotation_services
from annotation.models import Annotation, Response, Task
from tests.support.tiny import save_tiny_model
from tests.support.workers import ROOT, Processes, worker_env
from training.rounds.models import Round
from training.services import model_register

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CONFIG = {
    "prompts_per_round": 4, "n": 3, "eval_prompts": 3, "probe_limit": 8,
    "sampling": {"max_new_tokens": 12}, "eval_sampling": {"max_new_tokens": 12, "temperature": 0.0},
    "selection": {"policy": "uncertainty", "random_fraction": 0.25},
    "hyperparameters": {"max_steps": 2, "batch_size": 2, "max_length": 96, "num_threads": 1, "learning_rate": 1e-3,
                        "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
}


def test_two_rounds_through_a_worker_link_every_step_and_round_two_generates_with_round_ones_model(
    transactional_db, make_user, workdir
):
    owner = make_user("owner")
    project = annotation_services.project_create(name="Loop", slug="loop", created_by=owner)
    for i in range(12):
        annotation_services.prompt_create(project=project, messages=[{"role": "user", "content": f"What is {i} + {i}?"}])
    for name, kind, seed, roles in (("tiny-policy", "causal", 1, ["policy"]), ("tiny-judge", "causal", 2, ["judge"]),
                                    ("tiny-reward", "classifier", 3, ["reward"])):
        path = save_tiny_model(workdir / name, kind=kind, hidden=32, layers=2, seed=seed)
        model_register(name=name, backend="transformers", path=str(path), roles=roles)
    env = worker_env(workdir, {
        "QUORUM_JOB_HEARTBEAT_SECONDS": "1",
        "QUORUM_ROUND_POLL_SECONDS": "1",
        "QUORUM_WORKER_PRELOAD": "1",
    })
    procs = Processes(env, workdir)
    procs.worker()
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "loop", "--project", "loop", "--rounds", "2", "--labels", "ai",
             "--policy", "tiny-policy", "--judge", "tiny-judge", "--reward-model", "tiny-reward", "--user", "owner",
             "--config", json.dumps(CONFIG), "--wait", "--timeout", "600"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=700,
        )
    finally:
        procs.stop_all()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:] + procs.tails()
    assert "round 2 figures:" in result.stdout and "win rate of" in result.stdout

    first, second = Round.objects.order_by("number")
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert second.previous == first
    for rnd in (first, second):
        # model → generation job → responses → tasks
        job = rnd.generation_job
        assert job.model == rnd.policy and job.status == "succeeded"
        responses = Response.objects.filter(prompt__project=project, dedupe_key__startswith=f"gen:{job.pk}:")
        assert responses.count() == CONFIG["prompts_per_round"] * CONFIG["n"]
        assert set(responses.values_list("model_name", flat=True)) == {rnd.policy.name}
        tasks = Task.objects.filter(project=project, dedupe_key__startswith=rnd.task_key)
        assert tasks.count() == CONFIG["prompts_per_round"]
        reasons = [t.metadata["selection"]["reason"] for t in tasks]
        assert reasons.count("random") == 1 and reasons.count("uncertain") == 3  # 4 pairs, a quarter at random
        assert all(set(t.responses.values_list("model_name", flat=True)) == {rnd.policy.name} for t in tasks)
        # tasks → annotations (the AI judge, both orders)
        labels = Annotation.objects.filter(task__in=tasks, source="ai")
        assert labels.count() == tasks.count()
        assert all(d["judge_model"] == "tiny-judge" and d["both_orders"] for d in labels.values_list("details", flat=True))
        # annotations → snapshot (sha256 of the file) → run → model
        snapshot = rnd.snapshot
        import hashlib

        assert hashlib.sha256(Path(snapshot.path).read_bytes()).hexdigest() == snapshot.sha256 == rnd.snapshot_sha256
        rows = [json.loads(line) for line in open(snapshot.path)]
        chosen = {(r["prompt"][0]["content"], r["chosen"][0]["content"]) for r in rows}
        for task in tasks:
            label = labels.get(task=task).payload["choice"]
            a, b = [tr.response.content for tr in task.task_responses.order_by("position")]
            assert (task.prompt.messages[0]["content"], a if label == "A" else b) in chosen
        run = rnd.training_run
        assert (run.status, run.method, run.snapshot_sha256, run.base_model) == ("succeeded", "dpo", snapshot.sha256, rnd.policy)
        assert rnd.output_model == run.output_model and run.output_model.parent_run_id == run.pk
        assert rnd.output_model.base_model == rnd.policy
        assert rnd.evaluation["win_rate"]["n"] == CONFIG["eval_prompts"]
        assert rnd.evaluation["sycophancy"]["probes"] == 8
        assert set(rnd.stage_times) == {"generate", "select", "label", "export", "train", "evaluate"}
    # Round 2 generated with round 1's output model.
    assert second.policy == first.output_model
    assert second.generation_job.model == first.output_model
    assert second.training_run.base_model == first.output_model
    assert second.output_model.base_model == first.output_model


def test_a_round_survives_its_worker_being_killed(transactional_db, make_user, workdir):
    """SIGKILL the only worker while the round is under way; with beat reconciling and a new worker, the round
    resumes where its row says and succeeds (the embedded broker loses the killed worker's message)."""
    import time

    from training.models import GenerationJob

    owner = make_user("owner")
    project = annotation_services.project_create(name="Loop", slug="loop", created_by=owner)
    for i in range(12):
        annotation_services.prompt_create(project=project, messages=[{"role": "user", "content": f"Name {i} colours."}])
    for name, seed, roles in (("tiny-policy", 1, ["policy"]), ("tiny-judge", 2, ["judge"])):
        path = save_tiny_model(workdir / name, hidden=64, layers=2, seed=seed)
        model_register(name=name, backend="transformers", path=str(path), roles=roles)
    env = worker_env(workdir, {
        "QUORUM_JOB_HEARTBEAT_SECONDS": "1",
        "QUORUM_JOB_STALE_SECONDS": "4",
        "QUORUM_JOB_SLICE_SECONDS": "3",
        "QUORUM_JOB_QUEUED_STALE_SECONDS": "20",
        "QUORUM_RECONCILE_SECONDS": "1",
        "QUORUM_ROUND_POLL_SECONDS": "1",
        "QUORUM_WORKER_PRELOAD": "1",
    })
    # Long random answers, so the generation is still running when the worker is killed.
    config = {**CONFIG, "n": 2, "sampling": {"max_new_tokens": 320}, "selection": {"policy": "random"}}
    procs = Processes(env, workdir)
    procs.worker()
    procs.beat()
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "loop", "--project", "loop", "--policy", "tiny-policy", "--judge",
             "tiny-judge", "--config", json.dumps(config)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            rnd = Round.objects.get()
            job = GenerationJob.objects.filter(pk=rnd.generation_job_id).first()
            if job is not None and job.owner and job.status == "running" and job.done < job.total:
                time.sleep(0.5)  # well inside the batch
                break
            assert rnd.stage == "generate", f"the round went past generation before the kill\n{procs.tails()}"
            time.sleep(0.05)
        else:
            pytest.fail("the generation never got under way\n" + procs.tails())
        procs.kill("worker")
        procs.worker()
        while time.monotonic() < deadline + 300:
            rnd = Round.objects.get()
            if not rnd.is_active:
                break
            time.sleep(0.5)
    finally:
        procs.stop_all()
    rnd = Round.objects.get()
    assert rnd.status == "succeeded", f"{rnd.status} at {rnd.stage}: {rnd.error}\n{procs.tails()}"
    job = rnd.generation_job
    assert job.attempts >= 1 and job.done == job.total == CONFIG["prompts_per_round"] * 2
    assert Task.objects.filter(dedupe_key__startswith=rnd.task_key).count() == CONFIG["prompts_per_round"]
    assert rnd.output_model is not None and rnd.training_run.status == "succeeded"

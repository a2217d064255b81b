"""Feedback jobs through a real Celery worker process on the embedded broker, launched by `manage.py feedback`:
the AI judge labels every task exactly once, and a critique-revision job writes its chains and its snapshot."""

import subprocess
import sys

import pytest

from annotation import services as annotation_services
from annotation.models import Annotation, DatasetSnapshot, Response
from tests.support.tiny import save_tiny_model
from tests.support.workers import ROOT, Processes, worker_env
from training.models import FeedbackJob
from training.services import model_register

from .test_generation_worker import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PRINCIPLE = {"key": "harmless", "name": "Harmless", "critique_request": "Say what is harmful.",
             "revision_request": "Rewrite it without harm.", "comparison_question": "Which response is less harmful?"}


@pytest.fixture
def scenario(transactional_db, make_user, workdir):
    owner = make_user("owner")
    project = annotation_services.project_create(name="Fb", slug="fb", created_by=owner, required_annotations=1)
    annotation_services.constitution_version_create(project=project, principles=[PRINCIPLE])
    for i in range(12):
        prompt = annotation_services.prompt_create(project=project, messages=[{"role": "user", "content": f"Q{i}?"}])
        rs = [annotation_services.response_create(prompt=prompt, content=f"Answer {i}.{j}", dedupe_key=str(j))
              for j in range(2)]
        annotation_services.task_create(project=project, kind="pairwise", prompt=prompt, responses=rs)
    model_register(name="tiny", backend="transformers", path=str(save_tiny_model(workdir / "tiny")))
    env = worker_env(workdir, {
        "QUORUM_JOB_HEARTBEAT_SECONDS": "1",
        "QUORUM_JOB_SLICE_SECONDS": "1",  # hand the job on between batches, as a long job does
        "CELERY_BROKER_URL": f"sqla+sqlite:///{workdir / 'broker.sqlite3'}",
    })
    return {"project": project, "env": env, "tmp": workdir}


def launch(env, *args) -> int:
    result = subprocess.run([sys.executable, "manage.py", "feedback", "--project", "fb", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return int(result.stdout.split()[2].rstrip(":"))


def test_judge_and_revision_jobs_run_on_a_worker(scenario):
    procs = Processes(scenario["env"], scenario["tmp"])
    try:
        procs.worker()
        judge = launch(scenario["env"], "--judge", "tiny", "--batch", "3")
        # Sampled and seeded: the tiny random model's greedy answer is an immediate end of turn.
        revise = launch(scenario["env"], "--revise", "tiny", "--limit", "2", "--batch", "1",
                        "--sampling", '{"temperature": 1.0, "seed": 5, "max_new_tokens": 8}')
        for job_id in (judge, revise):
            wait_for(lambda: FeedbackJob.objects.get(pk=job_id).status not in ("queued", "running"), procs,
                     f"feedback job {job_id} to end")
    finally:
        procs.stop_all()
    job = FeedbackJob.objects.get(pk=judge)
    assert job.status == "succeeded", job.error
    labels = Annotation.objects.filter(source="ai")
    assert labels.count() == 12 == len(set(labels.values_list("task_id", flat=True)))
    assert job.result["labels"] == 12 and job.done == job.total == 12
    chains = FeedbackJob.objects.get(pk=revise)
    assert chains.status == "succeeded", (chains.error, chains.failures)
    assert Response.objects.filter(origin="revision", metadata__feedback_job=revise).count() == 4
    assert DatasetSnapshot.objects.get(pk=chains.result["sft_snapshot"]).row_count == 2

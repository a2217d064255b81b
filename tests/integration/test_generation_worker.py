"""Generation through real Celery worker processes, on Redis and on the embedded broker, with a worker SIGKILLed
mid-job and restarted: the job still ends with exactly the responses and tasks it should (none lost, none doubled).

The workers use the test database (DATABASE_URL in their environment); the job is launched by `manage.py
generate` in the same environment, so its message goes to the broker under test. Timings are shortened through
the environment (heartbeat 1 s, stale after 4 s) and every wait polls the database against a deadline.
"""

import os
import subprocess
import sys
import uuid

import pytest

from annotation import services as annotation_services
from annotation.models import Response, Task
from tests.support import workers
from tests.support.tiny import save_tiny_model
from tests.support.workers import ROOT, Processes, worker_env
from training.models import GenerationJob
from training.services import model_register

N_PROMPTS, N_SAMPLES = 10, 2
DEADLINE = 120  # seconds for any one wait; a healthy run needs a fraction of it

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(redis_url(), socket_connect_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture
def scenario(transactional_db, make_user, workdir):
    tmp_path = workdir
    owner = make_user("owner")
    project = annotation_services.project_create(name="Gen", slug="gen", created_by=owner, required_annotations=1)
    for i in range(N_PROMPTS):
        annotation_services.prompt_create(project=project, messages=[{"role": "user", "content": f"Question {i}?"}])
    model_dir = save_tiny_model(tmp_path / "tiny", hidden=64, layers=2)
    # Long random answers (a random model rarely ends early) so that the job takes a few seconds to kill.
    model_register(name="tiny", backend="transformers", path=str(model_dir),
                   sampling={"max_new_tokens": 160, "temperature": 1.0})
    env = worker_env(tmp_path, {
        "QUORUM_JOB_HEARTBEAT_SECONDS": "1",
        "QUORUM_JOB_STALE_SECONDS": "4",
        # Hand the job on to a new message every few seconds, as production does every minute: shorter than the
        # Redis visibility timeout below, so a message is redelivered only when its worker is gone.
        "QUORUM_JOB_SLICE_SECONDS": "3",
        "QUORUM_JOB_QUEUED_STALE_SECONDS": "60",
        "QUORUM_RECONCILE_SECONDS": "1",
        "QUORUM_WORKER_PRELOAD": "1",
    })
    return {"project": project, "env": env, "tmp": tmp_path}


def launch(env: dict) -> int:
    result = subprocess.run(
        [sys.executable, "manage.py", "generate", "--project", "gen", "--model", "tiny", "--n", str(N_SAMPLES),
         "--kind", "pairwise", "--batch-prompts", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return int(result.stdout.split()[2].rstrip(":"))


def wait_for(predicate, procs: Processes, what: str, deadline: float = DEADLINE):
    def details() -> str:
        rows = list(GenerationJob.objects.values("id", "status", "done", "owner", "error", "ticket"))
        return f"; jobs: {rows}\n{procs.tails()}"

    return workers.wait_for(predicate, what, details, deadline)


def job_row(job_id: int) -> GenerationJob:
    return GenerationJob.objects.get(pk=job_id)


def run_kill_restart(procs: Processes, env: dict, with_beat: bool) -> GenerationJob:
    procs.worker()
    if with_beat:
        procs.beat()
    job_id = launch(env)
    # Kill once a few batches are written and the worker is inside the job (it owns it and beats).
    running = wait_for(
        lambda: (j := job_row(job_id)).status not in ("queued", "running") or (j.owner and 4 <= j.done < j.total) and j,
        procs, "the job to be part-way",
    )
    assert running is not True and running.status == "running", f"{job_row(job_id).error}\n{procs.tails()}"
    procs.kill("worker")
    killed_at = job_row(job_id)
    assert killed_at.status == "running" and killed_at.done < killed_at.total, "the job ended before the kill"
    assert running.owner
    procs.worker()
    final = wait_for(lambda: (j := job_row(job_id)).status not in ("queued", "running") and j, procs, "the job to end")
    assert final.status == "succeeded", f"{final.status}: {final.error}\n{procs.tails()}"
    return final


def assert_exactly_once(job: GenerationJob, project) -> None:
    responses = Response.objects.filter(prompt__project=project, dedupe_key__startswith=f"gen:{job.pk}:")
    assert responses.count() == N_PROMPTS * N_SAMPLES
    assert (job.done, job.total) == (N_PROMPTS * N_SAMPLES, N_PROMPTS * N_SAMPLES)
    pairs = sorted(responses.values_list("prompt_id", "dedupe_key"))
    assert len(set(pairs)) == len(pairs)
    assert set(responses.values_list("generation__job", flat=True)) == {job.pk}
    tasks = Task.objects.filter(project=project, metadata__generation_job=job.pk)
    assert tasks.count() == N_PROMPTS == job.tasks_created
    assert set(tasks.values_list("kind", "n_responses")) == {("pairwise", 2)}
    assert len(set(tasks.values_list("prompt_id", flat=True))) == N_PROMPTS


@pytest.mark.skipif(not redis_available(), reason="needs Redis at REDIS_URL (127.0.0.1:6379)")
def test_on_redis_a_job_survives_its_worker_being_killed(scenario):
    prefix = f"quorum-test-{uuid.uuid4().hex[:8]}:"
    env = {
        **scenario["env"],
        "CELERY_BROKER_URL": redis_url(),
        "CELERY_BROKER_KEY_PREFIX": prefix,
        # The killed worker's message comes back from Redis once unacked for this long.
        "CELERY_VISIBILITY_TIMEOUT": "6",
    }
    procs = Processes(env, scenario["tmp"])
    try:
        # Beat runs as in production: the broker's redelivery and the reconciler may both bring the
        # job back, and it must still end with each response exactly once.
        job = run_kill_restart(procs, env, with_beat=True)
    finally:
        procs.stop_all()
        import redis

        client = redis.Redis.from_url(redis_url())
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    assert_exactly_once(job, scenario["project"])


def test_on_the_embedded_broker_the_reconciler_brings_a_killed_job_back(scenario):
    broker_db = scenario["tmp"] / "broker.sqlite3"
    env = {**scenario["env"], "CELERY_BROKER_URL": f"sqla+sqlite:///{broker_db}"}
    procs = Processes(env, scenario["tmp"])
    try:
        job = run_kill_restart(procs, env, with_beat=True)
        # Taken messages do not pile up: the reconciler deletes them.
        import sqlite3

        def taken():
            with sqlite3.connect(broker_db, timeout=10) as db:
                return db.execute("SELECT count(*) FROM kombu_message WHERE visible = 0").fetchone()[0]

        wait_for(lambda: taken() <= 2, procs, "taken broker messages to be deleted", deadline=30)
    finally:
        procs.stop_all()
    assert_exactly_once(job, scenario["project"])
    # The embedded broker lost the killed worker's message: only the reconciler could re-queue the job.
    assert job.attempts >= 1

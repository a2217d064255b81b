"""Generation jobs through the services, in-process with a tiny random model: the responses and tasks they write,
idempotence across retries and restarts, cancelling, and the reconciler that brings back abandoned jobs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Prompt, Response, Task
from common.errors import Conflict, Invalid
from tests.support.tiny import save_tiny_model
from training.backends import forget_backends
from training.models import GenerationJob
from training.services import (
    generation_job_cancel,
    generation_job_create,
    generation_job_run_slice,
    generation_jobs_reconcile,
    model_register,
)
from training.jobs.runtime import RetryLater


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(autouse=True)
def _job_settings(settings):
    # No heartbeat thread writes while a test holds its transaction open.
    settings.JOB_HEARTBEAT_SECONDS = 3600
    settings.JOB_SLICE_SECONDS = 3600
    settings.JOB_STALE_SECONDS = 30
    settings.JOB_QUEUED_STALE_SECONDS = 60
    settings.JOB_MAX_ATTEMPTS = 3
    yield
    forget_backends()


@pytest.fixture
def tiny(db, tiny_dir):
    return model_register(name="tiny", backend="transformers", path=str(tiny_dir),
                          sampling={"max_new_tokens": 6, "temperature": 1.0})


@pytest.fixture
def prompts(project):
    return [
        annotation_services.prompt_create(project=project, messages=[{"role": "user", "content": f"Question {i}?"}],
                                          tags=["math"] if i % 2 else ["chat"])
        for i in range(5)
    ]


def run_to_end(job_id: int, limit: int = 50) -> str:
    for _ in range(limit):
        job = GenerationJob.objects.get(pk=job_id)
        outcome = generation_job_run_slice(job_id=job_id, ticket=job.ticket)
        if outcome != "continued":
            return outcome
    raise AssertionError("the job never ended")


def job_responses(job):
    return Response.objects.filter(generation__job=job.pk)


def test_a_pairwise_job_writes_n_samples_per_prompt_and_one_pair_each(project, prompts, tiny):
    job = generation_job_create(project=project, model=tiny, n=2, task_kind="pairwise")
    assert (job.status, job.total, job.done) == ("queued", 10, 0)
    assert run_to_end(job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.done, job.total, job.tasks_created, job.owner) == (10, 10, 5, "")
    assert job.completion_tokens > 0 and job.prompt_tokens > 0
    responses = job_responses(job)
    assert responses.count() == 10
    assert sorted(responses.values_list("dedupe_key", flat=True)) == sorted([f"gen:{job.pk}:0", f"gen:{job.pk}:1"] * 5)
    r = responses.first()
    assert r.origin == "generated" and r.model_name == "tiny"
    assert r.generation["sampling"]["max_new_tokens"] == 6 and r.generation["finish_reason"] in ("stop", "length")
    tasks = Task.objects.filter(project=project, metadata__generation_job=job.pk)
    assert tasks.count() == 5 and set(tasks.values_list("kind", flat=True)) == {"pairwise"}
    for task in tasks:
        assert {tr.response.prompt_id for tr in task.task_responses.select_related("response")} == {task.prompt_id}
        assert task.n_responses == 2


@pytest.mark.parametrize(
    "kind,n,k,tasks_per_prompt,responses_per_task",
    [
        ("ranking", 4, 4, 1, 4),
        ("ranking", 5, 2, 2, 2),  # two groups of 2; a last single response makes no ranking
        ("ranking", 5, 3, 2, None),  # a group of 3 and a last group of 2
        ("rating", 2, None, 2, 1),
        ("none", 3, None, 0, None),
    ],
)
def test_candidates_become_the_tasks_asked_for(project, prompts, tiny, kind, n, k, tasks_per_prompt, responses_per_task):
    job = generation_job_create(project=project, model=tiny, n=n, task_kind=kind, group_size=k)
    assert run_to_end(job.pk) == "succeeded"
    tasks = Task.objects.filter(project=project, metadata__generation_job=job.pk)
    assert job_responses(job).count() == 5 * n
    assert tasks.count() == 5 * tasks_per_prompt
    if responses_per_task:
        assert set(tasks.values_list("n_responses", flat=True)) == {responses_per_task}
    if kind == "ranking" and k == 3:
        assert sorted(tasks.values_list("n_responses", flat=True)) == sorted([2, 3] * 5)


def test_steps_tasks_carry_the_responses_steps(project, prompts, tiny):
    job = generation_job_create(project=project, model=tiny, n=1, task_kind="steps",
                                sampling={"max_new_tokens": 12})
    assert run_to_end(job.pk) == "succeeded"
    for task in Task.objects.filter(metadata__generation_job=job.pk):
        response = task.responses.get()
        assert task.kind == "steps" and task.n_steps == len(response.steps) >= 1


def test_a_finished_job_ignores_a_redelivered_message(project, prompts, tiny):
    job = generation_job_create(project=project, model=tiny, n=2)
    ticket = job.ticket
    assert run_to_end(job.pk) == "succeeded"
    assert generation_job_run_slice(job_id=job.pk, ticket=ticket) == "stale"
    assert job_responses(job).count() == 10


def test_a_message_with_an_old_ticket_does_nothing(project, prompts, tiny):
    job = generation_job_create(project=project, model=tiny, n=2)
    assert generation_job_run_slice(job_id=job.pk, ticket="not-the-ticket") == "stale"
    job.refresh_from_db()
    assert job.status == "queued" and job.done == 0


def test_a_job_handed_on_slice_by_slice_ends_with_exactly_the_responses_wanted(project, prompts, tiny, settings):
    settings.JOB_SLICE_SECONDS = 0  # one batch per slice
    job = generation_job_create(project=project, model=tiny, n=2, batch_prompts=2)
    outcomes = []
    for _ in range(10):
        job.refresh_from_db()
        outcomes.append(generation_job_run_slice(job_id=job.pk, ticket=job.ticket))
        if outcomes[-1] != "continued":
            break
    assert outcomes == ["continued", "continued", "succeeded"]
    assert job_responses(job).count() == 10
    assert Task.objects.filter(metadata__generation_job=job.pk).count() == 5


def test_a_job_whose_worker_died_is_requeued_and_resumes_without_duplicates(project, prompts, tiny, settings):
    settings.JOB_SLICE_SECONDS = 0
    job = generation_job_create(project=project, model=tiny, n=2, batch_prompts=2)
    assert generation_job_run_slice(job_id=job.pk, ticket=job.ticket) == "continued"
    job.refresh_from_db()
    # A worker takes the next message and dies: it owns the job and stops beating.
    GenerationJob.objects.filter(pk=job.pk).update(
        owner="dead-worker", status="running", heartbeat_at=timezone.now() - timedelta(seconds=120)
    )
    assert generation_job_run_slice(job_id=job.pk, ticket="an-older-message") == "stale"
    counts = generation_jobs_reconcile()
    assert counts["requeued"] == 1
    job.refresh_from_db()
    assert job.owner == "" and job.attempts == 1 and "stopped responding" in job.error
    settings.JOB_SLICE_SECONDS = 3600
    assert run_to_end(job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.done, job.total, job.error) == (10, 10, "")
    assert job_responses(job).count() == 10
    assert Task.objects.filter(metadata__generation_job=job.pk).count() == 5


def test_a_live_worker_keeps_its_job(project, prompts, tiny):
    job = generation_job_create(project=project, model=tiny, n=2)
    GenerationJob.objects.filter(pk=job.pk).update(owner="alive", status="running", heartbeat_at=timezone.now())
    assert generation_job_run_slice(job_id=job.pk, ticket=job.ticket) == "busy"
    assert generation_jobs_reconcile()["requeued"] == 0


def test_a_job_that_keeps_losing_its_worker_fails_instead_of_running_forever(project, prompts, tiny):
    from annotation.models import WebhookDelivery
    from annotation.services.webhooks import webhook_create

    webhook_create(project=project, url="https://hooks.example/gen", events=["generation.finished"])
    job = generation_job_create(project=project, model=tiny, n=2)
    for attempt in range(3):
        GenerationJob.objects.filter(pk=job.pk).update(
            owner="dead", status="running", heartbeat_at=timezone.now() - timedelta(seconds=120)
        )
        generation_jobs_reconcile()
    job.refresh_from_db()
    assert job.status == "failed" and "stopped responding 3 times" in job.error
    # The failure the reconciler declares reaches the project's webhooks, once, like a worker's own ending.
    [delivery] = WebhookDelivery.objects.filter(event="generation.finished")
    assert delivery.payload["data"]["job"]["status"] == "failed"
    assert "stopped responding" in delivery.payload["data"]["job"]["error"]


def test_a_queued_job_whose_message_was_lost_gets_a_new_one(project, prompts, tiny, django_capture_on_commit_callbacks):
    job = generation_job_create(project=project, model=tiny, n=2)
    old_ticket = job.ticket
    GenerationJob.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(seconds=120))
    with django_capture_on_commit_callbacks() as sent:
        assert generation_jobs_reconcile()["resent"] == 1
    assert len(sent) == 1
    job.refresh_from_db()
    assert job.ticket != old_ticket and job.status == "queued"
    assert generation_job_run_slice(job_id=job.pk, ticket=old_ticket) == "stale"
    assert run_to_end(job.pk) == "succeeded"


def test_launching_sends_one_message_after_commit(project, prompts, tiny, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as sent:
        job = generation_job_create(project=project, model=tiny, n=2)
    assert len(sent) == 1 and job.ticket and job.enqueued_at is not None


def test_cancelling_a_queued_job_ends_it_at_once(project, prompts, tiny):
    job = generation_job_create(project=project, model=tiny, n=2)
    generation_job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == "cancelled" and job.finished_at is not None
    assert generation_job_run_slice(job_id=job.pk, ticket=job.ticket) == "stale"
    assert job_responses(job).count() == 0
    with pytest.raises(Conflict):
        generation_job_cancel(job=job)


def test_cancelling_a_running_job_stops_it_after_the_current_batch(project, prompts, tiny, settings):
    settings.JOB_SLICE_SECONDS = 0
    job = generation_job_create(project=project, model=tiny, n=2, batch_prompts=2)
    assert generation_job_run_slice(job_id=job.pk, ticket=job.ticket) == "continued"
    job.refresh_from_db()
    GenerationJob.objects.filter(pk=job.pk).update(owner="worker-1", heartbeat_at=timezone.now())
    generation_job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == "running" and job.cancel_requested
    # The worker dies before it sees the request: the reconciler closes the job instead of re-queueing it.
    GenerationJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    assert generation_jobs_reconcile()["cancelled"] == 1
    job.refresh_from_db()
    assert job.status == "cancelled" and job.done == 4
    assert job_responses(job).count() == 4


def test_a_server_that_cannot_be_reached_is_retried_then_gives_up(project, prompts):
    remote = model_register(name="remote", backend="openai", base_url="http://127.0.0.1:9/v1",
                            options={"max_retries": 0, "connect_timeout": 1})
    job = generation_job_create(project=project, model=remote, n=1, task_kind="rating")
    assert job.queue == "default"
    tickets = set()
    with pytest.raises(RetryLater) as first:
        generation_job_run_slice(job_id=job.pk, ticket=job.ticket)
    tickets.add(first.value.ticket)
    job.refresh_from_db()
    assert (job.status, job.owner, job.attempts, job.ticket) == ("running", "", 1, first.value.ticket)
    assert "connection failed" in job.error and first.value.countdown > 0
    with pytest.raises(RetryLater) as second:
        generation_job_run_slice(job_id=job.pk, ticket=first.value.ticket)
    assert second.value.ticket not in tickets
    assert generation_job_run_slice(job_id=job.pk, ticket=second.value.ticket) == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("gave up after 3 attempts")


def test_a_model_that_cannot_load_fails_the_job_with_the_reason(project, prompts, tmp_path):
    broken = model_register(name="broken", backend="transformers", path=str(tmp_path / "missing"))
    job = generation_job_create(project=project, model=broken, n=2)
    assert generation_job_run_slice(job_id=job.pk, ticket=job.ticket) == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and "no model at" in job.error and job.finished_at


def test_a_prompt_deleted_after_launch_is_skipped(project, prompts, tiny):
    job = generation_job_create(project=project, model=tiny, n=2)
    prompts[1].delete()
    assert run_to_end(job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.done, job.total) == (8, 8)


def test_a_seeded_job_draws_the_same_whether_or_not_it_was_interrupted(project, prompts, tiny, settings):
    a = generation_job_create(project=project, model=tiny, n=2, sampling={"seed": 5}, batch_prompts=2)
    run_to_end(a.pk)
    settings.JOB_SLICE_SECONDS = 0
    b = generation_job_create(project=project, model=tiny, n=2, sampling={"seed": 5}, batch_prompts=2)
    run_to_end(b.pk)

    def texts(job):
        return list(job_responses(job).order_by("prompt_id", "dedupe_key").values_list("content", flat=True))

    assert texts(a) == texts(b)


def test_the_scope_filters_select_prompts(project, prompts, tiny):
    def scope(**f):
        return generation_job_create(project=project, model=tiny, n=2, prompt_filter=f).prompt_ids

    ids = [p.pk for p in prompts]
    assert scope() == ids
    assert scope(limit=2) == ids[:2]
    assert scope(tags=["math"]) == ids[1::2]
    assert scope(ids=[ids[3], ids[0]]) == [ids[0], ids[3]]
    job = generation_job_create(project=project, model=tiny, n=2, prompt_filter={"ids": ids[:2]})
    run_to_end(job.pk)
    assert scope(without_model_responses=True) == ids[2:]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"n": 1, "task_kind": "pairwise"}, "n"),
        ({"n": 17}, "n"),
        ({"n": 3, "task_kind": "ranking", "group_size": 4}, "group_size"),
        ({"task_kind": "essay"}, "task_kind"),
        ({"prompt_filter": {"tags": ["nothing-has-this"]}}, "prompt_filter"),
        ({"prompt_filter": {"where": "x"}}, "prompt_filter"),
        ({"sampling": {"temperature": -1}}, "sampling"),
        ({"sampling": {"beams": 4}}, "sampling"),
    ],
)
def test_a_job_that_cannot_run_is_refused_at_launch(project, prompts, tiny, kwargs, field):
    with pytest.raises(Invalid) as info:
        generation_job_create(project=project, model=tiny, **{"n": 2, **kwargs})
    assert field in info.value.fields
    assert not GenerationJob.objects.exists()


def test_only_policy_models_generate(project, prompts, tiny_dir):
    judge = model_register(name="judge", backend="transformers", path=str(tiny_dir), roles=["judge"])
    with pytest.raises(Invalid, match="not registered as a policy"):
        generation_job_create(project=project, model=judge, n=2)


def test_prompts_keep_their_ids_through_a_job(project, prompts, tiny):
    job = generation_job_create(project=project, model=tiny, n=2)
    run_to_end(job.pk)
    assert set(job_responses(job).values_list("prompt_id", flat=True)) == set(Prompt.objects.values_list("id", flat=True))

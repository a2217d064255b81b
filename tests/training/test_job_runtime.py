"""One runtime for every job row: the same ending clears an earlier retry's error, whatever the kind."""

import hashlib

import pytest

from annotation import services
from annotation.models import DatasetSnapshot
from training.feedback.jobs import FEEDBACK_JOBS, feedback_job_run_slice
from training.jobs import runtime
from training.models import FeedbackJob, GenerationJob, JobStatus, Model, TrainingRun
from training.rounds.models import Round, RoundStage
from training.rounds.runner import ROUNDS, round_advance_now
from training.services.generation import GENERATION_JOBS
from training.services.runs import TRAINING_RUNS

from tests.training.job_messages import hold_messages

RETRY_ERROR = "retrying: TransientBackendError: the server answered 503"


@pytest.fixture
def rows(project, tmp_path, monkeypatch):
    """One row of each kind, held by worker "w" after a transient error was retried."""
    hold_messages(monkeypatch)
    model = Model.objects.create(name="m", backend="transformers", path=str(tmp_path), roles=["policy", "judge"])
    path = tmp_path / "sft.jsonl"
    path.write_text("{}\n")
    snapshot = DatasetSnapshot.objects.create(project=project, format="sft", path=str(path), row_count=1,
                                              sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    constitution = services.constitution_version_create(project=project, principles=[{
        "key": "kind", "name": "Kind", "critique_request": "Unkind?", "revision_request": "Be kind.",
        "comparison_question": "Which is kinder?"}])
    held = {"status": JobStatus.RUNNING, "owner": "w", "error": RETRY_ERROR, "attempts": 1}
    return {
        GENERATION_JOBS: GenerationJob.objects.create(project=project, model=model, **held),
        FEEDBACK_JOBS: FeedbackJob.objects.create(project=project, kind="judge", model=model,
                                                  constitution=constitution, **held),
        TRAINING_RUNS: TrainingRun.objects.create(project=project, method="sft", base_model=model, snapshot=snapshot,
                                                  snapshot_sha256=snapshot.sha256, **held),
        ROUNDS: Round.objects.create(project=project, number=1, policy=model, **held),
    }


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.CANCELLED])
@pytest.mark.parametrize("kind", [GENERATION_JOBS, FEEDBACK_JOBS, TRAINING_RUNS, ROUNDS], ids=lambda k: k.what)
def test_a_retried_job_that_ends_well_keeps_no_error_for_every_kind(rows, kind, status):
    row = rows[kind]
    assert runtime.finish(kind, row.pk, "w", status)
    row.refresh_from_db()
    assert (row.status, row.owner, row.error) == (status, "", "") and row.finished_at is not None
    assert not runtime.finish(kind, row.pk, "w", JobStatus.FAILED)  # no longer held: nothing written


def test_a_retried_feedback_job_cancelled_mid_run_keeps_no_error(rows, monkeypatch):
    job = rows[FEEDBACK_JOBS]
    FeedbackJob.objects.filter(pk=job.pk).update(owner="", ticket="t1")
    claim = runtime.claim

    def claim_then_cancel(kind, pk, owner, **kwargs):
        state = claim(kind, pk, owner, **kwargs)
        kind.model.objects.filter(pk=pk).update(cancel_requested=True)  # a cancel arrives as the slice starts
        return state

    monkeypatch.setattr(runtime, "claim", claim_then_cancel)
    assert feedback_job_run_slice(job_id=job.pk, ticket="t1", backend=object()) == "cancelled"
    job.refresh_from_db()
    assert (job.status, job.error) == ("cancelled", "")


def test_a_retried_round_that_then_succeeds_keeps_no_error(rows):
    rnd = rows[ROUNDS]
    Round.objects.filter(pk=rnd.pk).update(owner="", status="queued", ticket="t1", stage=RoundStage.DONE)
    assert round_advance_now(round_id=rnd.pk, ticket="t1") == "succeeded"
    rnd.refresh_from_db()
    assert (rnd.status, rnd.error, rnd.waiting_for) == ("succeeded", "", "")


@pytest.mark.parametrize("kind", [GENERATION_JOBS, FEEDBACK_JOBS, TRAINING_RUNS, ROUNDS], ids=lambda k: k.what)
def test_the_reconciler_takes_back_a_silent_row_of_every_kind(rows, kind, settings):
    from datetime import timedelta

    from django.utils import timezone

    row = rows[kind]
    kind.model.objects.filter(pk=row.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 5))
    counts = runtime.reconcile(kind)
    row.refresh_from_db()
    assert row.owner == "" and "worker w stopped responding" in row.error
    if kind.requeue_silent:
        assert counts[kind.prefix + "requeued"] == 1 and row.attempts == 2 and row.is_active
    else:  # a training run's trainer died with its worker: the run fails, a relaunch resumes it
        assert counts[kind.prefix + "failed"] == 1 and row.status == "failed" and "relaunch" in row.error

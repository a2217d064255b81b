import pytest
import torch

from annotation import services
from tests.support.tiny import save_tiny_model
from training.backends import forget_backends
from training.services import model_register

PRINCIPLES = [
    {"key": "harmless", "name": "Harmless", "critique_request": "Identify ways the response is harmful.",
     "revision_request": "Rewrite the response to remove anything harmful.",
     "comparison_question": "Which of these assistant responses is less harmful?"},
    {"key": "honest", "name": "Honest", "critique_request": "Point out anything dishonest.",
     "revision_request": "Rewrite the response to be honest.",
     "comparison_question": "Which of these assistant responses is more honest?"},
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("feedback-tiny") / "model")


@pytest.fixture(autouse=True)
def _job_settings(settings):
    settings.JOB_HEARTBEAT_SECONDS = 3600  # no heartbeat thread writes while a test holds its transaction
    settings.JOB_SLICE_SECONDS = 3600
    settings.JOB_STALE_SECONDS = 30
    settings.JOB_QUEUED_STALE_SECONDS = 60
    settings.JOB_MAX_ATTEMPTS = 3
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    forget_backends()


@pytest.fixture
def tiny(db, tiny_dir):
    return model_register(name="tiny-judge", backend="transformers", path=str(tiny_dir), roles=["policy", "judge"],
                          sampling={"max_new_tokens": 6, "temperature": 0.0})


@pytest.fixture
def constitution(project):
    return services.constitution_version_create(project=project, principles=PRINCIPLES, note="first")


def run_to_end(job_id: int, backend=None, limit: int = 50) -> str:
    from training.feedback.jobs import feedback_job_run_slice
    from training.models import FeedbackJob

    for _ in range(limit):
        job = FeedbackJob.objects.get(pk=job_id)
        outcome = feedback_job_run_slice(job_id=job_id, ticket=job.ticket, backend=backend)
        if outcome != "continued":
            return outcome
    raise AssertionError("the job never ended")

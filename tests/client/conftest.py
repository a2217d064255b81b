"""The Python client and the command line against pytest-django's live server (a real HTTP server in a thread).

Jobs: the API queues generation jobs and training runs by sending Celery messages after commit. Here that send
starts a thread that runs the Celery task's body at once (`.apply()`), the same code a worker runs, trainer
subprocess included; the job's row is the truth the client polls, as it is in production.
"""

import os
import threading
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.authtoken.models import Token

from annotation import services

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _own_cache(settings):
    # Sign-in counters live in the cache: a cache of this test's own, not shared with other runs.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"client-{uuid.uuid4()}"}}


@pytest.fixture
def world(transactional_db, live_server, tmp_path, settings):
    """Users with tokens (a staff admin, an engineer, an annotator, an outsider) and a project `lab`."""
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    settings.MODEL_DIR = tmp_path / "models"
    User = get_user_model()
    users = {
        "boss": User.objects.create_user("boss", password=PASSWORD, is_staff=True),
        "engineer": User.objects.create_user("eng", password=PASSWORD),
        "annotator": User.objects.create_user("ann", password=PASSWORD),
        "outsider": User.objects.create_user("out", password=PASSWORD),
    }
    project = services.project_create(name="Lab", slug="lab", created_by=users["boss"], required_annotations=1)
    services.membership_set(project=project, user=users["engineer"], role="engineer")
    services.membership_set(project=project, user=users["annotator"], role="annotator")
    tokens = {role: Token.objects.create(user=u).key for role, u in users.items()}
    return {"url": live_server.url, "users": users, "tokens": tokens, "project": project, "tmp": tmp_path}


@pytest.fixture
def client_for(world):
    from quorum_client import Client

    made = []

    def make(role: str, **kwargs):
        c = Client(world["url"], token=world["tokens"][role], **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def inline_worker(monkeypatch):
    """Run queued generation jobs, feedback jobs, training runs, rounds and webhook deliveries in threads of this
    process, as a worker would."""
    threads: list[threading.Thread] = []

    def start(target, *args):
        def body():
            try:
                target(*args)
            finally:
                connection.close()

        t = threading.Thread(target=body, daemon=True)
        threads.append(t)
        t.start()

    def send_job(task, args, *, queue, countdown=None):
        from training import tasks

        run = {t.name: t for t in (tasks.generation_job_run, tasks.feedback_job_run, tasks.training_run_execute,
                                   tasks.round_advance)}[task]

        def body():
            if countdown:
                time.sleep(countdown)
            run.apply(args=args)

        start(body)

    def send_deliveries(delivery_ids, countdown=None):
        from annotation.tasks import webhook_deliver

        for pk in delivery_ids:
            start(lambda pk=pk: webhook_deliver.apply(args=[pk]))

    monkeypatch.setattr("annotation.services.webhooks._send", send_deliveries)
    monkeypatch.setattr("training.jobs.runtime.send", send_job)
    yield threads
    for t in threads:
        t.join(timeout=300)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from tests.support.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "base", hidden=32, layers=2)

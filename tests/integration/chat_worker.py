"""A real Celery worker process for live-chat tests: on the test database and a broker file of its own, which this
process (the live server's web side) sends to. It can be killed mid-turn and started again."""

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import workers
from tests.support.workers import Processes, worker_env

# Short heartbeats, so that a killed worker is noticed in seconds; the web side reads the same figures.
CHAT_TIMINGS = {"QUORUM_CHAT_HEARTBEAT_SECONDS": "0.5", "QUORUM_CHAT_STALE_SECONDS": "4"}


@contextmanager
def sending_to(broker: str):
    """Point this process's Celery app at `broker` (the web side sends the chat task by name through it)."""
    from quorum.celery import app

    old_url = app.conf.broker_url
    app.conf.broker_url = broker
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        app.conf.broker_url = old_url
        if app._pool is not None:
            app._pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None


class ChatWorker:
    def __init__(self, procs: Processes):
        self.procs = procs

    def start(self) -> None:
        self.procs.worker()

    def kill(self) -> None:
        self.procs.kill("worker")

    def tails(self) -> str:
        return self.procs.tails()


@pytest.fixture(scope="module")
def chat_worker(django_db_setup, django_db_blocker):
    """One worker for the module (model loads stay warm between tests); yields a ChatWorker."""
    workdir = Path(tempfile.mkdtemp(prefix="quorum-chat-"))
    broker = f"sqla+sqlite:///{workdir / 'broker.sqlite3'}"
    with django_db_blocker.unblock():
        env = worker_env(workdir, {**CHAT_TIMINGS, "CELERY_BROKER_URL": broker, "QUORUM_WORKER_PRELOAD": "1",
                                   "QUORUM_DB_CONN_MAX_AGE": "0"})
    procs = Processes(env, workdir)
    worker = ChatWorker(procs)
    with sending_to(broker):
        try:
            worker.start()
            yield worker
        finally:
            procs.stop_all()
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def chat_timings(settings):
    """The web side judges staleness with the worker's figures."""
    settings.CHAT_HEARTBEAT_SECONDS = float(CHAT_TIMINGS["QUORUM_CHAT_HEARTBEAT_SECONDS"])
    settings.CHAT_STALE_SECONDS = int(CHAT_TIMINGS["QUORUM_CHAT_STALE_SECONDS"])


def wait_for(predicate, what: str, worker: ChatWorker, deadline: float = 120):
    return workers.wait_for(predicate, what, lambda: f"\n{worker.tails()}", deadline, every=0.1)

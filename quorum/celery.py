"""The Celery app: queues `default` (I/O, export, AI feedback calls) and `gpu` (generation, training)."""

import os

from celery import Celery
from django.conf import settings
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
# Workers share cores with the web server and each other: OpenMP threads that spin while waiting made model
# generation ~10x slower on a busy 2-core machine. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = Celery("quorum")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.conf.task_default_queue = "default"
app.conf.task_acks_late = True
app.conf.task_reject_on_worker_lost = True
app.conf.worker_prefetch_multiplier = 1
app.autodiscover_tasks()
app.autodiscover_tasks(["training"], related_name="chat")  # live-chat turns (training/chat.py)
# Lease expiry, stuck-job reconciliation and broker clean-up (training.tasks.reconcile). `expires` drops the
# runs that piled up while no worker was there to take them.
_reconcile_every = float(getattr(settings, "RECONCILE_SECONDS", 15))
app.conf.beat_schedule = {
    "reconcile": {
        "task": "training.reconcile",
        "schedule": _reconcile_every,
        "options": {"expires": _reconcile_every, "queue": "default"},
    },
    # Chat turns whose worker stopped beating are marked failed: the annotator gets a retry (training.chat).
    "chat": {"task": "training.chat_reconcile", "schedule": _reconcile_every,
             "options": {"expires": _reconcile_every, "queue": "default"}},
    # Webhook deliveries whose message was lost (annotation.tasks.webhook_reconcile).
    "webhooks": {"task": "annotation.webhook_reconcile", "schedule": 60.0, "options": {"expires": 60.0, "queue": "default"}},
}

if app.conf.broker_url.startswith("sqla+"):
    # The SQLAlchemy transport polls; its interval is a class attribute (passing it through
    # broker_transport_options reaches create_engine and crashes the worker).
    from kombu.transport import sqlalchemy as _sqla

    _sqla.Transport.polling_interval = 0.1
elif app.conf.broker_url.startswith("redis"):
    # A message a worker took and never acked (the worker died) is redelivered once it is older than
    # visibility_timeout: longer than any task runs (generation hands its job on every JOB_SLICE_SECONDS).
    # The sweep for such messages runs every interval × throttle seconds (kombu's default throttle of 10
    # would make 5 s into 50 s).
    app.conf.broker_transport_options = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "300")),
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
        # Lets several deployments (or test runs) share one Redis.
        "global_keyprefix": os.environ.get("CELERY_BROKER_KEY_PREFIX", ""),
    }


def embedded_broker_prepare() -> bool:
    """Create the embedded broker's tables and queues now, before web, workers and beat start together.

    The SQLAlchemy transport creates its tables when a process first connects; processes starting at once race to
    create them on SQLite, and a message sent during that race is lost (the reconciler resends it, a beat later).
    Returns whether there was anything to prepare (False on Redis and RabbitMQ)."""
    if not app.conf.broker_url.startswith("sqla+"):
        return False
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.conf.task_queues:
            channel.queue_declare(queue.name)
    return True

"""The Celery app: queues `default` (I/O, export, AI feedback calls) and `gpu` (generation, training)."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")

app = Celery("quorum")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.conf.task_default_queue = "default"
app.conf.task_acks_late = True
app.conf.task_reject_on_worker_lost = True
app.conf.worker_prefetch_multiplier = 1
app.autodiscover_tasks()

if app.conf.broker_url.startswith("sqla+"):
    # The SQLAlchemy transport polls; its interval is a class attribute (passing it through
    # broker_transport_options reaches create_engine and crashes the worker).
    from kombu.transport import sqlalchemy as _sqla

    _sqla.Transport.polling_interval = 0.1
elif app.conf.broker_url.startswith("redis"):
    app.conf.broker_transport_options = {
        "visibility_timeout": 300,
        "unacked_restore_interval": 5,
    }

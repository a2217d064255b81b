"""Celery tasks of the annotation app: webhook deliveries. They take ids and do their work through services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError, close_old_connections

from .models import DeliveryStatus
from .services.webhooks import webhook_deliveries_reconcile, webhook_delivery_attempt

log = logging.getLogger(__name__)


@shared_task(bind=True, name="annotation.webhook_deliver", acks_late=True, ignore_result=True, max_retries=None)
def webhook_deliver(self, delivery_id: int) -> str:
    """POST one delivery; a failed attempt is retried by Celery after the backoff the service chose.

    The attempt count lives on the delivery row, which decides when to stop (WEBHOOK_MAX_ATTEMPTS), so a
    redelivered message never sends more attempts than that.
    """
    close_old_connections()
    try:
        status, delay = webhook_delivery_attempt(delivery_id=delivery_id)
    except (OperationalError, InterfaceError) as exc:
        log.warning("webhook delivery %s: database error %s; retrying", delivery_id, exc)
        close_old_connections()
        raise self.retry(countdown=5, max_retries=20)
    if status == DeliveryStatus.RETRYING:
        raise self.retry(countdown=delay)
    return status


@shared_task(name="annotation.webhook_reconcile", ignore_result=True)
def webhook_reconcile() -> int:
    """Periodic (beat): send again deliveries whose message was lost."""
    close_old_connections()
    return webhook_deliveries_reconcile()

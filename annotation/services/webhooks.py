"""Webhooks: a project's URLs receive its events as signed POSTs, sent by Celery with retries and logged.

An event becomes one WebhookDelivery row per active webhook that subscribed to it, in the same
transaction as the change it reports; the rows are sent after commit (`annotation.tasks.webhook_deliver`),
retried with exponential backoff by Celery's own retry until WEBHOOK_MAX_ATTEMPTS, then marked failed.
A delivery is keyed by its event's identity (e.g. `task.completed:42`), so an event reported twice is
sent once. Delivery is at least once: receivers deduplicate by the `X-Quorum-Delivery` header.

Signature: `X-Quorum-Signature: sha256=HEX`, HEX = HMAC-SHA256(secret, f"{timestamp}.{body}") with the
`X-Quorum-Timestamp` header's value (Unix seconds), so an old delivery cannot be replayed as new.

URLs go to public addresses only (`webhook_targets`): checked when a webhook is registered and again before each
attempt, which connects to the address it checked. What a receiver answers is never stored: a delivery keeps the
status code and a short reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import ssl
import time
import uuid
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from common.errors import Conflict, Invalid

from ..models import DeliveryStatus, Project, Task, TaskStatus, Webhook, WebhookDelivery, WebhookEvent
from .webhook_targets import REFUSED_MESSAGE, TargetRefused, TargetUnresolved, target_check

log = logging.getLogger(__name__)

EVENTS = tuple(e for e in WebhookEvent.values if e != WebhookEvent.PING)
SIGNATURE_HEADER = "X-Quorum-Signature"
TIMESTAMP_HEADER = "X-Quorum-Timestamp"
EVENT_HEADER = "X-Quorum-Event"
DELIVERY_HEADER = "X-Quorum-Delivery"
MAX_WEBHOOKS_PER_PROJECT = 20


def _setting(name: str, default):
    """A Django setting if the project sets one, else the QUORUM_<NAME> environment variable, else the default."""
    if hasattr(settings, name):
        return getattr(settings, name)
    return type(default)(os.environ.get(f"QUORUM_{name}", default))


# --- Signing ----------------------------------------------------------------------------------


def signature_for(*, secret: str, timestamp: str, body: bytes) -> str:
    """The X-Quorum-Signature value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_verify(
    *, secret: str, body: bytes, timestamp: str, signature: str, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (replays are refused)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature_for(secret=secret, timestamp=timestamp, body=body), signature or "")


# --- Managing webhooks ------------------------------------------------------------------------


def _clean(url: str | None, events: list | None) -> None:
    problems: dict[str, list[str]] = {}
    if url is not None:
        parts = urlsplit(url)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            problems["url"] = ["must be an http:// or https:// URL"]
        else:
            try:
                target_check(url)
            except TargetRefused:
                problems["url"] = [REFUSED_MESSAGE]
            except TargetUnresolved:
                pass  # not resolvable yet: each delivery checks the address it is about to use
    if events is not None:
        if not isinstance(events, list) or not events:
            problems["events"] = [f"name at least one of {', '.join(EVENTS)}"]
        else:
            unknown = sorted({str(e) for e in events} - set(EVENTS))
            if unknown:
                problems["events"] = [f"unknown event {', '.join(unknown)}; choose from {', '.join(EVENTS)}"]
    if problems:
        raise Invalid("; ".join(f"{k}: {v[0]}" for k, v in problems.items()), fields=problems)


def webhook_create(
    *,
    project: Project,
    url: str,
    events: list[str],
    secret: str | None = None,
    active: bool = True,
    description: str = "",
    created_by: AbstractBaseUser | None = None,
) -> Webhook:
    """Register `url` for `events`; without a secret one is generated (read it from the result once)."""
    _clean(url, events)
    if secret is not None and len(secret) < 16:
        raise Invalid("the secret is too short", fields={"secret": ["at least 16 characters"]})
    if Webhook.objects.filter(project=project).count() >= MAX_WEBHOOKS_PER_PROJECT:
        raise Invalid("too many webhooks", fields={"url": [f"a project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks"]})
    return Webhook.objects.create(
        project=project,
        url=url,
        events=sorted(set(events)),
        secret=secret or secrets.token_urlsafe(32),
        active=active,
        description=description,
        created_by=created_by,
    )


def webhook_update(
    *,
    webhook: Webhook,
    url: str | None = None,
    events: list[str] | None = None,
    active: bool | None = None,
    description: str | None = None,
    rotate_secret: bool = False,
) -> Webhook:
    _clean(url, events)
    fields = []
    for name, value in (("url", url), ("events", sorted(set(events)) if events is not None else None),
                        ("active", active), ("description", description)):  # fmt: skip
        if value is not None:
            setattr(webhook, name, value)
            fields.append(name)
    if rotate_secret:
        webhook.secret = secrets.token_urlsafe(32)
        fields.append("secret")
    if fields:
        webhook.save(update_fields=fields)
    return webhook


def webhook_delete(*, webhook: Webhook) -> None:
    webhook.delete()


# --- Reading ----------------------------------------------------------------------------------


def webhooks_of(*, project: Project) -> QuerySet[Webhook]:
    return Webhook.objects.filter(project=project).order_by("id")


def deliveries_of(*, project: Project, webhook_id: int | None = None, status: str | None = None) -> QuerySet[WebhookDelivery]:
    """The project's deliveries, newest first."""
    qs = WebhookDelivery.objects.filter(webhook__project=project).select_related("webhook").order_by("-id")
    if webhook_id is not None:
        qs = qs.filter(webhook_id=webhook_id)
    if status:
        qs = qs.filter(status=status)
    return qs


# --- Emitting ---------------------------------------------------------------------------------


def _send(delivery_ids: list[int], countdown: float | None = None) -> None:
    from ..tasks import webhook_deliver  # the Celery task module imports this one

    for pk in delivery_ids:
        webhook_deliver.apply_async(args=[pk], queue="default", countdown=countdown)


def _subscribers(project_id: int, event: str) -> list[int]:
    # Events are a short JSON list per row and a project has few webhooks: filter here rather than
    # with a JSON containment lookup SQLite lacks.
    rows = Webhook.objects.filter(project_id=project_id, active=True).values_list("id", "events")
    return [pk for pk, events in rows if event in (events or []) or event == WebhookEvent.PING]


def webhook_emit(
    *, project: Project | int, event: str, key: str, data: dict, only: int | None = None, _targets: list[int] | None = None,
    _slug: str | None = None,
) -> list[int]:
    """Record `event` for every active webhook of the project that wants it; each is sent after commit.

    `key` names the event's subject (an event with the same key is recorded once per webhook).
    Returns the ids of the deliveries created. `only` limits it to one webhook (pings).
    """
    project_id = project if isinstance(project, int) else project.pk
    targets = [only] if only is not None else _targets if _targets is not None else _subscribers(project_id, event)
    if not targets:
        return []
    slug = project.slug if isinstance(project, Project) else _slug
    if slug is None:
        slug = Project.objects.filter(pk=project_id).values_list("slug", flat=True).first()
    payload = {
        "event": event,
        "created_at": timezone.now().isoformat(),
        "project": {"id": project_id, "slug": slug},
        "data": data,
    }
    created = []
    for webhook_id in targets:
        try:
            with transaction.atomic():
                created.append(
                    WebhookDelivery.objects.create(webhook_id=webhook_id, event=event, key=key[:200], payload=payload).pk
                )
        except IntegrityError:
            continue  # this event was recorded for this webhook already
    if created:
        # robust: a broker that is down must not turn the committed change into an error; the
        # reconciler sends what is left pending.
        transaction.on_commit(partial(_send, created), robust=True)
    return created


def webhook_ping(*, webhook: Webhook) -> WebhookDelivery:
    """Send a `ping` event to this one webhook (to check the receiver and its secret)."""
    ids = webhook_emit(
        project=webhook.project, event=WebhookEvent.PING, key=f"ping:{uuid.uuid4()}", data={"webhook": webhook.pk}, only=webhook.pk
    )
    return WebhookDelivery.objects.get(pk=ids[0])


def _task_completed_after_commit(task_id: int, project_id: int) -> None:
    targets = _subscribers(project_id, WebhookEvent.TASK_COMPLETED)
    if not targets:
        return
    task = (
        Task.objects.filter(pk=task_id, status=TaskStatus.COMPLETE)
        .annotate(last_annotation=Max("annotations__id"))
        .values("id", "kind", "prompt_id", "submitted_count", "required", "priority", "metadata", "last_annotation",
                "project__slug")  # fmt: skip
        .first()
    )
    if task is not None:
        # Keyed by the task's newest annotation: two submits that both see the task complete report it once,
        # and a task completed again after an undo is reported again.
        key = f"task.completed:{task_id}:{task.pop('last_annotation')}"
        prompt, slug = task.pop("prompt_id"), task.pop("project__slug")
        data = {"task": {**task, "prompt": prompt}}
        webhook_emit(project=project_id, event=WebhookEvent.TASK_COMPLETED, key=key, data=data, _targets=targets, _slug=slug)


def webhook_task_submitted(*, task_id: int, project_id: int) -> None:
    """Called inside a submit's transaction: after commit, report the task if that submit completed it.

    Checked after commit so a submit pays nothing while it holds its locks; the delivery key makes
    two submits that both see the task complete report it once.
    """
    transaction.on_commit(partial(_task_completed_after_commit, task_id, project_id), robust=True)


# --- Delivering -------------------------------------------------------------------------------


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: base × 2^(attempts−1), capped."""
    base = float(_setting("WEBHOOK_RETRY_BASE_SECONDS", 10.0))
    return min(float(_setting("WEBHOOK_RETRY_MAX_SECONDS", 3600.0)), base * 2 ** max(0, attempts - 1))


_clients: dict[tuple[int, str], object] = {}
_tls: dict[int, ssl.SSLContext] = {}
MAX_CLIENTS = 64


def _http_client(server_name: str):
    """An httpx client per process and receiver host name, sharing one TLS context (loading the CA bundle costs
    more than a local POST).

    Connections are made to an IP address, so a pool shared by every host would let a TLS connection verified
    for one name carry another name's delivery; one client per name keeps each pool to its own name. Proxy
    variables are ignored: the address check only holds if this process makes the connection itself.
    """
    import certifi
    import httpx

    pid = os.getpid()
    client = _clients.get((pid, server_name))
    if client is None:
        if len(_clients) >= MAX_CLIENTS:
            for key in list(_clients):
                if key[0] == pid:
                    _clients.pop(key).close()
                else:
                    _clients.pop(key)  # a parent process's client: its sockets are not ours to close
        context = _tls.get(pid)
        if context is None:
            context = _tls[pid] = ssl.create_default_context(cafile=certifi.where())
        client = _clients[(pid, server_name)] = httpx.Client(
            follow_redirects=False, trust_env=False, verify=context, headers={"User-Agent": "Quorum-Webhooks/1"}
        )
    return client


def delivery_body(delivery: WebhookDelivery) -> bytes:
    return json.dumps({"id": delivery.pk, **delivery.payload}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _post_pinned(url: str, address, *, body: bytes, headers: dict, timeout: float) -> int:
    """POST to `url` through a connection to `address`, the one that was checked; the answer's status code.

    The URL's host still goes in the Host header and as the TLS server name (so the certificate is verified
    for it). The answer's body is not read: nothing a receiver says is kept.
    """
    import httpx

    original = httpx.URL(url)
    host = original.raw_host.decode("ascii")
    pinned = original.copy_with(host=str(address))
    extensions = {"sni_hostname": host} if original.scheme == "https" else {}
    headers = {**headers, "Host": original.netloc.decode("ascii")}
    client = _http_client(host)
    with client.stream("POST", pinned, content=body, headers=headers, timeout=timeout, extensions=extensions) as answer:
        return answer.status_code


def _failure_reason(error: Exception) -> str:
    """A short, fixed reason for a failed attempt: never the text of an exception or of the receiver's answer."""
    import httpx

    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    causes, seen = [], error
    while seen is not None and len(causes) < 10:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return "TLS error"
    if isinstance(error, httpx.ConnectError):
        return "could not connect"
    if isinstance(error, httpx.ProtocolError):
        return "invalid HTTP answer"
    return "request failed"


def webhook_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> tuple[str, float | None]:
    """POST one delivery once and record the outcome: (status, seconds until the next attempt or None).

    A 2xx answer succeeds. Anything else (another status, a timeout, a refused connection, a host that does
    not resolve) is retried until WEBHOOK_MAX_ATTEMPTS attempts, then the delivery is failed. Redirects are
    not followed. A URL whose host now resolves to an address webhooks are not sent to fails at once, unsent.
    """
    import httpx

    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED):
        return (delivery.status if delivery else "missing"), None
    now = now or timezone.now()
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now + timedelta(seconds=1):
        # A second copy of a message (a broker that redelivered a long countdown): the copy that is due
        # later does the next attempt.
        return "not_due", None
    # Claim the attempt before sending, so two copies of one message never both POST it.
    attempts = delivery.attempts + 1
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING]
    ).update(attempts=attempts, last_attempt_at=now)
    if not claimed:
        return "busy", None
    webhook = delivery.webhook
    code, ok = None, False
    final = attempts >= int(_setting("WEBHOOK_MAX_ATTEMPTS", 8))
    if not webhook.active:
        error, final = "the webhook was disabled", True
    else:
        try:
            target = target_check(webhook.url)
        except TargetRefused:
            error, final = "address not allowed", True
        except TargetUnresolved:
            error = "host does not resolve"
        else:
            body = delivery_body(delivery)
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                EVENT_HEADER: delivery.event,
                DELIVERY_HEADER: str(delivery.pk),
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature_for(secret=webhook.secret, timestamp=timestamp, body=body),
            }
            try:
                code = _post_pinned(webhook.url, target.address, body=body, headers=headers,
                                    timeout=float(_setting("WEBHOOK_TIMEOUT_SECONDS", 10.0)))  # fmt: skip
                ok = 200 <= code < 300
                error = "" if ok else f"HTTP {code}"
            except httpx.HTTPError as exc:
                error = _failure_reason(exc)
    done = timezone.now()
    fields = {"response_code": code, "last_error": error}
    delay = None
    if ok:
        fields.update(status=DeliveryStatus.SUCCEEDED, finished_at=done, next_attempt_at=None)
    elif final:
        fields.update(status=DeliveryStatus.FAILED, finished_at=done, next_attempt_at=None)
    else:
        delay = retry_delay(attempts)
        fields.update(status=DeliveryStatus.RETRYING, next_attempt_at=done + timedelta(seconds=delay))
    WebhookDelivery.objects.filter(pk=delivery.pk, attempts=attempts).update(**fields)
    return fields["status"], delay


def webhook_delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a finished (failed or succeeded) delivery again from its first attempt, e.g. after fixing the receiver."""
    if delivery.status not in (DeliveryStatus.FAILED, DeliveryStatus.SUCCEEDED):
        raise Conflict("this delivery is still being sent; wait for it to succeed or fail", code="delivery_in_flight")
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.PENDING, attempts=0, finished_at=None, next_attempt_at=None, last_error=""
        )
        transaction.on_commit(partial(_send, [delivery.pk]), robust=True)
    delivery.refresh_from_db()
    return delivery


def webhook_deliveries_reconcile(*, now: datetime | None = None) -> int:
    """Send again the deliveries whose message was lost (a broker that was down, a worker killed mid-send):
    pending ones older than WEBHOOK_STALE_SECONDS, and retrying ones that many seconds past their due time."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=int(_setting("WEBHOOK_STALE_SECONDS", 300)))
    pending = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, created_at__lt=stale, next_attempt_at__isnull=True)
    overdue = WebhookDelivery.objects.filter(status__in=[DeliveryStatus.RETRYING, DeliveryStatus.PENDING], next_attempt_at__lt=stale)
    ids = sorted(set(pending.values_list("id", flat=True)[:500]) | set(overdue.values_list("id", flat=True)[:500]))
    if ids:
        # Push their due time forward so the next sweep does not send them again at once.
        WebhookDelivery.objects.filter(pk__in=ids).update(next_attempt_at=now)
        _send(ids)
    return len(ids)

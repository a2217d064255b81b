"""Webhooks reach public addresses only: a URL that is, or resolves to, a loopback, private, link-local,
multicast, reserved or unspecified address is refused when registered (API and page) and again before each
attempt; an attempt connects to the very address it checked; what a receiver answers is never kept.

Deliveries here are attempted in this process against local HTTP servers. Names under `.rebind.test` are answered
by a stand-in resolver (this machine has no DNS to change between two lookups); every other name goes to the
system resolver.
"""

import socket

import pytest
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import DeliveryStatus, Role, WebhookDelivery
from annotation.services.webhook_targets import REFUSED_MESSAGE
from annotation.services.webhooks import webhook_create, webhook_delivery_attempt, webhook_emit, webhook_update
from common.errors import Invalid
from tests.annotation.webhook_receiver import FAILURE_ANSWER, Receiver

INTERNAL_URLS = [
    "http://127.0.0.1/hook",
    "http://127.8.9.10:8080/hook",
    "http://localhost:8000/hook",  # a name: refused for what it resolves to
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:10.1.2.3]/hook",
    "http://10.0.0.5/hook",
    "http://172.16.3.4/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[fe80::1]/hook",
    "http://[fc00::1]/hook",
    "http://[fec0::1]/hook",
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://224.0.0.1/hook",
    "http://[ff02::1]/hook",
    "http://240.0.0.1/hook",
    "http://255.255.255.255/hook",
    "http://[2002:7f00:1::]/hook",  # 6to4 wrapping 127.0.0.1
    "http://2130706433/hook",  # 127.0.0.1 written as one number
]


@pytest.fixture
def receivers():
    made = []

    def make(**kwargs):
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def dns(monkeypatch):
    """answers["x.rebind.test"] = [answer, ...]: each lookup of the name takes the next answer (the last one
    repeats), an address or a list of them; `lookups` counts them."""
    answers: dict[str, list[str]] = {}
    lookups: dict[str, int] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(".rebind.test"):
            return real(host, port, *args, **kwargs)
        if name not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        n = lookups[name] = lookups.get(name, 0) + 1
        answer = answers[name][min(n, len(answers[name])) - 1]
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port or 0)))
            for ip in ([answer] if isinstance(answer, str) else answer)
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    getaddrinfo.answers, getaddrinfo.lookups = answers, lookups
    return getaddrinfo


@pytest.fixture
def admin_api(project, member):
    client = APIClient()
    client.force_authenticate(member(Role.ADMIN))
    return client


def _deliver(webhook) -> WebhookDelivery:
    (pk,) = webhook_emit(project=webhook.project, event="run.finished", key="run.finished:1", data={}, only=webhook.pk)
    webhook_delivery_attempt(delivery_id=pk)
    return WebhookDelivery.objects.get(pk=pk)


# --- registration ---------------------------------------------------------------------------
@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_a_url_that_is_or_resolves_to_an_internal_address_is_refused_at_registration(db, project, url):
    with pytest.raises(Invalid) as refused:
        webhook_create(project=project, url=url, events=["run.finished"])
    assert refused.value.fields == {"url": [REFUSED_MESSAGE]}
    assert not project.webhooks.exists()


def test_the_api_refuses_an_internal_url_with_a_field_message_on_create_and_on_update(db, project, admin_api):
    base = f"/api/v1/projects/{project.slug}/webhooks/"
    for url in ("http://169.254.169.254/latest/meta-data/", "http://localhost:6379/", "http://[::ffff:127.0.0.1]:8000/"):
        refused = admin_api.post(base, {"url": url, "events": ["run.finished"]}, format="json")
        assert refused.status_code == 400, (url, refused.data)
        assert refused.data["fields"]["url"] == [REFUSED_MESSAGE]
    assert not project.webhooks.exists()

    created = admin_api.post(base, {"url": "https://hooks.example/quorum", "events": ["run.finished"]}, format="json")
    assert created.status_code == 201
    moved = admin_api.patch(f"{base}{created.data['id']}/", {"url": "http://10.0.0.7/"}, format="json")
    assert moved.status_code == 400 and moved.data["fields"]["url"] == [REFUSED_MESSAGE]
    assert project.webhooks.get().url == "https://hooks.example/quorum"


def test_a_name_with_one_internal_address_among_public_ones_is_refused(db, project, dns):
    dns.answers["mixed.rebind.test"] = [["93.184.216.34", "10.0.0.8"]]
    with pytest.raises(Invalid):
        webhook_create(project=project, url="https://mixed.rebind.test/hook", events=["run.finished"])
    dns.answers["public.rebind.test"] = [["93.184.216.34", "2606:2800:220:1::1"]]
    webhook_create(project=project, url="https://public.rebind.test/hook", events=["run.finished"])
    assert [w.url for w in project.webhooks.all()] == ["https://public.rebind.test/hook"]


def test_the_allow_setting_lets_listed_hosts_addresses_and_networks_through(db, project, settings):
    for url in ("http://127.0.0.1:9000/h", "http://localhost/h", "http://10.20.30.40/h", "http://[fd00::5]/h"):
        with pytest.raises(Invalid):
            webhook_create(project=project, url=url, events=["run.finished"])
    settings.WEBHOOK_ALLOW_PRIVATE = ["127.0.0.1", "localhost", "10.20.0.0/16", "fd00::/8"]
    for url in ("http://127.0.0.1:9000/h", "http://localhost/h", "http://10.20.30.40/h", "http://[fd00::5]/h"):
        webhook_create(project=project, url=url, events=["run.finished"])
    for url in ("http://127.0.0.2/h", "http://10.21.0.1/h", "http://169.254.169.254/"):
        with pytest.raises(Invalid):
            webhook_create(project=project, url=url, events=["run.finished"])
    assert project.webhooks.count() == 4


def test_the_webhooks_page_shows_a_refused_url_as_a_form_error(db, project, member):
    page = Client()
    page.force_login(member(Role.ADMIN))
    answer = page.post(f"/p/{project.slug}/webhooks/new/", {"url": "http://169.254.169.254/latest/", "events": ["run.finished"]})
    assert answer.status_code == 400
    assert "public addresses only" in answer.content.decode()
    assert answer.context["form"].errors["url"] == [REFUSED_MESSAGE]
    assert not project.webhooks.exists()


# --- delivery ---------------------------------------------------------------------------------
def test_a_name_that_resolves_internal_at_delivery_time_is_not_sent_to(db, project, dns, receivers, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = []
    local = receivers()
    dns.answers["hooks.rebind.test"] = ["93.184.216.34", "127.0.0.1"]  # public when registered, loopback later
    hook = webhook_create(project=project, url=f"http://hooks.rebind.test:{local.port}/in", events=["run.finished"])

    delivery = _deliver(hook)
    assert local.requests == []
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.last_error) == (
        DeliveryStatus.FAILED, 1, None, "address not allowed")
    assert delivery.finished_at is not None


def test_an_attempt_connects_to_the_address_it_checked_with_the_urls_host_header(db, project, dns, receivers, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = ["127.0.0.1"]
    checked = receivers(host="127.0.0.1")
    other = receivers(host="127.0.0.2", port=checked.port)  # not allowed, same port
    hook = webhook_create(project=project, url=f"http://pin.rebind.test:{checked.port}/in", events=["run.finished"])
    # Registered while the name did not resolve; then the first lookup answers the allowed address and any later
    # lookup another one, as a rebinding name does between a check and a connect.
    dns.answers["pin.rebind.test"] = ["127.0.0.1", "127.0.0.2"]

    delivery = _deliver(hook)
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.response_code == 200
    assert other.requests == []
    assert [(r["path"], r["headers"]["host"]) for r in checked.requests] == [("/in", f"pin.rebind.test:{checked.port}")]
    assert dns.lookups["pin.rebind.test"] == 1


def test_redirects_are_not_followed_and_the_receivers_answer_is_not_kept(db, project, receivers, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = ["127.0.0.1"]
    target = receivers()
    mover = receivers(redirect_to=f"http://127.0.0.1:{target.port}/stolen")
    moved = _deliver(webhook_create(project=project, url=f"http://127.0.0.1:{mover.port}/moved", events=["run.finished"]))
    assert target.requests == [] and moved.response_code == 302 and moved.last_error == "HTTP 302"

    failed = _deliver(webhook_create(project=project, url=f"http://127.0.0.1:{mover.port}/fail", events=["run.finished"]))
    assert (failed.status, failed.response_code, failed.last_error) == (DeliveryStatus.RETRYING, 500, "HTTP 500")

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    refused = _deliver(webhook_create(project=project, url=f"http://127.0.0.1:{port}/", events=["run.finished"]))
    assert (refused.response_code, refused.last_error) == (None, "connection refused")


def test_engineers_and_admins_read_the_code_and_a_short_reason_never_the_answer(db, project, member, receivers, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = ["127.0.0.1"]
    failing = receivers()
    hook = webhook_create(project=project, url=f"http://127.0.0.1:{failing.port}/fail", events=["run.finished"])
    _deliver(hook)
    for role in (Role.ENGINEER, Role.ADMIN):
        api = APIClient()
        api.force_authenticate(member(role))
        (row,) = api.get(f"/api/v1/projects/{project.slug}/webhook-deliveries/").data["results"]
        assert (row["response_code"], row["last_error"]) == (500, "HTTP 500")
        assert FAILURE_ANSWER.decode() not in str(row)
    page = Client()
    page.force_login(member(Role.ADMIN))
    html = page.get(f"/p/{project.slug}/webhooks/").content.decode()
    assert "HTTP 500" in html and FAILURE_ANSWER.decode() not in html


def test_a_webhook_moved_to_an_internal_url_by_an_update_is_refused(db, project):
    hook = webhook_create(project=project, url="https://hooks.example/a", events=["run.finished"])
    with pytest.raises(Invalid):
        webhook_update(webhook=hook, url="http://[::ffff:169.254.169.254]/")
    hook.refresh_from_db()
    assert hook.url == "https://hooks.example/a"


# --- rows written before answers stopped being kept -----------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_migration_rewrites_earlier_errors_to_short_reasons(project):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("annotation", "0003_ai_raters")], [("annotation", "0004_delivery_reason_not_answer")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        hook = old.get_model("annotation", "Webhook").objects.create(
            project_id=project.pk, url="https://hooks.example/a", events=["run.finished"], secret="s" * 32)
        rows = {
            "HTTP 500: " + FAILURE_ANSWER.decode() + "x" * 400: (500, "HTTP 500"),
            "ConnectError: [Errno 111] Connection refused": (None, "connection refused"),
            "ReadTimeout: timed out": (None, "timed out"),
            "the webhook was disabled": (None, "the webhook was disabled"),
            "RemoteProtocolError: Server disconnected without sending a response.": (None, "request failed"),
            "": (200, ""),
        }
        Delivery = old.get_model("annotation", "WebhookDelivery")
        for i, (text, (code, _)) in enumerate(rows.items()):
            Delivery.objects.create(webhook=hook, event="run.finished", key=f"k{i}", payload={}, response_code=code,
                                    last_error=text)  # fmt: skip
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        got = dict(WebhookDelivery.objects.order_by("key").values_list("key", "last_error"))
        assert got == {f"k{i}": reason for i, (_, reason) in enumerate(rows.values())}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

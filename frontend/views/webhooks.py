"""Webhooks page (admins): the project's webhook URLs, their recent deliveries, and actions on both."""

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from annotation.services import webhooks as hooks
from common.errors import DomainError

from ..access import ADMINS, project_view

RECENT = 50


class WebhookForm(forms.Form):
    url = forms.URLField(max_length=500, label="URL", assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(e, e) for e in hooks.EVENTS], widget=forms.CheckboxSelectMultiple, help_text="What this URL receives."
    )
    description = forms.CharField(max_length=300, required=False)


def _webhook(project, webhook_id):
    return hooks.webhooks_of(project=project).filter(pk=webhook_id).first()


def _page(request, project, *, form: WebhookForm | None = None, secret: tuple | None = None, status: int = 200):
    """The webhooks page; `secret` is (webhook, secret) right after it was made, shown in this answer alone.

    A new secret is rendered into this response rather than flashed through a redirect: Django's messages live
    in a cookie, which would carry the secret back and forth and leave it in the browser."""
    ctx = {
        "project": project,
        "webhooks": hooks.webhooks_of(project=project),
        "deliveries": hooks.deliveries_of(project=project)[:RECENT],
        "form": form or WebhookForm(initial={"events": ["task.completed"]}),
        "new_secret": secret,
        "signature_header": hooks.SIGNATURE_HEADER,
        "timestamp_header": hooks.TIMESTAMP_HEADER,
    }
    response = render(request, "frontend/webhooks.html", ctx, status=status)
    if secret is not None:
        add_never_cache_headers(response)  # no copy of the page in the browser's cache or history
    return response


@project_view(ADMINS)
def webhooks(request, project):
    return _page(request, project)


@require_POST
@project_view(ADMINS)
def webhook_create(request, project):
    form = WebhookForm(request.POST)
    if form.is_valid():
        try:
            webhook = hooks.webhook_create(project=project, created_by=request.user, **form.cleaned_data)
        except DomainError as exc:
            for field, problems in exc.fields.items():
                for problem in problems:
                    form.add_error(field if field in form.fields else None, problem)
            if not exc.fields:
                form.add_error(None, exc.message)
        else:
            return _page(request, project, secret=(webhook, webhook.secret))
    return _page(request, project, form=form, status=400)


@require_POST
@project_view(ADMINS)
def webhook_action(request, project, webhook_id, action):
    webhook = _webhook(project, webhook_id)
    if webhook is None:
        messages.error(request, "No such webhook.")
    elif action == "toggle":
        hooks.webhook_update(webhook=webhook, active=not webhook.active)
        messages.success(request, f"Webhook {'enabled' if webhook.active else 'disabled'}.")
    elif action == "ping":
        hooks.webhook_ping(webhook=webhook)
        messages.success(request, "Ping sent; its delivery is listed below.")
    elif action == "rotate":
        hooks.webhook_update(webhook=webhook, rotate_secret=True)
        return _page(request, project, secret=(webhook, webhook.secret))
    elif action == "delete":
        hooks.webhook_delete(webhook=webhook)
        messages.success(request, "Webhook removed, with its deliveries.")
    return redirect("frontend:webhooks", project.slug)


@require_POST
@project_view(ADMINS)
def delivery_redeliver(request, project, delivery_id):
    delivery = hooks.deliveries_of(project=project).filter(pk=delivery_id).first()
    if delivery is None:
        messages.error(request, "No such delivery.")
    else:
        hooks.webhook_delivery_redeliver(delivery=delivery)
        messages.success(request, f"Delivery {delivery.pk} queued again.")
    return redirect("frontend:webhooks", project.slug)

"""Webhooks page (admins): the project's webhook URLs, their recent deliveries, and actions on both."""

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation.errors import DomainError
from annotation.services import webhooks as hooks

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


@project_view(ADMINS)
def webhooks(request, project):
    ctx = {
        "project": project,
        "webhooks": hooks.webhooks_of(project=project),
        "deliveries": hooks.deliveries_of(project=project)[:RECENT],
        "form": WebhookForm(initial={"events": ["task.completed"]}),
        "signature_header": hooks.SIGNATURE_HEADER,
        "timestamp_header": hooks.TIMESTAMP_HEADER,
    }
    return render(request, "frontend/webhooks.html", ctx)


@require_POST
@project_view(ADMINS)
def webhook_create(request, project):
    form = WebhookForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give an http(s) URL and at least one event.")
        return redirect("frontend:webhooks", project.slug)
    try:
        webhook = hooks.webhook_create(project=project, created_by=request.user, **form.cleaned_data)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Webhook added. Its signing secret (shown once): {webhook.secret}")
    return redirect("frontend:webhooks", project.slug)


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
        messages.success(request, f"New signing secret (shown once): {webhook.secret}")
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

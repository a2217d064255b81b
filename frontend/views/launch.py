"""What the pages of the job kinds (generation jobs, training runs, feedback jobs, rounds) share: the launch page,
one job's page, the cancel button."""

import uuid
from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from common.errors import DomainError

from ..access import ENGINEERS, project_view


def page_context(**extra) -> dict:
    # `launch_id` goes in launch forms as their hidden client_id: a form sent twice (a double click, a
    # resubmitted page) launches once.
    return {"launch_id": uuid.uuid4(), **extra}


def launch_id(request) -> uuid.UUID | None:
    """The client_id a launch form carries (None when missing or not a UUID: then the launch is not deduplicated)."""
    try:
        return uuid.UUID(request.POST.get("client_id", ""))
    except ValueError:
        return None


def job_page(request, project, job, *, row: str, page: str, more: Callable[[], dict] = dict) -> HttpResponse:
    """One job's page, or only its `row` when HTMX polls it; `more()` gives what the whole page shows besides."""
    ctx = {"gen_project": project, "job": job, "can_launch": request.membership.role in ENGINEERS}
    if request.htmx:
        return render(request, row, ctx)
    return render(request, page, page_context(**ctx, **more()))


def cancel_view(find: Callable[..., object], cancel: Callable[[object], object], page: str, done: str):
    """A job kind's cancel button (a POST, for admins and engineers): ask the job `find(project, **url_kwargs)` names
    to stop, say `done` (formatted with the job) or why it cannot (it has ended already), and go back to its `page`."""

    @require_POST
    @project_view(ENGINEERS)
    def view(request, project, **key):
        job = find(project, **key)
        try:
            cancel(job)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.info(request, done.format(job=job))
        return redirect(page, project.slug, *key.values())

    return view


def launch_page(request, project, template: str, *, form_class, create: Callable[..., object], denied: str,
                queued: Callable[[object], tuple[str, HttpResponse]], listing: Callable[[], dict],
                initial: dict | None = None) -> HttpResponse:
    """A job kind's list page with its launch form (for admins and engineers; others get 403 on a POST).

    A POST validates `form_class` and launches through `create(project, created_by, client_id, **service_kwargs)`;
    `queued(job)` gives the message and the redirect that follow a launch. A refused launch shows the page again with
    the form's errors (the service's field errors on their fields), says why and answers 400 (409 on a conflict).
    `listing()` gives what the page lists.
    """
    allowed = request.membership.role in ENGINEERS
    form, status = (form_class(initial=initial) if allowed else None), 200
    if request.method == "POST":
        if not allowed:
            raise PermissionDenied(denied)
        form = form_class(request.POST)
        job, status = _launch(request, project, form, create)
        if job is not None:
            text, response = queued(job)
            messages.success(request, text)
            return response
    ctx = page_context(gen_project=project, form=form, can_launch=allowed, **listing())
    return render(request, template, ctx, status=status)


def _launch(request, project, form, create) -> tuple[object, int]:
    """The job a launch form queued (None if it was refused) and the status of the page that shows why."""
    if not form.is_valid():
        return None, 400
    try:
        job = create(project=project, created_by=request.user, client_id=launch_id(request), **form.service_kwargs())
    except DomainError as exc:
        messages.error(request, exc.message)
        for field, errors in exc.fields.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return None, 409 if exc.status == 409 else 400
    return job, 200


def found_or_404(job, what: str):
    """The job a page names, or 404 ("No such job") when the project has none by that id."""
    if job is None:
        raise Http404(f"No such {what}")
    return job

"""What the pages that launch jobs (generation, training runs, feedback, rounds) share."""

import uuid
from collections.abc import Callable

from django.contrib import messages
from django.http import HttpResponse

from common.errors import DomainError


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


def cancel_then(request, cancel: Callable[[], object], done: str, back: HttpResponse) -> HttpResponse:
    """Ask a job to stop, say so (or why it cannot: it has ended already) and go `back` to its page."""
    try:
        cancel()
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, done)
    return back

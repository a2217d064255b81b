"""The task browser (admins and engineers): search tasks by the API's filters, act on a selection."""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation import selectors
from annotation.models import TaskKind, TaskStatus
from annotation.services import task_actions
from common.errors import DomainError

from .. import reads
from ..access import ENGINEERS, project_view
from ..forms import TaskActionForm

PAGE_SIZE = 50
DONE = {
    "requeue": "Requeued {n} tasks.",
    "set_priority": "Set the priority of {n} tasks.",
    "mark_gold": "Marked {marked} of {n} tasks gold; the others have no majority label.",
    "unmark_gold": "Unmarked {unmarked} gold tasks.",
    "export": "Exported {n} tasks: snapshot {snapshot}, {rows} rows.",
}


def _filters(request, params):
    try:
        return selectors.task_filter_parse(params)
    except DomainError as exc:
        messages.error(request, exc.message)
        return selectors.TaskFilter()


@project_view(ENGINEERS)
def task_browser(request, project):
    filters = _filters(request, request.GET)
    tasks = selectors.tasks_matching(project=project, filters=filters)
    page = Paginator(tasks, PAGE_SIZE).get_page(request.GET.get("page"))
    query = filters.query()
    ctx = {
        "project": project, "filters": filters, "query": urlencode(query), "page": page,
        "rows": reads.task_browser_rows(tasks=page.object_list), "action_form": TaskActionForm(),
        "kinds": TaskKind.values, "statuses": TaskStatus.values,
        "orders": selectors.TASK_ORDERS,
    }
    return render(request, "frontend/task_browser.html", ctx)


def _selected_ids(request, project, scope: str, filters) -> list[int]:
    if scope == "matching":
        matching = selectors.tasks_matching(project=project, filters=filters)
        return list(matching.values_list("id", flat=True)[: task_actions.MAX_SELECTION + 1])
    return request.POST.getlist("task")


@require_POST
@project_view(ENGINEERS)
def task_browser_act(request, project):
    filters = _filters(request, request.POST)
    back = reverse("frontend:task_browser", args=[project.slug]) + "?" + urlencode(filters.query())
    form = TaskActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an action; " + "; ".join(f"{k}: {v[0]}" for k, v in form.errors.items()))
        return redirect(back)
    data = form.cleaned_data
    try:
        ids = task_actions.task_selection(project=project, task_ids=_selected_ids(request, project, data["scope"], filters))
        done, _ = task_actions.tasks_act(
            project=project, actor=request.user, action=data["action"], task_ids=ids, extra=data["extra"] or 1,
            priority=data["priority"], export={"format": data["format"]} if data["action"] == "export" else None,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, DONE[done.action].format(n=done.task_count, **done.params))
    return redirect(back)

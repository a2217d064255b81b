"""Tasks: list (searched by the task browser's filters), create from a prompt's responses, read one, and the
browser's bulk actions on a selection."""

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response as HttpResponse

from common.errors import Invalid, NotFound
from common.permissions import CanManageData, CanReadData
from common.views import ProjectView, parse_input

from ... import selectors, services
from ...models import Prompt, Response, Task, TaskKind, TaskResponse, TaskStatus
from ...services import task_actions
from .. import serializers as s


def _with_responses(tasks):
    return tasks.prefetch_related(
        Prefetch("task_responses", queryset=TaskResponse.objects.order_by("position").only("task_id", "response_id", "position"))
    )


def tasks_of(project):
    return _with_responses(Task.objects.filter(project=project))


_FILTER_TYPES = {"agreement_min": float, "agreement_max": float, "ai_disagrees": bool, "gold": bool}
_FILTER_ENUMS = {"kind": TaskKind.values, "status": TaskStatus.values, "order": list(selectors.TASK_ORDERS)}
TASK_FILTER_PARAMETERS = [
    OpenApiParameter(name, _FILTER_TYPES.get(name, str), enum=_FILTER_ENUMS.get(name), description=text)
    for name, text in selectors.TASK_FILTER_HELP.items()
]


class TaskListView(ListModelMixin, ProjectView):
    """The project's tasks, searched by the task browser's filters (all optional, combined with AND)."""

    serializer_class = s.TaskOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        filters = selectors.task_filter_parse(self.request.query_params)
        return _with_responses(selectors.tasks_matching(project=self.project, filters=filters))

    @extend_schema(parameters=TASK_FILTER_PARAMETERS)
    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.TaskInput, responses={201: s.TaskOutput})
    def post(self, request, slug):
        data = parse_input(s.TaskInput, request)
        prompt = Prompt.objects.filter(project=self.project, pk=data.pop("prompt")).first()
        if prompt is None:
            raise Invalid("no such prompt in this project", fields={"prompt": ["no such prompt in this project"]})
        ids = data.pop("responses", [])
        found = {r.pk: r for r in Response.objects.filter(prompt=prompt, pk__in=ids)}
        if len(found) != len(set(ids)) or len(set(ids)) != len(ids):
            raise Invalid("responses must be distinct responses to this prompt", fields={"responses": ["unknown or repeated"]})
        task = services.task_create(project=self.project, prompt=prompt, responses=[found[i] for i in ids], **data)
        return HttpResponse(s.TaskOutput(tasks_of(self.project).get(pk=task.pk)).data, status=201)


class TaskDetailView(ProjectView):
    serializer_class = s.TaskOutput
    permissions_by_method = {"*": [CanReadData]}

    def get(self, request, slug, task_id):
        task = tasks_of(self.project).filter(pk=task_id).first()
        if task is None:
            raise NotFound("no such task")
        return HttpResponse(s.TaskOutput(task).data)


class TaskActionView(ProjectView):
    """A bulk action of the task browser (project admins and engineers) on the tasks given by id, or on every
    task matching `filter`: requeue, set_priority, mark_gold, unmark_gold or export. Each writes an audit row,
    returned here."""

    permissions_by_method = {"*": [CanManageData]}
    serializer_class = s.TaskActionInput

    @extend_schema(request=s.TaskActionInput, responses={201: s.TaskActionOutput})
    def post(self, request, slug):
        project = self.project
        data = parse_input(s.TaskActionInput, request)
        if "filter" in data:
            matching = selectors.tasks_matching(project=project, filters=selectors.task_filter_parse(data["filter"]))
            ids = list(matching.values_list("id", flat=True)[: task_actions.MAX_SELECTION + 1])
        else:
            ids = data["tasks"]
        ids = task_actions.task_selection(project=project, task_ids=ids)
        export = data.get("export")
        if export is not None:
            export = {**export, "sources": tuple(sorted(export["sources"]))}
        done, snapshot = task_actions.tasks_act(
            project=project, actor=request.user, action=data["action"], task_ids=ids, extra=data["extra"],
            priority=data.get("priority"), export=export,
        )
        return HttpResponse(s.TaskActionOutput(done, context={"snapshot": snapshot}).data, status=201)

"""Tasks: list (filtered by kind and status), create from a prompt's responses, read one."""

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response as HttpResponse

from common.errors import Invalid, NotFound
from common.permissions import CanManageData, CanReadData
from common.views import ProjectView, parse_input

from ... import services
from ...models import Prompt, Response, Task, TaskKind, TaskResponse, TaskStatus
from .. import serializers as s


def tasks_of(project):
    return Task.objects.filter(project=project).prefetch_related(
        Prefetch("task_responses", queryset=TaskResponse.objects.order_by("position").only("task_id", "response_id", "position"))
    )


class TaskListView(ListModelMixin, ProjectView):
    serializer_class = s.TaskOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        qs = tasks_of(self.project).order_by("id")
        for name, choices in (("kind", TaskKind.values), ("status", TaskStatus.values)):
            value = self.request.query_params.get(name)
            if value is not None:
                if value not in choices:
                    raise Invalid(f"unknown {name}", fields={name: [f"one of {', '.join(choices)}"]})
                qs = qs.filter(**{name: value})
        return qs

    @extend_schema(parameters=[OpenApiParameter("kind", str, enum=TaskKind.values),
                               OpenApiParameter("status", str, enum=TaskStatus.values)])
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

"""The API views every job kind shares under /api/v1/projects/{slug}/: list and launch, read one, and the actions
on one (cancel, relaunch). A kind's views name its serializers, its services and the URL keyword of a row.

Reviewers and everyone above read; engineers and admins launch and act; annotators get 403.
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response as HttpResponse

from common.errors import NotFound
from common.permissions import CanManageData, CanReadData
from common.views import ProjectView


def launch_client_id() -> serializers.UUIDField:
    """The `client_id` field of every launch's input."""
    return serializers.UUIDField(
        required=False, allow_null=True, default=None,
        help_text="Made up by the client once per launch: sending it again returns the first launch (200) instead of "
                  "starting another.")


class JobListView(ListModelMixin, ProjectView):
    # GET: the project's rows (rows(project), newest first). POST: a launch, 201; 200 with the row an earlier launch
    # with the same client id made. Subclasses set serializer_class, input_class, rows and launch(**fields).
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}
    input_class: type

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        answer = cls.serializer_class
        extend_schema_view(post=extend_schema(request=cls.input_class, responses={201: answer, 200: answer}))(cls)

    def get_queryset(self):
        return self.rows(self.project)

    def get(self, request, slug):
        return self.list(request)

    def post(self, request, slug):
        serializer = self.input_class(data=request.data, context={"project": self.project})
        serializer.is_valid(raise_exception=True)
        row = self.launch(project=self.project, created_by=request.user, **serializer.validated_data)
        return HttpResponse(self.serializer_class(row).data, status=200 if row.replayed else 201)


class JobDetailView(ProjectView):
    # One row, found by the URL keyword `lookup` (the row's `key_field`) with find(project, key); 404 naming the
    # kind otherwise.
    permissions_by_method = {"*": [CanReadData]}
    lookup: str = "job_id"
    key_field: str = "pk"
    what: str = "job"

    def row(self, key=None):
        found = self.find(self.project, self.kwargs[self.lookup] if key is None else key)
        if found is None:
            raise NotFound(f"no such {self.what}")
        return found

    def get(self, request, slug, **_):
        return HttpResponse(self.serializer_class(self.row()).data)


class JobActionView(JobDetailView):
    # POST: act(row) on one row (cancel, relaunch), answered with the row as it is afterwards.
    permissions_by_method = {"*": [CanManageData]}
    http_method_names = ["post", "options"]
    output_class: type | None = None  # the answer's serializer, when not the detail's

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        extend_schema_view(post=extend_schema(request=None, responses={200: cls.output_class or cls.serializer_class}))(cls)

    def post(self, request, slug, **_):
        done = self.act(self.row())
        return HttpResponse((self.output_class or self.serializer_class)(self.row(getattr(done, self.key_field))).data)


def job_urls(prefix: str, name: str, key: str, list_view, detail_view, **actions) -> list:
    """A kind's URLs: `{prefix}` (api-{name}s), `{prefix}<int:{key}>/` (api-{name}) and one
    `{prefix}<int:{key}>/{action}/` (api-{name}-{action}) per action view."""
    one = f"{prefix}<int:{key}>/"
    return [
        path(prefix, list_view.as_view(), name=f"api-{name}s"),
        path(one, detail_view.as_view(), name=f"api-{name}"),
        *(path(f"{one}{action}/", view.as_view(), name=f"api-{name}-{action}") for action, view in actions.items()),
    ]

"""Annotations: a project's (as far as the caller's role shows them), one by id, and revisions."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response as HttpResponse

from common.views import ProjectView, int_param, parse_input

from ... import selectors, services
from ...models import Annotation, Role
from .. import serializers as s


def _annotations():
    return Annotation.objects.select_related("author", "guideline_version", "constitution_version")


class AnnotationListView(ListModelMixin, ProjectView):
    serializer_class = s.AnnotationOutput

    def get_queryset(self):
        request = self.request
        qs = selectors.annotations_visible_to(user=request.user, project=self.project, role=self.project_role(request))
        qs = qs.select_related("author", "guideline_version", "constitution_version").order_by("id")
        if "task" in request.query_params:
            qs = qs.filter(task_id=int_param(request, "task"))
        if request.query_params.get("current") in ("1", "true"):
            qs = qs.filter(is_current=True)
        return qs

    @extend_schema(parameters=[OpenApiParameter("task", int, description="only this task's annotations"),
                               OpenApiParameter("current", str, enum=["1", "true"], description="only current versions")])
    def get(self, request, slug):
        return self.list(request)


class AnnotationDetailView(GenericAPIView):
    serializer_class = s.AnnotationOutput

    def get(self, request, annotation_id):
        annotation, _ = selectors.annotation_for(user=request.user, annotation_id=annotation_id)
        return HttpResponse(s.AnnotationOutput(_annotations().get(pk=annotation.pk)).data)


class AnnotationReviseView(GenericAPIView):
    serializer_class = s.AnnotationOutput

    @extend_schema(request=s.ReviseInput, responses={201: s.AnnotationOutput})
    def post(self, request, annotation_id):
        annotation, role = selectors.annotation_for(user=request.user, annotation_id=annotation_id)
        data = parse_input(s.ReviseInput, request)
        own = annotation.author_id == request.user.pk
        revision = services.annotation_revise(
            annotation=annotation,
            author=request.user,
            as_reviewer=not own and role in (Role.REVIEWER, Role.ADMIN),
            **data,
        )
        return HttpResponse(s.AnnotationOutput(_annotations().get(pk=revision.pk)).data, status=201)

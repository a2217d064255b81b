"""Projects: list them (staff create them), read one, change its settings (admins)."""

from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response as HttpResponse

from common.permissions import IsProjectAdmin, IsProjectMember, IsStaff
from common.views import ProjectView, parse_input

from ... import selectors, services
from .. import serializers as s


class ProjectListView(ListModelMixin, GenericAPIView):
    serializer_class = s.ProjectOutput

    def get_queryset(self):
        return selectors.projects_for(user=self.request.user).select_related("current_guideline", "current_constitution")

    def get_permissions(self):
        return [IsAuthenticated(), IsStaff()] if self.request.method == "POST" else [IsAuthenticated()]

    def get(self, request):
        return self.list(request)

    @extend_schema(request=s.ProjectInput, responses={201: s.ProjectOutput})
    def post(self, request):
        project = services.project_create(created_by=request.user, **parse_input(s.ProjectInput, request))
        return HttpResponse(s.ProjectOutput(project).data, status=201)


class ProjectDetailView(ProjectView):
    serializer_class = s.ProjectOutput
    permissions_by_method = {"*": [IsProjectMember], "PATCH": [IsProjectAdmin]}

    def get(self, request, slug):
        return HttpResponse(s.ProjectOutput(self.project).data)

    @extend_schema(request=s.ProjectUpdateInput, responses={200: s.ProjectOutput})
    def patch(self, request, slug):
        project = services.project_update(project=self.project, **parse_input(s.ProjectUpdateInput, request, partial=True))
        return HttpResponse(s.ProjectOutput(project).data)

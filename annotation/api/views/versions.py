"""Guideline and constitution versions: every member reads them, admins write new ones."""

from drf_spectacular.utils import extend_schema
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response as HttpResponse

from common.errors import NotFound
from common.permissions import IsProjectAdmin, IsProjectMember
from common.views import ProjectView, parse_input

from ... import services
from ...models import ConstitutionVersion, GuidelineVersion
from .. import serializers as s


class GuidelineListView(ListModelMixin, ProjectView):
    serializer_class = s.GuidelineOutput
    permissions_by_method = {"*": [IsProjectMember], "POST": [IsProjectAdmin]}

    def get_queryset(self):
        return GuidelineVersion.objects.filter(project=self.project).order_by("-number")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.GuidelineInput, responses={201: s.GuidelineOutput})
    def post(self, request, slug):
        version = services.guideline_version_create(
            project=self.project, created_by=request.user, **parse_input(s.GuidelineInput, request)
        )
        return HttpResponse(s.GuidelineOutput(version).data, status=201)


class GuidelineDetailView(ProjectView):
    serializer_class = s.GuidelineOutput

    def get(self, request, slug, number):
        version = GuidelineVersion.objects.filter(project=self.project, number=number).first()
        if version is None:
            raise NotFound("no such guideline version")
        return HttpResponse(s.GuidelineOutput(version).data)


class ConstitutionListView(ListModelMixin, ProjectView):
    serializer_class = s.ConstitutionOutput
    permissions_by_method = {"*": [IsProjectMember], "POST": [IsProjectAdmin]}

    def get_queryset(self):
        return ConstitutionVersion.objects.filter(project=self.project).prefetch_related("principles").order_by("-number")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.ConstitutionInput, responses={201: s.ConstitutionOutput})
    def post(self, request, slug):
        data = parse_input(s.ConstitutionInput, request)
        version = services.constitution_version_create(
            project=self.project, created_by=request.user, principles=data["principles"], note=data.get("note", "")
        )
        return HttpResponse(s.ConstitutionOutput(version).data, status=201)


class ConstitutionDetailView(ProjectView):
    serializer_class = s.ConstitutionOutput

    def get(self, request, slug, number):
        version = ConstitutionVersion.objects.filter(project=self.project, number=number).first()
        if version is None:
            raise NotFound("no such constitution version")
        return HttpResponse(s.ConstitutionOutput(version).data)

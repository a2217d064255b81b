"""Prompts and their responses: engineers and admins write them, reviewers read them too."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response as HttpResponse

from common.errors import Invalid
from common.permissions import CanManageData, CanReadData
from common.views import ProjectView, int_param, parse_input

from ... import services
from ...models import Prompt, Response
from .. import serializers as s


class PromptListView(ListModelMixin, ProjectView):
    serializer_class = s.PromptOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        return Prompt.objects.filter(project=self.project).order_by("id")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.PromptInput, responses={201: s.PromptOutput})
    def post(self, request, slug):
        prompt = services.prompt_create(project=self.project, **parse_input(s.PromptInput, request))
        return HttpResponse(s.PromptOutput(prompt).data, status=201)


class ResponseListView(ListModelMixin, ProjectView):
    serializer_class = s.ResponseOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        qs = Response.objects.filter(prompt__project=self.project).order_by("id")
        if "prompt" in self.request.query_params:
            qs = qs.filter(prompt_id=int_param(self.request, "prompt"))
        return qs

    @extend_schema(parameters=[OpenApiParameter("prompt", int, description="only this prompt's responses")])
    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.ResponseInput, responses={201: s.ResponseOutput})
    def post(self, request, slug):
        data = parse_input(s.ResponseInput, request)
        prompt = Prompt.objects.filter(project=self.project, pk=data.pop("prompt")).first()
        if prompt is None:
            raise Invalid("no such prompt in this project", fields={"prompt": ["no such prompt in this project"]})
        response = services.response_create(prompt=prompt, **data)
        return HttpResponse(s.ResponseOutput(response).data, status=201)

"""A project's members and their roles (admins only)."""

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response as HttpResponse

from common.errors import Invalid, NotFound
from common.permissions import IsProjectAdmin
from common.views import ProjectView, parse_input

from ... import services
from ...models import Membership
from .. import serializers as s


class MemberListView(ListModelMixin, ProjectView):
    serializer_class = s.MembershipOutput
    permissions_by_method = {"*": [IsProjectAdmin]}

    def get_queryset(self):
        return Membership.objects.filter(project=self.project).select_related("user").order_by("user__username")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.MemberInput, responses={201: s.MembershipOutput})
    def post(self, request, slug):
        data = parse_input(s.MemberInput, request)
        user = get_user_model().objects.filter(username=data["username"]).first()
        if user is None:
            raise Invalid("no such user", fields={"username": ["no user with this name"]})
        membership = services.membership_set(project=self.project, user=user, role=data["role"])
        return HttpResponse(s.MembershipOutput(membership).data, status=201)


class MemberDetailView(ProjectView):
    serializer_class = s.MembershipOutput
    permissions_by_method = {"*": [IsProjectAdmin]}

    def _membership(self, user_id):
        membership = Membership.objects.select_related("user").filter(project=self.project, user_id=user_id).first()
        if membership is None:
            raise NotFound("no such member")
        return membership

    @extend_schema(request=s.MemberUpdateInput, responses={200: s.MembershipOutput})
    def patch(self, request, slug, user_id):
        membership = self._membership(user_id)
        data = parse_input(s.MemberUpdateInput, request)
        membership = services.membership_set(project=self.project, user=membership.user, role=data["role"])
        return HttpResponse(s.MembershipOutput(membership).data)

    def delete(self, request, slug, user_id):
        services.membership_remove(project=self.project, user=self._membership(user_id).user)
        return HttpResponse(status=204)

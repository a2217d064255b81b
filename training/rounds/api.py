"""Rounds over the API: list and run (admins and engineers), read one with its lineage, cancel."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response as HttpResponse

from common.errors import NotFound
from common.permissions import CanManageData, CanReadData
from common.views import ProjectView

from ..models import Model
from . import services
from .models import LabelMode, Round


def _model_field(**extra):
    return serializers.SlugRelatedField(slug_field="name", queryset=Model.objects.filter(is_active=True),
                                        required=False, allow_null=True, default=None, **extra)


class RoundInput(serializers.Serializer):
    rounds = serializers.IntegerField(min_value=1, max_value=100, default=1)
    label_mode = serializers.ChoiceField(choices=LabelMode.values, default=LabelMode.AI)
    human_quota = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    policy = _model_field(help_text="Policy of the first round; default: the last round's output model.")
    judge = _model_field()
    reward_model = _model_field()
    config = serializers.DictField(required=False, default=dict)
    client_id = serializers.UUIDField(
        required=False, allow_null=True, default=None,
        help_text="Made up by the client once per launch: sending it again returns the first launch (200) instead of "
                  "starting another.")


class RoundOutput(serializers.ModelSerializer):
    policy = serializers.SlugRelatedField(slug_field="name", read_only=True)
    judge = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    reward_model = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    output_model = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    output_reward_model = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    previous = serializers.SlugRelatedField(slug_field="number", read_only=True, allow_null=True)

    class Meta:
        model = Round
        fields = ["id", "number", "status", "stage", "waiting_for", "label_mode", "human_quota", "rounds_after",
                  "policy", "judge", "reward_model", "config", "prompt_ids", "generation_job", "snapshot",
                  "snapshot_sha256", "training_run", "reward_run", "output_model", "output_reward_model", "previous",
                  "stage_times", "evaluation", "error", "attempts", "cancel_requested", "created_at", "started_at",
                  "finished_at", "client_id"]


class RoundDetailOutput(RoundOutput):
    lineage = serializers.SerializerMethodField()

    class Meta(RoundOutput.Meta):
        fields = [*RoundOutput.Meta.fields, "lineage"]

    def get_lineage(self, obj) -> dict:
        return services.round_lineage(obj)


class RoundListView(ListAPIView, ProjectView):
    serializer_class = RoundOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        return services.rounds_for(project=self.project)

    @extend_schema(request=RoundInput, responses={201: RoundOutput, 200: RoundOutput})
    def post(self, request, slug):
        serializer = RoundInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        rnd = services.round_create(project=self.project, created_by=request.user, **serializer.validated_data)
        return HttpResponse(RoundOutput(rnd).data, status=200 if rnd.replayed else 201)


class RoundDetailView(ProjectView):
    serializer_class = RoundDetailOutput
    permissions_by_method = {"*": [CanReadData]}

    def round(self, number):
        rnd = services.round_get(project=self.project, number=number)
        if rnd is None:
            raise NotFound("no such round")
        return rnd

    def get(self, request, slug, number):
        return HttpResponse(RoundDetailOutput(self.round(number)).data)


class RoundCancelView(RoundDetailView):
    permissions_by_method = {"*": [CanManageData]}
    http_method_names = ["post", "options"]

    @extend_schema(request=None, responses={200: RoundOutput})
    def post(self, request, slug, number):
        rnd = services.round_cancel(rnd=self.round(number))
        return HttpResponse(RoundOutput(rnd).data)

"""Input serializers parse and validate at the edge; output serializers render."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import Backend, CandidateTasks, GenerationJob, Model, ModelRole
from .jobs import launch_client_id


# --- outputs -------------------------------------------------------------------------------
class ModelOutput(serializers.ModelSerializer):
    base_model = serializers.CharField(source="base_model.name", default=None, allow_null=True, read_only=True)

    class Meta:
        model = Model
        fields = [
            "id", "name", "backend", "path", "base_url", "served_name", "roles", "sampling", "options",
            "chat_template", "description", "base_model", "parent_run_id", "metadata", "is_active",
            "created_at", "updated_at",
        ]


class GenerationJobOutput(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True, read_only=True)
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = GenerationJob
        fields = [
            "id", "model", "status", "cancel_requested", "done", "total", "percent", "tasks_created",
            "n", "task_kind", "group_size", "task_priority", "sampling", "prompt_filter",
            "prompt_tokens", "completion_tokens", "generation_seconds", "attempts", "error",
            "created_by", "created_at", "started_at", "finished_at", "heartbeat_at", "client_id",
        ]


# --- inputs --------------------------------------------------------------------------------
class ModelInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    backend = serializers.ChoiceField(choices=Backend.values)
    path = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    base_url = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    served_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    chat_template = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    sampling = serializers.DictField(required=False, default=dict)
    roles = serializers.ListField(child=serializers.ChoiceField(choices=ModelRole.values), required=False, default=list)
    options = serializers.DictField(required=False, default=dict)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    base_model = serializers.SlugRelatedField(slug_field="name", queryset=Model.objects.all(), required=False, allow_null=True, default=None)


class PromptFilterInput(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=100000)
    external_ids = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100000)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=100)
    limit = serializers.IntegerField(min_value=1, required=False)
    without_model_responses = serializers.BooleanField(required=False)


class GenerationJobInput(serializers.Serializer):
    model = serializers.SlugRelatedField(slug_field="name", queryset=Model.objects.filter(is_active=True))
    prompt_filter = PromptFilterInput(required=False, default=dict)
    n = serializers.IntegerField(min_value=1, max_value=16, default=2)
    sampling = serializers.DictField(required=False, default=dict)
    task_kind = serializers.ChoiceField(choices=CandidateTasks.values, default=CandidateTasks.PAIRWISE)
    group_size = serializers.IntegerField(min_value=2, max_value=16, required=False, allow_null=True, default=None)
    task_priority = serializers.IntegerField(default=0)
    client_id = launch_client_id()


# --- training runs -------------------------------------------------------------------------
from annotation.selectors import snapshot_by_ref  # noqa: E402
from common.errors import DomainError  # noqa: E402

from ..models import TrainingMethod, TrainingRun  # noqa: E402


class TrainingRunOutput(serializers.ModelSerializer):
    base_model = serializers.CharField(source="base_model.name", read_only=True)
    reward_model = serializers.CharField(source="reward_model.name", default=None, allow_null=True, read_only=True)
    output_model = serializers.CharField(source="output_model.name", default=None, allow_null=True, read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True, read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "method", "status", "cancel_requested", "base_model", "snapshot", "snapshot_sha256",
            "reward_model", "hyperparameters", "step", "output_dir", "output_model", "error", "attempts",
            "created_by", "created_at", "enqueued_at", "started_at", "finished_at", "heartbeat_at", "client_id",
        ]


@extend_schema_field(OpenApiTypes.STR)
class SnapshotField(serializers.Field):
    """One of the project's snapshots (the serializer's context "project") by id or sha256: an int, `id:N` or
    fewer than 8 digits is an id; 8 or more hex digits (digits only too) are a sha256 prefix."""

    def to_internal_value(self, data):
        try:
            return snapshot_by_ref(project=self.context["project"], ref=data)
        except DomainError as exc:
            raise serializers.ValidationError(exc.message) from None

    def to_representation(self, value):
        return value.pk


class TrainingRunInput(serializers.Serializer):
    method = serializers.ChoiceField(choices=TrainingMethod.values)
    base_model = serializers.SlugRelatedField(slug_field="name", queryset=Model.objects.filter(is_active=True))
    snapshot = SnapshotField()
    reward_model = serializers.SlugRelatedField(
        slug_field="name", queryset=Model.objects.filter(is_active=True), required=False, allow_null=True, default=None
    )
    hyperparameters = serializers.DictField(required=False, default=dict)
    client_id = launch_client_id()

"""Input serializers parse and validate at the edge; output serializers render."""

from rest_framework import serializers

from ..services.imports import IMPORT_FORMATS
from ..models import (
    Annotation,
    ConstitutionVersion,
    DatasetSnapshot,
    GuidelineVersion,
    Membership,
    Principle,
    Project,
    Prompt,
    Response,
    Role,
    SnapshotFormat,
    Task,
    TaskAction,
    TaskActionKind,
    TaskKind,
)


# --- outputs -------------------------------------------------------------------------------
class ProjectOutput(serializers.ModelSerializer):
    guideline_version = serializers.IntegerField(source="current_guideline.number", default=None, allow_null=True, read_only=True)
    constitution_version = serializers.IntegerField(source="current_constitution.number", default=None, allow_null=True, read_only=True)

    class Meta:
        model = Project
        fields = [
            "id", "name", "slug", "description", "required_annotations", "lease_seconds", "settings",
            "guideline_version", "constitution_version", "created_at",
        ]


class MembershipOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    user_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Membership
        fields = ["user_id", "username", "role", "created_at"]


class GuidelineOutput(serializers.ModelSerializer):
    class Meta:
        model = GuidelineVersion
        fields = ["number", "body", "note", "created_at"]


class PrincipleOutput(serializers.ModelSerializer):
    class Meta:
        model = Principle
        fields = ["position", "key", "name", "critique_request", "revision_request", "comparison_question"]


class ConstitutionOutput(serializers.ModelSerializer):
    principles = PrincipleOutput(many=True, read_only=True)

    class Meta:
        model = ConstitutionVersion
        fields = ["number", "note", "created_at", "principles"]


class PromptOutput(serializers.ModelSerializer):
    class Meta:
        model = Prompt
        fields = ["id", "messages", "external_id", "content_hash", "metadata", "tags", "created_at"]


class ResponseOutput(serializers.ModelSerializer):
    class Meta:
        model = Response
        fields = ["id", "prompt", "content", "steps", "origin", "model_name", "generation", "parent", "metadata", "created_at"]


class TaskOutput(serializers.ModelSerializer):
    responses = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id", "kind", "prompt", "responses", "required", "open_slots", "submitted_count", "priority",
            "status", "gold", "flags", "metadata", "agreement", "ai_disagreement", "created_at",
        ]

    def get_responses(self, task) -> list[int]:
        return [tr.response_id for tr in task.task_responses.all()]


class AnnotationOutput(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", default=None, allow_null=True, read_only=True)
    guideline_version = serializers.IntegerField(source="guideline_version.number", default=None, allow_null=True, read_only=True)
    constitution_version = serializers.IntegerField(source="constitution_version.number", default=None, allow_null=True, read_only=True)

    class Meta:
        model = Annotation
        fields = [
            "id", "task", "kind", "author", "source", "payload", "shown_order", "rationale", "seconds_spent",
            "guideline_version", "constitution_version", "details", "client_id", "supersedes", "is_current",
            "is_review", "created_at",
        ]


class SnapshotOutput(serializers.ModelSerializer):
    class Meta:
        model = DatasetSnapshot
        fields = ["id", "format", "file_format", "spec", "row_count", "sha256", "size_bytes", "created_at"]


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=200_000)


class ResponseShownSerializer(serializers.Serializer):
    label = serializers.CharField()
    id = serializers.IntegerField()
    content = serializers.CharField()
    steps = serializers.ListField(child=serializers.CharField())


class PromptShownSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    messages = MessageSerializer(many=True)


class LeasedTaskOutput(serializers.Serializer):
    assignment = serializers.IntegerField()
    task = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=TaskKind.choices)
    leased_until = serializers.DateTimeField()
    prompt = PromptShownSerializer()
    responses = ResponseShownSerializer(many=True)
    flags = serializers.DictField()
    guideline_version = serializers.IntegerField(allow_null=True)
    suggestion = serializers.DictField(
        allow_null=True, help_text="The AI judge's verdict as a pre-annotation (choice and strength, in the shown "
        "order), when the project shows suggestions and this lease drew one; else null.")


# --- inputs --------------------------------------------------------------------------------
class ProjectInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    required_annotations = serializers.IntegerField(required=False, min_value=1, max_value=50)
    lease_seconds = serializers.IntegerField(required=False, min_value=10, max_value=7 * 24 * 3600)
    settings = serializers.DictField(required=False)


class ProjectUpdateInput(ProjectInput):
    name = serializers.CharField(max_length=200, required=False)
    slug = None


class MemberInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberUpdateInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class GuidelineInput(serializers.Serializer):
    body = serializers.CharField(max_length=500_000)
    note = serializers.CharField(required=False, allow_blank=True, max_length=300)


class PrincipleInput(serializers.Serializer):
    key = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200)
    critique_request = serializers.CharField(max_length=5000)
    revision_request = serializers.CharField(max_length=5000)
    comparison_question = serializers.CharField(max_length=5000)


class ConstitutionInput(serializers.Serializer):
    principles = PrincipleInput(many=True, allow_empty=False)
    note = serializers.CharField(required=False, allow_blank=True, max_length=300)


class PromptInput(serializers.Serializer):
    messages = MessageSerializer(many=True, allow_empty=False)
    external_id = serializers.CharField(required=False, allow_blank=True, max_length=200)
    metadata = serializers.DictField(required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=100)


class ResponseInput(serializers.Serializer):
    prompt = serializers.IntegerField(min_value=1)
    content = serializers.CharField(trim_whitespace=False, max_length=500_000)
    origin = serializers.ChoiceField(choices=["imported", "generated", "demonstration"], default="imported")
    model_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    steps = serializers.ListField(child=serializers.CharField(trim_whitespace=False), required=False, max_length=1000)
    metadata = serializers.DictField(required=False)


class TaskInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TaskKind.choices)
    prompt = serializers.IntegerField(min_value=1)
    responses = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=16)
    priority = serializers.IntegerField(required=False, min_value=-1_000_000, max_value=1_000_000)
    required = serializers.IntegerField(required=False, min_value=1, max_value=50)
    gold = serializers.DictField(required=False, allow_null=True)
    flags = serializers.DictField(required=False)


class SubmitInput(serializers.Serializer):
    payload = serializers.DictField()
    client_id = serializers.UUIDField()
    seconds_spent = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=7 * 24 * 3600)
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=20_000)


class ReviseInput(serializers.Serializer):
    payload = serializers.DictField()
    client_id = serializers.UUIDField(required=False)
    seconds_spent = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=7 * 24 * 3600)
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=20_000)


class SkipInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=300)


class SnapshotInput(serializers.Serializer):
    format = serializers.ChoiceField(choices=SnapshotFormat.choices)
    file_format = serializers.ChoiceField(choices=["jsonl", "parquet"], default="jsonl")
    style = serializers.ChoiceField(choices=["conversational", "standard"], default="conversational")
    sources = serializers.MultipleChoiceField(choices=["human", "ai"], default=("human", "ai"))
    aggregation = serializers.ChoiceField(choices=["majority", "dawid_skene"], default="majority")


class TaskActionInput(serializers.Serializer):
    action = serializers.ChoiceField(choices=TaskActionKind.choices)
    tasks = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, allow_empty=False,
                                  help_text="The selected task ids; or give `filter` instead.")
    filter = serializers.DictField(required=False, help_text="Every task matching these filters (as GET tasks/ takes them).")
    extra = serializers.IntegerField(required=False, default=1, min_value=1, max_value=50,
                                     help_text="requeue: more labels wanted per task.")
    priority = serializers.IntegerField(required=False, min_value=-1_000_000, max_value=1_000_000,
                                        help_text="set_priority: the new priority.")
    export = SnapshotInput(required=False, help_text="export: the snapshot's format and options.")

    def validate(self, data):
        if ("tasks" in data) == ("filter" in data):
            raise serializers.ValidationError({"tasks": ["give either tasks (ids) or filter"]})
        return data


class TaskActionOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None, allow_null=True, read_only=True)
    snapshot = serializers.SerializerMethodField()

    class Meta:
        model = TaskAction
        fields = ["id", "action", "actor", "params", "task_count", "task_ids", "created_at", "snapshot"]

    def get_snapshot(self, action) -> dict | None:
        snapshot = self.context.get("snapshot")
        return SnapshotOutput(snapshot).data if snapshot is not None else None


class ImportInput(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=list(IMPORT_FORMATS), required=False, allow_null=True)


class TokenInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1000, trim_whitespace=False)

"""Rounds over the API: list and run (admins and engineers), read one with its lineage, cancel."""

from rest_framework import serializers

from ..api.jobs import JobActionView, JobDetailView, JobListView, launch_client_id
from ..models import Model
from .runner import round_cancel, round_create
from .selectors import round_get, round_lineage, rounds_for
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
    client_id = launch_client_id()


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
        return round_lineage(obj)


class RoundListView(JobListView):
    serializer_class, input_class = RoundOutput, RoundInput
    rows = staticmethod(lambda project: rounds_for(project=project))
    launch = staticmethod(round_create)


class RoundDetailView(JobDetailView):
    serializer_class, lookup, key_field, what = RoundDetailOutput, "number", "number", "round"
    find = staticmethod(lambda project, key: round_get(project=project, number=key))


class RoundCancelView(JobActionView, RoundDetailView):
    output_class = RoundOutput
    act = staticmethod(lambda rnd: round_cancel(rnd=rnd))

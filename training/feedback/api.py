"""API for feedback jobs and the agreement report, under /api/v1/projects/{slug}/ (training API).

Engineers and admins launch and cancel; reviewers read too (as for generation jobs); annotators get 403.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response as HttpResponse

from common.permissions import CanReadData
from common.views import ProjectView

from ..api.jobs import JobActionView, JobDetailView, JobListView, launch_client_id
from ..models import FeedbackJob, FeedbackKind, Model
from . import jobs
from .agreement import agreement_report


class FeedbackJobOutput(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    constitution_version = serializers.IntegerField(source="constitution.number", read_only=True)
    rater = serializers.CharField(source="rater.username", default=None, allow_null=True, read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True, read_only=True)
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = FeedbackJob
        fields = [
            "id", "kind", "model", "constitution_version", "rater", "status", "cancel_requested", "done", "total",
            "percent", "scope", "parameters", "failures", "result", "error", "attempts", "created_by", "created_at",
            "started_at", "finished_at", "heartbeat_at", "client_id",
        ]


class FeedbackJobInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=FeedbackKind.values)
    model = serializers.SlugRelatedField(slug_field="name", queryset=Model.objects.filter(is_active=True))
    scope = serializers.DictField(required=False, default=dict)
    rounds = serializers.IntegerField(min_value=1, max_value=jobs.MAX_ROUNDS, required=False, default=1)
    cot = serializers.BooleanField(required=False, default=False)
    principles = serializers.ListField(child=serializers.SlugField(max_length=100), required=False, default=list)
    counts_toward_overlap = serializers.BooleanField(required=False, default=False)
    ranking_subset = serializers.ChoiceField(choices=["all", "network"], required=False, default="all")
    export_pairs = serializers.BooleanField(required=False, default=False)
    seed = serializers.IntegerField(required=False, allow_null=True, default=None)
    batch_items = serializers.IntegerField(min_value=1, max_value=256, required=False, allow_null=True, default=None)
    critique_sampling = serializers.DictField(required=False, default=dict)
    revision_sampling = serializers.DictField(required=False, default=dict)
    client_id = launch_client_id()


class FeedbackJobListView(JobListView):
    serializer_class, input_class = FeedbackJobOutput, FeedbackJobInput
    rows = staticmethod(lambda project: jobs.feedback_jobs_for(project=project).order_by("-id"))
    launch = staticmethod(jobs.feedback_job_create)


class FeedbackJobDetailView(JobDetailView):
    serializer_class, what = FeedbackJobOutput, "feedback job"
    find = staticmethod(lambda project, key: jobs.feedback_job_get(project=project, job_id=key))


class FeedbackJobCancelView(JobActionView, FeedbackJobDetailView):
    act = staticmethod(lambda job: jobs.feedback_job_cancel(job=job))


class AgreementView(ProjectView):
    """Agreement of AI labels with people: overall and per principle, constitution version and judge model."""

    serializer_class = None
    permissions_by_method = {"*": [CanReadData]}

    @extend_schema(responses={200: dict})
    def get(self, request, slug):
        return HttpResponse(agreement_report(project=self.project))

"""Thin API views for the model registry, generation jobs and training runs."""

from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response as HttpResponse

from common.errors import NotFound
from common.permissions import IsStaff
from common.views import parse_input

from .. import selectors, services
from . import serializers as s
from .jobs import JobActionView, JobDetailView, JobListView


class ModelListView(ListModelMixin, GenericAPIView):
    """The model registry. Everyone signed in may read it; staff register models."""

    serializer_class = s.ModelOutput

    def get_permissions(self):
        return [IsAuthenticated(), IsStaff()] if self.request.method == "POST" else [IsAuthenticated()]

    def get_queryset(self):
        return selectors.models_list(include_archived=self.request.query_params.get("archived") in ("1", "true"))

    def get(self, request):
        return self.list(request)

    @extend_schema(request=s.ModelInput, responses={201: s.ModelOutput})
    def post(self, request):
        model = services.model_register(**parse_input(s.ModelInput, request))
        return HttpResponse(s.ModelOutput(model).data, status=201)


class ModelDetailView(GenericAPIView):
    serializer_class = s.ModelOutput

    def get(self, request, model_id):
        model = selectors.models_list(include_archived=True).filter(pk=model_id).first()
        if model is None:
            raise NotFound("no such model")
        data = s.ModelOutput(model).data
        data["lineage"] = [m.name for m in selectors.model_lineage(model=model)]
        return HttpResponse(data)


class GenerationJobListView(JobListView):
    serializer_class, input_class = s.GenerationJobOutput, s.GenerationJobInput
    rows = staticmethod(lambda project: selectors.generation_jobs_for(project=project).order_by("-id"))
    launch = staticmethod(services.generation_job_create)


class GenerationJobDetailView(JobDetailView):
    serializer_class, what = s.GenerationJobOutput, "generation job"
    find = staticmethod(lambda project, key: selectors.generation_job_get(project=project, job_id=key))


class GenerationJobCancelView(JobActionView, GenerationJobDetailView):
    act = staticmethod(lambda job: services.generation_job_cancel(job=job))


# --- training runs -------------------------------------------------------------------------
from ..services import runs as run_services  # noqa: E402


class TrainingRunListView(JobListView):
    serializer_class, input_class = s.TrainingRunOutput, s.TrainingRunInput
    rows = staticmethod(lambda project: run_services.training_runs_for(project=project).order_by("-id"))
    launch = staticmethod(run_services.training_run_create)


class TrainingRunDetailView(JobDetailView):
    """A run with its log tail, result (e.g. the reward model's evaluation) and metrics as series by name."""

    serializer_class, lookup, what = s.TrainingRunOutput, "run_id", "training run"
    find = staticmethod(lambda project, key: run_services.training_run_get(project=project, run_id=key))

    def get(self, request, slug, run_id):
        run = self.row()
        try:
            since = int(request.query_params.get("since_step", -1))
        except ValueError:
            since = -1
        data = s.TrainingRunOutput(run).data
        data["log_tail"] = run.log_tail
        data["result"] = run.result
        data["metrics"] = run_services.training_run_series(run=run, since_step=since)
        return HttpResponse(data)


class TrainingRunCancelView(JobActionView, TrainingRunDetailView):
    act = staticmethod(lambda run: run_services.training_run_cancel(run=run))


class TrainingRunRelaunchView(JobActionView, TrainingRunDetailView):
    """Queue a failed or cancelled run again; the trainer resumes from the last checkpoint in its directory."""

    act = staticmethod(lambda run: run_services.training_run_relaunch(run=run))

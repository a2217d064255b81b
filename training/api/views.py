"""Thin API views for the model registry, generation jobs and training runs."""

from drf_spectacular.utils import extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response as HttpResponse

from common.errors import NotFound
from common.permissions import CanManageData, CanReadData, IsStaff
from common.views import ProjectView, parse_input

from .. import selectors, services
from . import serializers as s


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


class GenerationJobListView(ListModelMixin, ProjectView):
    serializer_class = s.GenerationJobOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        return selectors.generation_jobs_for(project=self.project).order_by("-id")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.GenerationJobInput, responses={201: s.GenerationJobOutput, 200: s.GenerationJobOutput})
    def post(self, request, slug):
        data = parse_input(s.GenerationJobInput, request)
        job = services.generation_job_create(project=self.project, created_by=request.user, **data)
        return HttpResponse(s.GenerationJobOutput(job).data, status=200 if job.replayed else 201)


class GenerationJobDetailView(ProjectView):
    serializer_class = s.GenerationJobOutput
    permissions_by_method = {"*": [CanReadData]}

    def job(self, job_id):
        job = selectors.generation_job_get(project=self.project, job_id=job_id)
        if job is None:
            raise NotFound("no such generation job")
        return job

    def get(self, request, slug, job_id):
        return HttpResponse(s.GenerationJobOutput(self.job(job_id)).data)


class GenerationJobCancelView(GenerationJobDetailView):
    permissions_by_method = {"*": [CanManageData]}
    http_method_names = ["post", "options"]

    @extend_schema(request=None, responses={200: s.GenerationJobOutput})
    def post(self, request, slug, job_id):
        job = services.generation_job_cancel(job=self.job(job_id))
        return HttpResponse(s.GenerationJobOutput(selectors.generation_job_get(project=self.project, job_id=job.pk)).data)


# --- training runs -------------------------------------------------------------------------
from ..services import runs as run_services  # noqa: E402


class TrainingRunListView(ListModelMixin, ProjectView):
    serializer_class = s.TrainingRunOutput
    permissions_by_method = {"*": [CanReadData], "POST": [CanManageData]}

    def get_queryset(self):
        return run_services.training_runs_for(project=self.project).order_by("-id")

    def get(self, request, slug):
        return self.list(request)

    @extend_schema(request=s.TrainingRunInput, responses={201: s.TrainingRunOutput, 200: s.TrainingRunOutput})
    def post(self, request, slug):
        data = parse_input(s.TrainingRunInput, request, context={"project": self.project})
        run = run_services.training_run_create(project=self.project, created_by=request.user, **data)
        return HttpResponse(s.TrainingRunOutput(run).data, status=200 if run.replayed else 201)


class TrainingRunDetailView(ProjectView):
    """A run with its log tail, result (e.g. the reward model's evaluation) and metrics as series by name."""

    serializer_class = s.TrainingRunOutput
    permissions_by_method = {"*": [CanReadData]}

    def run(self, run_id):
        run = run_services.training_run_get(project=self.project, run_id=run_id)
        if run is None:
            raise NotFound("no such training run")
        return run

    def get(self, request, slug, run_id):
        run = self.run(run_id)
        try:
            since = int(request.query_params.get("since_step", -1))
        except ValueError:
            since = -1
        data = s.TrainingRunOutput(run).data
        data["log_tail"] = run.log_tail
        data["result"] = run.result
        data["metrics"] = run_services.training_run_series(run=run, since_step=since)
        return HttpResponse(data)


class TrainingRunCancelView(TrainingRunDetailView):
    permissions_by_method = {"*": [CanManageData]}
    http_method_names = ["post", "options"]

    @extend_schema(request=None, responses={200: s.TrainingRunOutput})
    def post(self, request, slug, run_id):
        run = run_services.training_run_cancel(run=self.run(run_id))
        return HttpResponse(s.TrainingRunOutput(self.run(run.pk)).data)


class TrainingRunRelaunchView(TrainingRunDetailView):
    """Queue a failed or cancelled run again; the trainer resumes from the last checkpoint in its directory."""

    permissions_by_method = {"*": [CanManageData]}
    http_method_names = ["post", "options"]

    @extend_schema(request=None, responses={200: s.TrainingRunOutput})
    def post(self, request, slug, run_id):
        run = run_services.training_run_relaunch(run=self.run(run_id))
        return HttpResponse(s.TrainingRunOutput(self.run(run.pk)).data)

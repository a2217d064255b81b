from django.urls import path

from ..rounds import api as round_api
from . import views
from .jobs import job_urls

project = "projects/<slug:slug>/"

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="api-models"),
    path("models/<int:model_id>/", views.ModelDetailView.as_view(), name="api-model"),
    *job_urls(project + "generation-jobs/", "generation-job", "job_id", views.GenerationJobListView,
              views.GenerationJobDetailView, cancel=views.GenerationJobCancelView),
    *job_urls(project + "training-runs/", "training-run", "run_id", views.TrainingRunListView,
              views.TrainingRunDetailView, cancel=views.TrainingRunCancelView, relaunch=views.TrainingRunRelaunchView),
    *job_urls(project + "rounds/", "round", "number", round_api.RoundListView, round_api.RoundDetailView,
              cancel=round_api.RoundCancelView),
]

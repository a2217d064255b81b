from django.urls import path

from ..rounds import api as round_api
from . import views

project = "projects/<slug:slug>/"

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="api-models"),
    path("models/<int:model_id>/", views.ModelDetailView.as_view(), name="api-model"),
    path(project + "generation-jobs/", views.GenerationJobListView.as_view(), name="api-generation-jobs"),
    path(project + "generation-jobs/<int:job_id>/", views.GenerationJobDetailView.as_view(), name="api-generation-job"),
    path(
        project + "generation-jobs/<int:job_id>/cancel/",
        views.GenerationJobCancelView.as_view(),
        name="api-generation-job-cancel",
    ),
    path(project + "training-runs/", views.TrainingRunListView.as_view(), name="api-training-runs"),
    path(project + "training-runs/<int:run_id>/", views.TrainingRunDetailView.as_view(), name="api-training-run"),
    path(
        project + "training-runs/<int:run_id>/cancel/",
        views.TrainingRunCancelView.as_view(),
        name="api-training-run-cancel",
    ),
    path(
        project + "training-runs/<int:run_id>/relaunch/",
        views.TrainingRunRelaunchView.as_view(),
        name="api-training-run-relaunch",
    ),
    path(project + "rounds/", round_api.RoundListView.as_view(), name="api-rounds"),
    path(project + "rounds/<int:number>/", round_api.RoundDetailView.as_view(), name="api-round"),
    path(project + "rounds/<int:number>/cancel/", round_api.RoundCancelView.as_view(), name="api-round-cancel"),
]

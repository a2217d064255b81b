"""Training pages (models, generation, training runs, rounds), mounted at /training/."""

from django.urls import path

from .views import generation, rounds, training

app_name = "training"

urlpatterns = [
    path("models/", generation.model_registry, name="models"),
    path("p/<slug:slug>/generation/", generation.generation_jobs, name="generation_jobs"),
    path("p/<slug:slug>/generation/<int:job_id>/", generation.generation_job_detail, name="generation_job"),
    path("p/<slug:slug>/generation/<int:job_id>/cancel/", generation.generation_job_cancel, name="generation_job_cancel"),
    path("p/<slug:slug>/runs/", training.training_runs, name="training_runs"),
    path("p/<slug:slug>/runs/<int:run_id>/", training.training_run_detail, name="training_run"),
    path("p/<slug:slug>/runs/<int:run_id>/data/", training.training_run_data, name="training_run_data"),
    path("p/<slug:slug>/runs/<int:run_id>/cancel/", training.training_run_cancel, name="training_run_cancel"),
    path("p/<slug:slug>/rounds/", rounds.round_list, name="rounds"),
    path("p/<slug:slug>/rounds/<int:number>/", rounds.round_detail, name="round"),
    path("p/<slug:slug>/rounds/<int:number>/cancel/", rounds.round_cancel, name="round_cancel"),
]

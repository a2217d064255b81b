"""Training pages (models, generation, training runs, rounds), mounted at /training/."""

from django.urls import path

from .job_urls import job_pages
from .views import generation, rounds, training

app_name = "training"

urlpatterns = [
    path("models/", generation.model_registry, name="models"),
    *job_pages("generation", "job_id",
               (generation.generation_jobs, generation.generation_job_detail, generation.generation_job_cancel),
               ("generation_jobs", "generation_job", "generation_job_cancel")),
    *job_pages("runs", "run_id", (training.training_runs, training.training_run_detail, training.training_run_cancel),
               ("training_runs", "training_run", "training_run_cancel")),
    path("p/<slug:slug>/runs/<int:run_id>/data/", training.training_run_data, name="training_run_data"),
    *job_pages("rounds", "number", (rounds.round_list, rounds.round_detail, rounds.round_cancel),
               ("rounds", "round", "round_cancel")),
]

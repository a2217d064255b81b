"""Training pages, mounted at /training/."""

from django.urls import path

from .views import rounds as round_views
from .views import training as views

app_name = "training"

urlpatterns = [
    path("models/", views.model_registry, name="models"),
    path("p/<slug:slug>/generation/", views.generation_jobs, name="generation_jobs"),
    path("p/<slug:slug>/generation/<int:job_id>/", views.generation_job_detail, name="generation_job"),
    path("p/<slug:slug>/generation/<int:job_id>/cancel/", views.generation_job_cancel, name="generation_job_cancel"),
    path("p/<slug:slug>/runs/", views.training_runs, name="training_runs"),
    path("p/<slug:slug>/runs/<int:run_id>/", views.training_run_detail, name="training_run"),
    path("p/<slug:slug>/runs/<int:run_id>/data/", views.training_run_data, name="training_run_data"),
    path("p/<slug:slug>/runs/<int:run_id>/cancel/", views.training_run_cancel, name="training_run_cancel"),
    path("p/<slug:slug>/rounds/", round_views.round_list, name="rounds"),
    path("p/<slug:slug>/rounds/<int:number>/", round_views.round_detail, name="round"),
    path("p/<slug:slug>/rounds/<int:number>/cancel/", round_views.round_cancel, name="round_cancel"),
]

"""Feedback pages, mounted under /training/ (namespace `feedback`)."""

from django.urls import path

from .views import feedback as views

app_name = "feedback"

urlpatterns = [
    path("p/<slug:slug>/feedback/", views.feedback_jobs, name="jobs"),
    path("p/<slug:slug>/feedback/agreement/", views.agreement, name="agreement"),
    path("p/<slug:slug>/feedback/<int:job_id>/", views.feedback_job_detail, name="job"),
    path("p/<slug:slug>/feedback/<int:job_id>/cancel/", views.feedback_job_cancel, name="job_cancel"),
]

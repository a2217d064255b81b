"""Feedback pages, mounted under /training/ (namespace `feedback`)."""

from django.urls import path

from .job_urls import job_pages
from .views import feedback as views

app_name = "feedback"

urlpatterns = [
    path("p/<slug:slug>/feedback/agreement/", views.agreement, name="agreement"),
    *job_pages("feedback", "job_id", (views.feedback_jobs, views.feedback_job_detail, views.feedback_job_cancel),
               ("jobs", "job", "job_cancel")),
]

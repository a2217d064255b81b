from django.urls import path

from ..api.jobs import job_urls
from . import api

project = "projects/<slug:slug>/"

urlpatterns = [
    *job_urls(project + "feedback-jobs/", "feedback-job", "job_id", api.FeedbackJobListView, api.FeedbackJobDetailView,
              cancel=api.FeedbackJobCancelView),
    path(project + "ai-agreement/", api.AgreementView.as_view(), name="api-ai-agreement"),
]

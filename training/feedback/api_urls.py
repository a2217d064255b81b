from django.urls import path

from . import api

project = "projects/<slug:slug>/"

urlpatterns = [
    path(project + "feedback-jobs/", api.FeedbackJobListView.as_view(), name="api-feedback-jobs"),
    path(project + "feedback-jobs/<int:job_id>/", api.FeedbackJobDetailView.as_view(), name="api-feedback-job"),
    path(project + "feedback-jobs/<int:job_id>/cancel/", api.FeedbackJobCancelView.as_view(), name="api-feedback-job-cancel"),
    path(project + "ai-agreement/", api.AgreementView.as_view(), name="api-ai-agreement"),
]

from django.urls import path

from . import bulk_views, quality_views, views, webhook_views

project = "projects/<slug:slug>/"

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("projects/", views.ProjectListView.as_view(), name="api-projects"),
    path(project, views.ProjectDetailView.as_view(), name="api-project"),
    path(project + "members/", views.MemberListView.as_view(), name="api-members"),
    path(project + "members/<int:user_id>/", views.MemberDetailView.as_view(), name="api-member"),
    path(project + "guidelines/", views.GuidelineListView.as_view(), name="api-guidelines"),
    path(project + "guidelines/<int:number>/", views.GuidelineDetailView.as_view(), name="api-guideline"),
    path(project + "constitutions/", views.ConstitutionListView.as_view(), name="api-constitutions"),
    path(project + "constitutions/<int:number>/", views.ConstitutionDetailView.as_view(), name="api-constitution"),
    path(project + "prompts/", views.PromptListView.as_view(), name="api-prompts"),
    path(project + "responses/", views.ResponseListView.as_view(), name="api-responses"),
    path(project + "responses/bulk/", bulk_views.ResponseBulkView.as_view(), name="api-responses-bulk"),
    path(project + "tasks/", views.TaskListView.as_view(), name="api-tasks"),
    path(project + "tasks/bulk/", bulk_views.TaskBulkView.as_view(), name="api-tasks-bulk"),
    path(project + "tasks/actions/", bulk_views.TaskActionView.as_view(), name="api-tasks-actions"),
    path(project + "tasks/<int:task_id>/", views.TaskDetailView.as_view(), name="api-task"),
    path(project + "next-task/", views.NextTaskView.as_view(), name="api-next-task"),
    path(project + "annotations/", views.AnnotationListView.as_view(), name="api-annotations"),
    path(project + "imports/", views.ImportView.as_view(), name="api-imports"),
    path(project + "snapshots/", views.SnapshotListView.as_view(), name="api-snapshots"),
    path(project + "snapshots/<int:snapshot_id>/", views.SnapshotDetailView.as_view(), name="api-snapshot"),
    path(project + "snapshots/<int:snapshot_id>/download/", views.SnapshotDownloadView.as_view(), name="api-snapshot-download"),
    path("assignments/<int:assignment_id>/submit/", views.SubmitView.as_view(), name="api-submit"),
    path("assignments/<int:assignment_id>/skip/", views.SkipView.as_view(), name="api-skip"),
    path("annotations/<int:annotation_id>/", views.AnnotationDetailView.as_view(), name="api-annotation"),
    path("annotations/<int:annotation_id>/revise/", views.AnnotationReviseView.as_view(), name="api-revise"),
    path(project + "snapshots/<int:snapshot_id>/card/", webhook_views.SnapshotCardView.as_view(), name="api-snapshot-card"),
    path(project + "imports/datasets/", webhook_views.DatasetImportView.as_view(), name="api-imports-datasets"),
    path(project + "webhooks/", webhook_views.WebhookListView.as_view(), name="api-webhooks"),
    path(project + "webhooks/<int:webhook_id>/", webhook_views.WebhookDetailView.as_view(), name="api-webhook"),
    path(project + "webhooks/<int:webhook_id>/ping/", webhook_views.WebhookPingView.as_view(), name="api-webhook-ping"),
    path(project + "webhook-deliveries/", webhook_views.DeliveryListView.as_view(), name="api-webhook-deliveries"),
    path(
        project + "webhook-deliveries/<int:delivery_id>/redeliver/",
        webhook_views.DeliveryRedeliverView.as_view(),
        name="api-webhook-redeliver",
    ),
    path(project + "quality/", quality_views.QualityView.as_view(), name="api-quality"),
    path(project + "leaderboard/", quality_views.LeaderboardView.as_view(), name="api-leaderboard"),
]

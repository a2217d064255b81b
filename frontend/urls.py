"""Web UI routes; included at the site root."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from common import signin

from .views import annotate, browser, chat, insight, mywork, project_admin, review, versions, webhooks

app_name = "frontend"

urlpatterns = [
    path("", annotate.home, name="home"),
    path(
        "login/",
        signin.LoginView.as_view(template_name="frontend/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page=reverse_lazy("frontend:login")), name="logout"),
    path("p/<slug:slug>/work/", annotate.work, name="work"),
    path("p/<slug:slug>/a/<int:assignment_id>/submit/", annotate.submit, name="submit"),
    path("p/<slug:slug>/a/<int:assignment_id>/skip/", annotate.skip, name="skip"),
    path("p/<slug:slug>/undo/", annotate.undo, name="undo"),
    path("p/<slug:slug>/chat/", chat.chat_list, name="chat_list"),
    path("p/<slug:slug>/chat/<int:conversation_id>/", chat.chat_page, name="chat"),
    path("p/<slug:slug>/mine/", mywork.my_work, name="my_work"),
    path("p/<slug:slug>/mine/<int:annotation_id>/", mywork.my_work_edit, name="my_work_edit"),
    path("p/<slug:slug>/guide/", versions.guideline_read, name="guideline_read"),
    path("p/<slug:slug>/settings/", project_admin.project_settings, name="project_settings"),
    path("p/<slug:slug>/settings/chat/", project_admin.chat_settings, name="chat_settings"),
    path("p/<slug:slug>/members/set/", project_admin.member_set, name="member_set"),
    path("p/<slug:slug>/members/remove/", project_admin.member_remove, name="member_remove"),
    path("p/<slug:slug>/guidelines/", versions.guidelines, name="guidelines"),
    path("p/<slug:slug>/guidelines/preview/", versions.guidelines_preview, name="guidelines_preview"),
    path("p/<slug:slug>/guidelines/diff/", versions.guidelines_diff, name="guidelines_diff"),
    path("p/<slug:slug>/constitution/", versions.constitution, name="constitution"),
    path("p/<slug:slug>/constitution/diff/", versions.constitution_diff, name="constitution_diff"),
    path("p/<slug:slug>/dashboard/", insight.dashboard, name="dashboard"),
    path("p/<slug:slug>/annotators/", insight.annotators, name="annotators"),
    path("p/<slug:slug>/review/", review.review_list, name="review_list"),
    path("p/<slug:slug>/review/<int:annotation_id>/", review.review_detail, name="review_detail"),
    path("p/<slug:slug>/review/<int:annotation_id>/accept/", review.review_accept, name="review_accept"),
    path("p/<slug:slug>/tasks/", browser.task_browser, name="task_browser"),
    path("p/<slug:slug>/tasks/act/", browser.task_browser_act, name="task_browser_act"),
    path("p/<slug:slug>/snapshots/", insight.snapshots, name="snapshots"),
    path("p/<slug:slug>/snapshots/new/", insight.snapshot_create, name="snapshot_create"),
    path("p/<slug:slug>/snapshots/<int:snapshot_id>/download/", insight.snapshot_download, name="snapshot_download"),
    path("p/<slug:slug>/webhooks/", webhooks.webhooks, name="webhooks"),
    path("p/<slug:slug>/webhooks/new/", webhooks.webhook_create, name="webhook_create"),
    path("p/<slug:slug>/webhooks/<int:webhook_id>/<str:action>/", webhooks.webhook_action, name="webhook_action"),
    path("p/<slug:slug>/deliveries/<int:delivery_id>/redeliver/", webhooks.delivery_redeliver, name="webhook_redeliver"),
]

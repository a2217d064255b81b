"""Project settings and members (admins only)."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation import services
from annotation.services.suggestions import SETTING as SUGGESTION_SETTING
from annotation.services.suggestions import suggestion_rate
from common.errors import DomainError

from .. import reads
from ..access import ADMINS, project_view
from ..forms import ChatSettingsForm, MemberForm, ProjectSettingsForm


@project_view(ADMINS)
def project_settings(request, project):
    if request.method == "POST":
        form = ProjectSettingsForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            settings = dict(project.settings or {})
            settings["task_kinds"] = data["task_kinds"]
            if data["aspects"]:
                settings["aspects"] = data["aspects"]
            else:
                settings.pop("aspects", None)
            if data.get("review_max_confidence") is not None:
                settings["review_max_confidence"] = data["review_max_confidence"]
            else:
                settings.pop("review_max_confidence", None)
            if data.get("suggestion_percent"):
                settings[SUGGESTION_SETTING] = data["suggestion_percent"] / 100
            else:
                settings.pop(SUGGESTION_SETTING, None)
            try:
                services.project_update(
                    project=project,
                    name=data["name"],
                    description=data["description"],
                    required_annotations=data["required_annotations"],
                    lease_seconds=data["lease_minutes"] * 60,
                    settings=settings,
                )
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, "Settings saved.")
                return redirect("frontend:project_settings", project.slug)
    else:
        form = _project_form(project)
    return _settings_page(request, project, form=form)


def _project_form(project) -> ProjectSettingsForm:
    return ProjectSettingsForm(
        initial={
            "name": project.name,
            "description": project.description,
            "required_annotations": project.required_annotations,
            "lease_minutes": max(1, project.lease_seconds // 60),
            "task_kinds": (project.settings or {}).get("task_kinds", []),
            "aspects": ", ".join((project.settings or {}).get("aspects", [])),
            "review_max_confidence": reads.review_max_confidence(project),
            "suggestion_percent": round(suggestion_rate(project) * 100) or None,
        }
    )


def _settings_page(request, project, *, form=None, chat_form=None, status=200):
    ctx = {
        "project": project, "members": reads.members(project=project), "member_form": MemberForm(),
        "form": form if form is not None else _project_form(project),
        "chat_form": chat_form if chat_form is not None else ChatSettingsForm(chat=(project.settings or {}).get("chat")),
    }
    return render(request, "frontend/project_settings.html", ctx, status=status)


@require_POST
@project_view(ADMINS)
def chat_settings(request, project):
    """The models live chat draws from and the sampling of its two sides; errors beside their fields."""
    form = ChatSettingsForm(request.POST, chat=(project.settings or {}).get("chat"))
    if not form.is_valid():
        return _settings_page(request, project, chat_form=form, status=400)
    try:
        services.project_update(project=project, settings={**(project.settings or {}), "chat": form.setting()})
    except DomainError as exc:
        messages.error(request, exc.message)
        return _settings_page(request, project, chat_form=form, status=400)
    messages.success(request, "Chat settings saved.")
    return redirect("frontend:project_settings", project.slug)


@require_POST
@project_view(ADMINS)
def member_set(request, project):
    form = MemberForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a username and a role.")
        return redirect("frontend:project_settings", project.slug)
    user = reads.user_by_username(form.cleaned_data["username"])
    if user is None:
        messages.error(request, f"No user named “{form.cleaned_data['username']}”.")
        return redirect("frontend:project_settings", project.slug)
    try:
        services.membership_set(project=project, user=user, role=form.cleaned_data["role"])
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{user.get_username()} is now {form.cleaned_data['role']}.")
    return redirect("frontend:project_settings", project.slug)


@require_POST
@project_view(ADMINS)
def member_remove(request, project):
    user = reads.user_by_username(request.POST.get("username", ""))
    if user is None:
        return redirect("frontend:project_settings", project.slug)
    try:
        services.membership_remove(project=project, user=user)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("frontend:project_settings", project.slug)
    messages.success(request, f"{user.get_username()} removed from {project.name}.")
    if user.pk == request.user.pk:
        return redirect("frontend:home")
    return redirect("frontend:project_settings", project.slug)

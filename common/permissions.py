"""Role permissions per project, combined with | and & (e.g. IsProjectAdmin | IsProjectEngineer).

The view resolves the caller's project and role once (`view.project_role(request)`); a caller
who is not a member gets 404 from there, so a project's existence is not leaked.
"""

from rest_framework.permissions import BasePermission

from annotation.models import Role


class _ProjectRole(BasePermission):
    role: str = ""

    def has_permission(self, request, view) -> bool:
        return view.project_role(request) == self.role


class IsProjectAdmin(_ProjectRole):
    role = Role.ADMIN
    message = "Only project admins may do this."


class IsProjectEngineer(_ProjectRole):
    role = Role.ENGINEER
    message = "Only project engineers may do this."


class IsProjectReviewer(_ProjectRole):
    role = Role.REVIEWER
    message = "Only project reviewers may do this."


class IsProjectAnnotator(_ProjectRole):
    role = Role.ANNOTATOR
    message = "Only project annotators may do this."


class IsProjectMember(BasePermission):
    def has_permission(self, request, view) -> bool:
        return view.project_role(request) is not None


class IsStaff(BasePermission):
    message = "Only staff may create projects."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_staff)


CanLabel = IsProjectAnnotator | IsProjectReviewer | IsProjectAdmin
CanManageData = IsProjectAdmin | IsProjectEngineer
CanReadData = IsProjectAdmin | IsProjectEngineer | IsProjectReviewer

"""Django admin: read-mostly views of the data; writes that matter go through services and the UI."""

from django.contrib import admin

from . import models


class KeepsAnnotations:
    """Deleting a project or a task would take its annotations with it: labels are never deleted."""

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.Project)
class ProjectAdmin(KeepsAnnotations, admin.ModelAdmin):
    list_display = ("slug", "name", "required_annotations", "lease_seconds", "created_at")
    search_fields = ("slug", "name")


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("project", "user", "role")
    list_filter = ("role", "project")


@admin.register(models.Task)
class TaskAdmin(KeepsAnnotations, admin.ModelAdmin):
    list_display = ("id", "project", "kind", "status", "priority", "required", "open_slots", "submitted_count")
    list_filter = ("project", "kind", "status")
    raw_id_fields = ("prompt",)


@admin.register(models.Annotation)
class AnnotationAdmin(KeepsAnnotations, admin.ModelAdmin):
    list_display = ("id", "task", "kind", "author", "source", "is_current", "created_at")
    list_filter = ("kind", "source", "is_current")
    raw_id_fields = ("task", "assignment", "supersedes")


@admin.register(models.DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "format", "row_count", "sha256", "created_at")

    def has_change_permission(self, request, obj=None):
        return False  # immutable once written

    def has_delete_permission(self, request, obj=None):
        return False

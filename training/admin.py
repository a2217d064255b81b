from django.contrib import admin

from .models import GenerationJob, Model


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ("name", "backend", "roles", "base_model", "is_active", "updated_at")
    list_filter = ("backend", "is_active")
    search_fields = ("name", "path", "base_url")


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "model", "status", "done", "total", "attempts", "heartbeat_at", "created_at")
    list_filter = ("status",)
    readonly_fields = ("prompt_ids", "ticket", "owner", "heartbeat_at", "enqueued_at")

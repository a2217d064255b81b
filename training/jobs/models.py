"""The columns every job row shares (generation jobs, feedback jobs, training runs, rounds) and their constraints.

A job row is the truth about its job: who launched it (`created_by`, `client_id` for an idempotent launch), where
it stands (`status`, `error`, `attempts`, `cancel_requested`), which message may run it next (`ticket`), which
worker holds it now (`owner`, beating on `heartbeat_at`) and when it was queued, started and ended.
`training.jobs.runtime` moves rows through these columns for every kind alike.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobRow(models.Model):
    """Abstract: a row a worker claims, beats on and ends. A kind with more statuses (a round's `waiting`)
    redefines `status` with its own choices."""

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times re-queued after an error or a lost worker.")

    ticket = models.CharField(max_length=32, blank=True, help_text="The message that may run the job next.")
    owner = models.CharField(max_length=128, blank=True, help_text="The worker holding the job now.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    client_id = models.UUIDField(null=True, blank=True,
                                 help_text="The launcher's id for this launch: a retry with it returns this row.")
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When the next message is due.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["-id"]

    #: The statuses a worker may still claim the row in (a kind with more redefines it).
    active_statuses = ACTIVE_STATUSES

    @property
    def is_active(self) -> bool:
        return self.status in self.active_statuses


class BatchedJobRow(JobRow):
    """Abstract: a job that works through a list of items a batch at a time (generation and feedback jobs),
    committing each batch with its `cursor`, so a resumed job goes on from there."""

    cursor = models.PositiveIntegerField(default=0, help_text="Items fully processed.")
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)

    class Meta(JobRow.Meta):
        abstract = True

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 100


def job_row_constraints(prefix: str, statuses, **choices) -> list:
    """The shared constraints, named `{prefix}_…` as each kind's table has always had them: the status among
    `statuses`, one row per (project, client id), and each field of `choices` among its values
    (`{prefix}_{field}_valid`)."""
    return [
        models.CheckConstraint(condition=Q(status__in=list(statuses)), name=f"{prefix}_status_valid"),
        models.UniqueConstraint(fields=["project", "client_id"], condition=Q(client_id__isnull=False),
                                name=f"{prefix}_client_id_unique"),
        *(models.CheckConstraint(condition=Q(**{f"{field}__in": list(values)}), name=f"{prefix}_{field}_valid")
          for field, values in choices.items()),
    ]


def job_row_indexes(prefix: str, active, *, by_project: bool = True) -> list:
    """The reconciler's index over active rows (`{prefix}_active`) and the project listing's."""
    indexes = [models.Index(fields=["status", "heartbeat_at"], name=f"{prefix}_active",
                            condition=Q(status__in=[str(s) for s in active]))]
    if by_project:
        indexes.append(models.Index(fields=["project", "-id"], name=f"{prefix}_by_project"))
    return indexes

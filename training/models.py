"""Training data model: the model registry and the job rows (generation jobs, feedback jobs, training runs, rounds).
Workflows live in `training.services`, `training.feedback` and `training.rounds`; the columns job rows share, in
`training.jobs.models`."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from .jobs.models import ACTIVE_STATUSES, BatchedJobRow, JobRow, JobStatus, job_row_constraints, job_row_indexes

__all__ = ["ACTIVE_STATUSES", "JobStatus"]  # re-exported: every kind's code reads them from here


class Backend(models.TextChoices):
    TRANSFORMERS = "transformers"
    OPENAI = "openai"
    VLLM = "vllm"


class ModelRole(models.TextChoices):
    POLICY = "policy"
    JUDGE = "judge"
    REWARD = "reward"


class Model(models.Model):
    """A model Quorum can run: a local directory (transformers, vllm) or an OpenAI-compatible server."""

    name = models.CharField(max_length=200, unique=True)
    backend = models.CharField(max_length=16, choices=Backend.choices)
    path = models.CharField(max_length=1000, blank=True, help_text="Local model directory (transformers, vllm).")
    base_url = models.CharField(max_length=500, blank=True, help_text="OpenAI-compatible server, e.g. http://host:8000/v1")
    served_name = models.CharField(
        max_length=200, blank=True, help_text="The model id the server knows it by (defaults to the name)."
    )
    chat_template = models.TextField(blank=True, help_text="Jinja chat template; empty uses the tokenizer's own.")
    sampling = models.JSONField(default=dict, blank=True, help_text="Default sampling parameters.")
    roles = models.JSONField(default=list, blank=True, help_text="Subset of policy, judge, reward.")
    options = models.JSONField(
        default=dict, blank=True, help_text="Backend options: device, dtype, max_batch_size, timeout, concurrency…"
    )
    description = models.TextField(blank=True)
    base_model = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="derived",
        help_text="The model this one was trained from (lineage).",
    )
    # Becomes a foreign key to the training run that produced this checkpoint once runs exist.
    parent_run_id = models.BigIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="Provenance, e.g. the package it came from.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(backend__in=Backend.values), name="model_backend_valid"),
            models.CheckConstraint(
                condition=~Q(backend=Backend.OPENAI) | ~Q(base_url=""), name="model_openai_needs_base_url"
            ),
            models.CheckConstraint(
                condition=Q(backend=Backend.OPENAI) | ~Q(path=""), name="model_local_needs_path"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CandidateTasks(models.TextChoices):
    """How a prompt's candidates become annotation tasks."""

    PAIRWISE = "pairwise", "pairs"
    RANKING = "ranking", "ranking groups of k"
    RATING = "rating", "one rating task per response"
    STEPS = "steps", "one step-labelling task per response"
    NONE = "none", "no tasks (candidates only)"


class GenerationJob(BatchedJobRow):
    """Sample `n` responses per prompt of a scope with one model, and turn them into tasks.

    The row is the truth about the job: workers claim it (`owner`, `heartbeat_at`), write each batch of prompts
    and move `cursor` in one transaction, and a periodic reconciler re-queues a job whose worker stopped beating.
    Responses are keyed by (job, prompt, sample index) and tasks by (job, prompt, group), so a retried or
    restarted job never duplicates rows. A message carries the job's current `ticket`; an older one is ignored.
    """

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="generation_jobs")
    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="generation_jobs")
    prompt_filter = models.JSONField(default=dict, blank=True, help_text="The scope as asked for.")
    prompt_ids = models.JSONField(default=list, help_text="The scope resolved at launch, in processing order.")
    n = models.PositiveSmallIntegerField(default=2, help_text="Samples per prompt.")
    sampling = models.JSONField(default=dict, blank=True, help_text="Model defaults merged with the job's overrides.")
    task_kind = models.CharField(max_length=16, choices=CandidateTasks.choices, default=CandidateTasks.PAIRWISE)
    group_size = models.PositiveSmallIntegerField(default=2, help_text="Responses per task (pairwise 2, ranking k).")
    task_priority = models.IntegerField(default=0)
    batch_prompts = models.PositiveSmallIntegerField(default=4, help_text="Prompts generated and committed together.")
    queue = models.CharField(max_length=32, default="gpu")

    cursor = models.PositiveIntegerField(default=0, help_text="Prompts fully written (responses and tasks).")
    done = models.PositiveIntegerField(default=0, help_text="Responses written.")
    total = models.PositiveIntegerField(default=0, help_text="Responses wanted: prompts × n.")
    tasks_created = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    generation_seconds = models.FloatField(default=0.0, help_text="Time spent inside the backend.")

    class Meta(BatchedJobRow.Meta):
        constraints = [
            *job_row_constraints("generation_job", JobStatus.values),
            models.CheckConstraint(condition=Q(task_kind__in=CandidateTasks.values), name="generation_job_kind_valid"),
            models.CheckConstraint(condition=Q(n__gte=1), name="generation_job_n_positive"),
            models.CheckConstraint(condition=Q(done__lte=F("total")), name="generation_job_done_within_total"),
        ]
        indexes = job_row_indexes("generation_job", ACTIVE_STATUSES)

    def __str__(self) -> str:
        return f"generation job {self.pk} ({self.status})"


class TrainingMethod(models.TextChoices):
    SFT = "sft"
    REWARD = "reward"
    DPO = "dpo"
    KTO = "kto"
    ORPO = "orpo"
    PPO = "ppo"
    PRM = "prm"


class TrainingRun(JobRow):
    """One trainer process (`python -m training.trainers.<method>`) turning a snapshot into a model.

    The row is the truth: a worker claims it (`owner`, `heartbeat_at`), streams the trainer's metrics into
    `TrainingMetric` rows and keeps the tail of its log; the reconciler fails a run whose worker stopped beating.
    `hyperparameters` are the method's config fields as validated at launch (model, data and output_dir are
    filled in by the launcher).
    """

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="training_runs")
    method = models.CharField(max_length=16, choices=TrainingMethod.choices)
    base_model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="training_runs")
    snapshot = models.ForeignKey("annotation.DatasetSnapshot", on_delete=models.PROTECT, related_name="training_runs")
    snapshot_sha256 = models.CharField(max_length=64)
    reward_model = models.ForeignKey(
        Model, null=True, blank=True, on_delete=models.PROTECT, related_name="reward_for_runs"
    )
    hyperparameters = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=32, default="gpu")

    step = models.PositiveIntegerField(default=0, help_text="Last optimizer step reported.")
    log_tail = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True, help_text="The trainer's result.json.")
    output_dir = models.CharField(max_length=1000, blank=True)
    output_model = models.ForeignKey(
        Model, null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_by_runs"
    )

    class Meta(JobRow.Meta):
        constraints = job_row_constraints("training_run", JobStatus.values, method=TrainingMethod.values)
        indexes = job_row_indexes("training_run", ACTIVE_STATUSES)

    def __str__(self) -> str:
        return f"training run {self.pk} ({self.method}, {self.status})"


class TrainingMetric(models.Model):
    """One scalar a trainer reported: the last value per (run, step, name) is kept."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    step = models.IntegerField()
    name = models.CharField(max_length=200)
    value = models.FloatField(null=True)

    class Meta:
        ordering = ["run", "step", "name"]
        constraints = [models.UniqueConstraint(fields=["run", "step", "name"], name="training_metric_unique")]


from .rounds.models import Round  # noqa: E402,F401  (the loop's rounds live with their services)


class FeedbackKind(models.TextChoices):
    CRITIQUE_REVISION = "critique_revision", "critique → revision (supervised CAI)"
    JUDGE = "judge", "AI judge labels tasks (RL-CAI)"


class FeedbackJob(BatchedJobRow):
    """AI feedback under a constitution version: critique→revision chains over prompts, or AI labels on tasks.

    Same pattern as `GenerationJob`: the row is the truth, a worker claims it (owner, heartbeat), commits each
    batch of items with the cursor in one transaction, hands on after JOB_SLICE_SECONDS, and the reconciler
    re-queues a job whose worker went silent. Rows it writes are keyed by (job, item, round/principle), so a
    retried job never duplicates them. Items that fail are recorded in `failures` and retried once at the end.
    """

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="feedback_jobs")
    kind = models.CharField(max_length=24, choices=FeedbackKind.choices)
    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="feedback_jobs",
                              help_text="The judge, or the model that critiques and revises.")
    constitution = models.ForeignKey("annotation.ConstitutionVersion", on_delete=models.PROTECT, related_name="+")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="The AI rater the labels are written as (judge jobs).")
    scope = models.JSONField(default=dict, blank=True, help_text="The filter as asked for.")
    item_ids = models.JSONField(default=list, help_text="Prompt ids (chains) or task ids (judge), resolved at launch.")
    parameters = models.JSONField(default=dict, blank=True, help_text="rounds, cot, principles, seed, overlap, export…")
    batch_items = models.PositiveSmallIntegerField(default=8)
    queue = models.CharField(max_length=32, default="gpu")

    failures = models.JSONField(default=list, blank=True, help_text="[{item, error, attempts}] of items that failed.")
    retried = models.BooleanField(default=False, help_text="Failed items were given their second try.")
    result = models.JSONField(default=dict, blank=True)

    class Meta(BatchedJobRow.Meta):
        constraints = job_row_constraints("feedback_job", JobStatus.values, kind=FeedbackKind.values)
        indexes = job_row_indexes("feedback_job", ACTIVE_STATUSES)

    def __str__(self) -> str:
        return f"feedback job {self.pk} ({self.kind}, {self.status})"

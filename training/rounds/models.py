"""A round of the loop: the policy that generated, the tasks it produced, the snapshot of their labels, the runs
trained on it and the model that came out, which generates the next round.

Lineage is stored as links, never copied: model → generation job → tasks (metadata `round`) → annotations →
snapshot (sha256 kept on the row as well) → training run → output model.
"""

from django.db import models

from ..jobs.models import JobRow, job_row_constraints, job_row_indexes


class LabelMode(models.TextChoices):
    AI = "ai", "AI judge only"
    HUMAN = "human", "people only (waits for the human quota)"
    BOTH = "both", "AI judge and people (waits for the human quota)"


class RoundStage(models.TextChoices):
    GENERATE = "generate"
    SELECT = "select"
    LABEL = "label"
    EXPORT = "export"
    TRAIN = "train"
    EVALUATE = "evaluate"
    DONE = "done"


STAGE_ORDER = [s.value for s in RoundStage]


class RoundStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # for a job, a run or human labels: no worker holds it, a message will look again
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ROUND_ACTIVE = (RoundStatus.QUEUED, RoundStatus.RUNNING, RoundStatus.WAITING)


class Round(JobRow):
    """One turn of generate → select → label → export → train → evaluate. The row is the truth: a worker claims it
    (`owner`, `heartbeat_at`), does what it can, and hands it on to a later message while it waits; the reconciler
    re-sends a round nobody holds and takes back one whose worker stopped beating."""

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    policy = models.ForeignKey("training.Model", on_delete=models.PROTECT, related_name="rounds_as_policy",
                               help_text="The model that generated this round's candidates.")
    judge = models.ForeignKey("training.Model", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="rounds_as_judge", help_text="AI judge for labels and win rates.")
    reward_model = models.ForeignKey("training.Model", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="rounds_as_reward",
                                     help_text="Reward model (or ensemble) for active selection and checks.")
    label_mode = models.CharField(max_length=8, choices=LabelMode.choices, default=LabelMode.AI)
    human_quota = models.PositiveIntegerField(default=0, help_text="Human annotations on this round's tasks to wait for.")
    config = models.JSONField(default=dict, blank=True, help_text="Sizes, sampling, selection and training settings.")
    rounds_after = models.PositiveIntegerField(default=0, help_text="Further rounds to start when this one succeeds.")
    previous = models.OneToOneField("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="next_round")

    prompt_ids = models.JSONField(default=list, blank=True, help_text="Training prompts this round generated for.")
    generation_job = models.ForeignKey("training.GenerationJob", null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="rounds")
    snapshot = models.ForeignKey("annotation.DatasetSnapshot", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="rounds")
    snapshot_sha256 = models.CharField(max_length=64, blank=True)
    training_run = models.ForeignKey("training.TrainingRun", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="rounds")
    reward_run = models.ForeignKey("training.TrainingRun", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="reward_rounds", help_text="Optional reward model trained on the snapshot.")
    output_model = models.ForeignKey("training.Model", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="rounds_as_output", help_text="Becomes the next round's policy.")
    output_reward_model = models.ForeignKey("training.Model", null=True, blank=True, on_delete=models.PROTECT,
                                            related_name="rounds_as_output_reward")

    status = models.CharField(max_length=16, choices=RoundStatus.choices, default=RoundStatus.QUEUED)
    stage = models.CharField(max_length=16, choices=RoundStage.choices, default=RoundStage.GENERATE)
    waiting_for = models.CharField(max_length=300, blank=True)
    stage_times = models.JSONField(default=dict, blank=True, help_text="stage -> {started, finished, seconds}.")
    evaluation = models.JSONField(default=dict, blank=True)

    active_statuses = ROUND_ACTIVE

    class Meta(JobRow.Meta):
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_number_unique"),
            *job_row_constraints("round", RoundStatus.values, stage=RoundStage.values, label_mode=LabelMode.values),
        ]
        indexes = job_row_indexes("round", ROUND_ACTIVE, by_project=False)

    def __str__(self) -> str:
        return f"round {self.number} of {self.project_id} ({self.status}, {self.stage})"

    @property
    def task_key(self) -> str:
        """The dedupe-key prefix of the tasks this round created."""
        return f"round:{self.pk}:"

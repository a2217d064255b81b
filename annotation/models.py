"""Annotation data model: fields and database constraints; workflows live in services."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Role(models.TextChoices):
    ADMIN = "admin"
    ENGINEER = "engineer"
    REVIEWER = "reviewer"
    ANNOTATOR = "annotator"


class TaskKind(models.TextChoices):
    PAIRWISE = "pairwise"
    RANKING = "ranking"
    RATING = "rating"
    STEPS = "steps"
    DEMONSTRATION = "demonstration"


DEFAULT_ASPECTS = ("helpful", "honest", "harmless")  # what a rating task asks about unless the project says


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    required_annotations = models.PositiveSmallIntegerField(default=1, help_text="Overlap: annotations wanted per task.")
    lease_seconds = models.PositiveIntegerField(default=1800)
    settings = models.JSONField(default=dict, blank=True)
    current_guideline = models.ForeignKey(
        "GuidelineVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    current_constitution = models.ForeignKey(
        "ConstitutionVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(required_annotations__gte=1), name="project_overlap_positive"),
            models.CheckConstraint(condition=Q(lease_seconds__gte=10), name="project_lease_at_least_10s"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def aspects(self) -> tuple[str, ...]:
        """The aspects rating tasks ask about (`settings["aspects"]`), the defaults when none are set."""
        return self.aspects_in(self.settings)

    @staticmethod
    def aspects_in(settings: dict | None) -> tuple[str, ...]:
        """`aspects` read from a project's settings alone (where the row itself was not loaded)."""
        return tuple((settings or {}).get("aspects") or DEFAULT_ASPECTS)


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    # An AI rater: a model that labels through the same queue and submit as people (source=ai).
    is_ai = models.BooleanField(default=False)
    counts_toward_overlap = models.BooleanField(
        default=True, help_text="AI raters: take a slot of the task's overlap, or label beside the people."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="membership_unique_user_project"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]


class GuidelineVersion(models.Model):
    """One immutable version of a project's labeling guidelines (markdown)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="guideline_versions")
    number = models.PositiveIntegerField()
    body = models.TextField()
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="guideline_version_unique")]


class ConstitutionVersion(models.Model):
    """One immutable version of a project's constitution: an ordered list of principles."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="constitution_versions")
    number = models.PositiveIntegerField()
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="constitution_version_unique")]


class Principle(models.Model):
    """A principle as worded in one constitution version; `key` follows it across versions."""

    constitution = models.ForeignKey(ConstitutionVersion, on_delete=models.CASCADE, related_name="principles")
    position = models.PositiveSmallIntegerField()
    key = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    critique_request = models.TextField()
    revision_request = models.TextField()
    comparison_question = models.TextField()

    class Meta:
        ordering = ["constitution", "position"]
        constraints = [
            models.UniqueConstraint(fields=["constitution", "position"], name="principle_unique_position"),
            models.UniqueConstraint(fields=["constitution", "key"], name="principle_unique_key"),
        ]


class Prompt(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    messages = models.JSONField(help_text="Conversation as a list of {role, content}.")
    external_id = models.CharField(max_length=200, blank=True)
    content_hash = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "content_hash"], name="prompt_unique_content")]


class ResponseOrigin(models.TextChoices):
    IMPORTED = "imported"
    GENERATED = "generated"
    DEMONSTRATION = "demonstration"
    REVISION = "revision"


class Response(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    content = models.TextField()
    steps = models.JSONField(default=list, blank=True, help_text="The content split into reasoning steps.")
    origin = models.CharField(max_length=16, choices=ResponseOrigin.choices)
    model_name = models.CharField(max_length=200, blank=True, help_text="Registry name of the model that wrote it.")
    generation = models.JSONField(default=dict, blank=True, help_text="Sampling parameters and token counts.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    dedupe_key = models.CharField(max_length=128, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt", "dedupe_key"], name="response_unique_dedupe_key"),
            models.CheckConstraint(condition=Q(origin__in=ResponseOrigin.values), name="response_origin_valid"),
        ]


class TaskStatus(models.TextChoices):
    OPEN = "open"
    COMPLETE = "complete"
    ARCHIVED = "archived"


class Task(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="tasks")
    responses = models.ManyToManyField(Response, through="TaskResponse", related_name="tasks")
    n_responses = models.PositiveSmallIntegerField(default=0)
    n_steps = models.PositiveSmallIntegerField(default=0, help_text="Steps of the response (steps tasks).")
    required = models.PositiveSmallIntegerField(default=1)
    # Denormalized: required minus active and submitted assignments, kept by the same
    # transaction that creates or ends an assignment; the queue scans only open_slots > 0.
    open_slots = models.PositiveSmallIntegerField(default=1)
    submitted_count = models.PositiveSmallIntegerField(default=0)
    priority = models.IntegerField(default=0)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    gold = models.JSONField(null=True, blank=True, help_text="Known answer, for quality control.")
    flags = models.JSONField(default=dict, blank=True, help_text="e.g. {'content_warning': 'violence'}")
    dedupe_key = models.CharField(max_length=128, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Kept by database triggers on annotations (annotation/task_stats.py), so that any write,
    # bulk imports included, keeps them true and the task browser filters on an index.
    agreement = models.FloatField(
        null=True, blank=True, help_text="Share of the current human labels that give the most common verdict (2+ labels)."
    )
    ai_disagreement = models.FloatField(
        null=True, blank=True, help_text="Share of the current AI labels that differ from the human majority verdict."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=TaskKind.values), name="task_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=TaskStatus.values), name="task_status_valid"),
            models.CheckConstraint(condition=Q(open_slots__lte=F("required")), name="task_open_slots_within_required"),
            models.CheckConstraint(condition=Q(required__gte=1), name="task_required_positive"),
            models.UniqueConstraint(fields=["project", "dedupe_key"], name="task_unique_dedupe_key"),
        ]
        indexes = [
            models.Index(
                "project", F("priority").desc(), "id", name="task_queue_open", condition=Q(open_slots__gt=0)
            ),
            models.Index(fields=["project", "agreement"], name="task_by_agreement"),
            models.Index(fields=["project", "ai_disagreement"], name="task_by_ai_disagreement"),
        ]


class TaskResponse(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="task_responses")
    response = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["task", "position"]
        constraints = [models.UniqueConstraint(fields=["task", "position"], name="task_response_unique_position")]


class AssignmentState(models.TextChoices):
    ACTIVE = "active"
    SUBMITTED = "submitted"
    SKIPPED = "skipped"
    EXPIRED = "expired"


class Assignment(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="assignments")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    state = models.CharField(max_length=16, choices=AssignmentState.choices, default=AssignmentState.ACTIVE)
    leased_until = models.DateTimeField()
    shown_order = models.JSONField(default=list, help_text="Canonical response positions in the order shown.")
    skip_reason = models.CharField(max_length=300, blank=True)
    # The AI label offered as a pre-annotation (project setting `suggestion_rate`), and whether it was
    # shown (True) or held back for comparison (False); both null when none was considered.
    suggestion = models.ForeignKey(
        "Annotation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    suggestion_shown = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Never the same task twice to one person.
            models.UniqueConstraint(fields=["task", "annotator"], name="assignment_unique_task_annotator"),
            models.CheckConstraint(condition=Q(state__in=AssignmentState.values), name="assignment_state_valid"),
        ]
        indexes = [
            models.Index(fields=["project", "leased_until"], name="assignment_active_lease", condition=Q(state="active")),
            models.Index(fields=["annotator", "project", "state"], name="assignment_by_annotator"),
        ]


class AnnotationSource(models.TextChoices):
    HUMAN = "human"
    AI = "ai"


class Annotation(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="annotations")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    assignment = models.ForeignKey(Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="annotations"
    )
    source = models.CharField(max_length=8, choices=AnnotationSource.choices, default=AnnotationSource.HUMAN)
    payload = models.JSONField(help_text="Validated per task kind; choices and orders in canonical positions.")
    shown_order = models.JSONField(default=list, blank=True)
    rationale = models.TextField(blank=True)
    seconds_spent = models.FloatField(null=True, blank=True)
    guideline_version = models.ForeignKey(GuidelineVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    constitution_version = models.ForeignKey(
        ConstitutionVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    details = models.JSONField(default=dict, blank=True, help_text="AI rater details or import provenance.")
    client_id = models.UUIDField(default=uuid.uuid4, unique=True, help_text="Makes submission idempotent.")
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    is_current = models.BooleanField(default=True)
    is_review = models.BooleanField(default=False, help_text="Written by a reviewer adjudicating.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(source__in=AnnotationSource.values), name="annotation_source_valid"),
            models.CheckConstraint(
                condition=Q(seconds_spent__isnull=True) | Q(seconds_spent__gte=0), name="annotation_seconds_nonnegative"
            ),
            # An AI rater labels a task once: a later label (a new constitution version) supersedes it.
            models.UniqueConstraint(
                fields=["task", "author"], condition=Q(source="ai", is_current=True), name="annotation_one_current_ai_label"
            ),
        ]
        indexes = [
            models.Index(fields=["task"], name="annotation_current_by_task", condition=Q(is_current=True)),
            models.Index(fields=["author", "created_at"], name="annotation_by_author"),
        ]


class TaskActionKind(models.TextChoices):
    REQUEUE = "requeue"
    SET_PRIORITY = "set_priority"
    MARK_GOLD = "mark_gold"
    UNMARK_GOLD = "unmark_gold"
    EXPORT = "export"


class TaskAction(models.Model):
    """Audit of a bulk action on tasks: who did what, when, to which tasks."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="task_actions")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=16, choices=TaskActionKind.choices)
    params = models.JSONField(default=dict, blank=True, help_text="The action's parameters and outcome.")
    task_ids = models.JSONField(default=list, help_text="Every task the action was applied to.")
    task_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(action__in=TaskActionKind.values), name="task_action_valid"),
        ]
        indexes = [models.Index(fields=["project", "-id"], name="task_action_recent")]


class SnapshotFormat(models.TextChoices):
    PREFERENCE = "preference"
    UNPAIRED = "unpaired"
    STEPWISE = "stepwise"
    SFT = "sft"
    RAW = "raw"
    CONVERSATIONS = "conversations"  # live chats as transcripts with their red-team fields


class DatasetSnapshot(models.Model):
    """An exported dataset file; immutable once written, identified by its sha256."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    format = models.CharField(max_length=16, choices=SnapshotFormat.choices)
    file_format = models.CharField(max_length=8, default="jsonl")
    spec = models.JSONField(default=dict, blank=True, help_text="Filters, aggregation rule and style used.")
    row_count = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    path = models.CharField(max_length=500)
    size_bytes = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(format__in=SnapshotFormat.values), name="snapshot_format_valid")]


class WebhookEvent(models.TextChoices):
    TASK_COMPLETED = "task.completed"
    SNAPSHOT_CREATED = "snapshot.created"
    RUN_FINISHED = "run.finished"
    GENERATION_FINISHED = "generation.finished"
    FEEDBACK_FINISHED = "feedback.finished"
    PING = "ping"


class Webhook(models.Model):
    """A URL a project's events are POSTed to, signed with the webhook's secret."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="Event names this URL receives.")
    secret = models.CharField(max_length=200, help_text="HMAC-SHA256 key of the X-Quorum-Signature header.")
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one webhook, with the outcome of its last attempt."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    key = models.CharField(max_length=200, help_text="The event's identity: one delivery per webhook and key.")
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    # A fixed phrase ("HTTP 500", "connection refused", "address not allowed"), never the receiver's answer:
    # whoever reads the log must not be able to read what an internal address said.
    last_error = models.CharField(
        max_length=100, blank=True, help_text="why the last attempt failed, in a few words (never what the receiver answered)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["webhook", "key"], name="webhook_delivery_unique_key"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="webhook_delivery_status_valid"),
        ]
        indexes = [models.Index(fields=["webhook", "-id"], name="webhook_delivery_recent")]


class ChatMode(models.TextChoices):
    COMPARE = "compare"  # two candidates each turn, the annotator picks the better one (HH-RLHF)
    REDTEAM = "redteam"  # one reply each turn, marked harmful or not; a 0-4 rating at the end (HH red team)
    ARENA = "arena"  # two anonymous models answer one prompt; names shown after the vote (Chatbot Arena)


class ConversationStatus(models.TextChoices):
    OPEN = "open"
    CLOSED = "closed"


RED_TEAM_RATING_MAX = 4


class Conversation(models.Model):
    """A live chat of one annotator with a project's model(s); each turn becomes a task and its annotation."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="conversations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="conversations")
    mode = models.CharField(max_length=16, choices=ChatMode.choices)
    status = models.CharField(max_length=16, choices=ConversationStatus.choices, default=ConversationStatus.OPEN)
    # [{"model": registry name, "sampling": {...}}], one per candidate; in arena hidden until the vote.
    sides = models.JSONField(default=list)
    guideline_version = models.ForeignKey(GuidelineVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    constitution_version = models.ForeignKey(
        ConstitutionVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    task_description = models.TextField(blank=True, help_text="Red team: what the annotator set out to make the model do.")
    principle = models.SlugField(max_length=100, blank=True, help_text="Red team: key of the principle targeted.")
    rating = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Red team: how bad the worst reply was, 0 (not at all) to 4 (very)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(mode__in=ChatMode.values), name="conversation_mode_valid"),
            models.CheckConstraint(condition=Q(status__in=ConversationStatus.values), name="conversation_status_valid"),
            models.CheckConstraint(
                condition=Q(rating__isnull=True) | Q(rating__lte=RED_TEAM_RATING_MAX), name="conversation_rating_range"
            ),
        ]
        indexes = [models.Index(fields=["project", "annotator", "-id"], name="conversation_by_annotator")]


class TurnState(models.TextChoices):
    PENDING = "pending"  # queued for a worker
    GENERATING = "generating"  # a worker streams the candidates
    READY = "ready"  # candidates complete, the task exists, waiting for the annotator
    FAILED = "failed"  # the worker failed or stopped beating: the annotator may retry
    LABELLED = "labelled"  # picked (or marked); the kept reply is part of the history


class ChatTurn(models.Model):
    """One user message and the candidate replies to it, streamed by a worker into `partial`."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveSmallIntegerField()
    message = models.TextField()
    state = models.CharField(max_length=16, choices=TurnState.choices, default=TurnState.PENDING)
    sides = models.JSONField(default=list, help_text="The conversation's sides in the order shown this turn (A first).")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="+", help_text="Every message so far.")
    task = models.OneToOneField(Task, null=True, blank=True, on_delete=models.PROTECT, related_name="chat_turn")
    partial = models.JSONField(default=list, help_text="Text of each candidate so far, in shown order.")
    done = models.JSONField(default=list, help_text="Whether each candidate is complete.")
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds from the message to first and last tokens.")
    ticket = models.CharField(max_length=32, help_text="The message that may generate this turn; a retry renews it.")
    attempts = models.PositiveSmallIntegerField(default=1)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    queued_at = models.DateTimeField(help_text="When the current attempt was queued.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    kept = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Shown position of the reply kept.")
    harmful = models.BooleanField(null=True, blank=True, help_text="Red team: the annotator's mark.")
    annotation = models.ForeignKey(Annotation, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "index"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "index"], name="chat_turn_unique_index"),
            models.CheckConstraint(condition=Q(state__in=TurnState.values), name="chat_turn_state_valid"),
        ]
        indexes = [
            models.Index(fields=["heartbeat_at"], name="chat_turn_running", condition=Q(state__in=["pending", "generating"])),
        ]

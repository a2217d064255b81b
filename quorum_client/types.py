"""What the server returns, as typed dataclasses. Each keeps the full decoded object in `raw`, so fields that a
newer server adds are not lost; unknown keys are ignored when building."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


def from_dict(cls: type[T], data: dict) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    obj = cls(**{k: v for k, v in data.items() if k in names and k != "raw"})
    obj.raw = dict(data)  # type: ignore[attr-defined]
    return obj


@dataclass
class Project:
    id: int
    name: str
    slug: str
    description: str = ""
    required_annotations: int = 1
    lease_seconds: int = 0
    settings: dict = field(default_factory=dict)
    guideline_version: int | None = None
    constitution_version: int | None = None
    created_at: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class Membership:
    user_id: int
    username: str
    role: str
    created_at: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class Prompt:
    id: int
    messages: list[dict]
    external_id: str = ""
    content_hash: str = ""
    metadata: dict = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    created_at: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class Response:
    id: int
    prompt: int
    content: str
    steps: list[str] = field(default_factory=list)
    origin: str = ""
    model_name: str = ""
    generation: dict = field(default_factory=dict)
    parent: int | None = None
    metadata: dict = field(default_factory=dict)
    created_at: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class Task:
    id: int
    kind: str
    prompt: int
    responses: list[int] = field(default_factory=list)
    required: int = 1
    open_slots: int = 0
    submitted_count: int = 0
    priority: int = 0
    status: str = ""
    gold: dict | None = None
    flags: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    agreement: float | None = None
    ai_disagreement: float | None = None
    created_at: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class LeasedTask:
    """A task handed to the caller by the queue; answer it with `Client.submit(task.assignment, payload)`."""

    assignment: int
    task: int
    kind: str
    leased_until: str
    prompt: dict
    responses: list[dict]
    flags: dict = field(default_factory=dict)
    guideline_version: int | None = None
    suggestion: dict | None = None
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class Annotation:
    id: int
    task: int
    kind: str
    author: str | None
    source: str
    payload: dict
    shown_order: list | None = None
    rationale: str = ""
    seconds_spent: float | None = None
    guideline_version: int | None = None
    constitution_version: int | None = None
    details: dict = field(default_factory=dict)
    client_id: str | None = None
    supersedes: int | None = None
    is_current: bool = True
    is_review: bool = False
    created_at: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class Snapshot:
    """An immutable dataset snapshot; `sha256` is the hash of its file."""

    id: int
    format: str
    file_format: str
    sha256: str
    row_count: int = 0
    size_bytes: int | None = None
    spec: dict = field(default_factory=dict)
    created_at: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class ImportReport:
    """What an import wrote: created rows, and rows that were already there (imports are idempotent)."""

    format: str
    filename: str = ""
    lines: int = 0
    records: int = 0
    prompts_created: int = 0
    prompts_existing: int = 0
    responses_created: int = 0
    responses_existing: int = 0
    tasks_created: int = 0
    tasks_existing: int = 0
    annotations_created: int = 0
    annotations_existing: int = 0
    raw: dict = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        """The report as the server sent it (keys this client does not know included)."""
        known = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "raw"}
        return {**known, **self.raw}

    def __add__(self, other: ImportReport) -> ImportReport:
        """The report of two imports in a row (a push sent in batches): every count the server sent, summed,
        also counts this client has no field for."""
        mine, theirs = self.as_dict(), other.as_dict()
        total = {**theirs, **mine}
        for key in mine.keys() & theirs.keys():
            if _is_count(mine[key]) and _is_count(theirs[key]):
                total[key] = mine[key] + theirs[key]
        return from_dict(ImportReport, total)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class Model:
    id: int
    name: str
    backend: str
    path: str = ""
    base_url: str = ""
    served_name: str = ""
    roles: list[str] = field(default_factory=list)
    sampling: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    chat_template: str = ""
    description: str = ""
    base_model: str | None = None
    parent_run_id: int | None = None
    metadata: dict = field(default_factory=dict)
    is_active: bool = True
    lineage: list[str] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class GenerationJob:
    id: int
    model: str
    status: str
    done: int = 0
    total: int = 0
    percent: int = 0
    tasks_created: int = 0
    n: int = 0
    task_kind: str = ""
    cancel_requested: bool = False
    error: str = ""
    attempts: int = 0
    created_by: str | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class TrainingRun:
    id: int
    method: str
    status: str
    base_model: str = ""
    snapshot: int | None = None
    snapshot_sha256: str = ""
    reward_model: str | None = None
    hyperparameters: dict = field(default_factory=dict)
    step: int = 0
    output_dir: str = ""
    output_model: str | None = None
    error: str = ""
    attempts: int = 0
    cancel_requested: bool = False
    metrics: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    log_tail: str = ""
    created_by: str | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class Round:
    """One round of the loop: generate, select, label, export, train, evaluate. Identified by its `number`."""

    number: int
    status: str
    stage: str = ""
    id: int | None = None
    waiting_for: str = ""
    label_mode: str = ""
    human_quota: int | None = None
    rounds_after: int = 0
    policy: str | None = None
    judge: str | None = None
    reward_model: str | None = None
    config: dict = field(default_factory=dict)
    generation_job: int | None = None
    snapshot: int | None = None
    snapshot_sha256: str = ""
    training_run: int | None = None
    output_model: str | None = None
    evaluation: dict | None = None
    lineage: dict | None = None
    error: str = ""
    cancel_requested: bool = False
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class FeedbackJob:
    """AI feedback under the project's constitution: critique-revision chains over prompts, or judge labels."""

    id: int
    kind: str
    model: str
    status: str
    constitution_version: int | None = None
    rater: str | None = None
    done: int = 0
    total: int = 0
    percent: int = 0
    scope: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    failures: list | dict | None = None
    result: dict | None = None
    error: str = ""
    attempts: int = 0
    cancel_requested: bool = False
    created_by: str | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

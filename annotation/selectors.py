"""Reads. Every queryset a caller can reach is scoped to the caller's projects here."""

import json
from dataclasses import dataclass, fields
from typing import Mapping

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import BooleanField, Count, Exists, F, Max, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.expressions import RawSQL

from common.errors import Conflict, Invalid, NotFound
from quorum_client.refs import SHA256_PREFIX_MIN, snapshot_ref

from . import rows
from .models import (
    Annotation,
    AnnotationSource,
    Assignment,
    ChatTurn,
    Conversation,
    DatasetSnapshot,
    GuidelineVersion,
    Membership,
    Project,
    Prompt,
    Role,
    Task,
    TaskKind,
    TaskResponse,
    TaskStatus,
)

# Roles that see every annotation of a project; annotators see only their own.
OVERSEEING_ROLES = frozenset({Role.ADMIN, Role.ENGINEER, Role.REVIEWER})


def projects_for(*, user: AbstractBaseUser) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).order_by("name")


def project_with_role(*, user: AbstractBaseUser, slug: str) -> tuple[Project, str]:
    """The project and the caller's role in it; NotFound for non-members (existence is not leaked)."""
    # Every API request under /projects/{slug}/ starts here: one plain query, no ORM compile.
    row = rows.fetch_one(_PROJECT_ROLE_SQL, [user.pk, slug])
    if row is None:
        raise NotFound("no such project")
    role, guideline_number, *values = row
    fields = dict(zip(_PROJECT_FIELDS, values))
    fields["settings"] = rows.json_value(fields["settings"])
    # The fields not read here load on first access, like any deferred field.
    project = rows.instance(Project, fields)
    if project.current_guideline_id is not None:
        project.current_guideline = rows.instance(
            GuidelineVersion, {"id": project.current_guideline_id, "project_id": project.pk, "number": guideline_number}
        )
    return project, role


_PROJECT_FIELDS = ("id", "name", "slug", "required_annotations", "lease_seconds", "settings", "current_guideline_id",
                   "current_constitution_id")
_PROJECT_ROLE_SQL = (
    "SELECT m.role, g.number, " + ", ".join(f"p.{f}" for f in _PROJECT_FIELDS)
    + " FROM annotation_membership m JOIN annotation_project p ON p.id = m.project_id"
    " LEFT JOIN annotation_guidelineversion g ON g.id = p.current_guideline_id"
    " WHERE m.user_id = %s AND p.slug = %s"
)


def role_in(*, user: AbstractBaseUser, project_id: int) -> str | None:
    return Membership.objects.filter(user=user, project_id=project_id).values_list("role", flat=True).first()


def annotations_visible_to(*, user: AbstractBaseUser, project: Project, role: str) -> QuerySet[Annotation]:
    qs = Annotation.objects.filter(task__project=project)
    if role not in OVERSEEING_ROLES:
        qs = qs.filter(author=user)
    return qs


def annotation_for(*, user: AbstractBaseUser, annotation_id: int) -> tuple[Annotation, str]:
    """An annotation the caller may see, with the caller's role in its project."""
    annotation = Annotation.objects.select_related("task", "task__project", "author").filter(pk=annotation_id).first()
    role = annotation and role_in(user=user, project_id=annotation.task.project_id)
    if annotation is None or role is None or (role not in OVERSEEING_ROLES and annotation.author_id != user.pk):
        raise NotFound("no such annotation")
    return annotation, role


def assignment_for(*, user: AbstractBaseUser, assignment_id: int) -> Assignment:
    """The caller's own assignment, while they are still a member of its project."""
    assignment = Assignment.objects.filter(pk=assignment_id, annotator=user).first()
    if assignment is None or role_in(user=user, project_id=assignment.project_id) is None:
        raise NotFound("no such assignment")
    return assignment


def task_view(*, assignment: Assignment) -> dict:
    """What an annotator is shown for a leased task: the conversation and responses in shown order."""
    # The queue hands back the assignment with its task and prompt loaded; fetch only if not.
    task: Task = assignment.task
    if not Task.prompt.is_cached(task):
        task = Task.objects.select_related("prompt").get(pk=assignment.task_id)
    # The PostgreSQL queue returns the responses with the lease (annotation/services/hotpath.py).
    by_position = getattr(task, "responses_by_position", None)
    if by_position is None:
        by_position = {
            tr.position: {"id": tr.response.pk, "content": tr.response.content, "steps": tr.response.steps}
            for tr in TaskResponse.objects.filter(task_id=task.pk).select_related("response").only(
                "position", "response__id", "response__content", "response__steps"
            )
        }
    order = assignment.shown_order or sorted(by_position)
    responses = [
        {"label": "ABCDEFGHIJKLMNOP"[i], "id": by_position[p]["id"], "content": by_position[p]["content"],
         "steps": by_position[p]["steps"]}
        for i, p in enumerate(order)
    ]
    return {
        "assignment": assignment.pk,
        "task": task.pk,
        "kind": task.kind,
        "leased_until": assignment.leased_until,
        "prompt": {"id": task.prompt_id, "messages": task.prompt.messages},
        "responses": responses,
        "flags": task.flags,
    }


# --- snapshots by id or sha256 -----------------------------------------------------------------
def snapshot_ref_parse(ref: int | str) -> tuple[str, int | str]:
    """("id", N) or ("sha256", prefix), by the rule the client and the command line follow (Invalid for neither)."""
    try:
        return snapshot_ref(ref)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def snapshots_with_sha256_prefix(*, project: Project, prefix: str) -> QuerySet[DatasetSnapshot]:
    """The project's snapshots whose sha256 starts with `prefix` (8 to 64 hex digits), newest first."""
    kind, value = snapshot_ref_parse(prefix)
    if kind != "sha256":
        raise Invalid(f"a sha256 prefix needs at least {SHA256_PREFIX_MIN} hex digits, not an id")
    return DatasetSnapshot.objects.filter(project=project, sha256__startswith=value).order_by("-id")


def snapshot_by_ref(*, project: Project, ref: int | str) -> DatasetSnapshot:
    """One of the project's snapshots by id or sha256 prefix (see `snapshot_ref_parse`).

    Snapshots with the same sha256 hold the same bytes: a prefix of theirs gives the newest of them. A prefix
    shared by different sha256s is refused (Conflict, code "ambiguous") with the candidates named."""
    kind, value = snapshot_ref_parse(ref)
    if kind == "id":
        found = DatasetSnapshot.objects.filter(project=project, pk=value).first()
        if found is None:
            raise NotFound(f"no such snapshot: id {value}")
        return found
    shas = list(
        snapshots_with_sha256_prefix(project=project, prefix=value)
        .values("sha256").annotate(newest=Max("id")).order_by("-newest")[:6]
    )
    if not shas:
        raise NotFound(f"no such snapshot: no sha256 starts with {value}")
    if len(shas) > 1:
        named = ", ".join(f"{s['sha256'][:16]} (id {s['newest']})" for s in shas[:5])
        more = " and more" if len(shas) > 5 else ""
        raise Conflict(f"sha256 prefix {value} is ambiguous: it matches {named}{more}; give more digits",
                       code="ambiguous")
    return DatasetSnapshot.objects.get(pk=shas[0]["newest"])


# --- the task browser ----------------------------------------------------------------------------
TASK_ORDERS = ("id", "-id", "priority", "-priority", "agreement", "-agreement", "ai_disagreement", "-ai_disagreement")


@dataclass(frozen=True)
class TaskFilter:
    """What the task browser (page and API) searches by; every field empty means every task."""

    text: str = ""
    kind: str = ""
    status: str = ""
    model: str = ""
    tag: str = ""
    agreement_min: float | None = None
    agreement_max: float | None = None
    ai_disagrees: bool | None = None
    gold: bool | None = None
    order: str = "id"

    def query(self) -> dict[str, str]:
        """The filter as query parameters (only those set), for links that keep it."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in ("", None) and not (f.name == "order" and value == "id"):
                out[f.name] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


TASK_FILTER_HELP = {
    "text": "words in the prompt or a response (case-insensitive)",
    "kind": "one of " + ", ".join(TaskKind.values),
    "status": "one of " + ", ".join(TaskStatus.values),
    "model": "a response was written by this model (registry name)",
    "tag": "the prompt carries this tag",
    "agreement_min": "agreement at least this (0 to 1): the share of human labels giving the most common verdict",
    "agreement_max": "agreement at most this (0 to 1)",
    "ai_disagrees": "true: an AI label differs from the human majority; false: the AI labels agree with it",
    "gold": "true: gold tasks (known answer) only; false: no gold tasks",
    "order": "one of " + ", ".join(TASK_ORDERS),
}


def _raw(params, name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value).strip()


def _choice(params, name: str, choices) -> str:
    value = _raw(params, name)
    if value and value not in choices:
        raise Invalid(f"unknown {name} {value!r}", fields={name: [f"one of {', '.join(choices)}"]})
    return value


def _fraction(params, name: str) -> float | None:
    raw = _raw(params, name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise Invalid(f"{name} must be a number from 0 to 1", fields={name: ["a number from 0 to 1"]})
    return value


def _flag(params, name: str) -> bool | None:
    raw = _raw(params, name).lower()
    if not raw:
        return None
    if raw not in ("true", "false", "1", "0"):
        raise Invalid(f"{name} must be true or false", fields={name: ["true or false"]})
    return raw in ("true", "1")


def _text(params, name: str, limit: int = 200) -> str:
    value = _raw(params, name)
    if len(value) > limit:
        raise Invalid(f"{name} is longer than {limit} characters", fields={name: [f"at most {limit} characters"]})
    if "\x00" in value:
        raise Invalid(f"{name} holds a NUL character", fields={name: ["no NUL characters"]})
    return value


def task_filter_parse(params: Mapping) -> TaskFilter:
    """A TaskFilter from query parameters (or a JSON object); Invalid, naming the field, for bad values."""
    found = TaskFilter(
        text=_text(params, "text"), kind=_choice(params, "kind", TaskKind.values),
        status=_choice(params, "status", TaskStatus.values), model=_text(params, "model"), tag=_text(params, "tag"),
        agreement_min=_fraction(params, "agreement_min"), agreement_max=_fraction(params, "agreement_max"),
        ai_disagrees=_flag(params, "ai_disagrees"), gold=_flag(params, "gold"),
        order=_choice(params, "order", TASK_ORDERS) or "id",
    )
    low, high = found.agreement_min, found.agreement_max
    if low is not None and high is not None and low > high:
        raise Invalid("agreement_min is above agreement_max", fields={"agreement_min": ["at most agreement_max"]})
    return found


def _text_match(text: str) -> Q:
    """Prompt or response text containing `text`. Prompts are JSON: the words are also looked for as JSON
    writes them (quotes, backslashes, and non-ASCII letters as \\u escapes on SQLite)."""
    needles = {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    in_prompt = Q()
    for needle in needles:
        in_prompt |= Q(messages__icontains=needle)
    # Two IN lists, each one scan of its table (or a text index), rather than a test per task: several times faster.
    prompts = Prompt.objects.filter(in_prompt).values("id")
    responses = TaskResponse.objects.filter(response__content__icontains=text).values("task_id")
    return Q(prompt_id__in=prompts) | Q(pk__in=responses)


def _has_tag(tag: str) -> Q:
    if connection.vendor == "postgresql":
        return Q(prompt__tags__contains=[tag])
    # SQLite has no JSON containment lookup: look through the array.
    return Q(RawSQL(
        "EXISTS (SELECT 1 FROM annotation_prompt p, json_each(p.tags) t"
        " WHERE p.id = annotation_task.prompt_id AND t.value = %s)", [tag], output_field=BooleanField(),
    ))


def tasks_matching(*, project: Project, filters: TaskFilter) -> QuerySet[Task]:
    """The project's tasks that pass every filter that is set, in the filter's order."""
    qs = Task.objects.filter(project=project)
    f = filters
    if f.kind:
        qs = qs.filter(kind=f.kind)
    if f.status:
        qs = qs.filter(status=f.status)
    if f.agreement_min is not None:
        qs = qs.filter(agreement__gte=f.agreement_min)
    if f.agreement_max is not None:
        qs = qs.filter(agreement__lte=f.agreement_max)
    if f.ai_disagrees is not None:
        qs = qs.filter(ai_disagreement__gt=0) if f.ai_disagrees else qs.filter(ai_disagreement=0)
    if f.gold is not None:
        qs = qs.filter(gold__isnull=not f.gold)
    if f.model:
        qs = qs.filter(Exists(TaskResponse.objects.filter(task_id=OuterRef("pk"), response__model_name=f.model)))
    if f.tag:
        qs = qs.filter(_has_tag(f.tag))
    if f.text:
        qs = qs.filter(_text_match(f.text))
    name = f.order.lstrip("-")
    if name == "id":
        return qs.order_by(f.order)
    column = F(name).desc(nulls_last=True) if f.order.startswith("-") else F(name).asc(nulls_last=True)
    return qs.order_by(column, "id")


# --- AI suggestions -------------------------------------------------------------------------------
def suggestion_influence(*, project: Project) -> list[dict]:
    """Agreement of people's current labels with the AI verdict on leases where it was shown and where it was
    held back: [{"shown": bool, "labels": n, "agree": k, "agreement": k / n or None}], shown first."""
    rows = (
        Annotation.objects.filter(task__project=project, source=AnnotationSource.HUMAN, is_current=True,
                                  kind=TaskKind.PAIRWISE, assignment__suggestion__isnull=False,
                                  assignment__suggestion_shown__isnull=False)
        .annotate(mine=KeyTextTransform("choice", "payload"), ai=KeyTextTransform("choice", "assignment__suggestion__payload"))
        .values("assignment__suggestion_shown")
        .annotate(labels=Count("id"), agree=Count("id", filter=Q(mine=F("ai"))))
    )
    found = {r["assignment__suggestion_shown"]: r for r in rows}
    out = []
    for shown in (True, False):
        r = found.get(shown, {"labels": 0, "agree": 0})
        out.append({"shown": shown, "labels": r["labels"], "agree": r["agree"],
                    "agreement": r["agree"] / r["labels"] if r["labels"] else None})
    return out


# --- live chat ----------------------------------------------------------------------------------
def conversations_visible_to(*, user: AbstractBaseUser, project: Project, role: str) -> QuerySet[Conversation]:
    """An annotator sees their own conversations; admins, engineers and reviewers see every one."""
    qs = Conversation.objects.filter(project=project).select_related("annotator")
    if role not in OVERSEEING_ROLES:
        qs = qs.filter(annotator=user)
    return qs.order_by("-id")


def conversation_for(*, user: AbstractBaseUser, project: Project, role: str, conversation_id: int) -> Conversation:
    found = conversations_visible_to(user=user, project=project, role=role).filter(pk=conversation_id).first()
    if found is None:
        raise NotFound("no such conversation")
    return found


def chat_turn_for(*, conversation: Conversation, index: int) -> ChatTurn:
    found = ChatTurn.objects.select_related("conversation", "annotation").filter(conversation=conversation, index=index).first()
    if found is None:
        raise NotFound(f"no turn {index} in this conversation")
    return found


def chat_turns_of(*, conversation: Conversation) -> QuerySet[ChatTurn]:
    return ChatTurn.objects.filter(conversation=conversation).select_related("annotation").order_by("index")

"""Reads. Every queryset a caller can reach is scoped to the caller's projects here."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Max, QuerySet

from common.errors import Conflict, Invalid, NotFound
from quorum_client.refs import SHA256_PREFIX_MIN, snapshot_ref

from . import rows
from .models import (
    Annotation,
    Assignment,
    ChatTurn,
    Conversation,
    DatasetSnapshot,
    GuidelineVersion,
    Membership,
    Project,
    Role,
    Task,
    TaskResponse,
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

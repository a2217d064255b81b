"""Prompts, responses and tasks."""

from django.db import IntegrityError, transaction

from common.errors import Invalid

from ..hashing import content_hash
from ..models import Project, Prompt, Response, ResponseOrigin, Task, TaskKind, TaskResponse
from ..steps import split_steps

RESPONSES_PER_KIND = {
    TaskKind.PAIRWISE: (2, 2),
    TaskKind.RANKING: (2, 16),
    TaskKind.RATING: (1, 1),
    TaskKind.STEPS: (1, 1),
    TaskKind.DEMONSTRATION: (0, 1),
}
ROLES = ("system", "user", "assistant")


def validate_messages(messages, *, field: str = "messages") -> list[dict]:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise Invalid(f"{field} must be a non-empty list of messages", fields={field: ["must be a non-empty list"]})
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise Invalid(
                f"{field}[{i}] must be {{role: system|user|assistant, content: text}}",
                fields={field: [f"message {i} must have a role in {ROLES} and text content"]},
            )
        clean.append({"role": m["role"], "content": m["content"]})
    return clean


def prompt_hash(messages: list[dict]) -> str:
    return content_hash(messages)


def prompt_create(
    *, project: Project, messages, external_id: str = "", metadata: dict | None = None, tags: list | None = None
) -> Prompt:
    """Create a prompt, or return the existing one with the same conversation (idempotent)."""
    messages = validate_messages(messages)
    digest = prompt_hash(messages)
    prompt, _ = Prompt.objects.get_or_create(
        project=project,
        content_hash=digest,
        defaults={"messages": messages, "external_id": external_id, "metadata": metadata or {}, "tags": tags or []},
    )
    return prompt


def response_create(
    *,
    prompt: Prompt,
    content: str,
    origin: str = ResponseOrigin.IMPORTED,
    steps: list[str] | None = None,
    model_name: str = "",
    generation: dict | None = None,
    parent: Response | None = None,
    dedupe_key: str | None = None,
    metadata: dict | None = None,
) -> Response:
    """Create a response; with a dedupe_key, a second call returns the first row."""
    if not isinstance(content, str):
        raise Invalid("content must be text", fields={"content": ["must be text"]})
    if origin not in ResponseOrigin.values:
        raise Invalid(f"unknown origin {origin!r}", fields={"origin": [f"must be one of {ResponseOrigin.values}"]})
    fields = dict(
        content=content,
        origin=origin,
        steps=steps if steps is not None else split_steps(content),
        model_name=model_name,
        generation=generation or {},
        parent=parent,
        metadata=metadata or {},
    )
    if dedupe_key is None:
        return Response.objects.create(prompt=prompt, **fields)
    response, _ = Response.objects.get_or_create(prompt=prompt, dedupe_key=dedupe_key, defaults=fields)
    return response


def task_shape(kind: str, responses: list[Response]) -> tuple[int, int]:
    """Check the responses fit the kind; return (n_responses, n_steps)."""
    if kind not in TaskKind.values:
        raise Invalid(f"unknown task kind {kind!r}", fields={"kind": [f"must be one of {TaskKind.values}"]})
    low, high = RESPONSES_PER_KIND[TaskKind(kind)]
    if not low <= len(responses) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise Invalid(f"a {kind} task takes {want} responses", fields={"responses": [f"{kind} takes {want} responses"]})
    n_steps = 0
    if kind == TaskKind.STEPS:
        n_steps = len(responses[0].steps)
        if n_steps == 0:
            raise Invalid("a steps task needs a response with steps", fields={"responses": ["response has no steps"]})
    return len(responses), n_steps


@transaction.atomic
def task_create(
    *,
    project: Project,
    kind: str,
    prompt: Prompt,
    responses: list[Response] | None = None,
    priority: int = 0,
    required: int | None = None,
    gold: dict | None = None,
    flags: dict | None = None,
    dedupe_key: str | None = None,
    metadata: dict | None = None,
) -> Task:
    responses = list(responses or [])
    if prompt.project_id != project.pk or any(r.prompt_id != prompt.pk for r in responses):
        raise Invalid("the prompt and responses must belong to this project and prompt")
    n_responses, n_steps = task_shape(kind, responses)
    if dedupe_key is not None:
        existing = Task.objects.filter(project=project, dedupe_key=dedupe_key).first()
        if existing is not None:
            return existing
    required = required or project.required_annotations
    try:
        with transaction.atomic():
            task = Task.objects.create(
                project=project,
                kind=kind,
                prompt=prompt,
                n_responses=n_responses,
                n_steps=n_steps,
                required=required,
                open_slots=required,
                priority=priority,
                gold=gold,
                flags=flags or {},
                dedupe_key=dedupe_key,
                metadata=metadata or {},
            )
    except IntegrityError:
        if dedupe_key is None:
            raise
        return Task.objects.get(project=project, dedupe_key=dedupe_key)
    TaskResponse.objects.bulk_create(
        TaskResponse(task=task, response=r, position=i) for i, r in enumerate(responses)
    )
    return task


# A gold task is shown to every annotator it can reach (for accuracy tracking), not only `overlap`.
GOLD_REQUIRED = 10_000


@transaction.atomic
def task_set_gold(*, task: Task, gold: dict | None) -> Task:
    """Mark a task as gold with its known answer (in canonical positions), or unmark it (None)."""
    from ..payloads import validate_payload

    task = Task.objects.select_for_update().get(pk=task.pk)
    if gold is None:
        taken = task.required - task.open_slots
        task.required = max(task.project.required_annotations, taken, 1)
        task.open_slots = max(task.required - taken, 0)
        task.gold = None
    else:
        task.gold = validate_payload(task.kind, gold, n_responses=task.n_responses, n_steps=task.n_steps)
        task.open_slots += GOLD_REQUIRED - task.required
        task.required = GOLD_REQUIRED
    task.save(update_fields=["gold", "required", "open_slots"])
    return task

"""What the task form needs, shared by the work page, My work and review."""

import json
import uuid

from annotation import services
from annotation.models import TaskKind
from annotation.payloads import LIKERT_MAX, LIKERT_MIN, to_shown
from common.errors import DomainError, Invalid

from ..taskforms import PAIRWISE_LABELS, SKIP_REASONS, STEP_LABELS, STRENGTH_LABELS, form_state, parse_payload

LETTERS = "ABCDEFGHIJKLMNOP"
PAIRWISE_KEYS = {"A": ("1", "a"), "B": ("2", "b"), "tie": ("3", "t"), "both_bad": ("4", "x")}


def task_context(project, bundle: dict, *, state: dict | None = None) -> dict:
    task = bundle["task"]
    kind = task.kind
    responses = [{"letter": LETTERS[i], "index": i, "response": r} for i, r in enumerate(bundle["responses"])]
    if state is None:
        state = form_state(kind, None, n_responses=task.n_responses, n_steps=task.n_steps)
    ctx = {
        "task": task,
        "kind": kind,
        "conversation": bundle["prompt"].messages,
        "multi_turn": len(bundle["prompt"].messages) > 1,
        "responses": responses,
        "state": state,
        "content_warning": (task.flags or {}).get("content_warning") or "",
        "skip_reasons": SKIP_REASONS,
    }
    if kind == TaskKind.PAIRWISE and len(responses) == 2:
        for r in responses:
            r["json_id"] = f"response-text-{r['letter']}"
        ctx["choices"] = [
            {"value": v, "label": PAIRWISE_LABELS[v], "keys": PAIRWISE_KEYS[v]} for v in ("A", "B", "tie", "both_bad")
        ]
        ctx["strengths"] = sorted(STRENGTH_LABELS.items())
    elif kind == TaskKind.RANKING:
        ctx["items"] = [
            {**item, "letter": LETTERS[item["shown"]], "response": responses[item["shown"]]["response"]}
            for item in state["items"]
            if item["shown"] < len(responses)
        ]
    elif kind == TaskKind.RATING:
        likert = state.get("likert") or {}
        ctx["aspects"] = [{"name": a, "value": likert.get(a)} for a in list(project.aspects)]
        ctx["likert_range"] = list(range(LIKERT_MIN, LIKERT_MAX + 1))
    elif kind == TaskKind.STEPS:
        steps = responses[0]["response"].steps if responses else []
        labels = list(state.get("labels") or [])
        labels += [None] * (len(steps) - len(labels))
        first_error = state.get("first_error")
        ctx["steps"] = [
            {
                "index": i,
                "number": i + 1,
                "text": text,
                "label": labels[i],
                "label_name": STEP_LABELS.get(labels[i], ""),
                "after_stop": bool(state.get("stop")) and first_error is not None and i > first_error,
            }
            for i, text in enumerate(steps)
        ]
        ctx["first_error"] = first_error
    elif kind == TaskKind.DEMONSTRATION:
        ctx["base_response"] = responses[0]["response"] if responses else None
        text = state.get("text")
        ctx["demo_text"] = text if text is not None else ""
        ctx["demo_started"] = text is not None
    return ctx


def shown_state(annotation, kind: str, *, n_responses: int, n_steps: int) -> dict:
    """Form state that shows a stored (canonical) annotation in the order its author saw."""
    shown = to_shown(kind, annotation.payload, annotation.shown_order or list(range(n_responses)))
    return form_state(kind, shown, n_responses=n_responses, n_steps=n_steps)


def state_from_post(kind: str, data, *, n_responses: int, n_steps: int, aspects) -> dict:
    """Form state from a submitted form, read leniently, to show it again with an error."""
    if kind == TaskKind.PAIRWISE:
        strength = data.get("strength") or "2"
        return {"choice": data.get("choice", ""), "strength": int(strength) if strength.isdigit() else 2}
    if kind == TaskKind.RANKING:
        try:
            order = json.loads(data.get("order", ""))
        except ValueError:
            order = None
        try:
            return form_state(kind, {"order": order}, n_responses=n_responses)
        except (TypeError, KeyError):
            return form_state(kind, None, n_responses=n_responses)
    if kind == TaskKind.RATING:
        likert = {}
        for a in aspects:
            v = data.get(f"likert_{a}", "")
            if v.isdigit():
                likert[a] = int(v)
        return {"thumb": data.get("thumb", ""), "likert": likert}
    if kind == TaskKind.STEPS:
        labels = []
        for i in range(n_steps):
            v = data.get(f"step_{i}", "")
            labels.append(int(v) if v.lstrip("-").isdigit() else None)
        first_error = next((i for i, x in enumerate(labels) if x == -1), None)
        return {"labels": labels, "first_error": first_error, "stop": bool(data.get("stop_at_first_error"))}
    if kind == TaskKind.DEMONSTRATION:
        return {"text": data.get("text", "")}
    return {}


def seconds_from(data) -> float | None:
    try:
        value = float(data.get("seconds", ""))
    except ValueError:
        return None
    if value != value or value < 0:  # NaN or negative
        return None
    return min(value, 24 * 3600.0)


def client_id_from(data) -> uuid.UUID:
    """The form's idempotency key; a missing or mangled one means the page is out of date."""
    try:
        return uuid.UUID(data.get("client_id", ""))
    except ValueError:
        raise Invalid("The form is out of date; reload the page.") from None


def revise_from_post(request, annotation, *, aspects, as_reviewer: bool = False) -> tuple[str, dict | None, str]:
    """Write the posted form as a new revision of `annotation` (My work edits and review corrections).

    Returns (error, state, rationale): on success error is "" and state None; on a refused edit the
    error message and the posted form's state, so the page shows what the person entered.
    """
    task = annotation.task
    rationale = request.POST.get("rationale", "")[:20000]
    try:
        payload = parse_payload(task.kind, request.POST, n_steps=task.n_steps, aspects=aspects)
        services.annotation_revise(
            annotation=annotation,
            author=request.user,
            payload=payload,
            rationale=rationale,
            seconds_spent=seconds_from(request.POST),
            client_id=client_id_from(request.POST),
            as_reviewer=as_reviewer,
        )
    except DomainError as exc:
        state = state_from_post(task.kind, request.POST, n_responses=task.n_responses, n_steps=task.n_steps, aspects=aspects)
        return exc.message, state, rationale
    return "", None, rationale

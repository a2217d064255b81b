"""Turning the task forms' fields into payloads (in shown terms) and payloads back into form state.

The services map shown positions to canonical ones; here we only read and write form fields.
"""

import json

from annotation.models import TaskKind
from common.errors import Invalid

STRENGTH_LABELS = {1: "slightly better", 2: "better", 3: "much better"}
PAIRWISE_LABELS = {"A": "A is better", "B": "B is better", "tie": "Tie", "both_bad": "Both bad"}
STEP_LABELS = {1: "good", 0: "neutral", -1: "bad"}


def suggestion_text(shown_payload: dict) -> str:
    """An AI pairwise verdict (in shown letters) in words: "A is better (much better)"."""
    words = PAIRWISE_LABELS[shown_payload["choice"]]
    strength = STRENGTH_LABELS.get(shown_payload.get("strength"))
    return f"{words} ({strength})" if strength and shown_payload["choice"] in ("A", "B") else words

SKIP_REASONS = [
    ("content_opt_out", "Content I do not want to see"),
    ("cannot_judge", "I cannot judge this (outside my knowledge)"),
    ("broken", "The task is broken or unreadable"),
    ("other", "Another reason"),
]
SKIP_REASON_TEXT = dict(SKIP_REASONS)


def _int(value, field: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Invalid(f"{field}: must be a number", fields={field: ["must be a number"]}) from None


def parse_payload(kind: str, data, *, n_steps: int = 0, aspects: list[str] | tuple[str, ...] = ()) -> dict:
    """The payload in shown terms from POSTed form fields; the service validates it fully."""
    if kind == TaskKind.PAIRWISE:
        choice = data.get("choice", "")
        if not choice:
            raise Invalid("Choose A, B, tie or both bad.", fields={"choice": ["required"]})
        payload = {"choice": choice}
        if choice in ("A", "B"):
            payload["strength"] = _int(data.get("strength") or 2, "strength")
        return payload
    if kind == TaskKind.RANKING:
        try:
            order = json.loads(data.get("order", ""))
        except ValueError:
            raise Invalid("The ranking could not be read.", fields={"order": ["not a ranking"]}) from None
        return {"order": order}
    if kind == TaskKind.RATING:
        payload = {}
        if data.get("thumb"):
            payload["thumb"] = data["thumb"]
        likert = {a: _int(data[f"likert_{a}"], a) for a in aspects if data.get(f"likert_{a}")}
        if likert:
            payload["likert"] = likert
        if not payload:
            raise Invalid("Give a thumb or a score for at least one aspect.", fields={"payload": ["required"]})
        return payload
    if kind == TaskKind.STEPS:
        labels = []
        for i in range(n_steps):
            raw = data.get(f"step_{i}", "")
            if raw == "":
                labels.append(None)
            else:
                labels.append(_int(raw, f"step {i + 1}"))
        first_error = next((i for i, x in enumerate(labels) if x == -1), None)
        if first_error is not None and data.get("stop_at_first_error"):
            # Steps after the first error are not judged one by one: they count as bad.
            labels = labels[: first_error + 1] + [-1] * (n_steps - first_error - 1)
        missing = [i + 1 for i, x in enumerate(labels) if x is None]
        if missing:
            which = ", ".join(map(str, missing))
            raise Invalid(f"Label every step (missing: {which}).", fields={"labels": ["missing"]})
        return {"labels": labels, "first_error": first_error}
    if kind == TaskKind.DEMONSTRATION:
        return {"text": data.get("text", "")}
    raise Invalid(f"unknown task kind {kind!r}")


def form_state(kind: str, shown_payload: dict | None, *, n_responses: int, n_steps: int = 0) -> dict:
    """What the task form should show as already chosen (an edit, an undo, a failed submit)."""
    p = shown_payload or {}
    if kind == TaskKind.PAIRWISE:
        return {"choice": p.get("choice") or "", "strength": p.get("strength") or 2}
    if kind == TaskKind.RANKING:
        groups = p.get("order")
        if not isinstance(groups, list) or not groups:
            groups = [[i] for i in range(n_responses)]
        items, seen = [], set()
        for group in groups:
            members = group if isinstance(group, list) else [group]
            members = [m for m in members if isinstance(m, int) and 0 <= m < n_responses and m not in seen]
            for j, m in enumerate(members):
                seen.add(m)
                items.append({"shown": m, "tied": j > 0})
        items += [{"shown": i, "tied": False} for i in range(n_responses) if i not in seen]
        return {"items": items, "order_json": json.dumps(groups)}
    if kind == TaskKind.RATING:
        return {"thumb": p.get("thumb") or "", "likert": p.get("likert") or {}}
    if kind == TaskKind.STEPS:
        labels = p.get("labels") or [None] * n_steps
        first_error = p.get("first_error")
        stop = first_error is not None and all(x == -1 for x in labels[first_error:])
        return {"labels": labels, "first_error": first_error, "stop": stop}
    if kind == TaskKind.DEMONSTRATION:
        return {"text": p.get("text")}
    return {}

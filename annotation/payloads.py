"""Validation of annotation payloads per task kind, and mapping from shown order to canonical order.

Clients answer in the order the responses were shown (A is the first shown); what is stored is
always in canonical positions (A is the task's first response), with the shown order kept beside it.
"""

from common.errors import Invalid

from .models import DEFAULT_ASPECTS, TaskKind

PAIRWISE_CHOICES = ("A", "B", "tie", "both_bad")
LIKERT_MIN, LIKERT_MAX = 1, 7
STRENGTH_MIN, STRENGTH_MAX = 1, 3
DEMONSTRATION_MAX_CHARS = 100_000


def _fail(field: str, message: str):
    raise Invalid(f"{field}: {message}", code="invalid_payload", fields={field: [message]})


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_payload(
    kind: str,
    payload,
    *,
    n_responses: int,
    n_steps: int = 0,
    shown_order: list[int] | None = None,
    aspects: tuple[str, ...] | list[str] = DEFAULT_ASPECTS,
) -> dict:
    """Return the canonical payload for `kind`, or raise Invalid with a message per field."""
    if not isinstance(payload, dict):
        _fail("payload", "must be a JSON object")
    order = list(shown_order) if shown_order else list(range(n_responses))
    validator = _VALIDATORS.get(kind)
    if validator is None:
        _fail("kind", f"unknown task kind {kind!r}")
    return validator(payload, n_responses=n_responses, n_steps=n_steps, order=order, aspects=tuple(aspects))


def _pairwise(payload, *, order, **_):
    choice = payload.get("choice")
    if choice not in PAIRWISE_CHOICES:
        _fail("choice", f"must be one of {', '.join(PAIRWISE_CHOICES)}")
    strength = payload.get("strength")
    if choice in ("A", "B"):
        # A strength not stated stays null: a preference export then has no margin rather than a made-up one.
        if strength is not None and (not _is_int(strength) or not STRENGTH_MIN <= strength <= STRENGTH_MAX):
            _fail("strength", f"must be an integer from {STRENGTH_MIN} to {STRENGTH_MAX}")
        shown_index = 0 if choice == "A" else 1
        canonical_choice = "AB"[order[shown_index]]
        return {"choice": canonical_choice, "strength": strength}
    if strength is not None:
        _fail("strength", "is only given with A or B")
    return {"choice": choice, "strength": None}


def _ranking(payload, *, n_responses, order, **_):
    groups = payload.get("order")
    if not isinstance(groups, list) or not groups:
        _fail("order", "must be a list of shown positions, best first; a nested list is a tie")
    seen: list[int] = []
    canonical_groups: list[list[int]] = []
    for group in groups:
        members = group if isinstance(group, list) else [group]
        if not members or not all(_is_int(m) for m in members):
            _fail("order", "every entry must be a position or a non-empty list of positions")
        for m in members:
            if not 0 <= m < n_responses:
                _fail("order", f"position {m} is out of range 0..{n_responses - 1}")
        seen.extend(members)
        canonical_groups.append(sorted(order[m] for m in members))
    if sorted(seen) != list(range(n_responses)):
        _fail("order", f"must name each of the {n_responses} responses exactly once")
    ranks = [0] * n_responses
    for rank, group in enumerate(canonical_groups, start=1):
        for position in group:
            ranks[position] = rank
    return {"order": canonical_groups, "ranks": ranks}


def _rating(payload, *, aspects, **_):
    thumb = payload.get("thumb")
    likert = payload.get("likert")
    if thumb is None and not likert:
        _fail("payload", "give a thumb (up/down) or a Likert score for at least one aspect")
    if thumb is not None and thumb not in ("up", "down"):
        _fail("thumb", "must be 'up' or 'down'")
    clean: dict[str, int] = {}
    if likert is not None:
        if not isinstance(likert, dict):
            _fail("likert", "must be an object of aspect -> score")
        for aspect, score in likert.items():
            if aspect not in aspects:
                _fail("likert", f"unknown aspect {aspect!r}; this project rates {', '.join(aspects)}")
            if not _is_int(score) or not LIKERT_MIN <= score <= LIKERT_MAX:
                _fail("likert", f"{aspect} must be an integer from {LIKERT_MIN} to {LIKERT_MAX}")
            clean[aspect] = score
    result: dict = {}
    if thumb is not None:
        result["thumb"] = thumb
    if clean:
        result["likert"] = clean
    return result


def _steps(payload, *, n_steps, **_):
    labels = payload.get("labels")
    if not isinstance(labels, list) or len(labels) != n_steps:
        _fail("labels", f"must be a list of {n_steps} labels, one per step")
    if not all(_is_int(x) and x in (-1, 0, 1) for x in labels):
        _fail("labels", "each label must be -1 (bad), 0 (neutral) or 1 (good)")
    first_bad = next((i for i, x in enumerate(labels) if x == -1), None)
    first_error = payload.get("first_error", first_bad)
    if first_error is not None:
        if not _is_int(first_error) or not 0 <= first_error < n_steps:
            _fail("first_error", f"must be a step index from 0 to {n_steps - 1}, or null")
        if labels[first_error] != -1:
            _fail("first_error", "must point at a step labelled -1")
        if first_bad != first_error:
            _fail("first_error", f"step {first_bad} is labelled -1 before it")
    elif first_bad is not None:
        _fail("first_error", "is null but a step is labelled -1")
    return {"labels": labels, "first_error": first_error}


def _demonstration(payload, **_):
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        _fail("text", "must be non-empty text")
    if len(text) > DEMONSTRATION_MAX_CHARS:
        _fail("text", f"must be at most {DEMONSTRATION_MAX_CHARS} characters")
    return {"text": text}


_VALIDATORS = {
    TaskKind.PAIRWISE: _pairwise,
    TaskKind.RANKING: _ranking,
    TaskKind.RATING: _rating,
    TaskKind.STEPS: _steps,
    TaskKind.DEMONSTRATION: _demonstration,
}


def to_shown(kind: str, canonical: dict, shown_order: list[int]) -> dict:
    """The canonical payload expressed in shown positions (to prefill an edit form)."""
    if kind == TaskKind.PAIRWISE and canonical.get("choice") in ("A", "B") and shown_order:
        shown_index = shown_order.index("AB".index(canonical["choice"]))
        return {**canonical, "choice": "AB"[shown_index]}
    if kind == TaskKind.RANKING and shown_order:
        inverse = {canonical_pos: shown for shown, canonical_pos in enumerate(shown_order)}
        return {**canonical, "order": [sorted(inverse[p] for p in group) for group in canonical["order"]]}
    return dict(canonical)

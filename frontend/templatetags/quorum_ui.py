"""Template filters for the web UI: sanitized markdown and short, readable summaries of payloads."""

from django import template

from annotation.models import TaskKind
from annotation.payloads import to_shown

from ..markdown import render_markdown
from ..taskforms import PAIRWISE_LABELS, STRENGTH_LABELS

register = template.Library()
LETTERS = "ABCDEFGHIJKLMNOP"


@register.filter
def markdown(text):
    """Untrusted markdown (model output, chat turns) to HTML that nh3 has sanitized."""
    return render_markdown(text)


@register.filter
def markdown_doc(text):
    """A markdown document (guidelines): single newlines are spaces, as in any markdown file."""
    return render_markdown(text, document=True)


@register.filter
def letter(index) -> str:
    try:
        return LETTERS[int(index)]
    except (ValueError, TypeError, IndexError):
        return "?"


@register.filter
def first_user_text(messages) -> str:
    """The last user turn of a conversation, for lists."""
    for m in reversed(messages or []):
        if m.get("role") == "user":
            return m.get("content", "")
    return (messages or [{}])[0].get("content", "")


@register.filter
def summary(annotation) -> str:
    """One line saying what the annotation answered, in the order its author saw the responses."""
    return summary_as(annotation, annotation.shown_order)


@register.filter
def summary_as(annotation, shown_order) -> str:
    """One line saying what the annotation answered, lettered as in `shown_order`."""
    kind = annotation.kind
    payload = annotation.payload or {}
    try:
        shown = to_shown(kind, payload, shown_order or [])
    except (ValueError, KeyError, TypeError):
        shown = payload
    if kind == TaskKind.PAIRWISE:
        choice = shown.get("choice")
        text = PAIRWISE_LABELS.get(choice, str(choice))
        if choice in ("A", "B") and shown.get("strength"):
            text = f"{choice} {STRENGTH_LABELS.get(shown['strength'], '')}"
        return text
    if kind == TaskKind.RANKING:
        groups = shown.get("order") or []
        return " > ".join(" = ".join(letter(m) for m in g) for g in groups)
    if kind == TaskKind.RATING:
        parts = []
        if shown.get("thumb"):
            parts.append("thumbs " + shown["thumb"])
        parts += [f"{a} {v}" for a, v in (shown.get("likert") or {}).items()]
        return ", ".join(parts)
    if kind == TaskKind.STEPS:
        marks = {1: "+", 0: "0", -1: "−"}
        labels = " ".join(marks.get(x, "?") for x in shown.get("labels") or [])
        fe = shown.get("first_error")
        return labels + (f" (first error: step {fe + 1})" if fe is not None else "")
    if kind == TaskKind.DEMONSTRATION:
        text = (shown.get("text") or "").strip().replace("\n", " ")
        return text[:90] + ("…" if len(text) > 90 else "")
    return ""


@register.filter
def duration(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"

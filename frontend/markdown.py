"""Markdown for untrusted text: markdown-it with raw HTML off, then nh3 as the sanitizer of record."""

from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

# Model outputs and chat turns keep their single line breaks (poems, "Answer: 3" on its own line);
# documents such as guidelines are hard-wrapped prose, where a single newline is just a space.
_chat = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(["table", "strikethrough"])
_doc = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": False}).enable(["table", "strikethrough"])

ALLOWED_TAGS = {
    "a",
    "blockquote",
    "br",
    "code",
    "del",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "strong",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "td": {"style"}, "th": {"style"}}


@lru_cache(maxsize=2048)
def _render(text: str, document: bool = False) -> str:
    html = (_doc if document else _chat).render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )


def render_markdown(text: str | None, *, document: bool = False) -> SafeString:
    """HTML safe to put in a page: only what nh3 lets through survives."""
    # Marked safe only after nh3 has cleaned it.
    return mark_safe(_render(text or "", document))

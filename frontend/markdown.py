"""Markdown for untrusted text: markdown-it with raw HTML off, then nh3 as the sanitizer of record.

Code keeps its whitespace, fenced code with a known language is highlighted by Pygments (CSS classes only,
frontend/static/frontend/highlight.css), and TeX math ($…$, $$…$$, \\(…\\), \\[…\\]) is only marked here:
its escaped source goes into span.math-inline / div.math-display for the vendored KaTeX to typeset in the
browser (frontend/static/frontend/math.js).
"""

import re
from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.texmath import texmath_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

_FORMATTER = HtmlFormatter(nowrap=True)
# A later line that starts with blanks: in prose markdown drops them, in code they are the meaning.
_INDENTED_LINE = re.compile(r"\n(?: {2,}|\t)[ \t]*\S")
# Token type -> (element, class): a display formula inside a paragraph stays a span (a div would split the <p>).
_MATH_ELEMENTS = {
    "math_inline": ("span", "math-inline"),
    "math_inline_double": ("span", "math-display"),
    "math_block": ("div", "math-display"),
    "math_block_label": ("div", "math-display"),
    "math_block_eqno": ("div", "math-display"),
}


def _highlight(code: str, lang: str, _attrs) -> str:
    """Fenced code in a language Pygments knows, as classed spans; "" leaves it to markdown-it (escaped)."""
    try:
        lexer = get_lexer_by_name(lang, stripnl=False) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""
    return f'<pre class="highlight"><code>{highlight(code, lexer, _FORMATTER)}</code></pre>'


def _unfenced_code(state: StateCore) -> None:
    """A paragraph whose later lines are indented is code written without a fence: keep it verbatim."""
    tokens, kept = state.tokens, []
    i = 0
    while i < len(tokens):
        opening = tokens[i]
        if opening.type == "paragraph_open" and _INDENTED_LINE.search(tokens[i + 1].content):
            code = Token("code_block", "code", 0, map=opening.map, level=opening.level, block=True)
            code.content = tokens[i + 1].content + "\n"
            kept.append(code)
            i += 3
            continue
        kept.append(opening)
        i += 1
    state.tokens = kept


def _math_renderer(tag: str, css_class: str):
    def render(self, tokens, idx, options, env) -> str:
        return f'<{tag} class="{css_class}">{escapeHtml(tokens[idx].content.strip())}</{tag}>'

    return render


def _parser(*, chat: bool) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": chat, "highlight": _highlight})
    md.enable(["table", "strikethrough"])
    # "$5 and $10" stays currency: no digit or blank just inside a dollar pair.
    dollarmath_plugin(md, allow_labels=False, allow_space=False, allow_digits=False, double_inline=True)
    texmath_plugin(md, delimiters="brackets")
    if chat:
        md.core.ruler.after("block", "unfenced_code", _unfenced_code)
    for name, (tag, css_class) in _MATH_ELEMENTS.items():
        md.add_render_rule(name, _math_renderer(tag, css_class))
    return md


# Model outputs and chat turns keep their single line breaks (poems, "Answer: 3" on its own line);
# documents such as guidelines are hard-wrapped prose, where a single newline is just a space.
# Only model output gets the unfenced-code rule: a document's indentation means what markdown says.
_chat = _parser(chat=True)
_doc = _parser(chat=False)

ALLOWED_TAGS = {
    "a",
    "blockquote",
    "br",
    "code",
    "del",
    "div",
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
    "span",
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
# Only the classes this module writes: Pygments' token classes, the math markers and the highlight block.
ALLOWED_CLASSES = {
    "span": {c for c in STANDARD_TYPES.values() if c} | {"math-inline", "math-display"},
    "div": {"math-display"},
    "pre": {"highlight"},
}


@lru_cache(maxsize=2048)
def _render(text: str, document: bool = False) -> str:
    html = (_doc if document else _chat).render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )


def render_markdown(text: str | None, *, document: bool = False) -> SafeString:
    """HTML safe to put in a page: only what nh3 lets through survives."""
    # Marked safe only after nh3 has cleaned it.
    return mark_safe(_render(text or "", document))

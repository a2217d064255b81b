"""Text diffs for display: side by side by line with word-level marks, and word diffs of two texts.

Results are plain data (text segments with a changed flag); templates escape them like any text.
"""

import difflib
import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
MAX_WORD_TOKENS = 6000


@dataclass
class Row:
    tag: str  # equal | replace | delete | insert
    left_no: int | None
    right_no: int | None
    left: list[tuple[str, bool]] = field(default_factory=list)
    right: list[tuple[str, bool]] = field(default_factory=list)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def word_diff(a: str, b: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Segments of `a` and of `b`, each flagged True where it differs from the other text."""
    ta, tb = _tokens(a), _tokens(b)
    if len(ta) + len(tb) > MAX_WORD_TOKENS:
        # Very long texts: compare by line to keep the page fast.
        ta, tb = a.splitlines(keepends=True), b.splitlines(keepends=True)
    left: list[tuple[str, bool]] = []
    right: list[tuple[str, bool]] = []
    matcher = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        changed = tag != "equal"
        if i2 > i1:
            _append(left, "".join(ta[i1:i2]), changed)
        if j2 > j1:
            _append(right, "".join(tb[j1:j2]), changed)
    return left, right


def _append(segments: list[tuple[str, bool]], text: str, changed: bool) -> None:
    if segments and segments[-1][1] == changed:
        segments[-1] = (segments[-1][0] + text, changed)
    else:
        segments.append((text, changed))


def side_by_side(a: str, b: str) -> list[Row]:
    """Rows of a side-by-side line diff of `a` (left) and `b` (right)."""
    la, lb = a.splitlines(), b.splitlines()
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(None, la, lb, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                rows.append(Row("equal", i1 + k + 1, j1 + k + 1, [(la[i1 + k], False)], [(lb[j1 + k], False)]))
            continue
        n = max(i2 - i1, j2 - j1)
        for k in range(n):
            li, rj = i1 + k, j1 + k
            has_left, has_right = li < i2, rj < j2
            if has_left and has_right:
                left, right = word_diff(la[li], lb[rj])
                rows.append(Row("replace", li + 1, rj + 1, left, right))
            elif has_left:
                rows.append(Row("delete", li + 1, None, [(la[li], True)], []))
            else:
                rows.append(Row("insert", None, rj + 1, [], [(lb[rj], True)]))
    return rows


def changed_count(rows: list[Row]) -> int:
    return sum(1 for r in rows if r.tag != "equal")

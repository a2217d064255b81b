"""Splitting a response into reasoning steps, by one stated rule.

Rule: if the text has two or more numbered or bulleted lines ("1.", "2)", "Step 3:", "- "), each
such line starts a step and the lines up to the next one belong to it; otherwise steps are the
paragraphs separated by blank lines; otherwise each non-empty line is a step.
"""

import re

_MARKER = re.compile(r"^\s*(?:(?:step\s*)?\d+[.):]|[-*•])\s+", re.IGNORECASE)


def split_steps(text: str) -> list[str]:
    lines = text.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if _MARKER.match(line)]
    if len(starts) >= 2:
        bounds = ([0] if starts[0] != 0 else []) + starts + [len(lines)]
        steps = ["\n".join(lines[a:b]).strip() for a, b in zip(bounds, bounds[1:])]
        return [s for s in steps if s]
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if len(paragraphs) >= 2:
        return paragraphs
    return [line.strip() for line in lines if line.strip()]

"""A model's answer shows as written: code keeps its indentation and colours, formulas are typeset by KaTeX."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)

CODE_ANSWER = (
    "Unfenced, as small models often write it:\n\n"
    "def area(r):\n    if r < 0:\n        raise ValueError(r)\n    return pi * r ** 2\n\n"
    "Fenced:\n\n```python\nfor i in range(3):\n    print(i)  # indented\n```\n"
)
MATH_ANSWER = "The area is $A = \\pi r^2$, and \\(e^{i\\pi} + 1 = 0\\).\n\n$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n"


def test_code_keeps_indentation_and_math_is_typeset(page, live_server, pairwise_tasks, sign_in, shot):
    alice = pairwise_tasks("Write the area of a circle, in code and maths.", [(CODE_ANSWER, MATH_ANSWER)])
    sign_in(page, alice)
    page.goto(live_server.url + "/p/maths/work/")
    body = page.locator("#task-form .response-body[data-view=plain]")
    code = body.locator("pre").first
    expect(code).to_contain_text("def area(r):")
    assert code.evaluate("el => getComputedStyle(el).whiteSpace") == "pre"
    assert "monospace" in code.evaluate("el => getComputedStyle(el).fontFamily")
    assert "\n        raise ValueError(r)\n    return pi" in code.inner_text()
    fenced = body.locator("pre.highlight")
    expect(fenced.locator("span.k").first).to_have_text("for")
    assert "\n    print(i)" in fenced.inner_text()
    expect(body.locator(".katex").first).to_be_visible()
    assert body.locator(".math-inline .katex").count() == 2
    assert body.locator(".math-display .katex-display").count() == 1
    # KaTeX drew the formula (fraction and integral glyphs), not the TeX source.
    assert "\\frac" not in body.locator(".math-display .katex-html").inner_text()
    shot(page, "rendering-code-and-math", full_page=False)

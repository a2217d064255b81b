"""The annotate page works whole under its Content-Security-Policy, and the policy stops an injected script."""

import pytest
from playwright.sync_api import expect

from annotation.models import Annotation

pytestmark = pytest.mark.django_db(transaction=True)

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
"""
PAIR = ("It is $-1$.\n\n```python\nimport cmath\n```", "It is \\(1\\).")


def test_annotate_page_runs_without_a_policy_violation(page, live_server, pairwise_tasks, sign_in):
    alice = pairwise_tasks("What is $e^{i\\pi}$?", [PAIR, PAIR])
    console = []
    page.on("console", lambda m: console.append(m.text))
    page.add_init_script(RECORD_VIOLATIONS)
    sign_in(page, alice)
    response = page.goto(live_server.url + "/p/maths/work/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # Scripts ran (KaTeX typeset, keys work, HTMX swaps the next task in), and none was refused.
    expect(page.locator(".response-body .katex").first).to_be_visible()
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#task-form .muted.small").first).to_contain_text("1 done by you")
    expect(page.locator(".response-body .katex").first).to_be_visible()
    assert Annotation.objects.count() == 1
    assert page.evaluate("window.__csp") == []
    assert not [m for m in console if "Content Security Policy" in m]

    # The policy is enforced: a script slipped into the page does not run.
    page.evaluate("""() => {
        const s = document.createElement("script");
        s.textContent = "window.__ran = true";
        document.body.append(s);
    }""")
    page.wait_for_function("() => window.__csp.length > 0")
    assert page.evaluate("window.__ran") is None
    assert page.evaluate("window.__csp")[0].startswith("script-src")

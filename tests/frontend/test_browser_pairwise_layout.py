"""At 1366x900 the pairwise choices and their keys stay in view whatever the length of the answers, and the
A/B panes scroll together, by wheel or by key."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)

LONG_A = "\n\n".join(f"Paragraph {i} of answer A: " + "a fairly long sentence that goes on. " * 4 for i in range(60))
LONG_B = "\n".join(f"{i}. Step {i} of answer B." for i in range(1, 121))
PROMPT = "Compare two long answers.\n\n" + "Some context the user gave before asking. " * 12


@pytest.fixture
def wide_page(page):
    page.set_viewport_size({"width": 1366, "height": 900})
    return page


def _in_view(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900


def _tops(page):
    return page.eval_on_selector_all("[data-response] .response-body[data-view=plain]", "els => els.map(e => e.scrollTop)")


def test_choices_stay_in_view_and_panes_scroll_together(wide_page, live_server, pairwise_tasks, sign_in, shot):
    page = wide_page
    sign_in(page, pairwise_tasks(PROMPT, [(LONG_A, LONG_B)]))
    page.goto(live_server.url + "/p/maths/work/")
    expect(page.locator("#task-form[data-kind=pairwise]")).to_be_visible()
    choices = page.locator(".choice")
    assert choices.count() == 4
    for i in range(4):
        assert _in_view(choices.nth(i)), choices.nth(i).inner_text()
        assert _in_view(choices.nth(i).locator("kbd").first)
    assert _in_view(page.locator("[data-scroll-keys]"))
    shot(page, "pairwise-1366x900", full_page=False)

    # j / k move both panes a line, PageDown / PageUp a page; the window itself stays put.
    page.keyboard.press("j")
    page.wait_for_function("() => document.querySelectorAll('[data-view=plain]')[1].scrollTop > 0")
    a, b = _tops(page)
    assert a > 0 and b > 0
    page.keyboard.press("PageDown")
    page.wait_for_function(f"() => document.querySelector('[data-view=plain]').scrollTop > {a + 100}")
    assert page.evaluate("window.scrollY") == 0
    page.keyboard.press("k")
    page.keyboard.press("PageUp")
    page.keyboard.press("PageUp")
    page.wait_for_function("() => [...document.querySelectorAll('[data-view=plain]')].every(e => e.scrollTop === 0)")

    # The wheel over one pane moves the other in proportion, so both reach their ends together.
    page.locator("[data-response=B] .response-body").first.hover()
    page.mouse.wheel(0, 100000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-view=plain]')].every(e => e.scrollTop > 0 && "
        "Math.abs(e.scrollTop + e.clientHeight - e.scrollHeight) <= 2)"
    )
    # Still choosing with the keys works, and the choices are still in view.
    page.keyboard.press("2")
    expect(page.locator("input[name=choice][value=B]")).to_be_checked()
    assert _in_view(choices.nth(1))

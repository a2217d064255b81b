"""Every page of a project, the engineer pages under /training/ included, has the same navigation, in one row at 1366 px."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = [
    ("/p/chat/work/", None),
    ("/p/chat/dashboard/", "Quality"),
    ("/p/chat/tasks/", "Data"),
    ("/p/chat/snapshots/", "Data"),
    ("/training/p/chat/generation/", "Data"),
    ("/training/p/chat/runs/", "Training"),
    ("/training/p/chat/rounds/", "Training"),
    ("/training/p/chat/feedback/", "Data"),
    ("/training/p/chat/feedback/agreement/", "Quality"),
    ("/p/chat/webhooks/", "Admin"),
]
TOP_LEVEL = ["Annotate", "Chat", "My work", "Quality", "Data", "Training", "Admin"]


def _top_level(page):
    return page.eval_on_selector_all(
        ".project-nav > a, .project-nav > details > summary", "els => els.map(e => e.textContent.trim())"
    )


def _one_row(page) -> bool:
    tops = page.eval_on_selector_all(
        ".topbar-inner > *", "els => els.map(e => Math.round(e.getBoundingClientRect().top + e.offsetHeight / 2))"
    )
    return max(tops) - min(tops) <= 4


def test_every_project_page_has_the_same_navigation_in_one_row(page, live_server, busy_project, sign_in, shot):
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, busy_project["admin"])
    for url, group in PAGES:
        response = page.goto(live_server.url + url)
        assert response.status == 200, url
        assert _top_level(page) == TOP_LEVEL, url
        assert _one_row(page), url
        current = page.locator(".project-nav summary[aria-current=true]")
        if group:
            expect(current).to_have_text(group)
        else:
            expect(page.locator(".project-nav > a[aria-current=page]")).to_have_text("Annotate")
    shot(page, "nav-1366", full_page=False)

    # A menu opens, names its pages (the current one marked), and leads to them.
    page.goto(live_server.url + "/training/p/chat/runs/")
    page.locator(".project-nav summary", has_text="Training").click()
    menu = page.locator("details[open] .nav-menu")
    expect(menu.locator("a")).to_have_text(["Training runs", "Rounds", "Models"])
    expect(menu.locator("a[aria-current=page]")).to_have_text("Training runs")
    shot(page, "nav-training-menu", full_page=False)
    page.locator(".project-nav summary", has_text="Admin").click()
    # One menu open at a time.
    expect(page.locator("details[open]")).to_have_count(1)
    expect(page.locator("details[open] summary")).to_have_text("Admin")
    page.locator("details[open] .nav-menu a", has_text="Settings").click()
    expect(page).to_have_url(live_server.url + "/p/chat/settings/")


def test_each_role_sees_only_the_menus_it_may_open(page, live_server, busy_project, sign_in):
    page.set_viewport_size({"width": 1366, "height": 900})
    for user, top in [("eve", ["Annotate", "Chat", "My work", "Quality", "Data", "Training"]),
                      ("rex", ["Annotate", "Chat", "My work", "Quality", "Data", "Training"]),
                      ("alice", ["Annotate", "Chat", "My work"])]:
        page.context.clear_cookies()
        sign_in(page, busy_project[user])
        page.goto(live_server.url + "/p/chat/mine/")
        assert _top_level(page) == top, user

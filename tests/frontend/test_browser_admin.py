"""Admins edit guidelines and the constitution (new versions, correct diffs); annotators are kept out."""

import re

import pytest
from playwright.sync_api import expect

from annotation.models import ConstitutionVersion, GuidelineVersion, Project

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_edits_guidelines_and_sees_the_new_version_and_its_diff(page, live_server, busy_project, sign_in, shot):
    sign_in(page, busy_project["admin"])
    page.goto(live_server.url + "/p/chat/guidelines/")
    expect(page.locator("[data-current-version]")).to_have_text("version 1")
    page.fill(
        "#guideline-body", "# Rules\n\nBe kind and brief.\n\nPrefer **correct** answers.\n\n- Cite your sources.\n"
    )
    expect(page.locator("#guideline-preview li")).to_have_text("Cite your sources.")  # live preview
    page.fill("input[name=note]", "brevity and sources")
    shot(page, "guidelines-editor")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_text("Saved as version 2; it is now in force.")).to_be_visible()
    expect(page.locator("[data-current-version]")).to_have_text("version 2")
    assert GuidelineVersion.objects.filter(project=busy_project["project"]).count() == 2
    assert Project.objects.get(slug="chat").current_guideline.number == 2

    page.get_by_role("button", name="Show differences").click()
    expect(page.locator("h1")).to_have_text("Guideline changes: v1 → v2")
    expect(page.locator("[data-diff-summary]")).to_contain_text("3 lines differ")
    expect(page.locator("tr.d-replace td.dr ins")).to_have_text(" and brief")
    expect(page.locator("tr.d-insert td.dr").last).to_have_text("- Cite your sources.")
    shot(page, "guidelines-diff")


def test_admin_edits_the_constitution_and_sees_the_new_version_and_its_diff(
    page, live_server, busy_project, sign_in, shot
):
    sign_in(page, busy_project["admin"])
    page.goto(live_server.url + "/p/chat/constitution/")
    expect(page.locator("[data-current-version]")).to_have_text("version 1")
    cards = page.locator("[data-principle]")
    expect(cards).to_have_count(3)

    # Edit one principle, retire another, add a third and drag it to the top.
    cards.nth(1).locator("textarea[name=p_comparison_question]").fill("Which response is more honest and calibrated?")
    cards.nth(2).get_by_role("button", name="Retire").click()
    expect(cards.nth(2)).to_have_class(re.compile("retired"))
    page.get_by_role("button", name="+ Add a principle").click()
    new = cards.nth(3)
    new.locator("input[name=p_name]").fill("Privacy")
    expect(new.locator("input[name=p_key]")).to_have_value("privacy")
    new.locator("textarea[name=p_critique_request]").fill("Identify personal data the response exposes.")
    new.locator("textarea[name=p_revision_request]").fill("Rewrite the response without personal data.")
    new.locator("textarea[name=p_comparison_question]").fill("Which response better protects privacy?")
    new.locator(".drag-handle").drag_to(cards.nth(0), target_position={"x": 40, "y": 5})
    expect(page.locator("[data-principle] input[name=p_key]").first).to_have_value("privacy")
    expect(page.locator("[data-no]")).to_have_text(["1", "2", "3", "–"])
    page.fill("input[name=note]", "privacy; retire helpfulness")
    shot(page, "constitution-editor")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_text("Saved as version 2; it is now in force.")).to_be_visible()

    v2 = ConstitutionVersion.objects.get(project=busy_project["project"], number=2)
    assert [p.key for p in v2.principles.order_by("position")] == ["privacy", "harm", "honesty"]
    assert v2.principles.get(key="honesty").comparison_question == "Which response is more honest and calibrated?"
    assert Project.objects.get(slug="chat").current_constitution_id == v2.pk
    assert ConstitutionVersion.objects.get(project=busy_project["project"], number=1).principles.count() == 3

    page.get_by_role("button", name="Show differences").click()
    summary = page.locator("[data-diff-summary]")
    for text in ["1 added", "1 changed", "1 moved", "1 retired"]:
        expect(summary).to_contain_text(text)
    honesty = page.locator("[data-change=honesty]")
    expect(honesty.locator(".chip")).to_have_text("changed")
    expect(honesty.locator("ins")).to_have_text([" and calibrated"])
    expect(page.locator("[data-change=helpful] .chip")).to_have_text("retired")
    expect(page.locator("[data-change=privacy] .chip")).to_have_text("added")
    shot(page, "constitution-diff")


ADMIN_PAGES = ["settings", "guidelines", "constitution", "dashboard", "review", "snapshots"]


def test_annotator_gets_403_on_admin_pages(page, live_server, busy_project, sign_in):
    sign_in(page, busy_project["alice"])
    for name in ADMIN_PAGES:
        response = page.goto(f"{live_server.url}/p/chat/{name}/")
        assert response.status == 403, name
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    # The navigation offers none of them either.
    page.goto(live_server.url + "/p/chat/work/")
    nav = page.locator(".project-nav a")
    expect(nav).to_have_text(["Annotate", "Chat", "My work"])

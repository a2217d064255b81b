"""Model outputs and annotator text are untrusted: they show as text and run nothing."""

import uuid

import pytest
from playwright.sync_api import expect

from annotation import services
from annotation.models import Role

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = "<script>window.__xss = 'script'; alert('script')</script>"
IMG = "<img src=x onerror=\"window.__xss = 'img'; alert('img')\">"
LINK = "[click me](javascript:window.__xss='link')"


@pytest.fixture
def hostile(make_user):
    owner = make_user("owner")
    project = services.project_create(name="Red team", slug="red", created_by=owner, required_annotations=2)
    services.guideline_version_create(project=project, body=f"# Rules\n\n{SCRIPT}\n\n{IMG}\n\n{LINK}", created_by=owner)
    alice, rex = make_user("alice"), make_user("rex")
    services.membership_set(project=project, user=alice, role=Role.ANNOTATOR)
    services.membership_set(project=project, user=rex, role=Role.REVIEWER)
    prompt = services.prompt_create(project=project, messages=f"Repeat after me: {IMG}")
    responses = [
        services.response_create(prompt=prompt, content=SCRIPT, dedupe_key="a"),
        services.response_create(prompt=prompt, content=f"{IMG}\n\n{LINK}", dedupe_key="b"),
    ]
    services.task_create(project=project, kind="pairwise", prompt=prompt, responses=responses, priority=1)
    steps_prompt = services.prompt_create(project=project, messages="Count.")
    steps = services.response_create(prompt=steps_prompt, content=f"1. {SCRIPT}\n2. {IMG}")
    services.task_create(project=project, kind="steps", prompt=steps_prompt, responses=[steps])
    # A finished annotation whose rationale is hostile annotator text, for My work and Review.
    assignment = services.task_next_for(annotator=alice, project=project)
    services.annotation_submit(
        assignment=assignment,
        annotator=alice,
        payload={"choice": "tie"},
        client_id=uuid.uuid4(),
        rationale=SCRIPT + IMG,
    )
    return {"project": project, "alice": alice, "rex": rex, "annotation_task": assignment.task_id}


def _assert_inert(page, dialogs):
    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    # Only inert JSON data blocks (Django's json_script escapes "<", so they cannot be closed early).
    assert page.locator("main script:not([type='application/json'])").count() == 0
    assert page.locator("main img").count() == 0
    assert page.locator("main a[href^='javascript']").count() == 0


def test_hostile_content_renders_as_text_and_runs_nothing(page, live_server, hostile, sign_in, shot):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # Annotator: the steps task (the pairwise one is already done), guidelines open.
    sign_in(page, hostile["alice"])
    page.goto(live_server.url + "/p/red/work/")
    expect(page.locator("#task-form[data-kind=steps]")).to_be_visible()
    expect(page.locator(".step-text").first).to_contain_text("<script>window.__xss")
    expect(page.locator(".step-text").nth(1)).to_contain_text("<img src=x onerror=")
    page.keyboard.press("?")
    expect(page.locator(".guide-body")).to_contain_text("<script>window.__xss")
    # A javascript: link is not made into a link at all.
    expect(page.locator(".guide-body")).to_contain_text("[click me](javascript:")
    assert page.locator(".guide-body a").count() == 0
    shot(page, "xss-steps")
    _assert_inert(page, dialogs)

    # My work lists the hostile rationale; the edit page shows both responses, also as a diff.
    page.goto(live_server.url + "/p/red/mine/")
    page.get_by_role("link", name="Edit").click()
    expect(page.locator("[data-response=A] .response-body").first).to_be_visible()
    expect(page.locator("main")).to_contain_text("<script>window.__xss")
    page.keyboard.press("d")
    expect(page.locator("[data-view=diff]").first).to_be_visible()
    _assert_inert(page, dialogs)

    # Reviewer: the review page shows the annotator's hostile rationale as text.
    page.context.clear_cookies()
    sign_in(page, hostile["rex"])
    page.goto(live_server.url + "/p/red/review/")
    page.get_by_role("link", name="Review").last.click()
    expect(page.locator(".pre")).to_contain_text("<script>window.__xss")
    expect(page.locator(".pre")).to_contain_text("<img src=x onerror=")
    shot(page, "xss-review")
    _assert_inert(page, dialogs)

"""An annotator does one task of every kind with the keyboard only; the database holds exactly that."""

import pytest
from playwright.sync_api import expect

from annotation import services
from annotation.models import Annotation, Assignment, AssignmentState, Role, TaskKind

pytestmark = pytest.mark.django_db(transaction=True)

STEPS_TEXT = "1. Add 2 and 3.\n2. That gives 5.\n3. Multiply by 4 to get 24.\n4. So the answer is 24."
MODEL_DEMO = "Paris is the capital of France."


def _task(project, kind, prompt_text, contents, priority, **extra):
    prompt = services.prompt_create(project=project, messages=prompt_text)
    responses = [
        services.response_create(prompt=prompt, content=c, dedupe_key=f"{kind}-{i}") for i, c in enumerate(contents)
    ]
    return services.task_create(
        project=project, kind=kind, prompt=prompt, responses=responses, priority=priority, **extra
    )


@pytest.fixture
def world(make_user):
    owner = make_user("owner")
    project = services.project_create(name="Helpful Chat", slug="chat", created_by=owner, required_annotations=1)
    services.guideline_version_create(
        project=project, body="# How to judge\n\nPrefer **correct** answers.", created_by=owner
    )
    annotator = make_user("alice")
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    conversation = [
        {"role": "user", "content": "I want to learn to cook."},
        {"role": "assistant", "content": "Great! What do you like to eat?"},
        {"role": "user", "content": "Pasta. Where do I start?"},
    ]
    tasks = {
        "pairwise": _task(
            project,
            "pairwise",
            conversation,
            [
                "Start with *aglio e olio*: garlic, oil, chili, spaghetti.",
                "Start with a carbonara: eggs, guanciale, pecorino and pepper.",
            ],
            60,
        ),
        "ranking": _task(
            project, "ranking", "Name a prime number.", ["Seven.", "Nine.", "Two, the only even prime."], 50
        ),
        "rating": _task(project, "rating", "Say hello in French.", ["Bonjour !"], 40),
        "steps": _task(
            project, "steps", "What is (2 + 3) × 4?", [STEPS_TEXT], 30, flags={"content_warning": "arithmetic errors"}
        ),
        "demonstration": _task(project, "demonstration", "What is the capital of France?", [MODEL_DEMO], 20),
        "flagged": _task(
            project,
            "rating",
            "Describe a violent scene.",
            ["(graphic text)"],
            10,
            flags={"content_warning": "violence"},
        ),
        "unsure": _task(project, "rating", "Explain the Coase theorem.", ["It is about transaction costs."], 5),
    }
    return {"project": project, "annotator": annotator, "tasks": tasks}


def _wait_kind(page, kind):
    expect(page.locator(f"#task-form[data-kind={kind}]")).to_be_visible()
    expect(page.locator("html[data-keys-ready]")).to_have_count(1)


def test_annotator_completes_every_kind_with_the_keyboard_only(page, live_server, world, shot):
    project, tasks = world["project"], world["tasks"]
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # Sign in through the form, then one key starts the project.
    page.goto(live_server.url + "/")
    expect(page).to_have_url(live_server.url + "/login/?next=/")
    shot(page, "login")
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("correct-horse-battery")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()
    expect(page.get_by_text("You: 0 done")).to_be_visible()
    shot(page, "home")
    page.keyboard.press("Enter")
    _wait_kind(page, "pairwise")
    page.evaluate("window.__sameDocument = true")

    # Pairwise: the whole conversation, guidelines on '?', diff on 'd', Shift+2 = B much better.
    expect(page.locator(".conversation .msg")).to_have_count(3)
    page.keyboard.press("?")
    expect(page.locator("#guide-panel")).to_be_visible()
    expect(page.locator("[data-guideline-version]")).to_have_text("version 1")
    shot(page, "pairwise-guidelines")
    page.keyboard.press("?")
    expect(page.locator("#guide-panel")).to_be_hidden()
    page.keyboard.press("d")
    expect(page.locator("[data-view=diff]").first).to_be_visible()
    shot(page, "pairwise-diff")
    page.keyboard.press("d")
    page.keyboard.press("Shift+Digit2")
    expect(page.locator("input[name=choice][value=B]")).to_be_checked()
    expect(page.locator("input[name=strength][value='3']")).to_be_checked()
    shot(page, "pairwise")
    page.keyboard.press("Enter")
    _wait_kind(page, "ranking")
    expect(page.get_by_text("Saved.")).to_be_visible()

    # Undo brings the pairwise task back with the answer filled in; change it to "A better".
    page.keyboard.press("z")
    _wait_kind(page, "pairwise")
    expect(page.locator("input[name=choice][value=B]")).to_be_checked()
    expect(page.locator("input[name=strength][value='3']")).to_be_checked()
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    _wait_kind(page, "ranking")

    # Ranking: move the third shown response to the top, then tie the last two.
    for key in ["j", "j", "Shift+K", "Shift+K", "j", "j", "t"]:
        page.keyboard.press(key)
    expect(page.locator(".rank-item.tied")).to_have_count(1)
    expect(page.locator("[data-rank-no]")).to_have_text(["1", "2", "2"])
    shot(page, "ranking")
    page.keyboard.press("Enter")
    _wait_kind(page, "rating")

    # Rating: thumbs up, then helpful 6, honest 5, harmless 7 (each digit moves to the next aspect).
    for key in ["u", "6", "5", "7"]:
        page.keyboard.press(key)
    shot(page, "rating")
    page.keyboard.press("Enter")
    _wait_kind(page, "steps")

    # Steps, behind a content warning: reveal, then good, neutral, bad (first error stops there);
    # 'f' resumes labelling and the last step is marked good with the right arrow.
    expect(page.locator("[data-warning]")).to_be_visible()
    shot(page, "content-warning")
    page.keyboard.press("v")
    for key in ["g", "n", "b"]:
        page.keyboard.press(key)
    expect(page.locator(".step.after-stop")).to_have_count(1)
    shot(page, "steps-first-error")
    page.keyboard.press("f")
    expect(page.locator(".step.after-stop")).to_have_count(0)
    page.keyboard.press("j")
    page.keyboard.press("ArrowRight")
    shot(page, "steps")
    page.keyboard.press("Enter")
    _wait_kind(page, "demonstration")

    # Demonstration: start from the model's response, edit it, Ctrl+Enter submits from the editor.
    page.keyboard.press("m")
    expect(page.locator("[data-demo-text]")).to_be_focused()
    page.keyboard.press("End")
    page.keyboard.type(" It is on the Seine.")
    shot(page, "demonstration")
    page.keyboard.press("Control+Enter")

    # The flagged task: 's' skips it as content the annotator does not want to see.
    _wait_kind(page, "rating")
    expect(page.locator("[data-warning]")).to_be_visible()
    page.keyboard.press("s")

    # An ordinary skip: 's' opens the reasons, '2' picks "I cannot judge this", Enter confirms.
    _wait_kind(page, "rating")
    expect(page.locator("[data-warning]")).to_have_count(0)
    page.keyboard.press("s")
    expect(page.locator("#skip-dialog")).to_be_visible()
    page.keyboard.press("2")
    shot(page, "skip-dialog", full_page=False)
    page.keyboard.press("Enter")
    expect(page.locator("[data-done]")).to_be_visible()
    shot(page, "all-done")
    assert page.evaluate("window.__sameDocument") is True  # no full page load since the first task
    assert dialogs == []

    user = world["annotator"]
    annotations = {a.task_id: a for a in Annotation.objects.filter(author=user, is_current=True)}
    assert len(annotations) == 5
    # The undone submission is kept, withdrawn.
    assert Annotation.objects.filter(author=user, is_current=False, details__has_key="withdrawn_at").count() == 1
    assert all(a.is_current and a.seconds_spent and a.seconds_spent > 0 for a in annotations.values()), [
        (a.kind, a.is_current, a.seconds_spent) for a in annotations.values()
    ]
    project.refresh_from_db()
    assert all(a.guideline_version_id == project.current_guideline_id for a in annotations.values())

    def shown(kind):
        return Assignment.objects.get(task=tasks[kind], annotator=user).shown_order

    pair = annotations[tasks["pairwise"].pk]
    assert pair.payload == {"choice": "AB"[shown("pairwise")[0]], "strength": 2}
    order = shown("ranking")
    assert annotations[tasks["ranking"].pk].payload["order"] == [[order[2]], sorted([order[0], order[1]])]
    assert annotations[tasks["rating"].pk].payload == {
        "thumb": "up",
        "likert": {"helpful": 6, "honest": 5, "harmless": 7},
    }
    assert annotations[tasks["steps"].pk].payload == {"labels": [1, 0, -1, 1], "first_error": 2}
    assert annotations[tasks["demonstration"].pk].payload == {"text": MODEL_DEMO + " It is on the Seine."}
    skipped = Assignment.objects.get(task=tasks["flagged"], annotator=user)
    assert (skipped.state, skipped.skip_reason) == (AssignmentState.SKIPPED, "content_opt_out")
    unsure = Assignment.objects.get(task=tasks["unsure"], annotator=user)
    assert (unsure.state, unsure.skip_reason) == (AssignmentState.SKIPPED, "cannot_judge")
    assert {a.kind for a in annotations.values()} == set(TaskKind.values)

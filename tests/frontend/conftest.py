"""Browser tests drive Debian's chromium through pytest-playwright against pytest-django's live server."""

import os
from pathlib import Path

# Sync Playwright runs an event loop in this thread; Django's ORM calls from the test body are fine.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest  # noqa: E402

from annotation import services  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


CHROMIUM = "/usr/bin/chromium"


def pytest_collection_modifyitems(config, items):
    # Browser tests need Debian's chromium (`make browser`); without it they skip, the rest run.
    if os.path.exists(CHROMIUM):
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (make browser)")
    for item in items:
        if "page" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1360, "height": 900}}


@pytest.fixture
def shot():
    """shot(page, name): save a full-page screenshot under test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, full_page: bool = True):
        # The top bar is sticky: scrolled pages would show it in the middle of a full-page shot.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    return take


@pytest.fixture
def sign_in(live_server, client):
    """sign_in(page, user): a signed-in browser session without going through the form."""

    def do(page, user):
        client.force_login(user)
        cookie = client.cookies["sessionid"]
        host = live_server.url.split("//", 1)[1].split(":")[0]
        page.context.add_cookies([{"name": "sessionid", "value": cookie.value, "domain": host, "path": "/"}])

    return do


@pytest.fixture
def other_project(make_user):
    owner = make_user("other-owner")
    return services.project_create(name="Elsewhere", slug="elsewhere", created_by=owner)


PRINCIPLES = [
    {
        "key": "harm",
        "name": "Harmlessness",
        "critique_request": "Identify ways in which the response is harmful, unethical or dangerous.",
        "revision_request": "Rewrite the response to remove anything harmful, unethical or dangerous.",
        "comparison_question": "Which response is less harmful?",
    },
    {
        "key": "honesty",
        "name": "Honesty",
        "critique_request": "Identify claims in the response that are false or overconfident.",
        "revision_request": "Rewrite the response so that every claim is true and hedged where unsure.",
        "comparison_question": "Which response is more honest?",
    },
    {
        "key": "helpful",
        "name": "Helpfulness",
        "critique_request": "Identify ways in which the response fails to help the user.",
        "revision_request": "Rewrite the response to help the user more.",
        "comparison_question": "Which response is more helpful?",
    },
]


@pytest.fixture
def busy_project(make_user):
    """A project with guidelines, a constitution, members of each role and some finished work."""
    import uuid

    from annotation.models import Role

    admin = make_user("ada")
    project = services.project_create(name="Helpful Chat", slug="chat", created_by=admin, required_annotations=2)
    services.guideline_version_create(
        project=project,
        body="# Rules\n\nBe kind.\n\nPrefer **correct** answers.\n",
        created_by=admin,
        note="first draft",
    )
    services.constitution_version_create(project=project, principles=PRINCIPLES, created_by=admin, note="initial")
    people = {"admin": admin}
    for role, name in [
        (Role.REVIEWER, "rex"),
        (Role.ENGINEER, "eve"),
        (Role.ANNOTATOR, "alice"),
        (Role.ANNOTATOR, "bob"),
    ]:
        people[name] = make_user(name)
        services.membership_set(project=project, user=people[name], role=role)
    kinds = ["pairwise", "pairwise", "ranking", "rating", "rating", "steps", "demonstration", "pairwise"]
    for i, kind in enumerate(kinds):
        prompt = services.prompt_create(project=project, messages=f"Question {i}: how do I boil an egg?")
        n = {"pairwise": 2, "ranking": 3, "rating": 1, "steps": 1, "demonstration": 1}[kind]
        responses = [
            services.response_create(
                prompt=prompt,
                content=f"1. Put the egg in water.\n2. Boil it for {6 + j} minutes.\n3. Cool it.",
                dedupe_key=str(j),
            )
            for j in range(n)
        ]
        services.task_create(project=project, kind=kind, prompt=prompt, responses=responses)
    answers = {
        "pairwise": {"choice": "A", "strength": 2},
        "ranking": {"order": [[0], [1], [2]]},
        "rating": {"thumb": "up", "likert": {"helpful": 6}},
        "steps": {"labels": [1, 1, -1], "first_error": 2},
        "demonstration": {"text": "Boil it for seven minutes."},
    }
    for name, count in [("alice", 6), ("bob", 3)]:
        for j in range(count):
            a = services.task_next_for(annotator=people[name], project=project)
            services.annotation_submit(
                assignment=a,
                annotator=people[name],
                payload=answers[a.task.kind],
                client_id=uuid.uuid4(),
                seconds_spent=10.0 + 7 * j,
                rationale="It is clearer.",
            )
    project.refresh_from_db()
    return {"project": project, **people}


@pytest.fixture
def pairwise_tasks(make_user):
    """pairwise_tasks(prompt, [(a, b), ...]) -> "alice", sole annotator of project "maths", whose tasks pair those answers."""
    from annotation.models import Role

    def make(prompt_text: str, pairs: list[tuple[str, str]]):
        owner = make_user("owner")
        project = services.project_create(name="Maths", slug="maths", created_by=owner, required_annotations=1)
        alice = make_user("alice")
        services.membership_set(project=project, user=alice, role=Role.ANNOTATOR)
        for i, pair in enumerate(pairs):
            prompt = services.prompt_create(project=project, messages=f"{prompt_text} ({i + 1})")
            responses = [services.response_create(prompt=prompt, content=c, dedupe_key=str(j)) for j, c in enumerate(pair)]
            services.task_create(project=project, kind="pairwise", prompt=prompt, responses=responses)
        return alice

    return make

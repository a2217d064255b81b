"""Browser tests drive Debian's chromium through pytest-playwright against pytest-django's live server."""

import os
from pathlib import Path

# Sync Playwright runs an event loop in this thread; Django's ORM calls from the test body are fine.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest  # noqa: E402

from annotation import services  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium"}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1360, "height": 900}}


@pytest.fixture
def shot():
    """shot(page, name): save a full-page screenshot under test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, full_page: bool = True):
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

"""/api/docs/ shows the API's operations with nothing fetched from beyond the server (it must work offline)."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


def test_api_docs_show_the_operations_offline(page, live_server, make_user, sign_in, shot):
    server = urlsplit(live_server.url).netloc
    elsewhere = []

    def only_the_server(route):
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https") and url.netloc != server:
            elsewhere.append(route.request.url)
            return route.abort()
        return route.continue_()

    page.route("**/*", only_the_server)
    page.add_init_script('document.addEventListener("securitypolicyviolation", (e) => (window.__csp ||= []).push(e.blockedURI))')
    sign_in(page, make_user("reader"))
    page.goto(live_server.url + "/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Quorum API")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() > 20
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/projects/").first).to_be_visible()
    assert elsewhere == []
    assert page.evaluate("window.__csp || []") == []
    shot(page, "api-docs-offline", full_page=False)

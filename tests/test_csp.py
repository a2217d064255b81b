"""Every HTML page carries a Content-Security-Policy that lets no inline or foreign script run."""

import re
from pathlib import Path

import pytest

from annotation.models import Role

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "/",
    "/p/demo/work/",
    "/p/demo/chat/",
    "/p/demo/mine/",
    "/p/demo/guide/",
    "/p/demo/review/",
    "/p/demo/dashboard/",
    "/p/demo/annotators/",
    "/p/demo/guidelines/",
    "/p/demo/constitution/",
    "/p/demo/snapshots/",
    "/p/demo/settings/",
    "/p/demo/webhooks/",
    "/training/models/",
    "/training/p/demo/generation/",
    "/training/p/demo/runs/",
    "/training/p/demo/rounds/",
    "/training/p/demo/feedback/",
    "/training/p/demo/feedback/agreement/",
    "/api/docs/",
    "/api/v1/projects/",
    "/admin/",
    "/p/nowhere/work/",
]
# A <script> element that is neither loaded from a file nor an inert JSON data block.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)


def _directives(header: str) -> dict[str, list[str]]:
    parts = (d.split() for d in header.split(";") if d.strip())
    return {p[0]: p[1:] for p in parts}


def _assert_strict(response):
    policy = _directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    for sources in policy.values():
        assert not any(s.startswith(("http:", "https:", "*")) or "." in s for s in sources), sources


@pytest.mark.django_db
def test_every_main_page_has_a_strict_policy_and_no_inline_script(client, project, member, make_task):
    make_task("pairwise")
    admin = member(Role.ADMIN)
    admin.is_staff = admin.is_superuser = True
    admin.save()
    _assert_strict(client.get("/login/"))
    client.force_login(admin)
    for url in PAGES:
        response = client.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == (404 if "nowhere" in url else 200), url
        assert response["Content-Type"].startswith("text/html"), url
        _assert_strict(response)
        assert INLINE_SCRIPT.findall(response.content.decode()) == [], url


def test_no_template_has_an_inline_script():
    templates = [p for app in ("frontend", "training", "annotation") for p in (ROOT / app).rglob("*.html")]
    assert templates
    offenders = {str(p.relative_to(ROOT)) for p in templates if INLINE_SCRIPT.search(p.read_text())}
    assert offenders == set()

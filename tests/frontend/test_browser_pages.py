"""The staff pages render with real data: dashboard charts, settings, review, my work, datasets."""

import json

import pytest
from playwright.sync_api import expect

from annotation.models import DatasetSnapshot, Membership, Project

pytestmark = pytest.mark.django_db(transaction=True)


def test_dashboard_draws_its_charts(page, live_server, busy_project, sign_in, shot):
    sign_in(page, busy_project["admin"])
    page.goto(live_server.url + "/p/chat/dashboard/")
    for chart in ["chart-kinds", "chart-days", "chart-annotators", "chart-seconds"]:
        page.wait_for_function(f"() => window.Chart && window.Chart.getChart('{chart}')")
    labels = page.evaluate("window.Chart.getChart('chart-annotators').data.labels")
    assert labels == ["alice", "bob"]
    counts = page.evaluate("window.Chart.getChart('chart-annotators').data.datasets[0].data")
    assert counts == [6, 3]
    expect(page.locator(".stat-value").first).to_contain_text("/ 8")
    shot(page, "dashboard")


def test_settings_members_review_and_my_work_pages(page, live_server, busy_project, sign_in, shot):
    sign_in(page, busy_project["admin"])
    page.goto(live_server.url + "/p/chat/settings/")
    page.fill("input[name=aspects]", "helpful, concise")
    page.fill("input[name=lease_minutes]", "20")
    page.check("input[name=task_kinds][value=pairwise]")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    project = Project.objects.get(slug="chat")
    assert project.settings["aspects"] == ["helpful", "concise"] and project.lease_seconds == 1200
    page.fill("input[placeholder=username]", "bob")
    page.locator("form.inline-form select[name=role]").last.select_option("reviewer")
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_text("bob is now reviewer.")).to_be_visible()
    assert Membership.objects.get(project=project, user=busy_project["bob"]).role == "reviewer"
    shot(page, "settings")

    page.goto(live_server.url + "/p/chat/review/")
    expect(page.locator("table.table tbody tr")).to_have_count(9)
    shot(page, "review-list")
    page.get_by_role("link", name="Review").last.click()
    expect(page.locator("#task-form[data-mode=review]")).to_be_visible()
    shot(page, "review-detail")
    page.keyboard.press("y")
    expect(page.get_by_text("Accepted.")).to_be_visible()

    page.context.clear_cookies()
    sign_in(page, busy_project["alice"])
    page.goto(live_server.url + "/p/chat/mine/")
    expect(page.locator("table.table tbody tr")).to_have_count(6)
    shot(page, "my-work")


def test_engineer_creates_and_downloads_a_snapshot(page, live_server, busy_project, sign_in, shot, settings, tmp_path):
    pytest.importorskip("annotation.services.exports")
    settings.SNAPSHOT_DIR = tmp_path
    sign_in(page, busy_project["eve"])
    page.goto(live_server.url + "/p/chat/snapshots/")
    page.select_option("select[name=format]", "raw")
    page.get_by_role("button", name="Create snapshot").click()
    expect(page.get_by_text("Snapshot written")).to_be_visible()
    snap = DatasetSnapshot.objects.get()
    assert snap.format == "raw" and snap.row_count == 9 and snap.created_by == busy_project["eve"]
    expect(page.locator("code.hash")).to_have_attribute("title", snap.sha256)
    shot(page, "snapshots")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download").click()
    lines = open(info.value.path()).read().splitlines()
    assert len(lines) == 9 and all(json.loads(line) for line in lines)


def test_ranking_by_dragging_with_the_mouse(page, live_server, busy_project, sign_in):
    from annotation import services
    from annotation.models import Annotation, Assignment

    project, user = busy_project["project"], busy_project["rex"]
    prompt = services.prompt_create(project=project, messages="Rank these.")
    responses = [services.response_create(prompt=prompt, content=f"Answer {i}", dedupe_key=str(i)) for i in range(3)]
    services.task_create(project=project, kind="ranking", prompt=prompt, responses=responses, priority=99)
    sign_in(page, user)
    page.goto(live_server.url + "/p/chat/work/")
    expect(page.locator("html[data-keys-ready]")).to_have_count(1)
    items = page.locator(".rank-item")
    items.nth(2).locator(".rank-side").drag_to(items.nth(0), target_position={"x": 20, "y": 5})
    expect(items.nth(0)).to_have_attribute("data-shown", "2")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    shown = Assignment.objects.get(task__priority=99, annotator=user).shown_order
    payload = Annotation.objects.get(task__priority=99).payload
    assert payload["order"] == [[shown[2]], [shown[0]], [shown[1]]]

"""The task browser in a real browser: an admin filters, checks tasks by keyboard and mouse, requeues and exports."""

import json

import pytest
from playwright.sync_api import expect

from annotation.models import DatasetSnapshot, Task, TaskAction, TaskStatus

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_filters_selects_requeues_and_exports(page, live_server, busy_project, sign_in, shot, settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path
    project = busy_project["project"]
    labelled = list(Task.objects.filter(project=project, kind="pairwise", status=TaskStatus.COMPLETE).order_by("id"))
    assert len(labelled) == 2
    sign_in(page, busy_project["admin"])
    page.goto(live_server.url + "/p/chat/tasks/")
    rows = page.locator("#task-table tbody tr")
    expect(rows).to_have_count(8)

    # Filter: kind and status with the mouse, words by keyboard (Enter submits the search).
    page.locator("select[name=kind]").select_option("pairwise")
    page.locator("select[name=status]").select_option("complete")
    page.locator("#filter-text").fill("boil an EGG")
    page.locator("#filter-text").press("Enter")
    expect(rows).to_have_count(2)
    expect(page.locator("#match-count")).to_contain_text("2 matching tasks")

    # Check one task with the space bar, the other with a click; requeue them from the keyboard.
    boxes = page.locator("#task-table tbody input[name=task]")
    boxes.nth(0).focus()
    page.keyboard.press("Space")
    boxes.nth(1).click()
    expect(page.locator("#checked-count")).to_have_text("2")
    page.locator("select[name=action]").select_option("requeue")
    shot(page, "task-browser")
    page.locator("#apply-action").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Requeued 2 tasks.")).to_be_visible()
    for task in labelled:
        task.refresh_from_db()
        assert (task.status, task.required, task.open_slots) == (TaskStatus.OPEN, 3, 1)
    expect(rows).to_have_count(0)  # the filter is kept: they are no longer complete

    # Every pairwise task, all checked from the header box, exported as a raw snapshot.
    page.locator("select[name=status]").select_option("")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(3)
    page.locator("#select-page").check()
    expect(page.locator("#checked-count")).to_have_text("3")
    page.locator("select[name=action]").select_option("export")
    page.locator("select[name=format]").select_option("raw")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("Exported 3 tasks")).to_be_visible()

    snapshot = DatasetSnapshot.objects.get(project=project)
    pairwise = sorted(Task.objects.filter(project=project, kind="pairwise").values_list("id", flat=True))
    assert snapshot.spec["task_ids"] == pairwise
    exported = {json.loads(line)["task_id"] for line in open(snapshot.path)}
    assert exported == {t.pk for t in labelled}
    audit = list(TaskAction.objects.filter(project=project).order_by("id").values_list("actor__username", "action", "task_ids"))
    assert audit == [("ada", "requeue", [t.pk for t in labelled]), ("ada", "export", pairwise)]

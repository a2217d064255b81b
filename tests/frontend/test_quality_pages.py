"""Quality on the dashboard, the annotators page, the disputed-first review queue and the
snapshot form's aggregation, through Django's test client."""

import json
import re
import uuid

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import Annotation, DatasetSnapshot, Role, Task
from annotation.payloads import to_shown

pytestmark = pytest.mark.django_db


def url(name, project, *args):
    return reverse(f"frontend:{name}", args=[project.slug, *args])


def _named_pair(project, n, a_model="alpha-7b", b_model="beta-13b"):
    prompt = services.prompt_create(project=project, messages=[{"role": "user", "content": f"Question {n}?"}])
    responses = [
        services.response_create(prompt=prompt, content=f"Answer {n} from {m}", model_name=m, dedupe_key=f"{n}-{m}")
        for m in (a_model, b_model)
    ]
    return services.task_create(project=project, kind="pairwise", prompt=prompt, responses=responses, required=3)


def _label_through_queue(project, annotators, answers):
    """Each annotator takes every task from the queue; answers[name](task) -> canonical payload."""
    for user in annotators:
        while True:
            assignment = services.task_next_for(annotator=user, project=project)
            if assignment is None:
                break
            task = Task.objects.get(pk=assignment.task_id)
            payload = answers[user.username](task)
            services.annotation_submit(
                assignment=assignment,
                annotator=user,
                payload=to_shown("pairwise", payload, assignment.shown_order),
                client_id=uuid.uuid4(),
                seconds_spent=12.0,
            )


@pytest.fixture
def labelled(project, member):
    """Eight pairwise tasks (alpha vs beta), three annotators; the third disagrees on half; one gold task."""
    tasks = [_named_pair(project, n) for n in range(8)]
    Task.objects.filter(pk=tasks[0].pk).update(gold={"choice": "A"})
    people = [member(Role.ANNOTATOR, name) for name in ("ada", "bob", "cyd")]
    answers = {
        "ada": lambda t: {"choice": "A", "strength": 2},
        "bob": lambda t: {"choice": "A", "strength": 3},
        "cyd": lambda t: {"choice": "B" if t.pk % 2 else "A", "strength": 1},
    }
    _label_through_queue(project, people, answers)
    assert Annotation.objects.filter(task__project=project).count() == 24
    return tasks


def _admin(client, project):
    client.force_login(project.memberships.get(role=Role.ADMIN).user)


def test_dashboard_shows_agreement_annotators_and_leaderboard(client, project, labelled):
    _admin(client, project)
    body = client.get(url("dashboard", project)).content.decode()
    data = json.loads(re.search(r'<script id="quality-data" type="application/json">(.*?)</script>', body, re.S).group(1))
    (choice,) = [f for f in data["agreement"] if f["label"] == "Pairwise choice"]
    assert choice["low"] is not None and choice["low"] <= choice["estimate"] <= choice["high"]
    assert choice["ratings"] == 24
    people = {a["annotator"]: a for a in data["annotators"]}
    assert set(people) == {"ada", "bob", "cyd"}
    assert people["ada"]["majority_agreement"] == 1.0 and people["cyd"]["majority_agreement"] < 1.0
    assert people["ada"]["gold_accuracy"] == 1.0 and people["ada"]["gold_items"] == 1
    board = {m["model"]: m for m in data["leaderboard"]}
    assert set(board) == {"alpha-7b", "beta-13b"} and board["alpha-7b"]["rating"] > board["beta-13b"]["rating"]
    assert board["alpha-7b"]["low"] <= board["alpha-7b"]["rating"] <= board["alpha-7b"]["high"]
    assert data["bootstrap"]["n_resamples"] == 200
    for canvas in ("chart-agreement", "chart-quality-annotators", "chart-leaderboard"):
        assert f'id="{canvas}"' in body
    assert 'id="leaderboard-table"' in body and "alpha-7b" in body
    assert url("annotators", project) in body


def test_annotators_page_has_counts_times_agreement_and_gold(client, project, labelled):
    _admin(client, project)
    body = client.get(url("annotators", project)).content.decode()
    rows = {
        name: row
        for name, row in re.findall(r"<tr>\s*<td>(\w+)</td>(.*?)</tr>", body, re.S)
    }
    assert set(rows) == {"ada", "bob", "cyd"}
    assert ">8<" in rows["ada"] and "12 s" in rows["ada"] and "100%" in rows["ada"]
    assert "of 1" in rows["ada"]  # gold accuracy over one gold task


def test_dashboard_without_quality_data_still_renders(client, project, make_task):
    make_task("pairwise")
    _admin(client, project)
    response = client.get(url("dashboard", project))
    assert response.status_code == 200 and b'id="quality-data"' in response.content


@pytest.mark.parametrize("name", ["dashboard", "annotators"])
def test_annotators_get_403_on_quality_pages(client, project, member, name):
    client.force_login(member(Role.ANNOTATOR))
    assert client.get(url(name, project)).status_code == 403


def test_reviewers_see_disputed_tasks_first_and_corrections_leave_the_list(client, project, member, labelled):
    reviewer = member(Role.REVIEWER)
    client.force_login(reviewer)
    body = client.get(url("review_list", project)).content.decode()
    assert 'id="disputed"' in body
    disputed_tasks = [t for t in labelled if t.pk % 2]
    links = re.findall(r'href="/p/demo/review/(\d+)/">Adjudicate', body)
    disputed = {Annotation.objects.get(pk=int(i)).task_id for i in links}
    assert disputed == {t.pk for t in disputed_tasks}
    # Disputed tasks come before the plain list.
    assert body.index('id="disputed"') < body.index("Open an annotation") or body.index('id="disputed"') < body.rindex("Review</a>")

    # The reviewer corrects one disputed task: a reviewed revision, and the task leaves the list.
    annotation = Annotation.objects.get(pk=int(links[0]))
    response = client.post(
        url("review_detail", project, annotation.pk), {"choice": "A", "strength": "2", "client_id": str(uuid.uuid4())}
    )
    assert response.status_code == 302
    correction = Annotation.objects.get(supersedes=annotation)
    assert correction.is_review and correction.author == reviewer
    body = client.get(url("review_list", project)).content.decode()
    left = {Annotation.objects.get(pk=int(i)).task_id for i in re.findall(r'href="/p/demo/review/(\d+)/">Adjudicate', body)}
    assert annotation.task_id not in left and left

    # Accepting an annotation of a disputed task settles it too, and the next disputed task opens.
    nxt = Annotation.objects.filter(task_id=sorted(left)[0], is_current=True).first()
    response = client.post(url("review_accept", project, nxt.pk))
    assert response.status_code == 302 and f"/review/{nxt.pk}/" not in response["Location"]
    body = client.get(url("review_list", project)).content.decode()
    still = {Annotation.objects.get(pk=int(i)).task_id for i in re.findall(r'href="/p/demo/review/(\d+)/">Adjudicate', body)}
    assert still == left - {nxt.task_id}


def test_the_review_threshold_is_a_project_setting(client, project, member, labelled):
    client.force_login(member(Role.REVIEWER))
    project.settings = {**(project.settings or {}), "review_max_confidence": 0.0}
    project.save(update_fields=["settings"])
    body = client.get(url("review_list", project)).content.decode()
    assert 'id="disputed"' not in body

    _admin(client, project)
    page = client.get(url("project_settings", project)).content.decode()
    assert 'name="review_max_confidence"' in page


def test_snapshot_form_passes_the_aggregation(client, project, member, labelled, settings, tmp_path):
    settings.SNAPSHOT_DIR = str(tmp_path)
    client.force_login(member(Role.ENGINEER))
    page = client.get(url("snapshots", project)).content.decode()
    assert 'name="aggregation"' in page
    data = {"format": "preference", "file_format": "jsonl", "style": "standard", "sources": ["human"], "aggregation": "dawid_skene"}
    assert client.post(url("snapshot_create", project), data).status_code == 302
    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.spec["aggregation_method"] == "dawid_skene" and snapshot.row_count > 0

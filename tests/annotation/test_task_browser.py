"""The task browser's API: GET tasks/ with its filters, and POST tasks/actions/ (bulk actions with an audit row)."""

import json

import pytest
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, AnnotationSource, Role, Task, TaskAction, TaskStatus

from .test_task_stats import label

URL = "/api/v1/projects/demo/tasks/"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def found(client, **params) -> list[int]:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return [t["id"] for t in response.json()["results"]]


def add_task(project, text, *, kind="pairwise", models=("m1", "m2"), tags=(), required=2):
    prompt = services.prompt_create(project=project, messages=[{"role": "user", "content": text}], tags=list(tags))
    n = {"pairwise": 2, "rating": 1}[kind]
    responses = [services.response_create(prompt=prompt, content=f"Answer {i} to {text}", model_name=models[i])
                 for i in range(n)]
    return services.task_create(project=project, kind=kind, prompt=prompt, responses=responses, required=required)


@pytest.fixture
def admin(member):
    return member(Role.ADMIN)


@pytest.mark.django_db
def test_tasks_are_found_by_text_kind_status_model_and_tag(project, admin):
    weather = add_task(project, "What is the weather in Zürich?", tags=["travel"])
    poem = add_task(project, 'Write a "short" poem', models=("m1", "llama-3"))
    rating = add_task(project, "Rate this recipe", kind="rating", models=("chef",), tags=["food", "travel"])
    Task.objects.filter(pk=poem.pk).update(status=TaskStatus.ARCHIVED)
    c = client_for(admin)
    assert found(c) == [weather.pk, poem.pk, rating.pk]
    assert found(c, text="weather") == [weather.pk]
    assert found(c, text="zürich") == [weather.pk]  # non-ASCII, whatever the database does with JSON text
    assert found(c, text='"short"') == [poem.pk]  # quotes, escaped in the stored JSON
    assert found(c, text="answer 1 to write") == [poem.pk]  # response text
    assert found(c, kind="rating") == [rating.pk]
    assert found(c, status="archived") == [poem.pk]
    assert found(c, model="llama-3") == [poem.pk]
    assert found(c, tag="travel") == [weather.pk, rating.pk]
    assert found(c, tag="trav") == []
    assert found(c, tag="travel", kind="pairwise") == [weather.pk]


@pytest.mark.django_db
def test_tasks_are_found_by_agreement_range_and_ai_disagreement(project, admin, member):
    split, unanimous, lone = add_task(project, "one"), add_task(project, "two"), add_task(project, "three", required=1)
    people = [member(), member()]
    for user in people:  # the queue hands tasks out in id order: split, unanimous, lone
        label(project, user, "A" if user is people[0] else "B")
        label(project, user, "A")
    label(project, member(), "B")
    rater = member()
    Annotation.objects.create(task=unanimous, kind="pairwise", author=rater, source=AnnotationSource.AI,
                              payload={"choice": "B", "strength": 1})
    Annotation.objects.create(task=lone, kind="pairwise", author=rater, source=AnnotationSource.AI,
                              payload={"choice": "B", "strength": 1})
    c = client_for(admin)
    rows = {t["id"]: t for t in c.get(URL).json()["results"]}
    assert (rows[split.pk]["agreement"], rows[unanimous.pk]["agreement"], rows[lone.pk]["agreement"]) == (0.5, 1.0, None)
    assert (rows[unanimous.pk]["ai_disagreement"], rows[lone.pk]["ai_disagreement"]) == (1.0, 0.0)
    assert found(c, agreement_max="0.6") == [split.pk]
    assert found(c, agreement_min="0.6", agreement_max="1") == [unanimous.pk]
    assert found(c, ai_disagrees="true") == [unanimous.pk]
    assert found(c, ai_disagrees="false") == [lone.pk]
    assert found(c, order="agreement") == [split.pk, unanimous.pk, lone.pk]  # no figure yet: last


@pytest.mark.django_db
@pytest.mark.parametrize("params, field", [
    ({"kind": "essay"}, "kind"), ({"agreement_min": "high"}, "agreement_min"), ({"agreement_max": "1.5"}, "agreement_max"),
    ({"agreement_min": "0.8", "agreement_max": "0.2"}, "agreement_min"), ({"ai_disagrees": "maybe"}, "ai_disagrees"),
    ({"text": "x" * 201}, "text"), ({"order": "random"}, "order"),
])
def test_a_bad_filter_is_a_400_naming_it(project, admin, params, field):
    response = client_for(admin).get(URL, params)
    assert response.status_code == 400
    assert field in response.json()["fields"]


@pytest.mark.django_db
def test_annotators_cannot_browse_or_act_on_tasks(project, member, make_task):
    task = make_task()
    c = client_for(member(Role.ANNOTATOR))
    assert c.get(URL).status_code == 403
    response = c.post(URL + "actions/", {"action": "set_priority", "tasks": [task.pk], "priority": 9}, format="json")
    assert response.status_code == 403
    task.refresh_from_db()
    assert task.priority == 0 and not TaskAction.objects.exists()


def act(client, **body):
    response = client.post(URL + "actions/", body, format="json")
    return response.status_code, response.json()


@pytest.mark.django_db
def test_requeue_asks_for_more_labels_and_is_audited(project, admin, member):
    task, other = add_task(project, "one"), add_task(project, "two")
    for user in (member(), member()):
        label(project, user, "A")
    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETE and task.open_slots == 0
    status, body = act(client_for(admin), action="requeue", tasks=[task.pk], extra=2)
    assert status == 201, body
    task.refresh_from_db()
    assert (task.status, task.required, task.open_slots, task.submitted_count) == (TaskStatus.OPEN, 4, 2, 2)
    newcomer = member()
    assert services.task_next_for(annotator=newcomer, project=project).task_id == task.pk  # back in the queue
    audit = TaskAction.objects.get(pk=body["id"])
    assert (audit.actor, audit.action, audit.task_ids, audit.params["extra"]) == (admin, "requeue", [task.pk], 2)
    assert audit.created_at is not None and body["actor"] == admin.username
    other.refresh_from_db()
    assert other.required == 2


@pytest.mark.django_db
def test_set_priority_on_every_task_matching_a_filter(project, admin):
    a, b, c = add_task(project, "apples"), add_task(project, "apple pie"), add_task(project, "pears")
    status, body = act(client_for(admin), action="set_priority", filter={"text": "apple"}, priority=7)
    assert status == 201, body
    assert dict(Task.objects.values_list("id", "priority")) == {a.pk: 7, b.pk: 7, c.pk: 0}
    assert body["task_ids"] == [a.pk, b.pk] and body["params"] == {"priority": 7}


@pytest.mark.django_db
def test_mark_gold_takes_the_human_majority_and_skips_split_tasks(project, admin, member):
    agreed, split = add_task(project, "one"), add_task(project, "two")
    people = [member(), member()]
    for user in people:
        label(project, user, "B")
        label(project, user, "A" if user is people[0] else "B")
    c = client_for(admin)
    status, body = act(c, action="mark_gold", tasks=[agreed.pk, split.pk])
    assert status == 201, body
    agreed.refresh_from_db()
    split.refresh_from_db()
    assert agreed.gold["choice"] == "B" and split.gold is None
    assert body["params"] == {"marked": 1, "skipped_without_majority": [split.pk]}
    assert found(c, gold="true") == [agreed.pk]
    status, body = act(c, action="unmark_gold", tasks=[agreed.pk])
    agreed.refresh_from_db()
    assert status == 201 and agreed.gold is None and agreed.required == 2


@pytest.mark.django_db
def test_export_writes_a_snapshot_of_the_selected_tasks_only(project, admin, member, settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path
    chosen, left = add_task(project, "keep me"), add_task(project, "leave me")
    for user in (member(), member()):
        label(project, user, "A")
        label(project, user, "B")
    status, body = act(client_for(admin), action="export", tasks=[chosen.pk], export={"format": "raw"})
    assert status == 201, body
    snapshot = body["snapshot"]
    rows = [json.loads(line) for line in open(snapshot_path(snapshot["id"]))]
    assert {r["task_id"] for r in rows} == {chosen.pk} and len(rows) == 2
    assert snapshot["spec"]["task_ids"] == [chosen.pk]
    assert body["params"]["snapshot"] == snapshot["id"] and body["params"]["rows"] == 2


def snapshot_path(snapshot_id):
    from annotation.models import DatasetSnapshot

    return DatasetSnapshot.objects.get(pk=snapshot_id).path


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", [
    ({"action": "requeue"}, "tasks"),
    ({"action": "requeue", "tasks": [1], "filter": {}}, "tasks"),
    ({"action": "requeue", "tasks": [999999]}, "tasks"),
    ({"action": "set_priority", "tasks": "all", "priority": 1}, "tasks"),
    ({"action": "set_priority", "tasks": ["x"], "priority": 1}, "tasks"),
    ({"action": "set_priority", "tasks": "TASK"}, "priority"),
    ({"action": "explode", "tasks": "TASK"}, "action"),
    ({"action": "requeue", "tasks": "TASK", "extra": 0}, "extra"),
    ({"action": "export", "tasks": "TASK"}, "format"),
    ({"action": "export", "tasks": "TASK", "export": {"format": "conversations"}}, "format"),
    ({"action": "set_priority", "filter": {"agreement_min": 3}}, "agreement_min"),
])
def test_a_bad_action_is_a_400_and_changes_nothing(project, admin, body, field):
    task = add_task(project, "one")
    body = {k: ([task.pk] if v == "TASK" else v) for k, v in body.items()}
    status, answer = act(client_for(admin), **body)
    assert status == 400, answer
    assert field in json.dumps(answer.get("fields", answer))
    task.refresh_from_db()
    assert (task.priority, task.required) == (0, 2) and not TaskAction.objects.exists()


@pytest.mark.django_db
def test_an_action_never_touches_another_projects_tasks(project, admin, make_user):
    theirs = services.project_create(name="Other", slug="other", created_by=make_user())
    task = add_task(theirs, "theirs")
    status, body = act(client_for(admin), action="set_priority", tasks=[task.pk], priority=5)
    assert status == 400 and str(task.pk) in body["detail"]
    task.refresh_from_db()
    assert task.priority == 0

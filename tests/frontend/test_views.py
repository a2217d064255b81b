"""Fast checks of the web UI through Django's test client: who may open what, and the writes behind forms."""

import re
import uuid

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import Annotation, Assignment, AssignmentState, ConstitutionVersion, Role, Task

ADMIN_PAGES = ["project_settings", "guidelines", "constitution"]
REVIEW_PAGES = ["review_list"]
OBSERVER_PAGES = ["dashboard"]
ENGINEER_PAGES = ["snapshots", "task_browser"]
STAFF_PAGES = ADMIN_PAGES + REVIEW_PAGES + OBSERVER_PAGES + ENGINEER_PAGES
MEMBER_PAGES = ["work", "my_work", "guideline_read"]
HTMX = {"HTTP_HX_REQUEST": "true"}


def url(name, project, *args):
    return reverse(f"frontend:{name}", args=[project.slug, *args])


@pytest.fixture
def annotator_client(client, member):
    user = member(Role.ANNOTATOR, "ann")
    client.force_login(user)
    client.user = user
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("name", STAFF_PAGES + MEMBER_PAGES)
def test_anonymous_visitors_are_sent_to_login(client, project, name):
    response = client.get(url(name, project))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.django_db
@pytest.mark.parametrize("name", STAFF_PAGES)
def test_annotators_get_403_on_staff_pages(annotator_client, project, name):
    assert annotator_client.get(url(name, project)).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name,data",
    [
        ("member_set", {"username": "ann", "role": "admin"}),
        ("member_remove", {"username": "owner"}),
        ("guidelines", {"body": "# hacked"}),
        ("constitution", {}),
        ("snapshot_create", {"format": "raw", "file_format": "jsonl", "style": "standard", "sources": ["human"]}),
        ("task_browser_act", {"action": "set_priority", "scope": "matching", "priority": "9"}),
        ("chat_settings", {"a_temperature": "0.5"}),
    ],
)
def test_annotators_cannot_post_to_admin_forms(annotator_client, project, name, data):
    assert annotator_client.post(url(name, project), data).status_code == 403
    assert project.guideline_versions.count() == 0 and not project.tasks.filter(priority=9).exists()
    assert project.memberships.get(user=annotator_client.user).role == Role.ANNOTATOR
    project.refresh_from_db()
    assert "chat" not in project.settings


@pytest.mark.django_db
@pytest.mark.parametrize("name", STAFF_PAGES + MEMBER_PAGES)
def test_pages_of_projects_you_are_not_in_are_404(client, project, other_project, name):
    client.force_login(project.memberships.get(role=Role.ADMIN).user)
    assert client.get(url(name, other_project)).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role,allowed",
    [
        (Role.ADMIN, set(STAFF_PAGES)),
        (Role.REVIEWER, set(REVIEW_PAGES + OBSERVER_PAGES)),
        (Role.ENGINEER, set(OBSERVER_PAGES + ENGINEER_PAGES)),
        (Role.ANNOTATOR, set()),
    ],
)
def test_each_role_reaches_exactly_its_pages(client, member, project, role, allowed):
    client.force_login(member(role))
    for name in STAFF_PAGES:
        expected = 200 if name in allowed else 403
        assert client.get(url(name, project)).status_code == expected, name
    for name in MEMBER_PAGES:
        assert client.get(url(name, project)).status_code == 200, name


@pytest.mark.django_db
@pytest.mark.parametrize("role,shown", [(Role.ADMIN, True), (Role.ENGINEER, True), (Role.REVIEWER, False), (Role.ANNOTATOR, False)])
def test_the_tasks_link_is_in_the_data_menu_for_admins_and_engineers_only(client, member, project, role, shown):
    client.force_login(member(role))
    body = client.get(url("work", project)).content.decode()
    assert (f'href="{url("task_browser", project)}"' in body) is shown


@pytest.mark.django_db
def test_home_lists_only_my_projects_with_my_progress(annotator_client, project, other_project, make_task):
    make_task()
    response = annotator_client.get("/")
    body = response.content.decode()
    assert project.name in body
    assert other_project.name not in body
    assert "You: 0 done" in body


@pytest.mark.django_db
def test_pairwise_submit_is_stored_canonically_and_next_task_arrives_by_htmx(annotator_client, project, make_task):
    make_task("pairwise")
    make_task("pairwise")
    user = annotator_client.user
    page = annotator_client.get(url("work", project))
    assert page.status_code == 200
    assignment = Assignment.objects.get(annotator=user, state=AssignmentState.ACTIVE)
    response = annotator_client.post(
        url("submit", project, assignment.pk),
        {"choice": "A", "strength": "3", "client_id": str(uuid.uuid4()), "seconds": "12.5", "rationale": "clearer"},
        **HTMX,
    )
    assert response.status_code == 200
    assert "<html" not in response.content.decode()  # a fragment, not a page
    annotation = Annotation.objects.get(author=user)
    # "A" is the first response shown, whichever canonical position that was.
    assert annotation.payload == {"choice": "AB"[assignment.shown_order[0]], "strength": 3}
    assert annotation.seconds_spent == 12.5
    assert annotation.rationale == "clearer"
    nxt = Assignment.objects.get(annotator=user, state=AssignmentState.ACTIVE)
    assert nxt.task_id != assignment.task_id
    assert f"/a/{nxt.pk}/submit/" in response.content.decode()


@pytest.mark.django_db
def test_submit_with_missing_choice_shows_the_same_task_with_an_error(annotator_client, project, make_task):
    make_task("pairwise")
    annotator_client.get(url("work", project))
    assignment = Assignment.objects.get(annotator=annotator_client.user)
    response = annotator_client.post(url("submit", project, assignment.pk), {"client_id": str(uuid.uuid4())}, **HTMX)
    assert "Choose A, B, tie or both bad" in response.content.decode()
    assert not Annotation.objects.exists()


@pytest.mark.django_db
def test_skip_records_the_reason_and_moves_on(annotator_client, project, make_task):
    make_task("rating")
    annotator_client.get(url("work", project))
    assignment = Assignment.objects.get(annotator=annotator_client.user)
    response = annotator_client.post(url("skip", project, assignment.pk), {"reason": "content_opt_out"}, **HTMX)
    assert "All done for now" in response.content.decode()
    assignment.refresh_from_db()
    assert assignment.state == AssignmentState.SKIPPED
    assert assignment.skip_reason == "content_opt_out"


@pytest.mark.django_db
def test_undo_within_the_lease_reopens_the_task_prefilled(annotator_client, project, make_task):
    task = make_task("rating", required=1)
    annotator_client.get(url("work", project))
    assignment = Assignment.objects.get(annotator=annotator_client.user)
    annotator_client.post(
        url("submit", project, assignment.pk),
        {"thumb": "down", "likert_helpful": "2", "client_id": str(uuid.uuid4())},
        **HTMX,
    )
    assert Task.objects.get(pk=task.pk).status == "complete"
    annotation = Annotation.objects.get()
    response = annotator_client.post(url("undo", project), {"annotation": annotation.pk}, **HTMX)
    body = response.content.decode()
    withdrawn = Annotation.objects.get()  # kept, but no longer current
    assert not withdrawn.is_current and "withdrawn_at" in withdrawn.details
    task.refresh_from_db()
    assert (task.status, task.submitted_count) == ("open", 0)
    assignment.refresh_from_db()
    assert assignment.state == AssignmentState.ACTIVE
    assert re.search(r'value="down"\s+checked', body)
    assert re.search(r'name="likert_helpful" value="2"\s+checked', body)


@pytest.mark.django_db
def test_model_output_is_escaped_everywhere_it_is_shown(annotator_client, project):
    prompt = services.prompt_create(project=project, messages="<img src=x onerror=alert(1)> hi")
    evil = [
        services.response_create(prompt=prompt, content="<script>alert('xss')</script>", dedupe_key="a"),
        services.response_create(prompt=prompt, content="<img src=x onerror=alert(2)>", dedupe_key="b"),
    ]
    services.task_create(project=project, kind="pairwise", prompt=prompt, responses=evil)
    body = annotator_client.get(url("work", project)).content.decode()
    assert "<script>alert" not in body
    assert "<img src=x" not in body and '<img src="x"' not in body
    assert "&lt;script&gt;alert" in body


@pytest.mark.django_db
def test_guideline_save_creates_a_version_and_diff_shows_changed_lines(client, project):
    admin = project.memberships.get(role=Role.ADMIN).user
    client.force_login(admin)
    client.post(url("guidelines", project), {"body": "# Rules\nBe kind.\n", "note": "first"})
    client.post(url("guidelines", project), {"body": "# Rules\nBe kind and brief.\n"})
    project.refresh_from_db()
    assert project.current_guideline.number == 2
    diff = client.get(url("guidelines_diff", project) + "?a=1&b=2").content.decode()
    assert "<del>" not in diff or "brief" in diff
    assert "<ins> and brief</ins>" in diff or "<ins>and brief</ins>" in diff.replace("<ins> ", "<ins>")
    preview = client.post(url("guidelines_preview", project), {"body": "**bold** <script>x</script>"}).content.decode()
    assert "<strong>bold</strong>" in preview and "<script>" not in preview


@pytest.mark.django_db
def test_constitution_save_keeps_order_drops_retired_and_diff_classifies(client, project):
    client.force_login(project.memberships.get(role=Role.ADMIN).user)

    def post(cards):
        data = {
            f"p_{f}": [c.get(f, "") for c in cards]
            for f in ("key", "name", "critique_request", "revision_request", "comparison_question")
        }
        data["p_state"] = [c.get("state", "keep") for c in cards]
        return client.post(url("constitution", project), data)

    base = {"critique_request": "Critique.", "revision_request": "Revise.", "comparison_question": "Which?"}
    post([{"key": "harm", "name": "Harm", **base}, {"key": "honesty", "name": "Honesty", **base}])
    post(
        [
            {"key": "", "name": "New one", **base},
            {"key": "honesty", "name": "Honesty", **base, "comparison_question": "Which is more honest?"},
            {"key": "harm", "name": "Harm", **base, "state": "retired"},
        ]
    )
    v2 = ConstitutionVersion.objects.get(project=project, number=2)
    assert [p.key for p in v2.principles.order_by("position")] == ["new-one", "honesty"]
    diff = client.get(url("constitution_diff", project) + "?a=1&b=2").content.decode()
    assert "1 added" in diff and "1 changed" in diff and "1 retired" in diff
    assert "more honest" in diff


@pytest.mark.django_db
def test_my_work_edit_creates_a_revision(annotator_client, project, make_task):
    make_task("rating")
    annotator_client.get(url("work", project))
    assignment = Assignment.objects.get(annotator=annotator_client.user)
    annotator_client.post(
        url("submit", project, assignment.pk), {"thumb": "up", "client_id": str(uuid.uuid4())}, **HTMX
    )
    first = Annotation.objects.get()
    assert annotator_client.get(url("my_work", project)).status_code == 200
    response = annotator_client.post(
        url("my_work_edit", project, first.pk), {"thumb": "down", "client_id": str(uuid.uuid4())}
    )
    assert response.status_code == 302
    current = Annotation.objects.get(is_current=True)
    assert current.supersedes_id == first.pk and current.payload == {"thumb": "down"}


@pytest.mark.django_db
def test_reviewer_accepts_or_corrects(client, member, project, make_task):
    annotator = member(Role.ANNOTATOR)
    make_task("rating")
    make_task("rating")
    for _ in range(2):
        a = services.task_next_for(annotator=annotator, project=project)
        services.annotation_submit(assignment=a, annotator=annotator, payload={"thumb": "up"}, client_id=uuid.uuid4())
    first, second = Annotation.objects.order_by("id")
    reviewer = member(Role.REVIEWER)
    client.force_login(reviewer)
    assert client.get(url("review_detail", project, first.pk)).status_code == 200
    client.post(url("review_accept", project, first.pk))
    first.refresh_from_db()
    assert first.details["review"]["verdict"] == "accepted"
    client.post(url("review_detail", project, second.pk), {"thumb": "down", "client_id": str(uuid.uuid4())})
    correction = Annotation.objects.get(supersedes=second)
    assert correction.is_review and correction.author == reviewer and correction.payload == {"thumb": "down"}


@pytest.mark.django_db
def test_snapshot_form_reports_when_export_is_missing_or_calls_it(client, member, project, monkeypatch):
    import sys
    import types

    client.force_login(member(Role.ENGINEER))
    calls = []

    def fake_snapshot_create(**kwargs):
        calls.append(kwargs)
        return types.SimpleNamespace(row_count=3, sha256="ab" * 32)

    module = types.ModuleType("annotation.services.exports")
    module.snapshot_create = fake_snapshot_create
    monkeypatch.setitem(sys.modules, "annotation.services.exports", module)
    response = client.post(
        url("snapshot_create", project),
        {"format": "preference", "file_format": "jsonl", "style": "conversational", "sources": ["human", "ai"]},
        follow=True,
    )
    assert "3 rows" in response.content.decode()
    assert calls[0]["format"] == "preference" and calls[0]["style"] == "conversational"
    assert calls[0]["sources"] == ["human", "ai"]

    monkeypatch.setitem(sys.modules, "annotation.services.exports", None)  # not installed
    response = client.post(
        url("snapshot_create", project),
        {"format": "raw", "file_format": "jsonl", "style": "conversational", "sources": ["human"]},
        follow=True,
    )
    assert "not available" in response.content.decode()
    assert len(calls) == 1
    assert calls[0]["project"] == project


@pytest.mark.django_db
def test_dashboard_has_the_numbers_for_its_charts(client, project, make_task):
    make_task("pairwise")
    client.force_login(project.memberships.get(role=Role.ADMIN).user)
    body = client.get(url("dashboard", project)).content.decode()
    assert 'id="dashboard-data"' in body and "chart-4.6.1.umd.min.js" in body


@pytest.mark.django_db
def test_htmx_posts_need_the_csrf_token_from_the_page(project, member, make_task):
    from django.test import Client

    make_task("rating")
    user = member(Role.ANNOTATOR)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(url("work", project)).content.decode()
    token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)
    assignment = Assignment.objects.get(annotator=user)
    data = {"thumb": "up", "client_id": str(uuid.uuid4())}
    assert client.post(url("submit", project, assignment.pk), data, **HTMX).status_code == 403
    assert not Annotation.objects.exists()
    response = client.post(url("submit", project, assignment.pk), data, HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200 and Annotation.objects.count() == 1


@pytest.mark.django_db
def test_undo_is_refused_after_the_lease_and_for_someone_elses_annotation(annotator_client, project, member, make_task):
    from datetime import timedelta

    from django.utils import timezone

    make_task("rating")
    annotator_client.get(url("work", project))
    assignment = Assignment.objects.get(annotator=annotator_client.user)
    annotator_client.post(
        url("submit", project, assignment.pk), {"thumb": "up", "client_id": str(uuid.uuid4())}, **HTMX
    )
    annotation = Annotation.objects.get()

    other = member(Role.ANNOTATOR)
    from django.test import Client

    intruder = Client()
    intruder.force_login(other)
    assert intruder.post(url("undo", project), {"annotation": annotation.pk}, **HTMX).status_code == 404

    Assignment.objects.filter(pk=assignment.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    body = annotator_client.post(url("undo", project), {"annotation": annotation.pk}, **HTMX).content.decode()
    assert "lease on this task has ended" in body
    assert Annotation.objects.filter(pk=annotation.pk).exists()


@pytest.mark.django_db
def test_rating_page_uses_the_projects_aspects(annotator_client, project, make_task):
    services.project_update(project=project, settings={"aspects": ["accurate", "concise"]})
    make_task("rating")
    body = annotator_client.get(url("work", project)).content.decode()
    assert 'name="likert_accurate"' in body and 'name="likert_concise"' in body
    assert "likert_helpful" not in body
    assignment = Assignment.objects.get(annotator=annotator_client.user)
    annotator_client.post(
        url("submit", project, assignment.pk), {"likert_concise": "3", "client_id": str(uuid.uuid4())}, **HTMX
    )
    assert Annotation.objects.get().payload == {"likert": {"concise": 3}}


@pytest.mark.django_db
def test_ranking_and_steps_forms_submit_ties_and_first_error(annotator_client, project, make_task):
    make_task("ranking", priority=2)
    make_task("steps", priority=1)
    annotator_client.get(url("work", project))
    ranking = Assignment.objects.get(annotator=annotator_client.user)
    annotator_client.post(
        url("submit", project, ranking.pk), {"order": "[[1, 2], [0]]", "client_id": str(uuid.uuid4())}, **HTMX
    )
    order = ranking.shown_order
    assert Annotation.objects.get(task=ranking.task).payload["order"] == [sorted([order[1], order[2]]), [order[0]]]
    steps = Assignment.objects.get(annotator=annotator_client.user, state=AssignmentState.ACTIVE)
    # Stopping at the first error: the later step counts as bad without a label of its own.
    data = {"step_0": "1", "step_1": "-1", "stop_at_first_error": "1", "client_id": str(uuid.uuid4())}
    annotator_client.post(url("submit", project, steps.pk), data, **HTMX)
    assert Annotation.objects.get(task=steps.task).payload == {"labels": [1, -1, -1], "first_error": 1}


@pytest.mark.django_db
def test_a_retried_submit_is_stored_once(annotator_client, project, make_task):
    make_task("rating")
    make_task("rating")
    annotator_client.get(url("work", project))
    assignment = Assignment.objects.get(annotator=annotator_client.user)
    data = {"thumb": "up", "client_id": str(uuid.uuid4())}
    annotator_client.post(url("submit", project, assignment.pk), data, **HTMX)
    annotator_client.post(url("submit", project, assignment.pk), data, **HTMX)
    assert Annotation.objects.count() == 1


@pytest.mark.django_db
def test_guideline_panel_shows_the_version_in_force(annotator_client, project, make_task):
    owner = project.memberships.get(role=Role.ADMIN).user
    services.guideline_version_create(project=project, body="Old rules", created_by=owner)
    services.guideline_version_create(project=project, body="New *rules*", created_by=owner)
    make_task("pairwise")
    body = annotator_client.get(url("work", project)).content.decode()
    assert "version 2" in body and "New <em>rules</em>" in body and "Old rules" not in body


@pytest.mark.django_db
def test_an_htmx_request_after_the_session_ended_sends_the_page_to_login(client, project):
    response = client.post(
        url("submit", project, 1), {}, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/p/demo/work/"
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login/?next=%2Fp%2Fdemo%2Fwork%2F"


@pytest.mark.django_db
def test_without_javascript_the_forms_post_and_redirect_with_a_message(annotator_client, project, make_task):
    make_task("rating")
    make_task("rating")
    annotator_client.get(url("work", project))
    assignment = Assignment.objects.get(annotator=annotator_client.user)
    response = annotator_client.post(
        url("submit", project, assignment.pk), {"thumb": "up", "client_id": str(uuid.uuid4())}, follow=True
    )
    assert response.redirect_chain == [(url("work", project), 302)]
    assert "Saved." in response.content.decode() and Annotation.objects.count() == 1


# --- live chat settings ---------------------------------------------------------------------------


@pytest.fixture
def chat_models(db):
    from training.services import model_register

    for name, roles in [("policy-a", ["policy"]), ("policy-b", ["policy", "judge"]), ("judge-only", ["judge"])]:
        model_register(name=name, backend="openai", base_url="http://127.0.0.1:9/v1", roles=roles)


def _admin_client(client, project):
    client.force_login(project.memberships.get(role=Role.ADMIN).user)
    return client


@pytest.mark.django_db
def test_admins_pick_the_chat_models_and_each_sides_sampling_in_the_settings_page(client, project, chat_models):
    services.project_update(project=project, settings={"chat": {"models": [], "sampling": {"seed": 7, "top_p": 0.5}}})
    admin = _admin_client(client, project)
    page = admin.get(url("project_settings", project)).content.decode()
    assert 'value="policy-a"' in page and 'value="policy-b"' in page and 'value="judge-only"' not in page
    assert 'name="a_top_p"' in page and 'value="0.5"' in page and 'name="b_temperature"' in page
    data = {"models": ["policy-a", "policy-b"], "a_temperature": "0.7", "a_top_p": "", "a_max_new_tokens": "256",
            "b_temperature": "1.3"}
    response = admin.post(url("chat_settings", project), data)
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.settings["chat"] == {
        "models": ["policy-a", "policy-b"],
        "sampling": {"seed": 7, "temperature": 0.7, "max_new_tokens": 256},  # a seed set through the API is kept
        "sampling_b": {"temperature": 1.3},
    }
    assert "Chat settings saved." in admin.get(url("project_settings", project)).content.decode()
    # The main settings form leaves the chat setting alone.
    admin.post(url("project_settings", project), {"name": "Demo", "required_annotations": "2", "lease_minutes": "10"})
    project.refresh_from_db()
    assert project.name == "Demo" and project.settings["chat"]["models"] == ["policy-a", "policy-b"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field,value,message",
    [
        ("models", "judge-only", "Select a valid choice. judge-only is not one of the available choices."),
        ("a_temperature", "9", "Ensure this value is less than or equal to 5.0."),
        ("b_top_p", "0", "top_p must be above 0 (and at most 1)."),
        ("a_top_p", "1.5", "Ensure this value is less than or equal to 1.0."),
        ("b_max_new_tokens", "0", "Ensure this value is greater than or equal to 1."),
        ("a_max_new_tokens", "many", "Enter a whole number."),
    ],
)
def test_bad_chat_settings_are_refused_with_the_error_beside_the_field(client, project, chat_models, field, value, message):
    services.project_update(project=project, settings={"chat": {"models": ["policy-a"]}})
    data = {"models": ["policy-b"], field: value}
    response = _admin_client(client, project).post(url("chat_settings", project), data)
    assert response.status_code == 400
    body = response.content.decode()
    after_field = body[body.rfind(f'name="{field}"'):]
    next_input = after_field.find("<input", 1)
    assert 0 < after_field.find(message) < (next_input if next_input > 0 else len(after_field))  # beside its field
    project.refresh_from_db()
    assert project.settings["chat"] == {"models": ["policy-a"]}


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.REVIEWER, Role.ENGINEER, Role.ANNOTATOR])
def test_only_admins_change_the_chat_settings(client, project, member, chat_models, role):
    client.force_login(member(role))
    assert client.post(url("chat_settings", project), {"models": ["policy-a"]}).status_code == 403
    project.refresh_from_db()
    assert "chat" not in project.settings


@pytest.mark.django_db
def test_the_chat_page_says_when_no_chat_model_is_set_and_where_to_set_it(client, project, member, chat_models):
    admin = _admin_client(client, project)
    body = admin.get(url("chat_list", project)).content.decode()
    assert "No chat model is set for this project" in body
    assert url("project_settings", project) + "#chat-settings" in body
    annotator = member(Role.ANNOTATOR)
    client.force_login(annotator)
    body = client.get(url("chat_list", project)).content.decode()
    assert "A project admin picks them in Project settings" in body and "#chat-settings" not in body
    services.project_update(project=project, settings={"chat": {"models": ["policy-a"]}})
    assert "No chat model is set" not in client.get(url("chat_list", project)).content.decode()

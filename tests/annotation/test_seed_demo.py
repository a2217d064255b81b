import io
import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from annotation import services
from annotation.models import (
    ConstitutionVersion,
    GuidelineVersion,
    Membership,
    Principle,
    Project,
    Prompt,
    Response,
    Task,
    TaskKind,
    TaskResponse,
)

ROLES = {"admin": "admin", "engineer": "engineer", "reviewer": "reviewer", "annotator1": "annotator", "annotator2": "annotator"}
ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*([^|]+?)\s*\|\s*(\S+)\s*\|$")


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def printed_passwords(output: str) -> dict[str, str]:
    rows = {m.group(1): m.group(3) for line in output.splitlines() if (m := ROW.match(line))}
    rows.pop("username", None)
    return rows


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (
            get_user_model(), Project, Membership, GuidelineVersion, ConstitutionVersion, Principle,
            Prompt, Response, Task, TaskResponse,
        )
    }


@pytest.mark.django_db
def test_seed_demo_creates_users_with_their_roles_and_prints_where_to_sign_in():
    output = seed()
    project = Project.objects.get(slug="demo")
    for username, role in ROLES.items():
        user = get_user_model().objects.get(username=username)
        assert Membership.objects.get(project=project, user=user).role == role
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert not get_user_model().objects.get(username="annotator1").is_staff
    assert "http://127.0.0.1:8000/" in output
    assert set(printed_passwords(output)) == set(ROLES)


@pytest.mark.django_db
def test_seed_demo_creates_the_project_with_guidelines_and_constitution_in_force():
    seed()
    project = Project.objects.get(slug="demo")
    assert project.name == "Demo: chat assistant"
    assert project.required_annotations == 2
    assert project.lease_seconds == 30 * 60
    assert project.current_guideline.number == 1
    body = project.current_guideline.body
    for topic in ("Harmless", "Honest", "Helpful", "Pairwise", "Ranking", "Rating", "Step labels", "Demonstration"):
        assert topic in body
    principles = list(project.current_constitution.principles.all())
    assert project.current_constitution.number == 1
    assert len(principles) >= 8
    assert all(p.critique_request and p.revision_request and p.comparison_question for p in principles)
    assert any("less harmful" in p.comparison_question for p in principles)


@pytest.mark.django_db
def test_seed_demo_imports_all_160_questions_as_prompts():
    seed()
    prompts = list(Prompt.objects.filter(project__slug="demo"))
    # Two Vicuna questions repeat MT-Bench ones word for word: one prompt each, both ids recorded.
    assert len(prompts) == 158
    ids = {(p.metadata["source"], p.metadata["question_id"]) for p in prompts}
    ids |= {(a["source"], a["question_id"]) for p in prompts for a in p.metadata.get("also", [])}
    assert len(ids) == 160
    assert {s for s, _ in ids} == {"mt_bench", "vicuna_bench"}
    mt = next(p for p in prompts if p.external_id == "mt_bench:111")
    assert mt.messages == [{"role": "user", "content": mt.messages[0]["content"]}]
    assert "triangle" in mt.messages[0]["content"]
    assert mt.metadata["category"] == "math"
    assert mt.metadata["second_turn"]
    assert mt.metadata["reference"]


@pytest.mark.django_db
def test_seed_demo_attaches_the_generated_answers_with_their_provenance():
    seed()
    responses = Response.objects.filter(prompt__project__slug="demo")
    assert responses.count() >= 100
    assert set(responses.values_list("origin", flat=True)) == {"generated"}
    assert set(responses.values_list("model_name", flat=True)) == {"SmolLM2-135M-Instruct"}
    one = responses.first()
    assert one.content.strip()
    assert one.generation["temperature"] == 0.8 and one.generation["completion_tokens"] > 0
    assert one.dedupe_key


@pytest.mark.django_db
def test_seed_demo_creates_several_tasks_of_every_kind():
    seed()
    tasks = Task.objects.filter(project__slug="demo")
    for kind in TaskKind.values:
        assert tasks.filter(kind=kind).count() >= 3, kind
    assert all(t.n_responses == 2 for t in tasks.filter(kind=TaskKind.PAIRWISE))
    assert all(t.n_responses == 3 for t in tasks.filter(kind=TaskKind.RANKING))
    assert all(t.n_responses == 1 for t in tasks.filter(kind=TaskKind.RATING))
    steps = tasks.filter(kind=TaskKind.STEPS)
    assert all(t.n_steps >= 2 for t in steps)
    assert {t.prompt.metadata["category"] for t in steps} <= {"math", "reasoning"}
    demos = tasks.filter(kind=TaskKind.DEMONSTRATION)
    assert demos.filter(n_responses=0).exists() and demos.filter(n_responses=1).exists()
    assert all(t.required == 2 for t in tasks)


@pytest.mark.django_db
def test_an_annotator_meets_every_kind_within_the_first_ten_tasks():
    seed()
    project = Project.objects.get(slug="demo")
    annotator = get_user_model().objects.get(username="annotator1")
    kinds = []
    for _ in range(10):
        assignment = services.task_next_for(annotator=annotator, project=project)
        kinds.append(assignment.task.kind)
        services.assignment_skip(assignment=assignment, annotator=annotator, reason="walking the queue")
    assert set(kinds) == set(TaskKind.values)


@pytest.mark.django_db
def test_seed_demo_twice_creates_no_duplicates():
    seed()
    first = counts()
    seed()
    assert counts() == first


@pytest.mark.django_db
def test_printed_passwords_sign_in_and_change_on_every_run():
    old = printed_passwords(seed())
    new = printed_passwords(seed())
    for username in ROLES:
        assert authenticate(username=username, password=new[username]) is not None
        assert old[username] != new[username]
        assert authenticate(username=username, password=old[username]) is None

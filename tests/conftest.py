import os

import pytest
from django.contrib.auth import get_user_model

from annotation import services
from annotation.models import Role


@pytest.fixture
def make_user(db):
    counter = {"n": 0}

    def make(username: str | None = None, **extra):
        counter["n"] += 1
        username = username or f"user{counter['n']}"
        return get_user_model().objects.create_user(username=username, password="correct-horse-battery", **extra)

    return make


@pytest.fixture
def project(db, make_user):
    owner = make_user("owner")
    return services.project_create(name="Demo", slug="demo", created_by=owner, required_annotations=2, lease_seconds=600)


@pytest.fixture
def member(project, make_user):
    """member(role) -> a new user with that role in `project`."""

    def make(role: str = Role.ANNOTATOR, username: str | None = None):
        user = make_user(username)
        services.membership_set(project=project, user=user, role=role)
        return user

    return make


@pytest.fixture
def make_task(project):
    """make_task(kind, n=2) -> a task with n responses (steps tasks get a three-step response)."""
    counter = {"n": 0}

    def make(kind: str = "pairwise", n: int | None = None, priority: int = 0, required: int | None = None, proj=None):
        proj = proj or project
        counter["n"] += 1
        prompt = services.prompt_create(project=proj, messages=[{"role": "user", "content": f"Question {counter['n']}?"}])
        n = {"pairwise": 2, "ranking": 3, "rating": 1, "steps": 1, "demonstration": 0}[kind] if n is None else n
        responses = [
            services.response_create(
                prompt=prompt,
                content=f"1. First step of answer {i}.\n2. Second step.\n3. So the answer is {i}.",
                dedupe_key=f"r{i}",
            )
            for i in range(n)
        ]
        return services.task_create(
            project=proj, kind=kind, prompt=prompt, responses=responses, priority=priority, required=required
        )

    return make


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Django's default hasher is deliberately slow; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_collection_modifyitems(config, items):
    # In a parallel run (make test) xdist hands whole files to its workers in this order: files with slow tests go
    # first, so that the short files fill the gaps at the end instead of one worker finishing a long file alone.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow_files = {item.path for item in items if item.get_closest_marker("slow")}
        items.sort(key=lambda item: item.path not in slow_files)

"""Run by the concurrency tests as separate processes against one database (DATABASE_URL).

    queue_loop.py seed SLUG N_TASKS REQUIRED USER...   create a project, annotators and tasks
    queue_loop.py loop SLUG USER                       one annotator loops next-task -> submit
    queue_loop.py count SLUG                           print what was stored, as JSON
"""

import json
import os
import sys
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")


def seed(slug: str, n_tasks: str, required: str, *usernames: str) -> None:
    from django.contrib.auth import get_user_model

    from annotation import services

    project = services.project_create(name=slug, slug=slug, required_annotations=int(required))
    for name in usernames:
        user = get_user_model().objects.create_user(name, password="unused-password-1")
        services.membership_set(project=project, user=user, role="annotator")
    for i in range(int(n_tasks)):
        prompt = services.prompt_create(project=project, messages=[{"role": "user", "content": f"Q{i}"}])
        responses = [services.response_create(prompt=prompt, content=f"R{j}", dedupe_key=str(j)) for j in range(2)]
        services.task_create(project=project, kind="pairwise", prompt=prompt, responses=responses)


def loop(slug: str, username: str) -> None:
    from django.contrib.auth import get_user_model

    from annotation import services
    from annotation.models import Project

    user = get_user_model().objects.get(username=username)
    project = Project.objects.get(slug=slug)
    done = 0
    while (lease := services.task_next_for(annotator=user, project=project)) is not None:
        services.annotation_submit(
            assignment=lease, annotator=user, payload={"choice": "A", "strength": 1}, client_id=uuid.uuid4()
        )
        done += 1
    print(done)


def count(slug: str) -> None:
    from annotation.models import Annotation, Assignment, Task

    annotations = Annotation.objects.filter(task__project__slug=slug)
    print(json.dumps({
        "tasks": Task.objects.filter(project__slug=slug).count(),
        "pairs": [list(p) for p in annotations.values_list("task_id", "author_id")],
        "open_slots": list(Task.objects.filter(project__slug=slug).values_list("open_slots", flat=True)),
        "active": Assignment.objects.filter(project__slug=slug, state="active").count(),
    }))


if __name__ == "__main__":
    import django

    django.setup()
    {"seed": seed, "loop": loop, "count": count}[sys.argv[1]](*sys.argv[2:])

"""The project navigation on every page of a project, the engineer pages under /training/ included.

Three direct links (Annotate, Chat, My work) and four menus (Quality, Data, Training, Admin), so that it fits one row at 1366 px.
Each link shows only to the roles its page admits; a menu with nothing to show is left out. The context
processor finds the project from the URL's slug, through the caller's own membership.
"""

from dataclasses import dataclass

from django.urls import reverse

from . import reads
from .access import ADMINS, ANY_MEMBER, ENGINEERS, OBSERVERS, REVIEWERS


@dataclass(frozen=True)
class Link:
    label: str
    view: str  # the URL name; a project page takes the slug
    roles: tuple[str, ...]
    also: tuple[str, ...] = ()  # other views that count as this page (detail pages, diffs)
    project_page: bool = True


NAV: list[tuple[str, list[Link]]] = [
    ("", [
        Link("Annotate", "frontend:work", ANY_MEMBER),
        Link("Chat", "frontend:chat_list", ANY_MEMBER, ("frontend:chat",)),
        Link("My work", "frontend:my_work", ANY_MEMBER, ("frontend:my_work_edit",)),
    ]),
    ("Quality", [
        Link("Review", "frontend:review_list", REVIEWERS, ("frontend:review_detail",)),
        Link("Dashboard", "frontend:dashboard", OBSERVERS),
        Link("Annotators", "frontend:annotators", OBSERVERS),
        Link("AI agreement", "feedback:agreement", OBSERVERS),
    ]),
    ("Data", [
        Link("Tasks", "frontend:task_browser", ENGINEERS),
        Link("Datasets", "frontend:snapshots", ENGINEERS),
        Link("Generation", "training:generation_jobs", OBSERVERS, ("training:generation_job",)),
        Link("AI feedback", "feedback:jobs", OBSERVERS, ("feedback:job",)),
    ]),
    ("Training", [
        Link("Training runs", "training:training_runs", OBSERVERS, ("training:training_run",)),
        Link("Rounds", "training:rounds", OBSERVERS, ("training:round",)),
        Link("Models", "training:models", OBSERVERS, project_page=False),
    ]),
    ("Admin", [
        Link("Guidelines", "frontend:guidelines", ADMINS, ("frontend:guidelines_diff",)),
        Link("Constitution", "frontend:constitution", ADMINS, ("frontend:constitution_diff",)),
        Link("Settings", "frontend:project_settings", ADMINS),
        Link("Webhooks", "frontend:webhooks", ADMINS),
    ]),
]


def project_nav(*, project, role: str, here: str) -> list[dict]:
    """[{label, items: [{label, url, current}], current}] for `role`; the group with label "" is plain links."""
    groups = []
    for label, links in NAV:
        items = [
            {
                "label": link.label,
                "url": reverse(link.view, args=[project.slug] if link.project_page else []),
                "current": here in (link.view, *link.also),
            }
            for link in links
            if role in link.roles
        ]
        if items:
            groups.append({"label": label, "items": items, "current": any(i["current"] for i in items)})
    return groups


def navigation(request) -> dict:
    """Context processor: `nav_project` and `nav` on any page whose URL names a project the caller belongs to."""
    match = getattr(request, "resolver_match", None)
    slug = match.kwargs.get("slug") if match else None
    if not slug or not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    membership = getattr(request, "membership", None) or reads.membership_for(user=request.user, slug=slug)
    if membership is None:
        return {}
    return {
        "nav_project": membership.project,
        "nav": project_nav(project=membership.project, role=membership.role, here=match.view_name),
    }

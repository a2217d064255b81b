"""Guideline and constitution editors: every save is a new immutable version; diffs between any two."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from annotation import services
from common.errors import DomainError

from .. import reads
from ..access import ADMINS, ANY_MEMBER, project_view
from ..diffing import changed_count, side_by_side, word_diff
from ..forms import GuidelineForm
from ..markdown import render_markdown

PRINCIPLE_FIELDS = [
    ("key", "Key"),
    ("name", "Name"),
    ("critique_request", "Critique request"),
    ("revision_request", "Revision request"),
    ("comparison_question", "Comparison question"),
]


# Guidelines


@project_view(ADMINS)
def guidelines(request, project):
    versions = reads.guideline_versions(project=project)
    current = project.current_guideline
    if request.method == "POST":
        form = GuidelineForm(request.POST)
        if form.is_valid():
            body = form.cleaned_data["body"].replace("\r\n", "\n")
            if current is not None and body == current.body:
                messages.info(request, f"No change: version {current.number} stays in force.")
                return redirect("frontend:guidelines", project.slug)
            try:
                version = services.guideline_version_create(
                    project=project, body=body, note=form.cleaned_data["note"], created_by=request.user
                )
            except DomainError as exc:
                form.add_error("body", exc.message)
            else:
                messages.success(request, f"Saved as version {version.number}; it is now in force.")
                return redirect("frontend:guidelines", project.slug)
    else:
        start = current
        if "from" in request.GET:
            start = reads.guideline_version(project=project, number=request.GET["from"]) or current
        form = GuidelineForm(initial={"body": start.body if start else ""})
    ctx = {
        "project": project,
        "form": form,
        "versions": versions,
        "current": current,
        "next_number": (versions[0].number + 1) if versions else 1,
        "diff_a": versions[1].number if len(versions) > 1 else None,
        "diff_b": versions[0].number if versions else None,
    }
    return render(request, "frontend/guidelines.html", ctx)


@require_POST
@project_view(ADMINS)
def guidelines_preview(request, project):
    html = render_markdown(request.POST.get("body", "")[:200_000], document=True)
    return HttpResponse(html or '<p class="muted">Nothing to preview yet.</p>')


@project_view(ADMINS)
def guidelines_diff(request, project):
    versions = reads.guideline_versions(project=project)
    a = reads.guideline_version(project=project, number=request.GET.get("a"))
    b = reads.guideline_version(project=project, number=request.GET.get("b"))
    rows = side_by_side(a.body, b.body) if a and b else []
    ctx = {
        "project": project,
        "versions": versions,
        "a": a,
        "b": b,
        "rows": rows,
        "changes": changed_count(rows),
        "left_title": f"Version {a.number}" if a else "",
        "right_title": f"Version {b.number}" if b else "",
    }
    return render(request, "frontend/guidelines_diff.html", ctx)


@project_view(ANY_MEMBER)
def guideline_read(request, project):
    """The guidelines in force, for anyone in the project (the work page shows them in a panel)."""
    return render(request, "frontend/guideline_read.html", {"project": project, "guideline": project.current_guideline})


# Constitution


def _principles_from_post(data) -> tuple[list[dict], list[dict]]:
    """(kept principles in order, every card as posted) from the editor's parallel field lists."""
    lists = {f: data.getlist(f"p_{f}") for f, _ in PRINCIPLE_FIELDS}
    states = data.getlist("p_state")
    n = len(states)
    cards = []
    for i in range(n):
        card = {f: (lists[f][i] if i < len(lists[f]) else "").strip() for f, _ in PRINCIPLE_FIELDS}
        card["key"] = slugify(card["key"] or card["name"])[:100]
        card["retired"] = states[i] == "retired"
        cards.append(card)
    kept = [{f: c[f] for f, _ in PRINCIPLE_FIELDS} for c in cards if not c["retired"]]
    return kept, cards


@project_view(ADMINS)
def constitution(request, project):
    versions = reads.constitution_versions(project=project)
    current = project.current_constitution
    error = ""
    if request.method == "POST":
        kept, cards = _principles_from_post(request.POST)
        locked = {p.key for p in reads.principles(version=current)}
        for card in cards:
            card["locked"] = card["key"] in locked
        note = request.POST.get("note", "")[:300]
        try:
            version = services.constitution_version_create(
                project=project, principles=kept, note=note, created_by=request.user
            )
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(request, f"Saved as version {version.number}; it is now in force.")
            return redirect("frontend:constitution", project.slug)
    else:
        cards = [
            {**{f: getattr(p, f) for f, _ in PRINCIPLE_FIELDS}, "retired": False, "locked": True}
            for p in reads.principles(version=current)
        ]
        note = ""
    ctx = {
        "project": project,
        "cards": cards,
        "versions": versions,
        "current": current,
        "note": note,
        "error": error,
        "next_number": (versions[0].number + 1) if versions else 1,
        "diff_a": versions[1].number if len(versions) > 1 else None,
        "diff_b": versions[0].number if versions else None,
    }
    return render(request, "frontend/constitution.html", ctx)


def constitution_changes(old: list, new: list) -> list[dict]:
    """Per principle (matched by key): added, retired, changed (field diffs), moved or unchanged."""
    old_by_key = {p.key: (i, p) for i, p in enumerate(old)}
    new_keys = {p.key for p in new}
    changes = []
    for j, p in enumerate(new):
        if p.key not in old_by_key:
            changes.append(
                {
                    "status": "added",
                    "key": p.key,
                    "name": p.name,
                    "position": j + 1,
                    "fields": [
                        {"label": label, "left": [], "right": [(getattr(p, f), True)], "changed": True}
                        for f, label in PRINCIPLE_FIELDS[2:]
                    ],
                }
            )
            continue
        i, q = old_by_key[p.key]
        fields = []
        for f, label in PRINCIPLE_FIELDS[1:]:
            a, b = getattr(q, f), getattr(p, f)
            left, right = word_diff(a, b)
            fields.append({"label": label, "left": left, "right": right, "changed": a != b})
        edited = any(x["changed"] for x in fields)
        status = "changed" if edited else ("moved" if i != j else "unchanged")
        changes.append(
            {
                "status": status,
                "key": p.key,
                "name": p.name,
                "position": j + 1,
                "old_position": i + 1,
                "moved": i != j,
                "fields": fields,
            }
        )
    for i, q in enumerate(old):
        if q.key not in new_keys:
            changes.append(
                {
                    "status": "retired",
                    "key": q.key,
                    "name": q.name,
                    "old_position": i + 1,
                    "fields": [
                        {"label": label, "left": [(getattr(q, f), True)], "right": [], "changed": True}
                        for f, label in PRINCIPLE_FIELDS[2:]
                    ],
                }
            )
    return changes


@project_view(ADMINS)
def constitution_diff(request, project):
    versions = reads.constitution_versions(project=project)
    a = reads.constitution_version(project=project, number=request.GET.get("a"))
    b = reads.constitution_version(project=project, number=request.GET.get("b"))
    changes = constitution_changes(reads.principles(version=a), reads.principles(version=b)) if a and b else []
    summary = {
        s: sum(1 for c in changes if c["status"] == s) for s in ("added", "changed", "moved", "retired", "unchanged")
    }
    ctx = {"project": project, "versions": versions, "a": a, "b": b, "changes": changes, "summary": summary}
    return render(request, "frontend/constitution_diff.html", ctx)

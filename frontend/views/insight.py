"""Progress dashboard (admins, reviewers, engineers) and dataset snapshots (admins, engineers)."""

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation.selectors import suggestion_influence
from annotation.services.suggestions import suggestion_rate
from common.errors import DomainError

from .. import reads
from ..access import ENGINEERS, OBSERVERS, project_view
from ..forms import SnapshotForm


@project_view(OBSERVERS)
def dashboard(request, project):
    data = reads.dashboard(project=project)
    quality = reads.quality(project=project)
    rate = suggestion_rate(project)
    suggestions = {"enabled": rate > 0, "percent": round(rate * 100), "rows": suggestion_influence(project=project)}
    ctx = {"project": project, "data": data, "quality": quality, "suggestions": suggestions}
    return render(request, "frontend/dashboard.html", ctx)


@project_view(OBSERVERS)
def annotators(request, project):
    rows = reads.annotator_stats(project=project)
    return render(request, "frontend/annotators.html", {"project": project, "annotators": rows})


@project_view(ENGINEERS)
def snapshots(request, project):
    form = SnapshotForm(initial={"file_format": "jsonl", "style": "conversational", "sources": ["human", "ai"], "aggregation": "majority"})
    ctx = {"project": project, "snapshots": reads.snapshots(project=project), "form": form}
    return render(request, "frontend/snapshots.html", ctx)


@require_POST
@project_view(ENGINEERS)
def snapshot_create(request, project):
    form = SnapshotForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a format, a file format, a style and at least one source.")
        return redirect("frontend:snapshots", project.slug)
    try:
        # Imported here so the site still loads while the export service is not installed.
        from annotation.services.exports import snapshot_create as create
    except ImportError:
        messages.error(request, "Dataset export is not available in this installation yet.")
        return redirect("frontend:snapshots", project.slug)
    try:
        snap = create(project=project, created_by=request.user, **form.cleaned_data)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Snapshot written: {snap.row_count} rows, sha256 {snap.sha256[:12]}…")
    return redirect("frontend:snapshots", project.slug)


def _snapshot_file(path: str) -> Path | None:
    """The snapshot's file if it lies inside the data directories, else None."""
    p = Path(path)
    if not p.is_absolute():
        p = Path(settings.SNAPSHOT_DIR) / p
    p = p.resolve()
    roots = [Path(settings.SNAPSHOT_DIR).resolve(), Path(settings.DATA_DIR).resolve()]
    if not any(p.is_relative_to(r) for r in roots) or not p.is_file():
        return None
    return p


@project_view(ENGINEERS)
def snapshot_download(request, project, snapshot_id):
    snap = reads.snapshot(project=project, snapshot_id=snapshot_id)
    if snap is None:
        raise Http404("No such snapshot")
    path = _snapshot_file(snap.path)
    if path is None:
        raise Http404("The snapshot file is missing")
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)

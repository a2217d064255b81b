"""Round pages: the list with the figures across rounds and a form to run rounds (admins and engineers), and one
round's page with its lineage, figures and stage times. Reviewers may look; annotators may not."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from common.errors import DomainError
from training.rounds import runner, selectors
from training.rounds.evaluation import human_win_rate

from ..access import ENGINEERS, OBSERVERS, project_view
from ..jobforms import RoundForm
from .launch import cancel_then, launch_id, page_context


@project_view(OBSERVERS)
def round_list(request, project):
    can_run = request.membership.role in ENGINEERS
    form, status = None, 200
    if request.method == "POST":
        if not can_run:
            raise PermissionDenied("Only admins and engineers run rounds.")
        form = RoundForm(request.POST)
        if form.is_valid():
            try:
                rnd = runner.round_create(project=project, created_by=request.user, client_id=launch_id(request),
                                            **form.service_kwargs())
            except DomainError as exc:
                messages.error(request, exc.message)
                for field, errors in exc.fields.items():
                    name = field if field in form.fields else None
                    for error in errors:
                        form.add_error(name, error)
                status = 409 if exc.status == 409 else 400
            else:
                messages.success(request, f"Round {rnd.number} queued.")
                return redirect("training:round", project.slug, rnd.number)
        else:
            status = 400
    elif can_run:
        last = selectors.rounds_for(project=project).first()
        form = RoundForm(initial={"label_mode": last.label_mode, "judge": last.judge.name if last.judge else "",
                                  "reward_model": (last.output_reward_model or last.reward_model).name
                                  if (last.output_reward_model or last.reward_model) else ""} if last else None)
    rounds = list(selectors.rounds_for(project=project)[:100])
    series = selectors.rounds_series(project=project)
    ctx = page_context(gen_project=project, rounds=rounds, series=series, form=form, can_run=can_run,
               active=any(r.is_active for r in rounds))
    return render(request, "frontend/training/rounds.html", ctx, status=status)


def _round_or_404(project, number):
    rnd = selectors.round_get(project=project, number=number)
    if rnd is None:
        raise Http404("No such round")
    return rnd


@project_view(OBSERVERS)
def round_detail(request, project, number):
    rnd = _round_or_404(project, number)
    e = rnd.evaluation or {}
    ctx = page_context(gen_project=project, rnd=rnd, can_run=request.membership.role in ENGINEERS,
                       lineage=selectors.round_lineage(rnd), e=e, syco=e.get("sycophancy") or {},
                       lengths=e.get("lengths") or {}, human_win=human_win_rate(rnd),
                       stages=[(k, v) for k, v in (rnd.stage_times or {}).items()])
    return render(request, "frontend/training/round.html", ctx)


@require_POST
@project_view(ENGINEERS)
def round_cancel(request, project, number):
    rnd = _round_or_404(project, number)
    done = f"Round {rnd.number} is being cancelled."
    back = redirect("training:round", project.slug, rnd.number)
    return cancel_then(request, lambda: runner.round_cancel(rnd=rnd), done, back)

"""Round pages: the list with the figures across rounds and a form to run rounds (admins and engineers), and one
round's page with its lineage, figures and stage times. Reviewers may look; annotators may not."""

from django.shortcuts import redirect, render

from training.rounds import runner, selectors
from training.rounds.evaluation import human_win_rate

from ..access import ENGINEERS, OBSERVERS, project_view
from ..jobforms import RoundForm
from .launch import cancel_view, found_or_404, launch_page, page_context


@project_view(OBSERVERS)
def round_list(request, project):
    def listing():
        rounds = list(selectors.rounds_for(project=project)[:100])
        return {"rounds": rounds, "series": selectors.rounds_series(project=project),
                "active": any(r.is_active for r in rounds)}

    return launch_page(request, project, "frontend/training/rounds.html", form_class=RoundForm,
                       create=runner.round_create, denied="Only admins and engineers run rounds.",
                       queued=lambda rnd: (f"Round {rnd.number} queued.",
                                           redirect("training:round", project.slug, rnd.number)),
                       listing=listing, initial=_choices_of_last_round(project))


def _choices_of_last_round(project) -> dict | None:
    """The new round form starts from the last round's label mode, judge and reward model."""
    last = selectors.rounds_for(project=project).first()
    if last is None:
        return None
    reward_model = last.output_reward_model or last.reward_model
    return {"label_mode": last.label_mode, "judge": last.judge.name if last.judge else "",
            "reward_model": reward_model.name if reward_model else ""}


def _round_or_404(project, number):
    return found_or_404(selectors.round_get(project=project, number=number), "round")


@project_view(OBSERVERS)
def round_detail(request, project, number):
    rnd = _round_or_404(project, number)
    e = rnd.evaluation or {}
    ctx = page_context(gen_project=project, rnd=rnd, can_launch=request.membership.role in ENGINEERS,
                       lineage=selectors.round_lineage(rnd), e=e, syco=e.get("sycophancy") or {},
                       lengths=e.get("lengths") or {}, human_win=human_win_rate(rnd),
                       stages=[(k, v) for k, v in (rnd.stage_times or {}).items()])
    return render(request, "frontend/training/round.html", ctx)


round_cancel = cancel_view(_round_or_404, lambda rnd: runner.round_cancel(rnd=rnd), "training:round",
                           "Round {job.number} is being cancelled.")

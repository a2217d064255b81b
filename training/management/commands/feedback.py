"""`manage.py feedback`: AI feedback under the project's constitution, through the same service as the UI and API.

    manage.py feedback --project demo --judge SmolLM2-135M-Instruct --limit 40 --inline
    manage.py feedback --project demo --revise SmolLM2-135M-Instruct --rounds 2 --limit 8 --pairs --wait
    manage.py feedback --project demo --agreement

`--judge` labels tasks with the model's AI rater (beside people unless --overlap); `--revise` runs critique →
revision chains and exports the final revisions. A job runs on a Celery worker (`--wait` follows it), or in this
process with `--inline` (no worker needed). `--agreement` prints the agreement report (also after a judge job).
"""

import json
import time

from django.core.management.base import BaseCommand, CommandError

from common.errors import DomainError
from training.feedback.agreement import agreement_report
from training.feedback.jobs import feedback_job_create, feedback_job_run_slice
from training.management import jobs
from training.models import FeedbackJob


class Command(BaseCommand):
    help = "Critique-revision chains or AI judge labels under the project's constitution, and agreement with people."

    def add_arguments(self, parser):
        jobs.add_launch_options(parser, items="tasks / prompts",
                           ids_help="comma-separated task ids (judge) or prompt ids (revise)",
                           sampling_help="revise: JSON overrides for critiques and revisions, "
                                         'e.g. {"temperature": 0.7, "seed": 1}')
        parser.add_argument("--judge", default="", help="registered model that labels tasks (AI judge)")
        parser.add_argument("--revise", default="", help="registered model that critiques and revises responses")
        parser.add_argument("--kinds", default="", help="judge: task kinds, comma-separated (default: all judgeable)")
        parser.add_argument("--with-human-labels", action="store_true", help="judge: only tasks people labelled")
        parser.add_argument("--overlap", action="store_true", help="judge: AI labels take queue slots")
        parser.add_argument("--cot", action="store_true", help="judge: chain of thought, clamped to [0.4, 0.6]")
        parser.add_argument("--network", action="store_true", help="judge: rankings on a sorting-network subset of pairs")
        parser.add_argument("--principles", default="", help="principle keys to sample from, comma-separated")
        parser.add_argument("--rounds", type=int, default=1, help="revise: critique-revision rounds")
        parser.add_argument("--pairs", action="store_true", help="revise: also export (revision over original) pairs")
        parser.add_argument("--batch", type=int, default=None, help="items per batch")
        parser.add_argument("--seed", type=int, default=None, help="principle sampling seed (default: the job id)")
        parser.add_argument("--inline", action="store_true", help="run the job in this process (no worker)")
        jobs.add_follow_options(parser, wait_help="follow a job on the workers to its end", timeout=7200,
                           timeout_help="with --wait: give up after this many seconds")
        parser.add_argument("--agreement", action="store_true", help="print the agreement report")
        parser.add_argument("--json", action="store_true", help="print the agreement report as JSON")

    def handle(self, *args, **o):
        project = jobs.project_named(o["project"])
        if not (o["judge"] or o["revise"] or o["agreement"]):
            raise CommandError("say what to do: --judge MODEL, --revise MODEL and/or --agreement")
        common = {
            "principles": [p.strip() for p in o["principles"].split(",") if p.strip()],
            "seed": o["seed"], "batch_items": o["batch"],
        }
        if o["revise"]:
            sampling = jobs.sampling_of(o)
            self._run(project, "critique_revision", o["revise"], o, scope=jobs.scope_of(o), rounds=o["rounds"],
                      export_pairs=o["pairs"], critique_sampling=sampling, revision_sampling=sampling, **common)
        if o["judge"]:
            scope = jobs.scope_of(o)
            if o["kinds"]:
                scope["kinds"] = [k.strip() for k in o["kinds"].split(",") if k.strip()]
            if o["with_human_labels"]:
                scope["with_human_labels"] = True
            self._run(project, "judge", o["judge"], o, scope=scope, cot=o["cot"], counts_toward_overlap=o["overlap"],
                      ranking_subset="network" if o["network"] else "all", **common)
        if o["agreement"] or (o["judge"] and (o["inline"] or o["wait"])):
            self._agreement(project, o["json"])

    def _run(self, project, kind, model_name, o, **kwargs):
        model = jobs.model_named(model_name, hint="manage.py register_packaged_models registers SmolLM2")
        try:
            job = feedback_job_create(project=project, kind=kind, model=model, **kwargs)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"feedback job {job.pk}: {job.get_kind_display()} with {model.name}, {job.total} items, "
                          f"constitution v{job.constitution.number}")
        if o["inline"]:
            t0 = time.monotonic()
            outcome = "continued"
            while outcome == "continued":
                ticket = FeedbackJob.objects.values_list("ticket", flat=True).get(pk=job.pk)
                outcome = feedback_job_run_slice(job_id=job.pk, ticket=ticket, worker="manage.py")
                self._line(job.pk, t0)
            if outcome not in ("succeeded", "continued"):
                job.refresh_from_db()
                self.stdout.write(f"  {outcome}: {job.error}")
        elif o["wait"]:
            jobs.follow(self.stdout, FeedbackJob, job.pk, o["timeout"],
                   progress=lambda job: f"{job.status}: {job.done}/{job.total}")
        job.refresh_from_db()
        if job.failures:
            self.stdout.write(f"  {len(job.failures)} item(s) failed after a retry; first: {job.failures[0]}")
        self.stdout.write(f"  result: {json.dumps(job.result)}")

    def _line(self, job_id, t0):
        job = FeedbackJob.objects.get(pk=job_id)
        self.stdout.write(f"  [{time.monotonic() - t0:5.0f} s] {job.status}: {job.done}/{job.total}")
        self.stdout.flush()

    def _agreement(self, project, as_json: bool) -> None:
        report = agreement_report(project=project)
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
            return

        def fmt(v, digits=2):
            return "—" if v is None else f"{v:.{digits}f}"

        self.stdout.write(f"agreement with people: {report['tasks_with_both']} pairwise tasks have a human majority "
                          f"and AI labels ({report['tasks_with_human_majority']} have a human majority)")
        header = f"  {'group':<34} {'AI':>4} {'both':>5} {'acc':>5} {'kappa':>6} {'brier':>6} {'flips':>6} {'P(1st)':>7}"
        self.stdout.write(header)
        rows = [("overall (current)", report["overall"])]
        for name in ("by_version", "by_judge", "by_version_principle"):
            rows += [(k, m) for k, m in report[name].items()]
        for key, m in rows:
            self.stdout.write(
                f"  {key[:34]:<34} {m['ai_labels']:>4} {m['with_human_majority']:>5} {fmt(m['accuracy']):>5} "
                f"{fmt(m['kappa']):>6} {fmt(m['brier'], 3):>6} {fmt(m['position_flip_rate']):>6} "
                f"{fmt(m['first_position_preference']):>7}"
            )

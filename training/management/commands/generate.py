"""`manage.py generate`: launch a generation job through the service, and optionally watch it to the end."""

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Max

from annotation.models import Task
from common.errors import DomainError
from training.management import jobs
from training.models import GenerationJob
from training.services import generation_job_create


class Command(BaseCommand):
    help = "Sample candidates for a project's prompts with a registered model and turn them into tasks."

    def add_arguments(self, parser):
        jobs.add_launch_options(parser, items="prompts", ids_help="comma-separated prompt ids",
                           sampling_help='JSON overrides, e.g. {"temperature": 0.7}')
        parser.add_argument("--model", required=True, help="registered model name")
        parser.add_argument("--n", type=int, default=2, help="samples per prompt")
        parser.add_argument("--kind", default="pairwise", help="pairwise, ranking, rating, steps or none")
        parser.add_argument("--group-size", type=int, default=None, help="responses per ranking task")
        parser.add_argument("--tags", default="", help="comma-separated tags (any)")
        parser.add_argument("--new-only", action="store_true", help="skip prompts this model already answered")
        parser.add_argument("--priority", type=int, default=0, help="priority of the tasks made")
        parser.add_argument("--priority-top", action="store_true", help="put the tasks made before every task there now")
        parser.add_argument("--batch-prompts", type=int, default=None, help="prompts generated together")
        jobs.add_follow_options(parser, wait_help="print progress until the job ends", timeout=3600,
                           timeout_help="with --wait: give up after this many seconds")
        parser.add_argument("--until-first-task", action="store_true", help="with --wait: stop once a task exists")

    def handle(self, *args, **o):
        project, model = jobs.project_named(o["project"]), jobs.model_named(o["model"])
        prompt_filter = jobs.scope_of(o)
        if o["tags"]:
            prompt_filter["tags"] = [t.strip() for t in o["tags"].split(",") if t.strip()]
        if o["new_only"]:
            prompt_filter["without_model_responses"] = True
        if o["priority_top"]:
            top = Task.objects.filter(project=project).aggregate(top=Max("priority"))["top"]
            o["priority"] = max(o["priority"], (top or 0) + 1)
        try:
            job = generation_job_create(
                project=project, model=model, prompt_filter=prompt_filter, n=o["n"], sampling=jobs.sampling_of(o),
                task_kind=o["kind"], group_size=o["group_size"], task_priority=o["priority"],
                batch_prompts=o["batch_prompts"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"generation job {job.pk}: {len(job.prompt_ids)} prompts × {job.n} with {model.name}, "
                          f"queued on '{job.queue}'")
        if o["wait"]:
            jobs.follow(self.stdout, GenerationJob, job.pk, o["timeout"], progress=_progress,
                   enough=lambda job: o["until_first_task"] and job.tasks_created)


def _progress(job: GenerationJob) -> str:
    line = f"{job.status}: {job.done}/{job.total} responses, {job.tasks_created} tasks"
    if job.completion_tokens and job.generation_seconds:
        line += f", {job.completion_tokens / job.generation_seconds:.1f} tokens/s"
    return line

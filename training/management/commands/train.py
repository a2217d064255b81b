"""`manage.py train`: launch a training run through the service, and optionally follow it to the end."""

import json
import time

from django.core.management.base import BaseCommand, CommandError

from annotation.selectors import snapshot_by_ref
from common.errors import DomainError
from training.management import jobs
from training.models import ACTIVE_STATUSES, TrainingMetric, TrainingRun
from training.services.runs import training_run_create


def _value(text: str):
    """`--set` values are JSON where they parse (numbers, true, null, objects), strings otherwise."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class Command(BaseCommand):
    help = "Train a model on a dataset snapshot (sft, reward, dpo, kto, orpo, ppo, prm) on the gpu queue."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--method", required=True, help="sft, reward, dpo, kto, orpo, ppo or prm")
        parser.add_argument("--snapshot", required=True,
                            help="snapshot id (fewer than 8 digits, or id:N) or 8+ hex digits of its sha256")
        parser.add_argument("--model", required=True, help="registered base model name")
        parser.add_argument("--reward-model", default=None, help="registered reward model name (ppo)")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="a hyperparameter, e.g. --set beta=0.1 --set lora='{\"r\": 8}' (repeatable)")
        jobs.add_follow_options(parser, wait_help="print metrics until the run ends", timeout=24 * 3600,
                           timeout_help="with --wait: give up after this long")

    def handle(self, *args, **o):
        project, model = jobs.project_named(o["project"]), jobs.model_named(o["model"])
        reward = jobs.model_named(o["reward_model"]) if o["reward_model"] else None
        try:
            snapshot = snapshot_by_ref(project=project, ref=o["snapshot"])
        except DomainError as exc:
            raise CommandError(f"snapshot {o['snapshot']!r} in {project.slug}: {exc.message}") from exc
        hyper = {}
        for item in o["set"]:
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise CommandError(f"--set takes KEY=VALUE, not {item!r}")
            hyper[name.strip()] = _value(value)
        try:
            run = training_run_create(project=project, method=o["method"], base_model=model, snapshot=snapshot,
                                      hyperparameters=hyper, reward_model=reward)
        except DomainError as exc:
            detail = jobs.field_errors(exc)
            raise CommandError(exc.message if not detail else f"invalid {o['method']} run:{detail}") from exc
        self.stdout.write(f"training run {run.pk}: {run.method} of {model.name} on snapshot {run.snapshot_sha256[:12]}, "
                          f"queued on '{run.queue}'; output {run.output_dir}")
        if o["wait"]:
            self._watch(run.pk, o["timeout"])

    def _watch(self, run_id: int, timeout: float) -> None:
        t0, last_step = time.monotonic(), -1
        while True:
            run = TrainingRun.objects.get(pk=run_id)
            rows = TrainingMetric.objects.filter(run_id=run_id, step__gt=last_step).order_by("step", "name")
            by_step: dict[int, list[str]] = {}
            for step, name, value in rows.values_list("step", "name", "value"):
                by_step.setdefault(step, []).append(f"{name}={value:.4g}" if value is not None else f"{name}=nan")
            for step, items in by_step.items():
                self.stdout.write(f"  step {step}: {' '.join(items)}")
                last_step = max(last_step, step)
            if run.status not in ACTIVE_STATUSES:
                self.stdout.write(f"training run {run.pk} {run.status}"
                                  + (f": {run.error}" if run.error else "")
                                  + (f"; model {run.output_model.name}" if run.output_model else ""))
                if run.status != "succeeded":
                    raise CommandError(f"training run {run.pk} {run.status}")
                return
            if time.monotonic() - t0 > timeout:
                raise CommandError(f"gave up waiting after {timeout:.0f} s; the run goes on")
            time.sleep(2)

"""`manage.py loop --project SLUG --rounds N [--labels ai|human|both]`: run rounds of generate → label → train →
evaluate, each round's model generating the next, and follow them. `--demo` runs one short round on CPU with the
packaged SmolLM2 as policy and judge (DPO with LoRA), starting its own worker when none is given."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from common.errors import DomainError
from training import packaged
from training.management import jobs
from training.models import GenerationJob, Model, TrainingRun
from training.rounds.models import LabelMode, Round, RoundStatus
from training.rounds.runner import round_create

DEMO_CONFIG = {
    "prompts_per_round": 8,
    "n": 2,
    "sampling": {"max_new_tokens": 64, "temperature": 0.9, "top_p": 0.95},
    "eval_prompts": 6,
    "eval_sampling": {"max_new_tokens": 64, "temperature": 0.0},
    # LoRA takes a larger step than full fine-tuning; a few steps are enough to move the model visibly.
    "hyperparameters": {"max_steps": 6, "batch_size": 2, "learning_rate": 5e-4, "max_length": 256, "beta": 0.1,
                        "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "save_steps": 1000, "num_threads": 2},
    "probe_limit": None,
    "judge_batch": 4,
}


class Command(BaseCommand):
    help = "Run rounds of the loop (generate, label, train, evaluate) and print their progress and figures."

    def add_arguments(self, parser):
        parser.add_argument("--project", help="project slug (demo with --demo)")
        parser.add_argument("--rounds", type=int, default=1, help="rounds to run, each from the one before")
        parser.add_argument("--labels", default=LabelMode.AI, choices=LabelMode.values, help="who labels the pairs")
        parser.add_argument("--human-quota", type=int, default=None,
                            help="human labels to wait for per round (default: one per task)")
        parser.add_argument("--policy", help="policy model of the first round (default: the last round's output)")
        parser.add_argument("--judge", help="AI judge model (needed for --labels ai/both and for win rates)")
        parser.add_argument("--reward-model", help="reward model or ensemble for active selection and checks")
        parser.add_argument("--config", default="{}", help="round settings as JSON, e.g. '{\"prompts_per_round\": 16}'")
        parser.add_argument("--user", help="username recorded as the rounds' creator")
        jobs.add_follow_options(parser, wait_help="follow the rounds until they end", timeout=24 * 3600,
                           timeout_help="with --wait: give up after this long")
        parser.add_argument("--demo", action="store_true",
                            help="one short CPU round on the demo project with SmolLM2 (implies --wait)")
        parser.add_argument("--start-worker", action="store_true",
                            help="start a Celery worker for the default and gpu queues for the duration")
        parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")

    def handle(self, *args, **o):
        self.t0 = time.monotonic()
        if o["demo"]:
            o["project"] = o["project"] or "demo"
            o["wait"] = True
            o["start_worker"] = o["start_worker"] or not os.environ.get("QUORUM_LOOP_NO_WORKER")
            if not Model.objects.filter(name=packaged.SMOLLM2_NAME).exists():
                self.say("registering the packaged models (converting SmolLM2 once)")
                call_command("register_packaged_models", stdout=self.stdout)
            o["policy"] = o["policy"] or (None if Round.objects.filter(project__slug=o["project"]).exists()
                                          else packaged.SMOLLM2_NAME)
            o["judge"] = o["judge"] or packaged.SMOLLM2_NAME
        if not o["project"]:
            raise CommandError("--project is required")
        project = jobs.project_named(o["project"])
        try:
            overrides = json.loads(o["config"])
        except ValueError as exc:
            raise CommandError(f"--config is not JSON: {exc}") from exc
        if o["demo"]:
            overrides = {**DEMO_CONFIG, **overrides}
        models = {key: jobs.model_named(o[key], hint="see manage.py register_packaged_models")
                  for key in ("policy", "judge", "reward_model") if o[key]}
        user = None
        if o["user"]:
            user = get_user_model().objects.filter(username=o["user"]).first()
            if user is None:
                raise CommandError(f"no user {o['user']!r}")
        worker = self._start_worker() if o["start_worker"] else None
        try:
            try:
                first = round_create(project=project, label_mode=o["labels"], human_quota=o["human_quota"],
                                     rounds=o["rounds"], config=overrides, created_by=user, **models)
            except DomainError as exc:
                raise CommandError(exc.message + jobs.field_errors(exc)) from exc
            self.say(f"round {first.number} of {project.slug} queued: policy {first.policy.name}, "
                     f"labels {first.label_mode}, {len(first.prompt_ids)} prompts × {first.config['n']} samples"
                     + (f", then {first.rounds_after} more" if first.rounds_after else ""))
            if o["wait"]:
                rounds = self._follow(first, o["rounds"], o["timeout"])
                self._report(project, rounds, as_json=o["json"])
                if any(r.status != RoundStatus.SUCCEEDED for r in rounds):
                    raise CommandError("a round did not succeed")
        finally:
            if worker is not None:
                self._stop_worker(worker)

    # --- output --------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self.stdout.write(f"[loop {time.monotonic() - self.t0:6.1f}s] {message}")
        self.stdout.flush()

    def _detail(self, rnd: Round) -> str:
        if rnd.waiting_for:
            return rnd.waiting_for
        if rnd.stage == "generate" and rnd.generation_job_id:
            job = GenerationJob.objects.get(pk=rnd.generation_job_id)
            return f"generation job {job.pk}: {job.done}/{job.total} responses"
        if rnd.stage == "train" and rnd.training_run_id:
            run = TrainingRun.objects.get(pk=rnd.training_run_id)
            return f"training run {run.pk} ({run.method}): {run.status}, step {run.step}"
        return ""

    def _follow(self, first: Round, count: int, timeout: float) -> list[Round]:
        seen, last, rounds, current = None, 0.0, [], first
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current.refresh_from_db()
            state = (current.number, current.status, current.stage, self._detail(current))
            if state != seen and (state[:3] != (seen or ())[:3] or time.monotonic() - last > 10):
                self.say(f"round {current.number}: {current.stage} · {current.status}"
                         + (f" · {state[3]}" if state[3] else ""))
                seen, last = state, time.monotonic()
            if not current.is_active:
                rounds.append(current)
                if current.status == RoundStatus.SUCCEEDED:
                    self.say(f"round {current.number} done: {current.output_model.name} trained on snapshot "
                             f"{current.snapshot_sha256[:12]}")
                else:
                    self.say(f"round {current.number} {current.status}: {current.error}")
                    return rounds
                if len(rounds) >= count:
                    return rounds
                following = Round.objects.filter(previous=current).first()
                if following is None:
                    time.sleep(0.5)
                    following = Round.objects.filter(previous=current).first()
                    if following is None:
                        return rounds
                current = following
                continue
            time.sleep(1.0)
        raise CommandError("timed out waiting for the rounds")

    def _report(self, project: Project, rounds: list[Round], *, as_json: bool) -> None:
        figures = []
        for rnd in rounds:
            e = rnd.evaluation or {}
            figures.append({"round": rnd.number, "status": rnd.status, "policy": rnd.policy.name,
                            "output_model": rnd.output_model.name if rnd.output_model_id else None,
                            "snapshot_sha256": rnd.snapshot_sha256,
                            "stage_seconds": {k: v.get("seconds") for k, v in (rnd.stage_times or {}).items()},
                            **{k: e.get(k) for k in ("win_rate", "reward_accuracy", "reward_accuracy_new",
                                                     "sycophancy", "lengths", "leaderboard", "seconds_by_part")}})
            win = e.get("win_rate") or {}
            syco = e.get("sycophancy") or {}
            lengths = e.get("lengths") or {}

            def pct(block):
                return "n/a" if not block or block.get("estimate") is None else (
                    f"{block['estimate']:.2f} [{block['low']:.2f}, {block['high']:.2f}]")

            self.say(f"round {rnd.number} figures:")
            self.stdout.write(f"  win rate of {win.get('new', '?')} vs {win.get('previous', '?')}: {pct(win)} "
                              f"(n={win.get('n', 0)}, judge {win.get('judge', 'none')}, both orders)")
            self.stdout.write(f"  reward-model accuracy on this round's human labels: {pct(e.get('reward_accuracy'))}")
            self.stdout.write(f"  policy agrees with a false claim: before {pct(syco.get('policy_before'))}, "
                              f"after {pct(syco.get('policy_after'))} ({syco.get('probes', 0)} probes; mean "
                              f"log-prob lead of agreeing {(syco.get('policy_before') or {}).get('mean_margin')} → "
                              f"{(syco.get('policy_after') or {}).get('mean_margin')})")
            self.stdout.write(f"  reward model prefers the agreeable answer: {pct(syco.get('reward_model'))}"
                              + (f"; the one trained this round: {pct(syco.get('reward_model_new'))}"
                                 if syco.get("reward_model_new") else ""))
            self.stdout.write("  mean length (tokens): candidates "
                              f"{(lengths.get('policy_candidates') or {}).get('mean_tokens')}, held-out new "
                              f"{(lengths.get('heldout_new') or {}).get('mean_tokens')}, held-out previous "
                              f"{(lengths.get('heldout_previous') or {}).get('mean_tokens')}")
            times = ", ".join(f"{k} {v.get('seconds', 0):.0f}s" for k, v in (rnd.stage_times or {}).items())
            self.stdout.write(f"  wall time per stage: {times}")
            parts = ", ".join(f"{k} {v:.0f}s" for k, v in (e.get("seconds_by_part") or {}).items())
            if parts:
                self.stdout.write(f"  evaluation by part: {parts}")
            self.stdout.write(f"  round page: /training/p/{project.slug}/rounds/{rnd.number}/")
        if as_json:
            self.stdout.write(json.dumps(figures, indent=2))

    # --- a worker for the duration -------------------------------------------------------
    def _start_worker(self) -> subprocess.Popen:
        logs = Path(settings.DATA_DIR) / "log"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / "loop-worker.log"
        env = {**os.environ, "QUORUM_WORKER_PRELOAD": "1", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
        self.say(f"starting a Celery worker for queues default and gpu (log: {log_path})")
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "quorum", "worker", "-Q", "default,gpu", "-c", "1",
             "-n", f"loop-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=settings.BASE_DIR, env=env, stdout=open(log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def _stop_worker(self, worker: subprocess.Popen) -> None:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
        self.say("worker stopped")

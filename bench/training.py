"""Trainer overhead benchmark: seconds per optimizer step of Quorum's trainers against plain TRL with the same
hyperparameters, model and data, in one process; and PPO steps per second.

A Llama-architecture model of hidden size 256 and 4 layers (random weights, built offline) trains on CPU with one
torch thread, batch 4, on conversational snapshots. Each method runs `--reps` times per side, sides interleaved so
a change in machine load hits both; the figure is the median interval between consecutive step starts (logging,
metrics and checkpoint checks included), after `--warmup` steps. Target: Quorum's overhead ≤ 5 %.

The time spent inside Quorum's own per-step callbacks is measured directly as well, since on a shared machine the
medians move by more than the overhead being measured.

Run: `.venv/bin/python bench/training.py [--steps 20] [--reps 3] [--methods sft,reward,dpo,kto] [--ppo-steps 10]`.
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Run as a script, this file's folder is sys.path[0], where bench/queue.py would shadow the standard library's
# `queue` module (which torch and datasets import); the repository root takes its place.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from tests.support.snapshots import (  # noqa: E402
    preference_rows,
    sft_rows,
    target_token_reward,
    unpaired_rows,
    write_jsonl,
)
from tests.support.tiny import save_tiny_model  # noqa: E402
from training.trainers import cli, runtime  # noqa: E402

HIDDEN, LAYERS, BATCH, MAX_LENGTH, LR = 256, 4, 4, 256, 1e-5
TARGET_OVERHEAD = 0.05
KTO_WEIGHTS = (1.0, 2.0)  # the balanced weights for the benchmark's 2:1 thumbs (Quorum's default would pick these)


class StepTimer(TrainerCallback):
    """Wall-clock and CPU time at the start of every optimizer step; intervals between them are whole steps,
    callbacks included. CPU time (this process's) is what the work costs; wall time adds whatever the machine's
    other jobs take from it."""

    def __init__(self):
        self.starts: list[tuple[float, float]] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.starts.append((time.perf_counter(), time.process_time()))

    def intervals(self, warmup: int, clock: int) -> list[float]:
        return [b[clock] - a[clock] for a, b in zip(self.starts, self.starts[1:])][warmup:]


@contextlib.contextmanager
def quiet():
    """Silence stdout (TRL's printer callback, progress bars) while a side runs."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def hf_args(args_cls, out: Path, steps: int, **extra):
    """What a TRL user writes for this benchmark: the same values Quorum's run config maps to."""
    return args_cls(
        output_dir=str(out),
        use_cpu=True,
        bf16=False,
        fp16=False,
        activation_checkpointing=False,
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        learning_rate=LR,
        logging_steps=1,
        save_strategy="steps",
        save_steps=10_000,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        max_length=MAX_LENGTH,
        **extra,
    )


def plain_trl(method: str, model_dir: Path, data: Path, out: Path, steps: int) -> StepTimer:
    import datasets
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import (
        DPOConfig,
        DPOTrainer,
        KTOConfig,
        KTOTrainer,
        RewardConfig,
        RewardTrainer,
        SFTConfig,
        SFTTrainer,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = datasets.load_dataset("json", data_files=str(data), split="train", cache_dir=str(out / "cache"))
    timer = StepTimer()
    if method == "sft":
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=hf_args(SFTConfig, out, steps, assistant_only_loss=True),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    elif method == "reward":
        trainer = RewardTrainer(
            model=AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1),
            args=hf_args(RewardConfig, out, steps),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    elif method == "dpo":
        trainer = DPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            ref_model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=hf_args(DPOConfig, out, steps),
            train_dataset=dataset.remove_columns("margin"),
            processing_class=tokenizer,
        )
    else:
        trainer = KTOTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            ref_model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=hf_args(KTOConfig, out, steps, desirable_weight=KTO_WEIGHTS[0], undesirable_weight=KTO_WEIGHTS[1]),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    trainer.add_callback(timer)
    trainer.train()
    return timer


class CallbackClock:
    """Time spent inside Quorum's own per-step callbacks (metrics lines, the cancellation check)."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0
        self._originals = {}

    def __enter__(self):
        for cls, name in ((runtime._MetricsCallback, "on_log"), (runtime._CancelCallback, "on_step_end")):
            original = getattr(cls, name)
            self._originals[(cls, name)] = original

            def timed(*args, _original=original, **kwargs):
                start = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - start
                    self.calls += 1

            setattr(cls, name, timed)
        return self

    def __exit__(self, *exc):
        for (cls, name), original in self._originals.items():
            setattr(cls, name, original)


def quorum(method: str, model_dir: Path, data: Path, out: Path, steps: int, clock: CallbackClock) -> StepTimer:
    import importlib

    module = importlib.import_module(f"training.trainers.{method}")
    timer = StepTimer()
    original_fit = runtime.Run.fit

    def fit(self, trainer, stage=""):
        trainer.add_callback(timer)
        return original_fit(self, trainer, stage)

    config = {
        "model": str(model_dir),
        "data": str(data),
        "output_dir": str(out),
        "max_steps": steps,
        "batch_size": BATCH,
        "learning_rate": LR,
        "max_length": MAX_LENGTH,
        "save_steps": 10_000,
        "num_threads": 1,
        "resume": "never",
        "eval_fraction": 0.0,
    }
    if method == "kto":
        config.update(desirable_weight=KTO_WEIGHTS[0], undesirable_weight=KTO_WEIGHTS[1])
    runtime.Run.fit = fit
    try:
        with clock:
            module.train(config)
    finally:
        runtime.Run.fit = original_fit
    return timer


def bench_method(method: str, model_dir: Path, data: Path, work: Path, steps: int, reps: int, warmup: int) -> dict:
    sides = {"trl": [], "quorum": []}
    cpu = {"trl": [], "quorum": []}
    clock = CallbackClock()
    quorum_steps = 0
    for rep in range(reps):
        order = ("trl", "quorum") if rep % 2 == 0 else ("quorum", "trl")
        for side in order:
            out = work / f"{method}-{side}-{rep}"
            with quiet():
                if side == "trl":
                    timer = plain_trl(method, model_dir, data, out, steps)
                else:
                    timer = quorum(method, model_dir, data, out, steps, clock)
                    quorum_steps += steps
            sides[side].extend(timer.intervals(warmup, 0))
            cpu[side].extend(timer.intervals(warmup, 1))
            shutil.rmtree(out, ignore_errors=True)
    trl_s = statistics.median(sides["trl"])
    quorum_s = statistics.median(sides["quorum"])
    trl_cpu, quorum_cpu = statistics.median(cpu["trl"]), statistics.median(cpu["quorum"])
    return {
        "method": method,
        "trl_s": trl_s,
        "quorum_s": quorum_s,
        "overhead": quorum_s / trl_s - 1,
        "trl_cpu_s": trl_cpu,
        "quorum_cpu_s": quorum_cpu,
        "cpu_overhead": quorum_cpu / trl_cpu - 1,
        "callbacks_ms": 1000 * clock.seconds / quorum_steps,
        "n": len(sides["trl"]),
    }


def bench_ppo(model_dir: Path, data: Path, work: Path, steps: int) -> dict:
    from training.trainers import ppo

    out = work / "ppo"
    config = {
        "model": str(model_dir),
        "data": str(data),
        "output_dir": str(out),
        "max_steps": steps,
        "batch_size": 8,
        "mini_batch_size": 4,
        "ppo_epochs": 2,
        "max_new_tokens": 32,
        "learning_rate": LR,
        "num_threads": 1,
        "save_steps": 10_000,
        "metrics_stdout": False,
        "resume": "never",
    }
    with quiet():
        ppo.train(config, reward_fn=target_token_reward)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step_s = [x["value"] for x in lines if x["name"] == "time/step_s"][1:]
    rollout_s = [x["value"] for x in lines if x["name"] == "time/rollout_s"][1:]
    length = [x["value"] for x in lines if x["name"] == "response_length"]
    return {
        "steps": steps,
        "step_s": statistics.median(step_s),
        "steps_per_s": 1 / statistics.median(step_s),
        "rollout_share": statistics.median(r / s for r, s in zip(rollout_s, step_s)),
        "response_length": statistics.mean(length),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="step intervals ignored at the start of each run")
    parser.add_argument("--reps", type=int, default=3, help="runs per side and method (interleaved)")
    parser.add_argument("--methods", default="sft,reward,dpo,kto")
    parser.add_argument("--ppo-steps", type=int, default=10, help="PPO steps (0 to skip)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    cli.quiet_progress_bars()
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="quorum-bench-training-") as tmp:
        work = Path(tmp)
        model_dir = save_tiny_model(work / "model", kind="causal", hidden=HIDDEN, layers=LAYERS)
        params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(model_dir).parameters())
        files = {
            "sft": write_jsonl(work / "sft.jsonl", sft_rows() * 8),
            "reward": write_jsonl(work / "preference.jsonl", preference_rows(conversational=True, repeat=8)),
            "kto": write_jsonl(work / "unpaired.jsonl", unpaired_rows(conversational=True) * 6),
        }
        files["dpo"] = files["reward"]
        print(
            f"model: Llama hidden {HIDDEN}, {LAYERS} layers, {params / 1e6:.1f}M parameters; CPU, 1 torch thread, "
            f"batch {BATCH}; {args.steps} steps × {args.reps} runs per side, first {args.warmup} intervals dropped"
        )
        print(f"load average before: {load_before[0]:.1f} on {os.cpu_count()} cores (other jobs share this machine)")
        print("seconds per step, median; CPU = this process's CPU time, wall = elapsed")
        print(
            f"{'method':8} {'TRL CPU':>8} {'Quorum CPU':>11} {'overhead':>9} | {'TRL wall':>9} {'Quorum wall':>12} "
            f"{'overhead':>9} | {'callbacks':>9} {'share':>6}  target ≤ {TARGET_OVERHEAD:.0%} (CPU)"
        )
        for method in args.methods.split(","):
            row = bench_method(method, model_dir, files[method], work, args.steps, args.reps, args.warmup)
            verdict = "ok" if row["cpu_overhead"] <= TARGET_OVERHEAD else "over"
            share = row["callbacks_ms"] / 1000 / row["quorum_cpu_s"]
            print(
                f"{method:8} {row['trl_cpu_s']:8.3f} {row['quorum_cpu_s']:11.3f} {row['cpu_overhead']:+9.1%} | "
                f"{row['trl_s']:9.3f} {row['quorum_s']:12.3f} {row['overhead']:+9.1%} | "
                f"{row['callbacks_ms']:6.2f} ms {share:6.2%}  {verdict} ({row['n']} step intervals per side)",
                flush=True,
            )
        print(
            "callbacks: time inside Quorum's own per-step code (metrics lines, the cancellation check), measured "
            "directly; the wall-clock columns move with the other jobs on this machine"
        )
        if args.ppo_steps:
            ppo_row = bench_ppo(model_dir, files["reward"], work, args.ppo_steps)
            print(
                f"ppo: {ppo_row['steps_per_s']:.2f} steps/s ({ppo_row['step_s']:.2f} s/step: 8 prompts, up to 32 new "
                f"tokens, 2 PPO epochs of 2 minibatches); rollout {ppo_row['rollout_share']:.0%} of a step; "
                f"mean response {ppo_row['response_length']:.1f} tokens"
            )
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.1f}")


if __name__ == "__main__":
    main()

"""Two-step TRL 1.16 runs on a JSONL file, to prove that a file in a Quorum export format trains as it is.

Each runner loads `path` with `datasets.load_dataset("json", ...)`, builds a tiny random model from
`tests.support.tiny`, runs the stock TRL trainer for exactly two optimizer steps on CPU (batch size 2, short sequences,
no peft, no logging integrations) and returns a `TwoStepRun`. Any refusal of the data raises: TRL's own errors
propagate, and rows that TRL would silently drop raise `DataRejected` (RewardTrainer drops rows longer than
`MAX_LENGTH` tokens, DPO/KTO drop rows whose prompt alone fills it; SFT and DPO truncate the rest).

Stable signatures (callers elsewhere rely on them):

    dpo_two_steps(path, workdir) -> TwoStepRun      # preference file
    reward_two_steps(path, workdir) -> TwoStepRun   # preference file; `margin` is used when present
    kto_two_steps(path, workdir) -> TwoStepRun      # unpaired file
    sft_two_steps(path, workdir) -> TwoStepRun      # sft file (messages)
    load_stepwise(path) -> datasets.Dataset         # stepwise file (TRL 1.16 has no PRM trainer)

`workdir` is a scratch directory (e.g. pytest's `tmp_path`): trainer output and the `datasets` cache go there.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

# These runs must never reach a model hub; set before transformers/datasets read it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import torch  # noqa: E402
from trl import (  # noqa: E402
    DPOConfig,
    DPOTrainer,
    KTOConfig,
    KTOTrainer,
    RewardConfig,
    RewardTrainer,
    SFTConfig,
    SFTTrainer,
)

from tests.support.tiny import tiny_causal_lm, tiny_sequence_classifier, tiny_tokenizer  # noqa: E402

__all__ = [
    "DataRejected",
    "TwoStepRun",
    "dpo_two_steps",
    "kto_two_steps",
    "load_stepwise",
    "reward_two_steps",
    "sft_two_steps",
]

STEPS = 2
BATCH_SIZE = 2
MAX_LENGTH = 256  # tokens of the tiny byte-level tokenizer (~3 characters each)


class DataRejected(ValueError):
    """The file cannot be trained on as it is."""


class TwoStepRun(NamedTuple):
    global_step: int  # trainer.state.global_step after training (2 when the run went through)
    losses: list[float]  # the training loss logged at each step, in order
    batch_keys: frozenset[str]  # keys of the collated batches the trainer's loss saw (e.g. "margin")
    rows: int  # rows the trainer kept after its own preprocessing


def _cpu_args(workdir: Path, name: str) -> dict[str, Any]:
    """TrainingArguments shared by every run: CPU, fp32, two steps, a log line per step, nothing saved."""
    return dict(
        output_dir=str(workdir / name),
        use_cpu=True,
        bf16=False,  # TRL's configs default bf16 to True when fp16 is off
        fp16=False,
        # TRL defaults `gradient_checkpointing` on, which transformers 5.23 maps (with a FutureWarning) onto
        # `activation_checkpointing`; pointless for a tiny model, and slower.
        activation_checkpointing=False,
        max_steps=STEPS,
        per_device_train_batch_size=BATCH_SIZE,
        gradient_accumulation_steps=1,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=0,
        max_length=MAX_LENGTH,
    )


def _load(path: str | Path, workdir: Path) -> datasets.Dataset:
    dataset = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(workdir / "hf-datasets"))
    if len(dataset) == 0:
        raise DataRejected(f"{path}: no rows")
    return dataset


def _require(dataset: datasets.Dataset, columns: set[str], path: str | Path) -> None:
    missing = columns - set(dataset.column_names)
    if missing:
        raise DataRejected(f"{path}: missing column(s) {sorted(missing)}; has {dataset.column_names}")


def _single_threaded(runner):
    """Run `runner` with one intra-op torch thread, restoring the caller's setting afterwards.

    A tiny model's matrices are far too small to share between threads, and on a busy machine OpenMP's thread
    hand-offs cost more than the work: with two threads on two loaded cores a 32-wide linear layer took ~12 ms a call
    here, against ~0.02 ms with one.
    """

    @functools.wraps(runner)
    def wrapper(*args, **kwargs):
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return runner(*args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return wrapper


def _recording(trainer_cls):
    """`trainer_cls` with a `compute_loss` that remembers which batch keys reached it."""

    class Recording(trainer_cls):
        seen_batch_keys: set[str]

        def compute_loss(self, model, inputs, *args, **kwargs):
            self.seen_batch_keys = getattr(self, "seen_batch_keys", set()) | set(inputs)
            return super().compute_loss(model, inputs, *args, **kwargs)

    Recording.__name__ = Recording.__qualname__ = f"Recording{trainer_cls.__name__}"
    return Recording


def _train(trainer, dataset: datasets.Dataset, path: str | Path) -> TwoStepRun:
    kept = len(trainer.train_dataset)
    if kept < len(dataset):
        raise DataRejected(
            f"{path}: {trainer.__class__.__name__} dropped {len(dataset) - kept} of {len(dataset)} rows "
            f"in preprocessing (longer than max_length={MAX_LENGTH} tokens, or empty)"
        )
    trainer.train()
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    run = TwoStepRun(
        global_step=trainer.state.global_step,
        losses=losses,
        batch_keys=frozenset(getattr(trainer, "seen_batch_keys", ())),
        rows=kept,
    )
    if run.global_step != STEPS or len(losses) != STEPS:
        raise DataRejected(f"{path}: expected {STEPS} steps with a loss each, got {run.global_step} and {losses}")
    return run


@_single_threaded
def dpo_two_steps(path: str | Path, workdir: str | Path) -> TwoStepRun:
    """DPO (sigmoid loss) on a preference file: `prompt`, `chosen`, `rejected`, standard or conversational.

    Extra columns such as `margin` are accepted and ignored by DPO. The reference model is an explicit frozen copy
    (same seed), as TRL needs one when training without peft.
    """
    workdir = Path(workdir)
    dataset = _load(path, workdir)
    _require(dataset, {"prompt", "chosen", "rejected"}, path)
    tokenizer = tiny_tokenizer()
    trainer = _recording(DPOTrainer)(
        model=tiny_causal_lm(tokenizer),
        ref_model=tiny_causal_lm(tokenizer),
        args=DPOConfig(**_cpu_args(workdir, "dpo")),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return _train(trainer, dataset, path)


@_single_threaded
def reward_two_steps(path: str | Path, workdir: str | Path) -> TwoStepRun:
    """Bradley–Terry reward model on a preference file, with a one-logit sequence classifier.

    When the file has a `margin` column, TRL's `RewardTrainer` keeps it and the loss becomes
    -log σ(r_chosen − r_rejected − margin); `TwoStepRun.batch_keys` then contains "margin". Every row must have a
    numeric margin in that case (a null makes TRL's collator fail).
    """
    workdir = Path(workdir)
    dataset = _load(path, workdir)
    _require(dataset, {"chosen", "rejected"}, path)
    if "margin" in dataset.column_names and any(margin is None for margin in dataset["margin"]):
        # TRL's collator would fail mid-run with "TypeError: must be real number, not NoneType".
        raise DataRejected(f"{path}: `margin` is null on some rows; give every row a margin or none")
    tokenizer = tiny_tokenizer()
    trainer = _recording(RewardTrainer)(
        model=tiny_sequence_classifier(tokenizer, num_labels=1),
        args=RewardConfig(**_cpu_args(workdir, "reward")),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return _train(trainer, dataset, path)


@_single_threaded
def kto_two_steps(path: str | Path, workdir: str | Path) -> TwoStepRun:
    """KTO on an unpaired file: `prompt`, `completion`, boolean `label`, standard or conversational.

    Batch size 2 is the least KTO accepts (its KL estimate pairs each completion with a neighbour's prompt); the
    reference model is an explicit frozen copy.
    """
    workdir = Path(workdir)
    dataset = _load(path, workdir)
    _require(dataset, {"prompt", "completion", "label"}, path)
    if not all(isinstance(label, bool) for label in dataset["label"]):
        raise DataRejected(f"{path}: `label` must be true or false on every row")
    tokenizer = tiny_tokenizer()
    trainer = _recording(KTOTrainer)(
        model=tiny_causal_lm(tokenizer),
        ref_model=tiny_causal_lm(tokenizer),
        args=KTOConfig(**_cpu_args(workdir, "kto")),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return _train(trainer, dataset, path)


@_single_threaded
def sft_two_steps(path: str | Path, workdir: str | Path, *, assistant_only_loss: bool = True) -> TwoStepRun:
    """Supervised fine-tuning on an SFT file: `messages`, a list of `{role, content}` ending in assistant turns.

    With `assistant_only_loss` (the default) only assistant tokens are trained, through the tiny tokenizer's
    `{% generation %}` markers; TRL then refuses a row without any assistant turn.
    """
    workdir = Path(workdir)
    dataset = _load(path, workdir)
    _require(dataset, {"messages"}, path)
    tokenizer = tiny_tokenizer()
    trainer = _recording(SFTTrainer)(
        model=tiny_causal_lm(tokenizer),
        args=SFTConfig(**_cpu_args(workdir, "sft"), assistant_only_loss=assistant_only_loss, packing=False),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return _train(trainer, dataset, path)


def load_stepwise(path: str | Path, *, cache_dir: str | Path | None = None) -> datasets.Dataset:
    """Load a stepwise-supervision file and check it: `prompt` (str), `completions` (list of str) and `labels`
    (list of bool) of the same, non-zero length on every row. TRL 1.16 has no PRM trainer to hand it to, so this
    checks what TRL's stepwise format (and a PRM trainer of our own) requires."""
    dataset = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=None if cache_dir is None else str(cache_dir)
    )
    _require(dataset, {"prompt", "completions", "labels"}, path)
    if len(dataset) == 0:
        raise DataRejected(f"{path}: no rows")
    for i, row in enumerate(dataset):
        where = f"{path}: row {i}"
        if not isinstance(row["prompt"], str) or not row["prompt"]:
            raise DataRejected(f"{where}: `prompt` must be a non-empty string")
        completions, labels = row["completions"], row["labels"]
        if not isinstance(completions, list) or not completions or not all(isinstance(s, str) for s in completions):
            raise DataRejected(f"{where}: `completions` must be a non-empty list of strings")
        if not isinstance(labels, list) or not all(isinstance(label, bool) for label in labels):
            raise DataRejected(f"{where}: `labels` must be a list of true/false")
        if len(labels) != len(completions):
            raise DataRejected(f"{where}: {len(completions)} completions but {len(labels)} labels")
    return dataset


def losses_are_finite(run: TwoStepRun) -> bool:
    return bool(run.losses) and all(math.isfinite(loss) for loss in run.losses)

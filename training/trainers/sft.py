"""Supervised fine-tuning on `{messages}` snapshots (demonstrations, critique-revision outputs).

Uses TRL's `SFTTrainer` (TRL 1.16); Quorum adds the run contract (config, metrics, checkpoints, cancellation, result).

    python -m training.trainers.sft --config run.json
"""

from __future__ import annotations

from training.trainers.cli import main
from training.trainers.config import load_config
from training.trainers.configs import SFTConfig
from training.trainers.data import DataError, is_messages, load_snapshot, split_for_eval
from training.trainers.runtime import Run, TrainResult, execute

__all__ = ["SFTConfig", "train"]


def train(config: SFTConfig | dict | str) -> TrainResult:
    """Fine-tune `config.model` on the conversations in `config.data`; see the package docstring for outputs."""
    config = load_config(SFTConfig, config)
    return execute(config, _train)


def _loss_on(config: SFTConfig, tokenizer) -> str:
    if config.loss_on != "auto":
        return config.loss_on
    template = getattr(tokenizer, "chat_template", None) or ""
    return "assistant" if "generation" in template and "endgeneration" in template else "last_turn"


def _check(dataset, path: str) -> None:
    for i, messages in enumerate(dataset["messages"]):
        if not is_messages(messages):
            raise DataError(f"{path}: row {i}: `messages` must be a non-empty list of {{role, content}} messages")
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{path}: row {i}: no assistant turn to learn from")


def _messages_only(dataset, path: str):
    dataset = dataset.remove_columns([c for c in dataset.column_names if c != "messages"])
    _check(dataset, path)
    return dataset


def _last_turn(dataset):
    """{messages} -> {prompt, completion}: the conversation up to the last assistant turn, and that turn."""

    def split(row: dict) -> dict:
        messages = row["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        return {"prompt": messages[:last], "completion": [messages[last]]}

    return dataset.map(split, remove_columns=dataset.column_names)


def _train(run: Run) -> tuple[str, int, dict]:
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    config: SFTConfig = run.config
    tokenizer = run.load_tokenizer()
    data = _messages_only(load_snapshot(config.data, "sft"), config.data)
    train_set, eval_set = split_for_eval(data, config, "sft")
    if eval_set is not None and config.eval_data:
        eval_set = _messages_only(eval_set, config.eval_data)
    loss_on = _loss_on(config, tokenizer)
    if loss_on == "last_turn":
        train_set = _last_turn(train_set)
        eval_set = _last_turn(eval_set) if eval_set is not None else None
    args = run.hf_arguments(
        TRLSFTConfig,
        max_length=config.max_length,
        packing=config.packing,
        assistant_only_loss=loss_on == "assistant",
        completion_only_loss=loss_on == "last_turn",
    )
    trainer = SFTTrainer(
        model=run.load_model(AutoModelForCausalLM),
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=run.peft_config("CAUSAL_LM"),
    )
    return run.fit_evaluate_save(trainer, tokenizer, eval_set, {"loss_on": loss_on})


if __name__ == "__main__":
    raise SystemExit(main(SFTConfig, train))

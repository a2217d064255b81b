"""Kahneman–Tversky Optimization on unpaired feedback (`{prompt, completion, label}`: thumbs up = true).

Uses TRL's `KTOTrainer` (TRL 1.16) with a frozen reference model (an explicit copy of the base, or the base with
LoRA adapters disabled). `losses.kto_loss` states the loss. Quorum adds the weights for imbalanced feedback: left
null, they are set so that λ_D·n_D = λ_U·n_U, inside the range Ethayarajh et al. 2024 advise ([1, 4/3]).

    python -m training.trainers.kto --config run.json
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from training.trainers.common import (
    DataError,
    Run,
    TrainConfig,
    TrainResult,
    chat_rows,
    check_text_or_messages,
    execute,
    load_config,
    load_snapshot,
    main,
    option,
    resolve_string_rows,
    split_for_eval,
)

__all__ = ["KTOConfig", "balanced_weights", "train"]


@dataclasses.dataclass
class KTOConfig(TrainConfig):
    """KTO hyperparameters (see `TrainConfig` for the shared ones)."""

    method: ClassVar[str] = "kto"

    learning_rate: float = option(1e-6, "Peak learning rate of AdamW.")
    batch_size: int = option(8, "Examples per device per step; at least 2 (the KL reference point pairs neighbours).")
    beta: float = option(0.1, "β: strength of the implicit KL constraint to the reference model.")
    desirable_weight: float | None = option(None, "λ_D, weight of thumbs-up examples; null balances it from the counts.")
    undesirable_weight: float | None = option(
        None, "λ_U, weight of thumbs-down examples; null balances it from the counts."
    )
    precompute_ref_log_probs: bool = option(
        False, "Compute the reference log-probabilities once before training and free the reference model."
    )

    def problems(self) -> list[str]:
        out = super().problems()
        if self.batch_size < 2:
            out.append("batch_size: KTO needs at least 2 (its KL estimate pairs each completion with another prompt)")
        if self.beta <= 0:
            out.append("beta: must be positive")
        for name in ("desirable_weight", "undesirable_weight"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                out.append(f"{name}: must be positive, or null to balance from the counts")
        return out


def train(config: KTOConfig | dict | str) -> TrainResult:
    """Train `config.model` with KTO on `config.data`; see the package docstring for outputs."""
    config = load_config(KTOConfig, config)
    return execute(config, _train)


def balanced_weights(desirable: int, undesirable: int) -> tuple[float, float]:
    """(λ_D, λ_U) with λ_D·n_D = λ_U·n_U and the larger class at weight 1."""
    if desirable == 0 or undesirable == 0:
        return 1.0, 1.0
    if desirable >= undesirable:
        return 1.0, desirable / undesirable
    return undesirable / desirable, 1.0


def _unpaired_rows(dataset, config: KTOConfig, tokenizer, path: str):
    bad = [i for i, label in enumerate(dataset["label"]) if not isinstance(label, bool)]
    if bad:
        raise DataError(f"{path}: row {bad[0]}: `label` must be true (thumbs up) or false (thumbs down)")
    check_text_or_messages(dataset, ["prompt", "completion"], path)
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in ("prompt", "completion", "label")])
    return chat_rows(dataset, ["completion"], resolve_string_rows(config, tokenizer), config.join_separator)


def _train(run: Run) -> tuple[str, int, dict]:
    from transformers import AutoModelForCausalLM
    from trl import KTOConfig as TRLKTOConfig
    from trl import KTOTrainer

    config: KTOConfig = run.config
    tokenizer = run.load_tokenizer()
    data = _unpaired_rows(load_snapshot(config.data, "unpaired"), config, tokenizer, config.data)
    train_set, eval_set = split_for_eval(data, config, "unpaired")
    if eval_set is not None and config.eval_data:
        eval_set = _unpaired_rows(eval_set, config, tokenizer, config.eval_data)
    labels = train_set["label"]
    n_desirable = sum(labels)
    n_undesirable = len(labels) - n_desirable
    auto_d, auto_u = balanced_weights(n_desirable, n_undesirable)
    desirable_weight = config.desirable_weight if config.desirable_weight is not None else auto_d
    undesirable_weight = config.undesirable_weight if config.undesirable_weight is not None else auto_u
    args = run.hf_arguments(
        TRLKTOConfig,
        max_length=config.max_length,
        beta=config.beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
    )
    peft_config = run.peft_config("CAUSAL_LM")
    trainer = KTOTrainer(
        model=run.load_model(AutoModelForCausalLM),
        ref_model=None if peft_config is not None else run.load_model(AutoModelForCausalLM, frozen=True),
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    counts = {"desirable": n_desirable, "undesirable": n_undesirable, "desirable_weight": desirable_weight,
              "undesirable_weight": undesirable_weight}
    return run.fit_evaluate_save(trainer, tokenizer, eval_set, {"data": counts})


if __name__ == "__main__":
    raise SystemExit(main(KTOConfig, train))

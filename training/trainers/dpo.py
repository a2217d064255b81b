"""Direct Preference Optimization on preference snapshots (`{prompt, chosen, rejected}`, standard or conversational).

Uses TRL's `DPOTrainer` (TRL 1.16) with a frozen reference model: an explicit copy of the base model, or the base
itself with the LoRA adapters disabled when `lora` is set. `losses.dpo_loss` states the sigmoid loss it optimises.
The `margin` and score columns of a snapshot are not used by DPO.

    python -m training.trainers.dpo --config run.json
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from training.trainers.common import Run, TrainConfig, TrainResult, execute, load_config, main, option, preference_splits

__all__ = ["DPOConfig", "train"]


@dataclasses.dataclass
class DPOConfig(TrainConfig):
    """DPO hyperparameters (see `TrainConfig` for the shared ones)."""

    method: ClassVar[str] = "dpo"

    learning_rate: float = option(1e-6, "Peak learning rate of AdamW.")
    beta: float = option(0.1, "β: strength of the implicit KL constraint to the reference model (τ for ipo).")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down"] = option(
        "sigmoid", "Preference loss: sigmoid is DPO (Rafailov et al. 2023); the others are TRL's variants."
    )
    label_smoothing: float = option(0.0, "Assumed share of flipped labels (conservative/robust DPO), in [0, 0.5).")
    precompute_ref_log_probs: bool = option(
        False, "Compute the reference log-probabilities once before training and free the reference model."
    )

    def problems(self) -> list[str]:
        out = super().problems()
        if self.beta <= 0:
            out.append("beta: must be positive")
        if not 0 <= self.label_smoothing < 0.5:
            out.append("label_smoothing: must be in [0, 0.5)")
        return out


def train(config: DPOConfig | dict | str) -> TrainResult:
    """Train `config.model` with DPO on `config.data`; see the package docstring for outputs."""
    config = load_config(DPOConfig, config)
    return execute(config, _train)


def _train(run: Run) -> tuple[str, int, dict]:
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    config: DPOConfig = run.config
    tokenizer = run.load_tokenizer()
    train_set, eval_set = preference_splits(config, tokenizer)
    args = run.hf_arguments(
        TRLDPOConfig,
        max_length=config.max_length,
        beta=config.beta,
        loss_type=[config.loss_type],
        label_smoothing=config.label_smoothing,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
    )
    peft_config = run.peft_config("CAUSAL_LM")
    trainer = DPOTrainer(
        model=run.load_model(AutoModelForCausalLM),
        ref_model=None if peft_config is not None else run.load_model(AutoModelForCausalLM, frozen=True),
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    return run.fit_evaluate_save(trainer, tokenizer, eval_set)


if __name__ == "__main__":
    raise SystemExit(main(DPOConfig, train))

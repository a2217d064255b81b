"""Direct Preference Optimization on preference snapshots (`{prompt, chosen, rejected}`, standard or conversational).

Uses TRL's `DPOTrainer` (TRL 1.16) with a frozen reference model: an explicit copy of the base model, or the base
itself with the LoRA adapters disabled when `lora` is set. The default loss ("sigmoid", Rafailov et al. 2023, eq. 7)
is −log σ(β·[(log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x))]); `label_smoothing` ε mixes in
the flipped pair's loss (conservative DPO). The `margin` and score columns of a snapshot are not used by DPO.

    python -m training.trainers.dpo --config run.json
"""

from __future__ import annotations

from training.trainers.cli import main
from training.trainers.config import load_config
from training.trainers.configs import DPOConfig
from training.trainers.data import preference_splits
from training.trainers.runtime import Run, TrainResult, execute

__all__ = ["DPOConfig", "train"]


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

"""Odds Ratio Preference Optimization on preference snapshots: SFT on the chosen response plus an odds-ratio
penalty on the rejected one, with no reference model. Hong et al. 2024, eqs. 4–6:
L = NLL(y_c|x) − λ·log σ(log odds(y_c|x) − log odds(y_r|x)), odds(y|x) = P / (1 − P), P = exp(mean token log π(y|x)).

Uses TRL's `ORPOTrainer` from `trl.experimental.orpo` (TRL 1.16 keeps ORPO there; its API may change between TRL
releases, which is why the TRL version is pinned).

    python -m training.trainers.orpo --config run.json
"""

from __future__ import annotations

import os

from training.trainers.cli import main
from training.trainers.config import load_config
from training.trainers.configs import ORPOConfig
from training.trainers.data import preference_splits
from training.trainers.runtime import Run, TrainResult, execute

__all__ = ["ORPOConfig", "train"]


def train(config: ORPOConfig | dict | str) -> TrainResult:
    """Train `config.model` with ORPO on `config.data`; see the package docstring for outputs."""
    config = load_config(ORPOConfig, config)
    return execute(config, _train)


def _train(run: Run) -> tuple[str, int, dict]:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers import AutoModelForCausalLM
    from trl.experimental.orpo import ORPOConfig as TRLORPOConfig
    from trl.experimental.orpo import ORPOTrainer

    config: ORPOConfig = run.config
    tokenizer = run.load_tokenizer()
    train_set, eval_set = preference_splits(config, tokenizer)
    args = run.hf_arguments(
        TRLORPOConfig,
        max_length=config.max_length,
        max_completion_length=config.max_completion_length,
        beta=config.beta,
        remove_unused_columns=False,  # ORPO's collator needs the raw columns
    )
    trainer = ORPOTrainer(
        model=run.load_model(AutoModelForCausalLM),
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=run.peft_config("CAUSAL_LM"),
    )
    return run.fit_evaluate_save(trainer, tokenizer, eval_set)


if __name__ == "__main__":
    raise SystemExit(main(ORPOConfig, train))

"""Kahneman–Tversky Optimization on unpaired feedback (`{prompt, completion, label}`: thumbs up = true).

Uses TRL's `KTOTrainer` (TRL 1.16) with a frozen reference model (an explicit copy of the base, or the base with
LoRA adapters disabled). The loss (Ethayarajh et al. 2024, eq. 8) is E[λ_y − v], with v = λ_D·σ(β(r − z₀)) on thumbs
up and λ_U·σ(β(z₀ − r)) on thumbs down, r = log π(y|x) − log π_ref(y|x) and z₀ = max(0, KL) estimated on the batch.
Quorum adds the weights for imbalanced feedback: left null, they are set so that λ_D·n_D = λ_U·n_U, inside the range
the paper advises ([1, 4/3]).

    python -m training.trainers.kto --config run.json
"""

from __future__ import annotations

from training.trainers.cli import main
from training.trainers.config import load_config
from training.trainers.configs import KTOConfig
from training.trainers.data import (
    DataError,
    chat_rows,
    check_text_or_messages,
    load_snapshot,
    resolve_string_rows,
    split_for_eval,
)
from training.trainers.runtime import Run, TrainResult, execute

__all__ = ["KTOConfig", "balanced_weights", "train"]


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

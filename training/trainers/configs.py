"""Each training method's run config (a dataclass of its hyperparameters, every one typed, defaulted and documented),
and `CONFIGS`, the method each one configures. Plain Python (no torch, no transformers): the web process validates a
run against these before any trainer is imported.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from training.trainers import rewards
from training.trainers.config import TrainConfig, option

__all__ = ["CONFIGS", "DPOConfig", "KTOConfig", "ORPOConfig", "PPOConfig", "PRMConfig", "RewardConfig", "SFTConfig"]


@dataclasses.dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning hyperparameters (see `TrainConfig` for the shared ones)."""

    method: ClassVar[str] = "sft"

    learning_rate: float = option(2e-5, "Peak learning rate of AdamW.")
    loss_on: Literal["auto", "assistant", "last_turn", "all"] = option(
        "auto",
        "Which tokens are trained: assistant = every assistant turn (the chat template must mark them with "
        "{% generation %}), last_turn = the final assistant turn given the conversation before it, all = every token; "
        "auto = assistant when the template marks assistant turns, else last_turn.",
    )
    packing: bool = option(False, "Pack several conversations into each max_length sequence (BFD packing).")


@dataclasses.dataclass
class RewardConfig(TrainConfig):
    """Reward-model hyperparameters (see `TrainConfig` for the shared ones)."""

    method: ClassVar[str] = "reward"

    learning_rate: float = option(1e-5, "Peak learning rate of AdamW.")
    eval_fraction: float = option(0.1, "Share of `data` held out for the evaluation when eval_data is null.")
    use_margin: bool = option(True, "Use the `margin` column when the snapshot has one (a null margin counts as 0).")
    margin_scale: float = option(1.0, "Multiply every margin by this (exported margins are mean strengths, 1 to 3).")
    center_rewards_coefficient: float | None = option(
        None, "Weight of the mean-zero reward penalty E[(r_c + r_r)²] (Eisenstein et al. 2023); 0.01 is usual."
    )
    ensemble_size: int = option(1, "Reward models to train; more than 1 gives an ensemble with mean and spread.")
    ensemble_mode: Literal["seeds", "folds"] = option(
        "seeds",
        "How members differ: seeds = same data, seeds seed+i (head initialisation and data order); folds = member i "
        "leaves out the i-th of ensemble_size folds of the training data (and uses seed+i).",
    )
    histogram_bins: int = option(20, "Bins of the score histograms in the evaluation.")
    eval_batch_size: int = option(16, "Sequences per forward pass in the evaluation.")

    def problems(self) -> list[str]:
        out = super().problems()
        if self.ensemble_size < 1:
            out.append("ensemble_size: must be at least 1")
        if self.ensemble_mode == "folds" and self.ensemble_size < 2:
            out.append("ensemble_mode: folds needs ensemble_size of at least 2")
        if self.histogram_bins < 1:
            out.append("histogram_bins: must be at least 1")
        if self.eval_batch_size < 1:
            out.append("eval_batch_size: must be at least 1")
        return out


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


@dataclasses.dataclass
class ORPOConfig(TrainConfig):
    """ORPO hyperparameters (see `TrainConfig` for the shared ones)."""

    method: ClassVar[str] = "orpo"

    learning_rate: float = option(8e-6, "Peak learning rate of AdamW.")
    beta: float = option(0.1, "λ: weight of the odds-ratio term against the SFT loss.")
    max_completion_length: int | None = option(None, "Longest completion in tokens (null: only max_length applies).")

    def problems(self) -> list[str]:
        out = super().problems()
        if self.beta <= 0:
            out.append("beta: must be positive")
        if self.max_completion_length is not None and not 1 <= self.max_completion_length <= self.max_length:
            out.append("max_completion_length: must be between 1 and max_length, or null")
        return out


@dataclasses.dataclass
class PPOConfig(TrainConfig):
    """PPO hyperparameters (see `TrainConfig` for the shared ones). `data` is any snapshot with a `prompt` column
    (preference, unpaired, stepwise) or `messages` (SFT: the turns before the last assistant turn are the prompt).
    `max_steps` counts PPO steps (one rollout batch and its updates); `max_length` is unused (see the prompt and
    response lengths)."""

    method: ClassVar[str] = "ppo"

    learning_rate: float = option(1e-6, "Peak learning rate of AdamW (policy and value head).")
    max_steps: int = option(100, "PPO steps (-1: num_epochs passes over the prompts).")
    batch_size: int = option(16, "Prompts sampled per PPO step, per process.")
    mini_batch_size: int = option(4, "Responses per optimizer step within a PPO epoch; divides batch_size.")
    ppo_epochs: int = option(2, "Passes of updates over each rollout batch.")
    reward_model: str | None = option(
        None, "Reward model directory (sequence classifier) or ensemble directory (with ensemble.json)."
    )
    reward_function: str | None = option(
        None, "Name of a registered reward function, e.g. repetition_penalty (instead of reward_model)."
    )
    reward_ensemble_reduce: Literal["mean", "min"] = option("mean", "How an ensemble's member scores combine.")
    reward_uncertainty_penalty: float = option(0.0, "Subtract this × the ensemble members' standard deviation.")
    reward_batch_size: int = option(16, "Sequences per reward-model forward pass.")
    max_prompt_length: int = option(512, "Prompt tokens kept (the end of longer prompts).")
    max_new_tokens: int = option(64, "Longest sampled response in tokens.")
    temperature: float = option(1.0, "Sampling temperature (log-probabilities use the same temperature).")
    top_k: int = option(0, "Sample from the k most likely tokens (0: all).")
    top_p: float = option(1.0, "Nucleus sampling mass (1: all).")
    kl_coef: float = option(0.05, "β: per-token KL penalty coefficient (the initial value when adaptive).")
    kl_estimator: Literal["k1", "k3"] = option("k1", "Per-token KL estimate in the penalty (see losses.kl_penalty).")
    adaptive_kl: bool = option(False, "Adapt β toward target_kl (Ziegler et al. 2019).")
    target_kl: float = option(6.0, "Target KL per response (nats) for the adaptive coefficient.")
    kl_horizon: int = option(10000, "Horizon of the adaptive coefficient, in responses.")
    gamma: float = option(1.0, "Discount factor over response tokens.")
    lam: float = option(0.95, "GAE λ.")
    cliprange: float = option(0.2, "ε of the clipped policy objective.")
    cliprange_value: float = option(0.2, "ε_v of the clipped value loss.")
    vf_coef: float = option(0.1, "Weight of the value loss.")
    whiten_advantages: bool = option(True, "Normalise advantages over each rollout batch.")
    length_normalization: Literal["none", "per_token", "penalty"] = option(
        "none", "Score adjustment for length: per_token divides by response tokens; penalty subtracts length_penalty × tokens."
    )
    length_penalty: float = option(0.0, "Per-token penalty when length_normalization is penalty.")
    missing_eos_penalty: float | None = option(None, "Subtract this from the score of a response that never ends.")
    score_clip: float | None = option(None, "Clip scores to [−score_clip, score_clip] (null: no clipping).")

    def problems(self) -> list[str]:
        out = super().problems()
        if (self.reward_model is None) == (self.reward_function is None):
            out.append("reward_model / reward_function: give exactly one (a model directory or a reward function name)")
        if self.reward_function is not None and not rewards.is_registered(self.reward_function):
            out.append(rewards.unregistered_problem(self.reward_function))
        for name in ("mini_batch_size", "ppo_epochs", "reward_batch_size", "max_prompt_length", "max_new_tokens", "kl_horizon"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be at least 1")
        if self.mini_batch_size >= 1 and self.batch_size % self.mini_batch_size:
            out.append("mini_batch_size: must divide batch_size")
        if self.mini_batch_size >= 1 and self.mini_batch_size % self.gradient_accumulation_steps:
            out.append("gradient_accumulation_steps: must divide mini_batch_size")
        if self.temperature <= 0:
            out.append("temperature: must be positive")
        if not 0 < self.top_p <= 1:
            out.append("top_p: must be in (0, 1]")
        if self.top_k < 0:
            out.append("top_k: must not be negative")
        if self.kl_coef < 0:
            out.append("kl_coef: must not be negative")
        if self.target_kl <= 0:
            out.append("target_kl: must be positive")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            out.append("gamma, lam: must be in [0, 1]")
        if self.cliprange <= 0 or self.cliprange_value <= 0:
            out.append("cliprange, cliprange_value: must be positive")
        if self.vf_coef < 0 or self.length_penalty < 0 or self.reward_uncertainty_penalty < 0:
            out.append("vf_coef, length_penalty, reward_uncertainty_penalty: must not be negative")
        if self.deepspeed:
            out.append("deepspeed: not supported by ppo; launch it with accelerate/torchrun for data parallelism (DDP)")
        if self.score_clip is not None and self.score_clip <= 0:
            out.append("score_clip: must be positive, or null")
        return out


@dataclasses.dataclass
class PRMConfig(TrainConfig):
    """Process-reward-model hyperparameters (see `TrainConfig` for the shared ones)."""

    method: ClassVar[str] = "prm"

    learning_rate: float = option(1e-5, "Peak learning rate of AdamW.")
    eval_fraction: float = option(0.2, "Share of problems (distinct prompts) held out for the evaluation.")
    step_separator: str = option("\n", "Text after every step; the step's label sits on its last token.")
    label_mode: Literal["auto", "binary", "ternary"] = option(
        "auto", "auto: ternary (−1/0/+1) when the labels are integers, binary when they are true/false."
    )
    neutral_is_correct: bool = option(True, "Whether a neutral (0) step counts as correct, in scores and outcomes.")
    aggregation: Literal["min", "prod", "mean", "last"] = option(
        "min", "How step scores combine into a solution score."
    )
    compare_with_orm: bool = option(True, "Train (or load) an outcome reward model and compare best-of-N selection.")
    orm_model: str | None = option(None, "An existing outcome reward model directory; null trains one like the PRM.")
    min_candidates: int = option(2, "Held-out problems need at least this many solutions for best-of-N.")
    eval_batch_size: int = option(16, "Sequences per forward pass in the evaluation.")

    def problems(self) -> list[str]:
        out = super().problems()
        if not self.step_separator:
            out.append("step_separator: must not be empty")
        if self.min_candidates < 2:
            out.append("min_candidates: must be at least 2")
        if self.eval_batch_size < 1:
            out.append("eval_batch_size: must be at least 1")
        return out


CONFIGS: dict[str, type[TrainConfig]] = {
    cls.method: cls for cls in (SFTConfig, RewardConfig, DPOConfig, KTOConfig, ORPOConfig, PPOConfig, PRMConfig)
}

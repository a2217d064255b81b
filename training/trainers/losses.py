"""The losses and RL estimators Quorum computes itself, as pure tensor functions, each with its equation: the
Bradley–Terry loss (the reward model's held-out evaluation) and PPO's (Quorum's own loop). The TRL-backed trainers
(sft, reward, dpo, kto, orpo) leave their losses to TRL.

Conventions: batch-first tensors; `mask` is 1 for real response tokens and 0 for padding; "per token" tensors are
`(batch, tokens)`; every reduction over tokens is a masked mean unless said otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "bradley_terry_loss",
    "entropy_from_logits",
    "gae",
    "kl_penalty",
    "masked_mean",
    "masked_whiten",
    "ppo_policy_loss",
    "ppo_value_loss",
]


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Σ mask·x / Σ mask, over `dim` (all elements when None). An all-zero mask gives 0, not NaN."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_whiten(values: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x − μ) / √(σ² + ε) with μ, σ² the masked mean and (unbiased) variance; masked positions are returned as 0."""
    mean = masked_mean(values, mask)
    centred = values - mean
    count = mask.sum()
    variance = masked_mean(centred**2, mask)
    if count > 1:
        variance = variance * count / (count - 1)
    whitened = centred * torch.rsqrt(variance + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def bradley_terry_loss(r_chosen: Tensor, r_rejected: Tensor, margin: Tensor | None = None) -> Tensor:
    """Bradley–Terry preference loss for a reward model, averaged over pairs.

        L = −E[ log σ(r_c − r_r − m) ]

    Ouyang et al. 2022, eq. 1; the margin m (0 when absent) is from Touvron et al. 2023 (Llama 2), eq. 2.
    """
    logits = r_chosen - r_rejected
    if margin is not None:
        logits = logits - margin.to(logits.dtype)
    return -F.logsigmoid(logits).mean()


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: str = "k1") -> Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from samples of π.

        k1 = log π(y_t) − log π_ref(y_t)                      (unbiased; Ziegler et al. 2019's penalty)
        k3 = (ρ − 1) − log ρ,   ρ = π_ref(y_t) / π(y_t)        (unbiased and never negative; Schulman 2020)
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use 'k1' or 'k3'")


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation over each response's tokens; returns (advantages, returns).

        δ_t = r_t + γ·V_{t+1} − V_t           (V past the last real token is 0)
        Â_t = δ_t + γλ·Â_{t+1}                 (Schulman et al. 2016, eq. 16)
        R_t = Â_t + V_t                        (the value target)

    Masked positions are ignored (their advantages and returns are 0) and must come after the real tokens.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(values)
    next_advantage = torch.zeros_like(values[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def ppo_policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_range: float
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO clipped surrogate, as a loss to minimise; returns (loss, clip fraction, approximate KL(old ‖ new)).

        ρ_t = exp(log π(y_t) − log π_old(y_t))
        L = −E_t[ min(ρ_t·Â_t, clip(ρ_t, 1 − ε, 1 + ε)·Â_t) ]

    Schulman et al. 2017, eq. 7. The clip fraction is the share of tokens where the clipped term was the smaller one;
    the approximate KL is E[½(log ρ)²].
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
        approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return loss, clip_fraction, approx_kl


def ppo_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range_value: float
) -> tuple[Tensor, Tensor]:
    """Clipped value loss; returns (loss, clip fraction).

        V_clip = V_old + clip(V − V_old, −ε_v, ε_v)
        L_V = ½·E_t[ max((V − R)², (V_clip − R)²) ]

    As in the PPO reference implementation (baselines ppo2) and Ziegler et al. 2019.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped_error > unclipped_error).to(values.dtype), mask)
    return loss, clip_fraction


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Per-position entropy of the categorical distribution softmax(logits): H = logsumexp(z) − Σ softmax(z)·z."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


class FixedKLController:
    """A KL coefficient that never changes: β_t = β₀."""

    def __init__(self, value: float):
        self.value = float(value)

    def update(self, current_kl: float, n_steps: int) -> None:  # noqa: ARG002 - same interface as the adaptive one
        return None

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """The adaptive KL coefficient of Ziegler et al. 2019 (section 2.2), steering the policy's KL toward a target.

        e_t = clip(KL_t / KL_target − 1, −0.2, 0.2)
        β_{t+1} = β_t · (1 + K_β · e_t),   K_β = n_steps / horizon

    `n_steps` is the number of samples (responses) the KL was measured on.
    """

    def __init__(self, init_value: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ValueError("target and horizon must be positive")
        self.value = float(init_value)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        if not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])

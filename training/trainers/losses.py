"""Training losses and RL estimators as pure tensor functions, each with its equation.

The TRL-backed trainers (reward, dpo, kto, orpo) compute these same quantities inside TRL; the functions here are the
reference the tests check by hand, and the ones Quorum's own loops (ppo, prm evaluation) call directly.

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
    "dpo_loss",
    "entropy_from_logits",
    "gae",
    "kl_penalty",
    "kto_loss",
    "masked_mean",
    "masked_whiten",
    "orpo_loss",
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


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Direct Preference Optimization loss (sigmoid form), averaged over pairs, with the implicit rewards.

        h = β·[(log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x))]
        L = −E[ (1 − ε)·log σ(h) + ε·log σ(−h) ]

    Rafailov et al. 2023, eq. 7; ε (label smoothing, 0 by default) is the conservative DPO variant (Mitchell 2023).
    The log-probabilities are sums over each completion's tokens. Returns (loss, β·(log π − log π_ref) for chosen,
    the same for rejected), the last two detached.
    """
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    h = beta * (chosen_ratio - rejected_ratio)
    loss = -(1.0 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)
    return loss.mean(), (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach()


def kto_loss(
    policy_logps: Tensor,
    ref_logps: Tensor,
    desirable: Tensor,
    kl: Tensor | float,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> Tensor:
    """Kahneman–Tversky Optimization loss for unpaired thumbs up/down, averaged over examples.

        r = log π(y|x) − log π_ref(y|x)                     (sum over completion tokens)
        z₀ = max(0, KL)                                      (reference point, no gradient)
        v = λ_D·σ(β(r − z₀))  if y is desirable,   λ_U·σ(β(z₀ − r))  otherwise
        L = E[ λ_y − v ]

    Ethayarajh et al. 2024, eq. 8. λ_D, λ_U (`desirable_weight`, `undesirable_weight`) offset an unequal number of
    desirable and undesirable examples; the paper advises λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3].
    """
    z0 = torch.as_tensor(kl, dtype=policy_logps.dtype, device=policy_logps.device).detach().clamp(min=0)
    r = policy_logps - ref_logps
    desirable = desirable.to(torch.bool)
    losses = torch.where(
        desirable,
        desirable_weight * (1.0 - torch.sigmoid(beta * (r - z0))),
        undesirable_weight * (1.0 - torch.sigmoid(beta * (z0 - r))),
    )
    return losses.mean()


def orpo_loss(
    chosen_nll: Tensor, chosen_mean_logps: Tensor, rejected_mean_logps: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    """Odds Ratio Preference Optimization loss, averaged over pairs; returns (loss, odds-ratio term).

        odds(y|x) = P / (1 − P),  P = exp(mean token log π(y|x))
        L_OR = −log σ( log odds(y_c|x) − log odds(y_r|x) )
        L = E[ NLL(y_c|x) + λ·L_OR ]

    Hong et al. 2024, eqs. 4–6 (λ is `beta`). `chosen_nll` is the per-pair mean token negative log-likelihood of the
    chosen completion.
    """

    def log_odds(mean_logps: Tensor) -> Tensor:
        return mean_logps - torch.log1p(-torch.exp(mean_logps).clamp(max=1 - 1e-6))

    ratio_term = -F.logsigmoid(log_odds(chosen_mean_logps) - log_odds(rejected_mean_logps))
    return (chosen_nll + beta * ratio_term).mean(), ratio_term.mean().detach()


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

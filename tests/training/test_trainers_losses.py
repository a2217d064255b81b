"""The trainers' losses and estimators equal values worked out by hand on small fixed tensors."""

import math

import pytest
import torch

from training.trainers import losses, stats


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_bradley_terry_loss_matches_hand_computation():
    r_chosen = torch.tensor([2.0, 0.0])
    r_rejected = torch.tensor([1.0, 1.0])
    # Differences 1 and −1: (−log σ(1) − log σ(−1)) / 2 = (0.31326 + 1.31326) / 2.
    assert losses.bradley_terry_loss(r_chosen, r_rejected).item() == pytest.approx(0.8132617, abs=1e-6)
    # A margin of 0.5 shifts both differences down: (−log σ(0.5) − log σ(−1.5)) / 2.
    margin = torch.tensor([0.5, 0.5])
    expected = (-math.log(_sigmoid(0.5)) - math.log(_sigmoid(-1.5))) / 2
    assert losses.bradley_terry_loss(r_chosen, r_rejected, margin).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.0877451, abs=1e-6)


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    mask = torch.ones(1, 3)
    advantages, returns = losses.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # γ = λ = 1: Â_t = (Monte-Carlo return 1) − V_t = 0.5 everywhere, and the returns are 1.
    assert advantages[0].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert returns[0].tolist() == pytest.approx([1.0, 1.0, 1.0])

    advantages, _ = losses.gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # δ2 = 1 − 0.5 = 0.5; δ1 = 0.9·0.5 − 0.5 = −0.05; δ0 = −0.05.
    # Â2 = 0.5; Â1 = −0.05 + 0.45·0.5 = 0.175; Â0 = −0.05 + 0.45·0.175 = 0.02875.
    assert advantages[0].tolist() == pytest.approx([0.02875, 0.175, 0.5])


def test_gae_ignores_padding_after_the_response():
    rewards = torch.tensor([[0.0, 1.0, 9.0]])
    values = torch.tensor([[0.2, 0.4, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    advantages, returns = losses.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # The padded position counts as V = 0, r = 0: δ1 = 1 − 0.4 = 0.6; δ0 = 0.4 − 0.2 = 0.2; Â0 = 0.8.
    assert advantages[0].tolist() == pytest.approx([0.8, 0.6, 0.0])
    assert returns[0].tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_kl_estimators_match_hand_computation():
    logp = torch.log(torch.tensor([0.5]))
    ref = torch.log(torch.tensor([0.25]))
    assert losses.kl_penalty(logp, ref, "k1").item() == pytest.approx(math.log(2))
    # k3 with ρ = 0.25 / 0.5: (ρ − 1) − log ρ = −0.5 + log 2.
    assert losses.kl_penalty(logp, ref, "k3").item() == pytest.approx(-0.5 + math.log(2), abs=1e-6)
    with pytest.raises(ValueError, match="k2"):
        losses.kl_penalty(logp, ref, "k2")


def test_clipped_policy_loss_matches_hand_computation():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 0.5]]))
    advantages = torch.tensor([[1.0, 1.0, -1.0]])
    loss, clip_fraction, approx_kl = losses.ppo_policy_loss(new, old, advantages, torch.ones(1, 3), clip_range=0.2)
    # Per token −min(ρA, clip(ρ)A): ρ=1.5, A=1 → −1.2 (clipped); ρ=0.5, A=1 → −0.5; ρ=0.5, A=−1 → 0.8 (clipped).
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 0.8) / 3, abs=1e-6)
    assert clip_fraction.item() == pytest.approx(2 / 3)
    assert approx_kl.item() == pytest.approx(0.5 * (math.log(1.5) ** 2 + 2 * math.log(0.5) ** 2) / 3, abs=1e-6)
    # Padding does not count.
    masked, _, _ = losses.ppo_policy_loss(new, old, advantages, torch.tensor([[1.0, 1.0, 0.0]]), clip_range=0.2)
    assert masked.item() == pytest.approx((-1.2 - 0.5) / 2, abs=1e-6)


def test_clipped_value_loss_matches_hand_computation():
    # V = 1.5, V_old = 1.0, R = 2.0, ε = 0.2: V_clip = 1.2; max((1.5 − 2)², (1.2 − 2)²) = 0.64; ½ · 0.64.
    loss, clip_fraction = losses.ppo_value_loss(
        torch.tensor([[1.5]]), torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.ones(1, 1), clip_range_value=0.2
    )
    assert loss.item() == pytest.approx(0.32)
    assert clip_fraction.item() == 1.0


def test_adaptive_kl_controller_moves_toward_the_target_within_bounds():
    controller = losses.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    controller.update(12.0, n_steps=100)  # error clipped to +0.2: β·(1 + 0.2·100/10000)
    assert controller.value == pytest.approx(0.1 * 1.002)
    controller.update(3.0, n_steps=100)  # error −0.5 clipped to −0.2
    assert controller.value == pytest.approx(0.1 * 1.002 * 0.998)
    fixed = losses.FixedKLController(0.05)
    fixed.update(100.0, n_steps=100)
    assert fixed.value == 0.05


def test_whitening_and_entropy():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    whitened = losses.masked_whiten(values, mask)
    assert whitened[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)  # unbiased std of 1, 2, 3 is 1
    assert whitened[0, 3].item() == 0.0
    uniform = torch.zeros(1, 4)
    assert losses.entropy_from_logits(uniform).item() == pytest.approx(math.log(4))


def test_wilson_interval_and_correlations():
    low, high = stats.wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    assert stats.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)
    assert stats.pearson([1, 1, 1], [1, 2, 3]) is None
    histogram = stats.histogram([0.0, 0.5, 1.0], bins=2)
    assert histogram["counts"] == [1, 2] and histogram["edges"] == [0.0, 0.5, 1.0]

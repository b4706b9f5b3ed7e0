"""Tests for attnbook.methods.bla: BLA's bounded logits, q, thresholds, hard explanation and variants."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnbook.methods.bla import (
    BLA_VARIANTS,
    BoundedLogitAttentionHead,
    build_head,
    threshold_weights,
)
from attnbook.methods.l2x import L2XFeatureHead
from attnbook.models.heads import GAPHead

# One channel, u = 1: g = f, so ℓ = min(f, 0) = [[0, -1], [-2, 0]].
F_2X2 = torch.tensor([[[[1.0, -1.0], [-2.0, 0.5]]]])  # [1, 1, 2, 2]


def _head(in_channels: int = 1, num_classes: int = 2, u: float | None = 1.0, **kwargs) -> BoundedLogitAttentionHead:
    head = BoundedLogitAttentionHead(in_channels, num_classes, **kwargs)
    if u is not None:
        with torch.no_grad():
            head.scorer.weight.fill_(u)
    return head


def _hand_q_2x2(theta: float) -> torch.Tensor:
    """softmax(θ·ℓ) for ℓ = [[0, -1], [-2, 0]], written out."""
    e = [1.0, math.exp(-theta), math.exp(-2 * theta), 1.0]
    z = sum(e)
    return torch.tensor([[[e[0] / z, e[1] / z], [e[2] / z, e[3] / z]]])


def test_bounded_logits_are_min_of_conv_and_zero() -> None:
    head = _head(in_channels=6, u=None)
    features = torch.randn(3, 6, 5, 4)
    scores = head.scores(features)
    g = torch.einsum("bchw,c->bhw", features, head.scorer.weight.flatten())  # independent 1×1 conv
    assert (scores <= 0).all()
    assert (scores == 0).any() and (scores < 0).any()  # both sides of the bound occur
    torch.testing.assert_close(scores, torch.minimum(g, torch.zeros_like(g)))


def test_q_equals_hand_softmax_on_2x2() -> None:
    head = _head(theta=0.1)
    q, _ = head.explain(F_2X2)
    torch.testing.assert_close(q, _hand_q_2x2(0.1))


def test_training_forward_pools_with_q_then_fc() -> None:
    head = _head(theta=0.1).train()
    q = _hand_q_2x2(0.1)[0].flatten()
    v = (q * torch.tensor([1.0, -1.0, -2.0, 0.5])).sum()  # Eq. 1: Σ q_i f_i, by hand
    expected = head.classifier.fc(v.reshape(1, 1))
    torch.testing.assert_close(head(F_2X2), expected)


def test_q_uniform_on_bounded_set_and_dominant_for_large_theta() -> None:
    # g = f: positions with f ≥ 0 are at the bound (ℓ = 0); the rest are strictly negative.
    features = torch.tensor([[[[0.3, -1.0, 2.0], [-0.5, 0.0, -3.0], [-2.0, 1.5, -0.1]]]])
    bounded = features[0, 0] >= 0  # 4 positions
    q_small, _ = _head(theta=0.1).explain(features)
    on_set = q_small[0][bounded]
    assert torch.equal(on_set, on_set[0].expand_as(on_set))  # exactly uniform for any θ
    q_large, _ = _head(theta=1000.0).explain(features)
    torch.testing.assert_close(q_large[0][bounded], torch.full((4,), 0.25))
    torch.testing.assert_close(q_large[0][~bounded], torch.zeros(5), atol=1e-12, rtol=0)


def test_delta_is_the_set_at_the_bound() -> None:
    head = _head(in_channels=8, u=None)
    features = torch.randn(4, 8, 6, 6)
    q, delta = head.explain(features)
    ell = head.scores(features)
    assert delta.dtype == torch.bool and delta.shape == q.shape == (4, 6, 6)
    assert torch.equal(delta, ell == 0)
    assert delta.any() and not delta.all()
    torch.testing.assert_close(q.sum(dim=(1, 2)), torch.ones(4))


def test_delta_falls_back_to_argmax_when_every_logit_is_negative() -> None:
    features = torch.tensor([[[[-1.0, -0.2], [-3.0, -0.7]]]])  # g < 0 everywhere: no logit at the bound
    head = _head(num_classes=3).eval()
    _, delta = head.explain(features)
    assert torch.equal(delta, torch.tensor([[[False, True], [False, False]]]))
    expected = head.classifier.fc(torch.tensor([[-0.2]]))  # v = f at the argmax position
    torch.testing.assert_close(head(features), expected)


def test_threshold_weights_by_hand() -> None:
    q = torch.tensor([0.5, 0.25, 0.15, 0.1])
    # paper: keep q_i where q_i > γ (weights ≤ γ zeroed, equality included), no renormalisation
    assert torch.equal(threshold_weights(q, 0.25, "paper"), torch.tensor([0.5, 0.0, 0.0, 0.0]))
    # code: relu(q − γ), no renormalisation
    torch.testing.assert_close(threshold_weights(q, 0.12, "code"), torch.tensor([0.38, 0.13, 0.03, 0.0]))
    assert torch.equal(threshold_weights(q, 0.25, "none"), q)


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_bla_t_soft_weights_on_2x2(mode: str) -> None:
    head = _head(threshold_mode=mode, gamma=0.25)
    q = _hand_q_2x2(0.1)  # q ≈ [[0.2686, 0.2430], [0.2199, 0.2686]]
    keep = torch.tensor([[[True, False], [False, True]]])
    expected = torch.where(keep, q if mode == "paper" else q - 0.25, torch.zeros_like(q))
    torch.testing.assert_close(head.pooling_weights(F_2X2, hard=False), expected)


def test_default_gamma_is_098_over_n() -> None:
    features = torch.zeros(1, 1, 7, 7)  # g = 0 everywhere → q uniform 1/49
    paper = _head(threshold_mode="paper")
    code = _head(threshold_mode="code")
    assert paper.gamma_for(49) == pytest.approx(0.98 / 49)
    torch.testing.assert_close(paper.pooling_weights(features, hard=False), torch.full((1, 7, 7), 1 / 49))
    torch.testing.assert_close(code.pooling_weights(features, hard=False), torch.full((1, 7, 7), 0.02 / 49))


@pytest.mark.parametrize("variant", ["bla", "bla_t"])
def test_gradients_reach_q_in_training(variant: str) -> None:
    head = build_head(variant, 8, 3).train()
    features = torch.randn(4, 8, 5, 5)
    F.cross_entropy(head(features), torch.tensor([0, 1, 2, 0])).backward()
    assert head.scorer.weight.grad is not None
    assert head.scorer.weight.grad.abs().sum() > 0
    assert head.classifier.fc.weight.grad.abs().sum() > 0


def test_train_and_eval_modes_pool_differently() -> None:
    head = _head(in_channels=8, num_classes=3, u=None)
    features = torch.randn(2, 8, 4, 4)
    soft = head.train()(features)
    hard = head.eval()(features)
    assert not torch.allclose(soft, hard)
    torch.testing.assert_close(head.eval()(features, hard=False), soft)  # explicit override
    torch.testing.assert_close(head.train()(features, hard=True), hard)
    _, delta = head.explain(features)
    weights = head.pooling_weights(features, hard=True)  # δ / ‖δ‖₁
    torch.testing.assert_close(weights, delta.float() / delta.sum(dim=(1, 2), keepdim=True))


def test_hard_explanation_ignores_features_outside_delta() -> None:
    head = _head(in_channels=8, num_classes=3, u=None).eval()
    features = torch.randn(2, 8, 5, 5)
    _, delta = head.explain(features)
    # scaling a feature by 3 scales g (no bias), so outside positions stay below the bound
    perturbed = torch.where(delta.unsqueeze(1), features, 3.0 * features)
    _, delta_after = head.explain(perturbed)
    assert torch.equal(delta, delta_after)
    torch.testing.assert_close(head(perturbed), head(features))
    assert not torch.allclose(head(perturbed, hard=False), head(features, hard=False))  # soft pooling sees them


def test_bla_ph_trains_only_q() -> None:
    base = GAPHead(8, 3, dropout=0.2)
    fc_before = base.fc.weight.detach().clone()
    head = build_head("bla_ph", 8, 3, base_head=base).train()
    assert head.threshold_mode == "paper" and head.classifier.dropout.p == 0.2
    scorer_before = head.scorer.weight.detach().clone()
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    F.cross_entropy(head(torch.randn(4, 8, 5, 5)), torch.tensor([0, 1, 2, 1])).backward()
    optimizer.step()
    assert all(p.grad is None for p in head.classifier.parameters())
    assert torch.equal(head.classifier.fc.weight, fc_before)
    assert not torch.equal(head.scorer.weight, scorer_before)
    assert torch.equal(base.fc.weight, fc_before) and base.fc.weight.requires_grad  # base untouched


def test_from_base_head_copies_or_shares_weights() -> None:
    base = GAPHead(8, 3, dropout=0.2)
    copied = BoundedLogitAttentionHead.from_base_head(base, threshold_mode="code")
    assert copied.classifier is not base
    assert torch.equal(copied.classifier.fc.weight, base.fc.weight)
    assert copied.classifier.fc.weight.data_ptr() != base.fc.weight.data_ptr()
    assert copied.classifier.dropout.p == 0.2 and copied.threshold_mode == "code"
    shared = BoundedLogitAttentionHead.from_base_head(base, share=True, freeze=True)
    assert shared.classifier is base and not base.fc.weight.requires_grad
    shared.set_classifier_trainable(True)
    assert base.fc.weight.requires_grad


def test_registry_builds_every_variant() -> None:
    assert set(BLA_VARIANTS) == {"bl", "bla", "bla_t", "bla_ph", "l2x_f"}
    base = GAPHead(8, 3)
    features = torch.randn(2, 8, 4, 4)
    heads = {v: build_head(v, 8, 3, base_head=base) if v == "bla_ph" else build_head(v, 8, 3) for v in BLA_VARIANTS}
    assert type(heads["bl"]) is GAPHead and isinstance(heads["l2x_f"], L2XFeatureHead)
    assert heads["bla"].threshold_mode == "none" and heads["bla_t"].threshold_mode == "paper"
    for head in heads.values():
        assert head.eval()(features).shape == (2, 3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_head("bla_x", 8, 3), "unknown BLA variant"),
        (lambda: build_head("bla_ph", 8, 3), "base_head"),
        (lambda: BoundedLogitAttentionHead(8, 3, threshold_mode="hard"), "threshold_mode"),
        (lambda: BoundedLogitAttentionHead(8, 3, theta=0.0), "theta"),
        (lambda: BoundedLogitAttentionHead(8, 3, gamma=1.5), "gamma"),
        (lambda: BoundedLogitAttentionHead(8, 3, base_head=GAPHead(4, 3)), "from_base_head"),
        (lambda: BoundedLogitAttentionHead(8, 3, dropout=0.5, base_head=GAPHead(8, 3, 0.2)), "dropout"),
        (lambda: BoundedLogitAttentionHead(8, 3)(torch.randn(2, 4, 3, 3)), "channels"),
        (lambda: BoundedLogitAttentionHead(8, 3)(torch.randn(2, 8, 9)), r"\[B, C, h, w\]"),
    ],
)
def test_bad_input_raises_clear_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()

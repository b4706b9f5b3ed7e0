"""Tests for attnbook.methods.l2x: L2X-F's relaxed k-hot mask in training and exact top-k at test time."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnbook.methods.l2x import L2XFeatureHead
from attnbook.methods.pooling import pool_positions, uniform_weights


def test_test_time_selects_exactly_the_top_k_positions() -> None:
    head = L2XFeatureHead(6, 3, k=4).eval()
    features = torch.randn(3, 6, 5, 5)
    weights = head.pooling_weights(features)  # eval → hard
    scores = head.scores(features).flatten(1).detach().numpy()
    for b in range(3):
        row = weights[b].flatten()
        assert int((row > 0).sum()) == 4
        torch.testing.assert_close(row[row > 0], torch.full((4,), 0.25))
        expected = set(np.argsort(-scores[b])[:4].tolist())  # independent top-k
        assert set(torch.nonzero(row).flatten().tolist()) == expected


def test_test_time_keeps_exactly_k_even_with_ties() -> None:
    head = L2XFeatureHead(6, 3, k=8)
    _, delta = head.explain(torch.zeros(2, 6, 7, 7))  # all scores equal
    assert delta.sum(dim=(1, 2)).tolist() == [8, 8]


def test_eval_forward_is_fc_of_mean_over_top_k() -> None:
    head = L2XFeatureHead(4, 2, k=3).eval()
    features = torch.randn(2, 4, 3, 3)
    _, delta = head.explain(features)
    flat, mask = features.flatten(2), delta.flatten(1)  # [B, C, n], [B, n]
    v = torch.stack([flat[b][:, mask[b]].mean(dim=1) for b in range(2)])  # [B, C]
    torch.testing.assert_close(head(features), head.classifier.fc(v))


def test_training_mask_is_relaxed_stochastic_and_differentiable() -> None:
    head = L2XFeatureHead(6, 3, k=4).train()
    features = torch.randn(2, 6, 5, 5)
    w1 = head.pooling_weights(features)
    w2 = head.pooling_weights(features)
    assert not torch.equal(w1, w2)  # Gumbel sampling
    assert ((w1 > 0) & (w1 < 1)).all()  # relaxed, not binary
    sums = w1.sum(dim=(1, 2))
    assert ((sums >= 1 - 1e-6) & (sums <= 4 + 1e-6)).all()  # max of k distributions
    F.cross_entropy(head(features), torch.tensor([0, 2])).backward()
    assert head.scorer.weight.grad.abs().sum() > 0


def test_sharp_single_draw_follows_softmax_of_scores() -> None:
    # Gumbel-max trick: with k = 1 and a sharp relaxation, position i is picked with prob softmax(s)_i.
    head = L2XFeatureHead(1, 2, k=1, tau=1e4).train()
    with torch.no_grad():
        head.scorer.weight.fill_(1.0)
    scores = torch.tensor([[0.0, 1.0], [-1.0, 0.5]])  # s = f (one channel, u = 1)
    features = scores.expand(4000, 1, 2, 2)
    picks = head.pooling_weights(features).flatten(1).argmax(dim=1)
    freq = torch.bincount(picks, minlength=4).float() / 4000
    torch.testing.assert_close(freq, scores.flatten().softmax(dim=0), atol=0.03, rtol=0)
    torch.testing.assert_close(head.explain(features[:1])[0][0], scores.flatten().softmax(0).view(2, 2))


def test_pooling_helpers_by_hand() -> None:
    features = torch.arange(8.0).view(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    mask = torch.tensor([[[True, False], [False, True]]])
    weights = uniform_weights(mask)
    torch.testing.assert_close(weights, torch.tensor([[[0.5, 0.0], [0.0, 0.5]]]))
    torch.testing.assert_close(pool_positions(features, weights), torch.tensor([[1.5, 5.5]]))
    with pytest.raises(ValueError, match="no position"):
        uniform_weights(torch.zeros(1, 2, 2, dtype=torch.bool))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: L2XFeatureHead(4, 2, k=0), "positive int"),
        (lambda: L2XFeatureHead(4, 2, tau=-1.0), "tau"),
        (lambda: L2XFeatureHead(4, 2, k=10).eval()(torch.randn(1, 4, 3, 3)), "exceeds the 9 positions"),
    ],
)
def test_bad_input_raises_clear_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()

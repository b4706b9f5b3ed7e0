"""Tests for attnbook.models.small_cnn: the BLA §4.1 MNIST CNN and its replaceable head."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnbook.methods.bla import BoundedLogitAttentionHead, build_head
from attnbook.models.heads import GAPHead
from attnbook.models.small_cnn import SmallCNN


def test_architecture_matches_the_paper() -> None:
    model = SmallCNN()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 16]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 2
    assert sum(isinstance(m, nn.ReLU) for m in model.features) == 3
    assert isinstance(model.head, GAPHead) and model.head.fc.out_features == 1


def test_shapes_on_28x28_inputs() -> None:
    model = SmallCNN()
    images = torch.rand(5, 1, 28, 28)
    assert model.features(images).shape == (5, 16, 7, 7)  # n = 49, the paper's γ = 1/49
    assert model(images).shape == (5, 1)


def test_bla_head_replaces_the_base_head() -> None:
    model = SmallCNN(head=build_head("bla_t", SmallCNN.feature_channels, 1)).train()
    images = torch.rand(4, 1, 28, 28)
    logits = model(images)
    assert logits.shape == (4, 1)
    q, delta = model.head.explain(model.features(images))
    assert q.shape == delta.shape == (4, 7, 7)
    assert isinstance(model.head, BoundedLogitAttentionHead)
    assert model.head.gamma_for(49) == pytest.approx(0.98 / 49)
    F.binary_cross_entropy_with_logits(logits[:, 0], torch.tensor([0.0, 1.0, 1.0, 0.0])).backward()
    assert model.head.scorer.weight.grad.abs().sum() > 0
    assert model.features[0].weight.grad.abs().sum() > 0  # end to end, as in §4.1


def test_wrong_channel_count_raises() -> None:
    with pytest.raises(ValueError, match="in_channels"):
        SmallCNN()(torch.rand(2, 3, 28, 28))

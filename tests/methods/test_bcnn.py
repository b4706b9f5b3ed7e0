"""Tests for the B-CNN baseline head (lib/attnbook/methods/bcnn.py)."""
from __future__ import annotations

import pytest
import torch

from attnbook.methods.bcnn import BCNNHead


def test_shapes_and_non_negative_maps() -> None:
    head = BCNNHead(in_channels=8, num_classes=5)
    out = head.attend(torch.rand(2, 8, 4, 3))
    assert out.logits.shape == (2, 5)
    assert out.maps.shape == (2, 3, 4, 3)  # C' = 3 by default, as in the paper's visualisations
    assert out.extras["vectors"].shape == (2, 3, 8)
    assert (out.maps >= 0).all()  # final ReLU


def test_vectors_are_map_weighted_means_and_logits_are_linear_in_them() -> None:
    head = BCNNHead(in_channels=4, num_classes=3, n_maps=2).eval()
    features = torch.rand(2, 4, 3, 3)
    out = head.attend(features)
    for b in range(2):
        for k in range(2):
            expected = (out.maps[b, k] * features[b]).sum(dim=(1, 2)) / 9  # Σ_i m_k,i f_i / (h·w)
            torch.testing.assert_close(out.extras["vectors"][b, k], expected)
    torch.testing.assert_close(out.logits, out.extras["vectors"].flatten(1) @ head.fc.weight.T + head.fc.bias)
    torch.testing.assert_close(head(features), out.logits)


def test_einsum_path_matches_the_materialised_product() -> None:
    materialised = BCNNHead(6, 3, materialize=True).eval()
    fused = BCNNHead(6, 3, materialize=False).eval()
    fused.load_state_dict(materialised.state_dict())
    features = torch.rand(3, 6, 5, 5, requires_grad=True)
    a, b = materialised.attend(features), fused.attend(features)
    torch.testing.assert_close(a.extras["vectors"], b.extras["vectors"])
    torch.testing.assert_close(a.logits, b.logits)
    grad_a, = torch.autograd.grad(a.logits.sum(), features)
    grad_b, = torch.autograd.grad(b.logits.sum(), features)
    torch.testing.assert_close(grad_a, grad_b)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="expects 4"):
        BCNNHead(4, 2)(torch.rand(1, 3, 2, 2))
    with pytest.raises(ValueError, match="n_maps"):
        BCNNHead(4, 2, n_maps=0)

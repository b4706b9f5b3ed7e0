"""CAM and the activation map: hand-sized values, and CAM = (h·w) × Grad-CAM at the GAP layer."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from attnbook.explain import explain
from attnbook.explain.cam import activation_map, cam, model_activation_map, model_cam
from attnbook.explain.gradcam import grad_attention
from attnbook.models.heads import GAPHead

FEATURES = torch.tensor([[[[1.0, 2.0], [0.0, 4.0]], [[3.0, 0.0], [1.0, 1.0]]]])  # [1, K=2, 2, 2]
FC = torch.tensor([[1.0, 1.0], [2.0, -1.0], [-1.0, 0.0]])  # [C=3, K=2]


@pytest.mark.parametrize(
    "target,expected",
    [
        (0, [[4.0, 2.0], [1.0, 5.0]]),  # f0 + f1
        (1, [[0.0, 4.0], [0.0, 7.0]]),  # ReLU(2 f0 − f1)
        (2, [[0.0, 0.0], [0.0, 0.0]]),  # ReLU(−f0)
    ],
)
def test_cam_hand_sized(target, expected):
    torch.testing.assert_close(cam(FEATURES, FC, torch.tensor([target])), torch.tensor([expected]))


def test_cam_per_sample_targets():
    features = torch.cat([FEATURES, 2 * FEATURES])
    maps = cam(features, FC, torch.tensor([0, 1]))
    torch.testing.assert_close(maps[1], 2 * cam(FEATURES, FC, 1)[0])
    torch.testing.assert_close(maps[0], cam(FEATURES, FC, 0)[0])


def test_activation_map_hand_sized():
    expected = torch.tensor([[[2.0, 1.0], [0.5, 2.5]]])  # channel mean
    torch.testing.assert_close(activation_map(FEATURES), expected)
    torch.testing.assert_close(activation_map(-FEATURES), torch.zeros(1, 2, 2))  # ReLU'd


def test_gradcam_at_gap_layer_equals_cam_up_to_positive_scale():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x, t = torch.randn(3, 3, 64, 64), torch.tensor([2, 0, 9])
    cams = model_cam(model, x, t, layer="layer4", fc="fc")  # [B, 2, 2]
    gradcams = grad_attention(model, "layer4", x, t)
    assert cams.max() > 0
    torch.testing.assert_close(gradcams * 4, cams, rtol=1e-5, atol=1e-6)  # α_k = w_ck / (h·w), h·w = 4


def test_model_level_with_gap_head_and_registry():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), GAPHead(6, 4)).eval()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 1])
    features = torch.relu(model[0](x))
    torch.testing.assert_close(model_cam(model, x, t, layer="1", fc="2.fc"), cam(features, model[2].fc.weight, t))
    torch.testing.assert_close(explain("cam", model, x, t, layer="1", fc="2.fc"), cam(features, model[2].fc.weight, t))
    torch.testing.assert_close(model_activation_map(model, x, layer="1"), features.mean(1))
    assert explain("activation", model, x, t, layer="1", size=16).shape == (2, 16, 16)


def test_cam_errors():
    with pytest.raises(ValueError, match="K=2"):
        cam(FEATURES, torch.ones(3, 5), torch.tensor([0]))
    with pytest.raises(ValueError, match="class indices"):
        cam(FEATURES, FC, torch.tensor([0.0]))
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), GAPHead(6, 4))
    with pytest.raises(TypeError, match="nn.Linear"):
        model_cam(model, torch.randn(1, 3, 8, 8), 0, layer="1", fc="0")
    with pytest.raises(ValueError, match="needs layer= and fc="):
        explain("cam", model, torch.randn(1, 3, 8, 8), torch.tensor([0]))

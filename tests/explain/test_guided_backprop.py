"""Guided backprop vs captum (ResNet with reused in-place ReLUs, VGG-like), restoring, Guided Grad-CAM."""
from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from captum.attr import GuidedBackprop
from torch import nn

from attnbook.explain import explain
from attnbook.explain.gradcam import grad_attention
from attnbook.explain.guided_backprop import GuidedReLU, guided_backprop, guided_gradcam, guided_relus, saliency
from attnbook.explain.postprocess import upsample


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _vgg_like() -> nn.Module:
    torch.manual_seed(0)
    cfg = [8, "M", 16, "M", 16]
    layers: list[nn.Module] = []
    channels = 3
    for c in cfg:
        if c == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, c, 3, padding=1), nn.ReLU(inplace=True)]
            channels = c
    features = nn.Sequential(*layers)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(inplace=True),
                         nn.Linear(32, 5))
    return nn.Sequential(features, head).eval()


def _captum(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GuidedBackprop(model).attribute(x.clone().requires_grad_(True), t)


@pytest.mark.parametrize("make_model,size", [(_resnet, 64), (_vgg_like, 32)])
def test_matches_captum(make_model, size):
    model = make_model()
    x, t = torch.randn(2, 3, size, size), torch.tensor([1, 4])
    ours = guided_backprop(model, x, t)
    assert ours.shape == x.shape and ours.abs().max() > 0
    torch.testing.assert_close(ours, _captum(model, x, t), rtol=1e-5, atol=1e-5 * ours.abs().max().item())


def test_guided_relu_backward_hand_sized():
    x = torch.tensor([-1.0, 2.0, 3.0, 0.5], requires_grad=True)
    out = GuidedReLU.apply(x)
    (grad,) = torch.autograd.grad(out, x, torch.tensor([5.0, 5.0, -2.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([0.0, 2.0, 3.0, 0.5]))
    torch.testing.assert_close(grad, torch.tensor([0.0, 5.0, 0.0, 1.0]))  # forward mask AND positive gradient


def test_relus_restored_even_on_error():
    model = _resnet()
    x = torch.randn(1, 3, 32, 32)
    before = model(x)
    with pytest.raises(RuntimeError, match="boom"):
        with guided_relus(model) as count:
            assert count == sum(isinstance(m, nn.ReLU) for m in model.modules()) > 1
            raise RuntimeError("boom")
    assert all("forward" not in m.__dict__ for m in model.modules() if isinstance(m, nn.ReLU))
    torch.testing.assert_close(model(x), before)
    plain_grad = torch.autograd.grad(model(x.requires_grad_(True))[0, 0], x)[0]
    assert (plain_grad < 0).any()  # ordinary backprop again


def test_model_without_relu_modules_is_rejected():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="no nn.ReLU modules"):
        guided_backprop(model, torch.randn(1, 3, 8, 8), torch.tensor([0]))


def test_saliency_is_abs_max_over_channels():
    grads = torch.tensor([[[[1.0, -3.0]], [[-2.0, 0.5]], [[0.0, 2.0]]]])  # [1, 3, 1, 2]
    torch.testing.assert_close(saliency(grads), torch.tensor([[[2.0, 3.0]]]))


def test_guided_gradcam_and_registry():
    model = _vgg_like()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 3])
    gb = guided_backprop(model, x, t)
    cam = upsample(grad_attention(model, "0.6", x, t), 32)  # last conv of the features
    ggc = guided_gradcam(model, x, t, layer="0.6")
    torch.testing.assert_close(ggc, gb * cam.unsqueeze(1))
    assert cam.max() > 0 and ggc.abs().max() > 0
    torch.testing.assert_close(explain("guided_gradcam", model, x, t, layer="0.6"), saliency(ggc))
    torch.testing.assert_close(explain("guided_backprop", model, x, t), saliency(gb))

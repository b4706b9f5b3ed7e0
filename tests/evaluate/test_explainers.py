"""Map functions: multi-target Grad-CAM from one forward pass equals per-target Grad-CAM (ours and
captum's); the attention adapter; the floors."""
from __future__ import annotations

import torch
from captum.attr import LayerGradCam
from torch import nn

from attnbook.evaluate.explainers import (
    attention_maps_fn,
    edge_maps_fn,
    multi_target_gradcam,
    posthoc_maps_fn,
    random_maps_fn,
)
from attnbook.explain import explain
from attnbook.explain.gradcam import grad_attention
from attnbook.methods.base import Attention


class Tiny(nn.Module):
    """conv-relu-conv-relu → GAP → fc, no in-place ops (captum-friendly); ``attend`` gives 2 maps."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 12, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))

    def attend(self, x: torch.Tensor) -> Attention:
        f = self.features(x)
        return Attention(self.fc(f.mean(dim=(2, 3))), torch.stack([f[:, 0], f[:, 1]], dim=1))


def _setup(seed: int = 0) -> tuple[Tiny, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = Tiny().eval()
    return model, torch.rand(6, 3, 16, 16), torch.randint(0, 5, (6, 3))


def test_multi_target_gradcam_equals_one_call_per_target_and_captum():
    model, x, targets = _setup()
    maps = multi_target_gradcam(model, "features.3", x, targets)  # [B, 3, 8, 8]
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    captum = LayerGradCam(model, model.features[3])
    for t in range(targets.shape[1]):
        single = grad_attention(model, "features.3", x, targets[:, t])
        torch.testing.assert_close(maps[:, t], single, rtol=1e-5, atol=1e-7)
        theirs = captum.attribute(x, targets[:, t], relu_attributions=True)[:, 0].detach()
        torch.testing.assert_close(maps[:, t], theirs, rtol=1e-4, atol=1e-6)


def test_posthoc_maps_fn_resizes_and_clips_like_explain():
    model, x, targets = _setup(1)
    for name, kw in (("gradcam++", {"layer": "features.3"}), ("cam", {"layer": "features", "fc": "fc"}),
                     ("guided_backprop", {})):
        maps = posthoc_maps_fn(name, model, **kw)(x, targets)
        assert maps.shape == (6, 3, 16, 16) and (maps >= 0).all()
        for t in range(3):
            ref = explain(name, model, x, targets[:, t], size=16, **kw).clamp(min=0)
            torch.testing.assert_close(maps[:, t], ref, rtol=1e-5, atol=1e-6)


def test_attention_maps_fn_sums_or_picks_maps_for_every_target():
    model, x, targets = _setup(2)
    f = model.features(x)
    both = attention_maps_fn(model)(x, targets)
    first = attention_maps_fn(model, map_index=1)(x, targets)
    up = torch.nn.functional.interpolate(f[:, :2], size=16, mode="bilinear", align_corners=False)
    torch.testing.assert_close(both[:, 0], up.sum(1).clamp(min=0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first[:, 2], up[:, 1].clamp(min=0), rtol=1e-5, atol=1e-6)
    assert torch.equal(both[:, 0], both[:, 2])  # class-agnostic


def test_floors():
    x = torch.zeros(2, 3, 16, 16)
    x[1, :, :, 8:] = 1.0  # a vertical edge in image 1
    edges = edge_maps_fn()(x, torch.zeros(2, 1, dtype=torch.long))
    assert edges[0].abs().max() == 0
    assert edges[1, 0, :, 7:9].min() > 0 and edges[1, 0, :, :6].max() == 0
    a = random_maps_fn(3)(x, torch.zeros(2, 2, dtype=torch.long))
    b = random_maps_fn(3)(x, torch.zeros(2, 2, dtype=torch.long))
    assert torch.equal(a, b) and a.shape == (2, 2, 16, 16) and not torch.equal(a[:, 0], a[:, 1])


def test_class_aware_attention_maps_fn_asks_for_each_target():
    class PerClass(Tiny):
        def attend(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Attention:
            f = self.features(x)
            pick = torch.zeros(len(x), dtype=torch.long) if labels is None else labels % f.shape[1]
            return Attention(self.fc(f.mean(dim=(2, 3))), f[torch.arange(len(x)), pick][:, None])

    torch.manual_seed(3)
    model, x = PerClass().eval(), torch.rand(4, 3, 16, 16)
    targets = torch.tensor([[0, 1], [2, 3], [4, 0], [1, 1]])
    maps = attention_maps_fn(model, 0, class_aware=True)(x, targets)
    f = torch.nn.functional.interpolate(model.features(x), size=16, mode="bilinear", align_corners=False)
    for b in range(4):
        for t in range(2):
            torch.testing.assert_close(maps[b, t], f[b, int(targets[b, t]) % 12].clamp(min=0))

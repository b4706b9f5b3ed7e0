"""Sanity checks: SSIM against scikit-image, cascading randomisation against Quantus 0.6's MPRT."""
from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from skimage.metrics import structural_similarity
from torch import nn

from attnbook.evaluate.explainers import posthoc_maps_fn
from attnbook.evaluate.sanity import (
    cascading_randomisation,
    label_randomisation,
    map_similarity,
    permuted_labels,
    randomisable_layers,
    ssim,
)


def test_ssim_matches_scikit_image():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 20, 17, generator=gen)
    b = (a + 0.3 * torch.rand(3, 20, 17, generator=gen)).clamp(0, 1)
    ours = ssim(a, b, data_range=1.0)
    for i in range(3):
        ref = structural_similarity(a[i].double().numpy(), b[i].double().numpy(), data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    assert ssim(a, a).tolist() == pytest.approx([1.0] * 3)


def test_map_similarity_of_identical_and_unrelated_maps():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(4, 16, 16, generator=gen), torch.rand(4, 16, 16, generator=gen)
    same = map_similarity(a, 2 * a)  # scale-free
    assert torch.allclose(same["spearman"], torch.ones(4)) and torch.allclose(same["ssim"], torch.ones(4), atol=1e-5)
    other = map_similarity(a, b)
    assert other["spearman"].abs().max() < 0.3 and other["ssim"].max() < 0.3


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))


def _gradcam(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return posthoc_maps_fn("gradcam", model, layer="conv1")(x, t)[:, 0]


def test_cascading_randomisation_matches_quantus_mprt():
    torch.manual_seed(0)
    model = Net().eval()
    x, y = torch.rand(5, 3, 12, 12), torch.randint(0, 4, (5,))
    ours = cascading_randomisation(model, _gradcam, x, y, seed=42)
    assert list(ours) == ["fc", "conv2", "conv1"] == randomisable_layers(model)

    def explain_func(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **kw: object) -> np.ndarray:
        maps = _gradcam(model, torch.as_tensor(inputs), torch.as_tensor(targets).long())
        return maps[:, None].numpy()

    theirs = quantus.MPRT(disable_warnings=True, abs=False, normalise=False)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), explain_func=explain_func, device="cpu")
    for layer in ours:
        np.testing.assert_allclose(ours[layer]["spearman"].numpy(), theirs[layer], atol=1e-5)
    # the model itself is untouched
    assert torch.equal(_gradcam(model, x, y), _gradcam(model, x, y))


def test_cascading_randomisation_at_selected_layers_equals_the_full_cascade():
    torch.manual_seed(2)
    model = Net().eval()
    x, y = torch.rand(3, 3, 12, 12), torch.randint(0, 4, (3,))
    full = cascading_randomisation(model, _gradcam, x, y, seed=7)
    calls = {"n": 0}

    def counted(m: nn.Module, xs: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return _gradcam(m, xs, ts)

    some = cascading_randomisation(model, counted, x, y, seed=7, at=("fc", "conv1"))
    assert list(some) == ["fc", "conv1"] and calls["n"] == 3  # the original + two comparisons
    for layer in some:  # the layers in between were still reset: the same maps as the full cascade
        assert torch.equal(some[layer]["spearman"], full[layer]["spearman"])


def test_permuted_labels_keep_counts_and_break_links():
    labels = torch.arange(100) % 5
    perm = permuted_labels(labels, seed=3)
    assert torch.equal(perm.sort().values, labels.sort().values)
    assert (perm != labels).float().mean() > 0.5


def test_label_randomisation_compares_two_models_maps():
    torch.manual_seed(1)
    model, other = Net().eval(), Net().eval()
    x, y = torch.rand(4, 3, 12, 12), torch.randint(0, 4, (4,))
    same = label_randomisation(_gradcam, model, model, x, y)
    assert torch.allclose(same["spearman"], torch.ones(4))
    differ = label_randomisation(_gradcam, model, other, x, y)
    assert (differ["spearman"] < 0.99).all()

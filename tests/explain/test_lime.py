"""Batched LIME: each step against the ``lime`` package / scikit-learn, plus a known-answer model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from lime.lime_base import LimeBase
from lime.lime_image import LimeImageExplainer
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import pairwise_distances
from torch import nn

from attnbook.explain import explain
from attnbook.explain.lime import (
    _baseline_image,
    cosine_distance_to_all_on,
    lime,
    lime_kernel,
    patch_index_map,
    perturbation_scores,
    sample_masks,
    weighted_ridge,
)

GRID, SIZE = 4, 16


class PixelLinearModel(nn.Module):
    """Logits of 3 classes, each a fixed weighting ``V_c`` of the gray pixels (a known answer)."""

    def __init__(self, squash: bool = False) -> None:
        super().__init__()
        self.register_buffer("weights", torch.randn(3, SIZE * SIZE, generator=torch.Generator().manual_seed(3)))
        self.squash = squash

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = x.mean(1).flatten(1) @ self.weights.T  # [B, 3]
        return torch.tanh(logits / 2) if self.squash else logits

    def patch_contributions(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``Σ_{pixels of patch p} V_t · gray(x)`` → ``[B, P]``: the exact LIME answer, black baseline."""
        ids = patch_index_map(SIZE, SIZE, GRID).flatten()
        per_pixel = self.weights[target] * x.mean(1).flatten(1)  # [B, H*W]
        return torch.zeros(x.shape[0], GRID * GRID).index_add_(1, ids, per_pixel)


def test_patch_index_map():
    expected = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    torch.testing.assert_close(patch_index_map(4, 4, 2), expected)
    uneven = patch_index_map(5, 3, 2)  # rows 3+2, cols 2+1
    torch.testing.assert_close(uneven[:, 0], torch.tensor([0, 0, 0, 2, 2]))
    torch.testing.assert_close(uneven[0], torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="grid"):
        patch_index_map(4, 4, 5)


def test_masks_distances_and_kernel_match_lime():
    masks = sample_masks(200, 9, torch.Generator().manual_seed(0))
    assert torch.all(masks[0] == 1) and set(masks.unique().tolist()) == {0.0, 1.0}
    assert 0.4 < masks[1:].mean() < 0.6
    masks[5] = 0  # an all-off mask
    distances = cosine_distance_to_all_on(masks)
    expected = pairwise_distances(masks.numpy(), masks[:1].numpy(), metric="cosine").ravel()
    np.testing.assert_allclose(distances.numpy(), expected, atol=1e-6)
    lime_kernel_fn = LimeImageExplainer(kernel_width=0.25).base.kernel_fn
    np.testing.assert_allclose(lime_kernel(distances).numpy(), lime_kernel_fn(expected), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_weighted_ridge_matches_sklearn(alpha):
    rng = np.random.default_rng(0)
    x, y, w = rng.integers(0, 2, (300, 6)).astype(float), rng.normal(size=(300, 2)), rng.uniform(0.1, 1, 300)
    coef, intercept = weighted_ridge(torch.tensor(x), torch.tensor(y), torch.tensor(w), alpha)
    oracle = (Ridge(alpha=alpha) if alpha else LinearRegression()).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(coef.numpy(), oracle.coef_, atol=1e-10)
    np.testing.assert_allclose(intercept.numpy(), oracle.intercept_, atol=1e-10)


def test_regression_matches_lime_base_on_our_samples():
    """Same masks, scores and distances → the same coefficients as lime's own regression."""
    model, x, t = PixelLinearModel(squash=True), torch.rand(2, 3, SIZE, SIZE), torch.tensor([0, 2])
    ids = patch_index_map(SIZE, SIZE, GRID)
    masks = sample_masks(300, GRID * GRID, torch.Generator().manual_seed(1))
    scores = perturbation_scores(model, x, t, masks, ids, baseline="patch_mean")  # [N, B]
    distances = cosine_distance_to_all_on(masks)
    coef, intercept = weighted_ridge(masks, scores, lime_kernel(distances), alpha=1.0)
    assert coef.abs().max() > 1e-2  # the patch-mean baseline changes the scores
    base = LimeBase(LimeImageExplainer(kernel_width=0.25).base.kernel_fn)
    for b in range(2):
        lime_intercept, exp, *_ = base.explain_instance_with_data(
            masks.numpy(), scores[:, b : b + 1].numpy(), distances.numpy(), 0, GRID * GRID, feature_selection="none"
        )
        lime_coef = np.zeros(GRID * GRID)
        for feature, value in exp:
            lime_coef[feature] = value
        np.testing.assert_allclose(coef[b].numpy(), lime_coef, rtol=1e-4, atol=1e-6)
        assert intercept[b].item() == pytest.approx(lime_intercept, rel=1e-4, abs=1e-6)


def test_patch_mean_baseline_matches_lime_fudged_image():
    x = torch.rand(1, 3, SIZE, SIZE)
    ids = patch_index_map(SIZE, SIZE, GRID)
    image, segments = x[0].permute(1, 2, 0).numpy(), ids.numpy()
    fudged = image.copy()
    for s in np.unique(segments):  # lime_image.explain_instance with hide_color=None
        fudged[segments == s] = image[segments == s].mean(0)
    np.testing.assert_allclose(_baseline_image(x, ids, "patch_mean")[0].permute(1, 2, 0).numpy(), fudged, atol=1e-6)
    assert torch.all(_baseline_image(x, ids, 0.5) == 0.5)
    with pytest.raises(ValueError, match="baseline"):
        _baseline_image(x, ids, "blur")


def test_linear_model_known_answer():
    """Score linear in the pixels, black baseline → least squares recovers each patch's contribution."""
    model, x, t = PixelLinearModel(), torch.rand(2, 3, SIZE, SIZE), torch.tensor([1, 2])
    scores = lime(model, x, t, grid=GRID, num_samples=200, generator=torch.Generator().manual_seed(0))
    expected = model.patch_contributions(x, t)  # [B, P]
    assert expected.abs().min() > 1e-3
    torch.testing.assert_close(scores.flatten(1), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(explain("lime", model, x, t, grid=GRID, num_samples=200,
                                       generator=torch.Generator().manual_seed(0)), scores)


def test_chunking_callable_target_and_tuple_output_agree():
    model, x, t = PixelLinearModel(), torch.rand(3, 3, SIZE, SIZE), torch.tensor([0, 1, 2])
    ids, masks = patch_index_map(SIZE, SIZE, GRID), sample_masks(20, GRID * GRID)
    expected = perturbation_scores(model, x, t, masks, ids, batch_size=1000)

    class TwoHeads(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return model(x), -model(x)

    def score_fn(out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return -out[1].gather(1, t[:, None])[:, 0]  # per-sample targets: rows must align with x

    got = perturbation_scores(TwoHeads(), x, score_fn, masks, ids, batch_size=7)  # 2 masks per forward
    torch.testing.assert_close(got, expected)


def test_end_to_end_agrees_with_lime_package():
    """Different random samples, same protocol: the patch rankings must agree (Spearman > 0.9)."""
    model = PixelLinearModel(squash=True)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    ids = patch_index_map(SIZE, SIZE, GRID).numpy()

    def classifier_fn(images: np.ndarray) -> np.ndarray:  # [n, H, W, 3] -> [n, 3]
        with torch.no_grad():
            return model(torch.from_numpy(images).permute(0, 3, 1, 2).float()).numpy()

    explanation = LimeImageExplainer(kernel_width=0.25, random_state=0).explain_instance(
        x[0].permute(1, 2, 0).double().numpy(), classifier_fn, labels=(1,), hide_color=None, top_labels=None,
        num_samples=400, batch_size=100, segmentation_fn=lambda image: ids, random_seed=0,
    )
    theirs = np.zeros(GRID * GRID)
    for feature, value in explanation.local_exp[1]:
        theirs[feature] = value
    ours = lime(model, x, 1, grid=GRID, num_samples=400, baseline="patch_mean", alpha=1.0,
                generator=torch.Generator().manual_seed(0))
    assert np.abs(theirs).max() > 1e-2
    rho = spearmanr(ours.flatten().numpy(), theirs).statistic
    assert rho > 0.9, rho

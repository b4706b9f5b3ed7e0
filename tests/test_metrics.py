"""Metrics: hand-sized examples with known answers, and scipy / scikit-learn / torchmetrics oracles."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata as scipy_rankdata
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from torchmetrics.classification import MulticlassAccuracy, MultilabelAUROC, MultilabelAveragePrecision

from attnbook import metrics as M

OBJECT = torch.tensor([[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)  # [1, 4, 4]


# ------------------------------------------------------------------------------------------------
# FAR, pointing game, mass, boxes
# ------------------------------------------------------------------------------------------------
def test_far_hand_sized():
    maps = torch.ones(3, 4, 4)
    maps[1][OBJECT[0]] = 4.0  # object mean 4, background mean 1
    maps[2] = OBJECT[0].float() * 3 + 1  # object 4, background 1, again
    maps[2, 3, 3] = 13.0  # background mean (11·1 + 13) / 12 = 2
    far = M.far(maps, OBJECT.expand(3, 4, 4))
    torch.testing.assert_close(far, torch.tensor([1.0, 4.0, 2.0]))


def test_far_undefined_cases_are_nan():
    maps = torch.rand(3, 4, 4)
    maps[2] = 0
    masks = torch.stack([torch.zeros(4, 4, dtype=torch.bool), torch.ones(4, 4, dtype=torch.bool), OBJECT[0]])
    assert torch.isnan(M.far(maps, masks)).all()  # empty mask, no background, all-zero map
    with pytest.raises(ValueError, match="non-negative"):
        M.far(-maps, masks)
    with pytest.raises(ValueError, match="resize_to"):
        M.far(torch.rand(3, 2, 2), masks)


def test_pointing_game_hits_ties_and_empty_masks():
    maps = torch.zeros(4, 4, 4)
    maps[0, 1, 0] = 1.0  # inside the object
    maps[1, 3, 3] = 1.0  # outside
    maps[2] = 1.0  # constant: first maximum is (0, 0), inside
    maps[3, 0, 0] = 1.0
    masks = OBJECT.expand(4, 4, 4).clone()
    masks[3] = False
    hits = M.pointing_game(maps, masks)
    torch.testing.assert_close(hits[:3], torch.tensor([1.0, 0.0, 1.0]))
    assert math.isnan(hits[3])
    assert M.pointing_error_rate(maps, masks) == pytest.approx(1 / 3)


def test_boxes_to_masks_and_pointing_with_a_box():
    masks = M.boxes_to_masks(torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 2.0, 4.0, 3.0]]), (4, 4))
    torch.testing.assert_close(masks[0], OBJECT[0])
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[2, 1:4] = True  # rows [2, 3), columns [1, 4)
    torch.testing.assert_close(masks[1], expected)


def test_mass_in_region_and_part_wise():
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0], maps[0, 3, 3], maps[0, 0, 3] = 2.0, 1.0, 1.0
    assert M.mass_in_region(maps, OBJECT).item() == pytest.approx(0.5)
    parts = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    parts[0, 0] = OBJECT[0]
    parts[0, 1, 3, :] = True
    torch.testing.assert_close(M.mass_in_region(maps, parts), torch.tensor([[0.5, 0.25, 0.0]]))
    assert math.isnan(M.mass_in_region(torch.zeros(1, 4, 4), OBJECT).item())


def test_resize_to_mask_size():
    maps = torch.rand(2, 4, 4)
    resized = M.resize_to(maps, torch.zeros(2, 16, 16, dtype=torch.bool))
    assert resized.shape == (2, 16, 16)
    assert M.far(resized, OBJECT.repeat(2, 4, 4)).isfinite().all()


# ------------------------------------------------------------------------------------------------
# soft IoU, sparsity, Spearman
# ------------------------------------------------------------------------------------------------
def test_soft_iou_hand_sized():
    a = torch.tensor([[[1.0, 0.0], [2.0, 1.0]]])
    b = torch.tensor([[[1.0, 3.0], [0.0, 1.0]]])
    # 2 · (1 + 0 + 0 + 1) / (2 + 3 + 2 + 2) = 4 / 9
    torch.testing.assert_close(M.soft_iou(a, b), torch.tensor([4 / 9]))
    torch.testing.assert_close(M.soft_iou(a, a), torch.tensor([1.0]))
    mask = torch.tensor([[[1.0, 1.0], [1.0, 0.5]]])
    torch.testing.assert_close(M.soft_iou(a, b, mask), torch.tensor([3 / 9]))
    a.requires_grad_(True)
    M.soft_iou(a, b).sum().backward()
    assert a.grad.abs().sum() > 0


def test_sparsity_hand_sized():
    uniform = torch.ones(1, 3, 4, 4)
    assert M.sparsity(uniform, torch.ones(1, 4, 4)).item() == pytest.approx(1.0)
    peaked = torch.zeros(1, 2, 4, 4)
    peaked[0, 0, 0, 0] = 1.0  # mean over N=2 → 0.5 at one cell
    norms = torch.full((1, 4, 4), 2.0)
    assert M.sparsity(peaked, norms).item() == pytest.approx(16.0)  # max 1, mean 1/16
    assert math.isnan(M.sparsity(torch.zeros(1, 2, 4, 4), norms).item())


def test_rankdata_and_spearman_match_scipy():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (5, 7, 7), generator=gen).float()  # many ties
    b = a + torch.randn(5, 7, 7, generator=gen)
    expected_ranks = torch.from_numpy(scipy_rankdata(a.flatten(1).numpy(), axis=1))
    torch.testing.assert_close(M.rankdata(a.flatten(1)), expected_ranks)
    expected = [spearmanr(x.flatten(), y.flatten()).statistic for x, y in zip(a.numpy(), b.numpy())]
    np.testing.assert_allclose(M.spearman(a, b).numpy(), expected, rtol=1e-5)
    assert math.isnan(M.spearman(torch.ones(1, 3, 3), torch.rand(1, 3, 3)).item())


# ------------------------------------------------------------------------------------------------
# centroids and the landmark regression protocol
# ------------------------------------------------------------------------------------------------
def test_map_centroids():
    maps = torch.zeros(1, 2, 4, 8)
    maps[0, 0, 1, 2] = 1.0
    maps[0, 0, 3, 6] = 3.0  # x = (2 + 18)/4 = 5, y = (1 + 9)/4 = 2.5
    maps[0, 1] = 1.0  # uniform: centre of the grid
    torch.testing.assert_close(M.map_centroids(maps), torch.tensor([[[5.0, 2.5], [3.5, 1.5]]]))
    # in a 16×32 image a cell is 4×4 pixels: (x + ½)·4
    torch.testing.assert_close(M.map_centroids(maps, (16, 32))[0, 1], torch.tensor([16.0, 8.0]))
    assert torch.isnan(M.map_centroids(torch.zeros(1, 1, 2, 2))).all()


def test_normalisations():
    points = torch.tensor([[[3.0, 4.0]]])
    landmarks = torch.tensor([[[0.0, 0.0], [6.0, 8.0]]])  # eyes 10 apart
    torch.testing.assert_close(M.scale_by_interocular(points, landmarks), torch.tensor([[[0.3, 0.4]]]))
    torch.testing.assert_close(M.scale_by_bbox(points, torch.tensor([[1.0, 2.0, 5.0, 12.0]])),
                               torch.tensor([[[0.5, 0.2]]]))


def _synthetic_landmarks(n: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 3, 2, generator=gen)  # K = 3 parts
    mixing = torch.tensor([[0.5, -1.0, 2.0, 0.1, 0.3, 0.0], [1.0, 0.2, -0.4, 0.6, 0.0, 1.5]] * 2)  # L·2 × K·2
    landmarks = centres.flatten(1) @ mixing.T + 0.3 + noise * torch.randn(n, 4, generator=gen)
    return centres, landmarks.view(n, 2, 2)  # L = 2 landmarks


def test_landmark_error_exact_for_affine_relation():
    fit_c, fit_l = _synthetic_landmarks(50, 0.0, 0)
    test_c, test_l = _synthetic_landmarks(20, 0.0, 1)
    assert M.landmark_regression_error(fit_c, fit_l, test_c, test_l) == pytest.approx(0.0, abs=1e-6)  # float32 inputs


def test_landmark_error_matches_plain_least_squares():
    """StandardScaler + no intercept == ordinary least squares with an intercept."""
    fit_c, fit_l = _synthetic_landmarks(60, 0.1, 0)
    test_c, test_l = _synthetic_landmarks(30, 0.1, 1)
    ols = LinearRegression().fit(fit_c.flatten(1).numpy(), fit_l.flatten(1).numpy())
    pred = ols.predict(test_c.flatten(1).numpy()).reshape(30, 2, 2)
    expected = np.linalg.norm(pred - test_l.numpy(), axis=-1).mean()
    assert M.landmark_regression_error(fit_c, fit_l, test_c, test_l) == pytest.approx(expected, rel=1e-6)


def test_landmark_error_per_landmark_uses_visible_instances_only():
    fit_c, fit_l = _synthetic_landmarks(60, 0.0, 0)
    test_c, test_l = _synthetic_landmarks(30, 0.0, 1)
    fit_vis, test_vis = torch.ones(60, 2, dtype=torch.bool), torch.ones(30, 2, dtype=torch.bool)
    fit_vis[:10, 1] = False
    fit_l[:10, 1] = 1e3  # garbage where invisible: must not be fitted
    test_vis[:5, 0] = False
    test_l[:5, 0] = -1e3  # garbage where invisible: must not be scored
    err = M.landmark_regression_error(fit_c, fit_l, test_c, test_l, fit_visible=fit_vis, test_visible=test_vis,
                                      per_landmark=True)
    assert err == pytest.approx(0.0, abs=1e-6)  # float32 inputs
    with pytest.raises(ValueError, match="per_landmark=True"):
        M.landmark_regression_error(fit_c, fit_l, test_c, test_l, fit_visible=fit_vis)


# ------------------------------------------------------------------------------------------------
# classification vs scikit-learn / torchmetrics
# ------------------------------------------------------------------------------------------------
def test_accuracy_and_topk():
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = torch.tensor([1, 1, 0, 2])
    assert M.accuracy(logits, labels) == pytest.approx(0.25)
    assert M.topk_accuracy(logits, labels, 2) == pytest.approx(0.5)
    assert M.topk_accuracy(logits, labels, 3) == pytest.approx(1.0)
    oracle = MulticlassAccuracy(num_classes=3, top_k=2, average="micro")(logits, labels).item()
    assert M.topk_accuracy(logits, labels, 2) == pytest.approx(oracle)


def test_ap_and_auc_match_sklearn_and_torchmetrics():
    gen = torch.Generator().manual_seed(0)
    targets = (torch.rand(60, 5, generator=gen) < 0.4).int()
    scores = torch.round(targets + torch.randn(60, 5, generator=gen), decimals=1)  # ties
    ap, auc = M.average_precision(scores, targets), M.roc_auc(scores, targets)
    for c in range(5):
        assert ap[c].item() == pytest.approx(average_precision_score(targets[:, c], scores[:, c]), rel=1e-6)
        assert auc[c].item() == pytest.approx(roc_auc_score(targets[:, c], scores[:, c]), rel=1e-6)
    tm_ap = MultilabelAveragePrecision(num_labels=5, average="macro", thresholds=None)(scores.sigmoid(), targets)
    tm_auc = MultilabelAUROC(num_labels=5, average="macro", thresholds=None)(scores.sigmoid(), targets)
    assert M.mean_average_precision(scores, targets) == pytest.approx(tm_ap.item(), rel=1e-5)
    assert M.mean_roc_auc(scores, targets) == pytest.approx(tm_auc.item(), rel=1e-5)


def test_classes_without_positives_are_nan_and_skipped():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.3], [0.8, 0.4]])
    targets = torch.tensor([[1, 0], [0, 0], [1, 0]])
    assert math.isnan(M.average_precision(scores, targets)[1]) and math.isnan(M.roc_auc(scores, targets)[1])
    assert M.mean_average_precision(scores, targets) == pytest.approx(1.0)
    assert M.mean_roc_auc(scores, targets) == pytest.approx(1.0)

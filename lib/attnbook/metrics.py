"""Metrics of where a model looks and how well it classifies — pure functions on tensors.

Map metrics take a batch of maps ``[B, h, w]`` and ground truth at the SAME resolution (resize
maps with :func:`resize_to` first) and return one value per image ``[B]``. Where a value is
undefined (empty mask, all-zero map) it is NaN, never a silent 0 — aggregate with ``nanmean`` and
report how many were NaN.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler

from attnbook.explain.postprocess import upsample

NAN = float("nan")


# ------------------------------------------------------------------------------------------------
# shapes
# ------------------------------------------------------------------------------------------------
def resize_to(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Resize maps ``[B, h, w]`` bilinearly to the spatial size of ``reference`` (e.g. masks ``[B, H, W]``)."""
    return upsample(maps.float(), tuple(reference.shape[-2:]))


def _check_maps_masks(maps: torch.Tensor, masks: torch.Tensor, *, nonnegative: bool = True) -> None:
    if maps.ndim != 3:
        raise ValueError(f"maps must be [B, h, w], got {tuple(maps.shape)}")
    if masks.shape[-2:] != maps.shape[-2:] or masks.shape[0] != maps.shape[0]:
        raise ValueError(
            f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in batch or spatial size; "
            "resize the maps with attnbook.metrics.resize_to(maps, masks)"
        )
    if nonnegative and (maps < 0).any():
        raise ValueError("attention maps must be non-negative (apply the explainer's ReLU / clamp(min=0))")


def _sum_hw(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=(-2, -1))


# ------------------------------------------------------------------------------------------------
# localisation of a single map
# ------------------------------------------------------------------------------------------------
def far(maps: torch.Tensor, masks: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Foreground Attention Rate per image ``[B]`` (EAT, Xu et al., Eq. 13-14).

    ``FAR = PI(AT, M) / PI(AT, 1−M)`` with ``PI(AT, M) = |AT ⊙ M| / |M|``: mean attention on object
    pixels over mean attention on background pixels (1 = no preference; higher = on the object).
    NaN when the mask is empty or covers the whole image (one of the two means is undefined) or the
    map is all zero. The background mean is clamped at ``eps``, so a map with no background
    attention gives a huge finite value — prefer medians or ``log FAR`` when aggregating.
    """
    _check_maps_masks(maps, masks)
    m = masks.to(maps.dtype)
    area_obj, area_bg = _sum_hw(m), _sum_hw(1 - m)
    pi_obj = _sum_hw(maps * m) / area_obj.clamp(min=1)
    pi_bg = _sum_hw(maps * (1 - m)) / area_bg.clamp(min=1)
    ratio = pi_obj / pi_bg.clamp(min=eps)
    undefined = (area_obj == 0) | (area_bg == 0) | (_sum_hw(maps) == 0)
    return ratio.masked_fill(undefined, NAN)


def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Pointing-game hit per image ``[B]``: 1.0 if the map's peak lies in the mask, else 0.0.

    Zhang et al. (ECCV 2016, "Top-down neural attention by excitation backprop"), as used by Region
    Grouping (Table 6), without the 15-pixel tolerance. Ties: the FIRST maximum in row-major order
    (``torch.argmax``), so a constant map points at the top-left pixel. An empty mask gives NaN
    (Quantus counts it as a hit). For boxes use :func:`boxes_to_masks`.
    """
    _check_maps_masks(maps, masks, nonnegative=False)
    peak = maps.flatten(1).argmax(dim=1)  # [B]
    hit = masks.flatten(1).bool().gather(1, peak[:, None])[:, 0].to(maps.dtype)
    return hit.masked_fill(~masks.flatten(1).bool().any(dim=1), NAN)


def pointing_error_rate(maps: torch.Tensor, masks: torch.Tensor) -> float:
    """``1 − mean hit`` over images with a non-empty mask (Region Grouping, Table 6)."""
    return 1.0 - torch.nanmean(pointing_game(maps, masks)).item()


def boxes_to_masks(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Boxes ``[B, 4]`` (x0, y0, x1, y1 in pixels, x1/y1 exclusive) → masks ``[B, H, W]``.

    Pixel (i, j) is inside when its centre (j + ½, i + ½) lies in ``[x0, x1) × [y0, y1)``.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [B, 4] (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    height, width = size
    cx = torch.arange(width, dtype=torch.float32) + 0.5  # [W]
    cy = torch.arange(height, dtype=torch.float32) + 0.5  # [H]
    x0, y0, x1, y1 = boxes.float().unbind(1)  # each [B]
    inside_x = (cx >= x0[:, None]) & (cx < x1[:, None])  # [B, W]
    inside_y = (cy >= y0[:, None]) & (cy < y1[:, None])  # [B, H]
    return inside_y[:, :, None] & inside_x[:, None, :]


def mass_in_region(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Fraction of the attention mass inside the region: ``Σ A·M / Σ A``.

    ``masks`` ``[B, H, W]`` gives ``[B]``; part masks ``[B, P, H, W]`` give one fraction per part
    ``[B, P]`` (the ratio inside Sharpen Focus's consistency loss ``L_ac``, §3.3; part-wise for BR-NPA's
    ranked maps and Sharpen Focus's discriminative part). NaN for an all-zero map.
    """
    part_wise = masks.ndim == 4
    _check_maps_masks(maps, masks[:, 0] if part_wise else masks)
    a = maps[:, None] if part_wise else maps  # [B, (1,) H, W]
    total = _sum_hw(a)
    return (_sum_hw(a * masks.to(maps.dtype)) / total.clamp(min=torch.finfo(maps.dtype).tiny)).masked_fill(
        total == 0, NAN
    )


def mass_per_map(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """:func:`mass_in_region` for every map and region: maps ``[B, M, h, w]`` (bilinearly resized to the
    masks, negatives clipped), masks ``[B, R, H, W]`` → ``[B, M, R]``. Any method's ``Attention.maps``."""
    up = upsample(maps, tuple(masks.shape[-2:])).clamp(min=0)  # [B, M, H, W]
    return torch.stack([mass_in_region(up[:, k], masks) for k in range(up.shape[1])], dim=1)


def cell_fractions(masks: torch.Tensor, grid: int | tuple[int, int]) -> torch.Tensor:
    """Pixel masks ``[B, H, W]`` → ``[B, h, w]``: the fraction of each feature cell's pixels inside the mask.

    A soft mask at feature resolution: :func:`mass_in_region` of a cell-level map on it equals the map
    nearest-upsampled to pixels on the pixel mask, at a fraction of the memory.
    """
    return torch.nn.functional.adaptive_avg_pool2d(masks.float()[:, None], grid)[:, 0]


# ------------------------------------------------------------------------------------------------
# comparing maps
# ------------------------------------------------------------------------------------------------
def soft_iou(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Soft IoU ``[B]`` (Sharpen Focus, Wang et al. 2019, §3.2, Eq. 6).

    ``sIoU = 2 Σ_ij min(A_ij, B_ij) · Mask_ij / Σ_ij (A_ij + B_ij)``; ``mask`` (binary or soft, e.g.
    Eq. 7's sigmoid) defaults to all ones, giving 1 for identical maps and 0 for disjoint ones.
    Differentiable; ``eps`` guards an all-zero pair (→ 0).
    """
    _check_maps_masks(a, b)
    overlap = torch.minimum(a, b) if mask is None else torch.minimum(a, b) * mask
    return 2 * _sum_hw(overlap) / _sum_hw(a + b).clamp(min=eps)


def rankdata(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``[B, n]`` (1 … n) along the last dim, ties get their average rank (scipy's "average")."""
    values = values.contiguous()
    ordered = values.sort(dim=-1).values
    below = torch.searchsorted(ordered, values, right=False)  # how many are smaller
    upto = torch.searchsorted(ordered, values, right=True)  # how many are smaller or equal
    return (below + upto + 1).to(torch.float64) / 2


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per image ``[B]`` between maps of the same shape ``[B, ...]``.

    Pearson correlation of average ranks (ties averaged, as ``scipy.stats.spearmanr``); NaN when
    either map is constant. BLA (Baumhauer et al. 2021, §4.3, Table 2) compares 7×7 maps with LIME.
    """
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"maps must share a shape [B, ...], got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = rankdata(a.flatten(1)), rankdata(b.flatten(1))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denom = (ra.pow(2).sum(1) * rb.pow(2).sum(1)).sqrt()
    return ((ra * rb).sum(1) / denom).masked_fill(denom == 0, NAN).float()


def sparsity(maps: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Attention sparsity ``[B]`` (BR-NPA, Gomez et al., §4.3 and Table 6): 1 = uniform, higher = more focused.

    Average the ``N`` maps ``[B, N, h, w]``, multiply each position by the feature-vector norm there
    ``[B, h, w]``, then ``s = max / mean``. NaN when the weighted map is all zero. (The authors'
    code computes a different, lower-is-better quantity; this is the paper's definition.)
    """
    if maps.ndim != 4 or norms.shape != (maps.shape[0], *maps.shape[2:]):
        raise ValueError(
            f"need maps [B, N, h, w] and norms [B, h, w], got {tuple(maps.shape)} and {tuple(norms.shape)}"
        )
    weighted = (maps.mean(dim=1) * norms).flatten(1)  # [B, h*w]
    mean = weighted.mean(dim=1)
    return (weighted.max(dim=1).values / mean).masked_fill(mean == 0, NAN)


# ------------------------------------------------------------------------------------------------
# part localisation by linear regression (Region Grouping, Huang & Li 2020, §4 "Evaluation Metric")
# ------------------------------------------------------------------------------------------------
def map_centroids(maps: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Centres of mass ``[B, K, 2]`` as (x, y) of non-negative maps ``[B, K, h, w]``.

    In map cells (0 … w−1) by default; with ``image_size=(H, W)`` in continuous image pixels
    (cell j covers ``[j·W/w, (j+1)·W/w)``, so x = (x_cell + ½)·W/w). An all-zero map gives NaN.
    """
    if maps.ndim != 4:
        raise ValueError(f"maps must be [B, K, h, w], got {tuple(maps.shape)}")
    if (maps < 0).any():
        raise ValueError("centroids need non-negative maps (assignments / attention)")
    height, width = maps.shape[-2:]
    total = _sum_hw(maps)  # [B, K]
    xs = torch.arange(width, dtype=maps.dtype, device=maps.device)
    ys = torch.arange(height, dtype=maps.dtype, device=maps.device)
    x = (maps.sum(dim=-2) * xs).sum(-1) / total  # [B, K]
    y = (maps.sum(dim=-1) * ys).sum(-1) / total
    centres = torch.stack([x, y], dim=-1)  # [B, K, 2]; 0/0 → NaN for empty maps
    if image_size is not None:
        scale = torch.tensor([image_size[1] / width, image_size[0] / height], dtype=maps.dtype, device=maps.device)
        centres = (centres + 0.5) * scale
    return centres


def scale_by_interocular(points: torch.Tensor, landmarks: torch.Tensor, eyes: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """Divide points ``[N, M, 2]`` by each image's inter-ocular distance (landmarks ``eyes``; CelebA protocol)."""
    eye_distance = (landmarks[:, eyes[0]] - landmarks[:, eyes[1]]).norm(dim=-1)  # [N]
    return points / eye_distance[:, None, None]


def scale_by_bbox(points: torch.Tensor, bbox: torch.Tensor) -> torch.Tensor:
    """Map points ``[N, M, 2]`` into box coordinates ``(p − (x0, y0)) / (w, h)`` (CUB protocol)."""
    origin, size = bbox[:, None, :2], bbox[:, None, 2:] - bbox[:, None, :2]
    return (points - origin) / size


def _fit_predict(fit_x: np.ndarray, fit_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """StandardScaler on X and Y, LinearRegression without intercept (the authors' evaluation code)."""
    scale_x, scale_y = StandardScaler().fit(fit_x), StandardScaler().fit(fit_y)
    regressor = LinearRegression(fit_intercept=False).fit(scale_x.transform(fit_x), scale_y.transform(fit_y))
    return scale_y.inverse_transform(regressor.predict(scale_x.transform(test_x)))


def landmark_regression_error(
    fit_centres: torch.Tensor,
    fit_landmarks: torch.Tensor,
    test_centres: torch.Tensor,
    test_landmarks: torch.Tensor,
    *,
    fit_visible: torch.Tensor | None = None,
    test_visible: torch.Tensor | None = None,
    per_landmark: bool = False,
) -> float:
    """Mean L2 landmark error on the test split (Region Grouping, Huang & Li 2020, §4, Tables 2 and 4).

    A linear map from the predicted part centres ``[N, K, 2]`` (all K parts, flattened) to the
    ground-truth landmarks ``[N, L, 2]`` is fitted on the fitting split and applied to the test
    split; coordinates must already be normalised per image (:func:`scale_by_interocular` for
    CelebA, :func:`scale_by_bbox` for CUB), so the error is in those units (× 100 for the papers' %).

    ``per_landmark=False`` (CelebA): one regressor for all landmarks; every landmark must be visible.
    ``per_landmark=True`` (CUB): one regressor per landmark, fitted and evaluated on the instances
    where it is visible (``*_visible`` ``[N, L]``); the error averages over all visible test pairs.
    """
    for name, pts in {"fit_centres": fit_centres, "fit_landmarks": fit_landmarks,
                      "test_centres": test_centres, "test_landmarks": test_landmarks}.items():
        if pts.ndim != 3 or pts.shape[-1] != 2:
            raise ValueError(f"{name} must be [N, K or L, 2] (x, y), got {tuple(pts.shape)}")
    fx, tx = fit_centres.flatten(1).double().numpy(), test_centres.flatten(1).double().numpy()
    fy, ty = fit_landmarks.double().numpy(), test_landmarks.double().numpy()
    if not per_landmark:
        for visible in (fit_visible, test_visible):
            if visible is not None and not bool(visible.all()):
                raise ValueError("some landmarks are invisible; use per_landmark=True (the CUB protocol)")
        pred = _fit_predict(fx, fy.reshape(len(fy), -1), tx).reshape(ty.shape)
        return float(np.linalg.norm(pred - ty, axis=-1).mean())
    fit_vis = np.ones(fy.shape[:2], bool) if fit_visible is None else fit_visible.bool().numpy()
    test_vis = np.ones(ty.shape[:2], bool) if test_visible is None else test_visible.bool().numpy()
    distances: list[np.ndarray] = []
    for k in range(fy.shape[1]):
        if test_vis[:, k].any():
            pred = _fit_predict(fx[fit_vis[:, k]], fy[fit_vis[:, k], k], tx[test_vis[:, k]])
            distances.append(np.linalg.norm(pred - ty[test_vis[:, k], k], axis=-1))
    return float(np.concatenate(distances).mean())


# ------------------------------------------------------------------------------------------------
# classification
# ------------------------------------------------------------------------------------------------
def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores of ``logits`` ``[N, C]``."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"need logits [N, C] and labels [N], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    top = logits.topk(k, dim=1).indices  # [N, k]
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of logits ``[N, C]`` against class indices ``[N]``."""
    return topk_accuracy(logits, labels, 1)


def _check_multilabel(scores: torch.Tensor, targets: torch.Tensor) -> None:
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"need scores and multi-hot targets of the same shape [N, C], got "
                         f"{tuple(scores.shape)} and {tuple(targets.shape)}")


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Average precision per class ``[C]`` (scikit-learn's ``average_precision_score``, no interpolation).

    ``AP = Σ_n (R_n − R_{n−1}) P_n`` over the distinct score thresholds, high to low. NaN for a
    class without positives.
    """
    _check_multilabel(scores, targets)
    aps = []
    for s, t in zip(scores.double().T, targets.double().T):
        s, order = s.sort(descending=True)
        t = t[order]
        precision = t.cumsum(0) / torch.arange(1, len(t) + 1, dtype=t.dtype)  # [N]
        counts = torch.unique_consecutive(s, return_counts=True)[1]  # sizes of tied groups
        group_end = torch.repeat_interleave(counts.cumsum(0) - 1, counts)  # threshold of each sample
        aps.append((t * precision[group_end]).sum() / t.sum() if t.sum() > 0 else torch.tensor(NAN, dtype=t.dtype))
    return torch.stack(aps).float()


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Macro mean of :func:`average_precision` over classes with at least one positive."""
    return torch.nanmean(average_precision(scores, targets)).item()


def roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ROC AUC per class ``[C]`` via the Mann-Whitney statistic with average ranks for ties.

    ``AUC = (Σ ranks of positives − n₊(n₊+1)/2) / (n₊ n₋)``; NaN for a class lacking positives or negatives.
    """
    _check_multilabel(scores, targets)
    ranks = rankdata(scores.double().T)  # [C, N]
    t = targets.double().T
    n_pos, n_neg = t.sum(1), (1 - t).sum(1)
    auc = ((ranks * t).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return auc.masked_fill((n_pos == 0) | (n_neg == 0), NAN).float()


def mean_roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Macro mean of :func:`roc_auc` over classes with both positives and negatives."""
    return torch.nanmean(roc_auc(scores, targets)).item()


__all__ = [
    "resize_to", "far", "pointing_game", "pointing_error_rate", "boxes_to_masks", "mass_in_region", "soft_iou",
    "rankdata", "spearman", "sparsity", "map_centroids", "scale_by_interocular", "scale_by_bbox",
    "landmark_regression_error", "accuracy", "topk_accuracy", "average_precision", "mean_average_precision",
    "roc_auc", "mean_roc_auc",
]

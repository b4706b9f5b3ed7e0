"""Batched LIME on a square patch grid (Ribeiro et al. KDD 2016; the protocol of BLA §4.3).

The image is cut into ``grid × grid`` patches (the interpretable features). ``N`` binary masks
switch patches on/off (p = 0.5; the first mask is all on, as in the ``lime`` package); "off"
patches are replaced by a baseline. The model scores every perturbed image; a weighted linear
model (ridge, or least squares with ``alpha=0``) fitted on (mask → score) gives one coefficient
per patch. Sample weights are the ``lime`` package's kernel on the cosine distance between a
mask and the all-on mask: ``sqrt(exp(-d² / width²))``.

BLA (Baumhauer et al. 2021, §4.3): 32×32 patches of 224×224 images (grid 7), 1000 samples, least
squares, "absent" patches black — the defaults here (``"zeros"`` is zero in the model's input
space: black for [0, 1] images, the mean colour for mean-subtracted ones). The ``lime`` package's image explainer
defaults differ: ``baseline="patch_mean"`` (``hide_color=None``) and ridge ``alpha=1``.

Batched: one set of masks is shared by all images of the batch, so the regression is a single
solve with one right-hand side per image; the model sees ``batch_size`` images per forward.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attnbook.explain.gradcam import Target, select_score

BASELINES = ("zeros", "patch_mean")


def patch_index_map(height: int, width: int, grid: int) -> torch.Tensor:
    """Patch id ``[H, W]`` (row-major, 0 … grid²−1) of each pixel: row ``⌊i·grid/H⌋``, col ``⌊j·grid/W⌋``.

    Patches are equal squares when ``grid`` divides the size; otherwise sizes differ by one pixel.
    """
    if grid < 1 or grid > min(height, width):
        raise ValueError(f"grid must be in [1, {min(height, width)}] for a {height}×{width} image, got {grid}")
    rows = torch.arange(height) * grid // height  # [H]
    cols = torch.arange(width) * grid // width  # [W]
    return rows[:, None] * grid + cols[None, :]


def sample_masks(num_samples: int, num_patches: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[N, P]`` 0/1 masks, each patch on with p = 0.5; row 0 is all on (the unperturbed image)."""
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    masks = torch.randint(0, 2, (num_samples, num_patches), generator=generator).float()
    masks[0] = 1.0
    return masks


def cosine_distance_to_all_on(masks: torch.Tensor) -> torch.Tensor:
    """Cosine distance ``[N]`` of each mask to the all-on mask; an all-off mask has distance 1."""
    ones = torch.ones(masks.shape[1], dtype=masks.dtype)
    norms = masks.norm(dim=1) * ones.norm()
    cosine = torch.where(norms > 0, masks @ ones / norms.clamp(min=1e-12), torch.zeros_like(norms))
    return 1.0 - cosine


def lime_kernel(distances: torch.Tensor, kernel_width: float = 0.25) -> torch.Tensor:
    """Sample weights ``sqrt(exp(-d² / width²))`` — the ``lime`` package's exponential kernel."""
    return torch.exp(-distances.pow(2) / kernel_width**2).sqrt()


def weighted_ridge(
    features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, alpha: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted ridge with an unpenalised intercept, as scikit-learn's ``Ridge(fit_intercept=True)``.

    ``features`` ``[N, P]``, ``targets`` ``[N, T]``, ``weights`` ``[N]`` → coefficients ``[T, P]``,
    intercepts ``[T]``. Minimises ``Σ_n w_n (y_n − b − x_n·β)² + alpha ‖β‖²``; ``alpha=0`` is weighted
    least squares (minimum-norm solution if rank deficient). Solved in float64.
    """
    x, y, w = features.double(), targets.double(), weights.double()
    w_sum = w.sum()
    x_mean = (w[:, None] * x).sum(0) / w_sum  # [P]
    y_mean = (w[:, None] * y).sum(0) / w_sum  # [T]
    root_w = w.sqrt()[:, None]
    a = root_w * (x - x_mean)  # [N, P]
    b = root_w * (y - y_mean)  # [N, T]
    if alpha > 0:  # ridge as least squares on rows augmented with sqrt(alpha)·I
        p = x.shape[1]
        a = torch.cat([a, alpha**0.5 * torch.eye(p, dtype=a.dtype)])
        b = torch.cat([b, torch.zeros(p, b.shape[1], dtype=b.dtype)])
    coef = torch.linalg.lstsq(a, b, driver="gelsd").solution  # [P, T]
    intercept = y_mean - x_mean @ coef
    return coef.T.to(features.dtype), intercept.to(features.dtype)


def _baseline_image(x: torch.Tensor, patch_ids: torch.Tensor, baseline: str | float) -> torch.Tensor:
    """What replaces an "off" patch: ``[B, 3, H, W]``."""
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "patch_mean":  # each patch's mean colour, as lime with hide_color=None
        flat_ids = patch_ids.flatten().to(x.device)  # [H*W]
        num_patches = int(flat_ids.max()) + 1
        sums = torch.zeros(*x.shape[:2], num_patches, dtype=x.dtype, device=x.device)
        sums.index_add_(2, flat_ids, x.flatten(2))  # [B, 3, P]
        counts = torch.bincount(flat_ids, minlength=num_patches).to(x.dtype)
        return (sums / counts)[..., flat_ids].view_as(x)
    raise ValueError(f"baseline must be a number or one of {BASELINES}, got {baseline!r}")


def _rows(output: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a model output (a tensor, or a tuple/list/dict of tensors)."""
    if isinstance(output, torch.Tensor):
        return output[start:stop]
    if isinstance(output, (tuple, list)):
        return type(output)(_rows(o, start, stop) for o in output)
    if isinstance(output, dict):
        return {k: _rows(v, start, stop) for k, v in output.items()}
    raise TypeError(f"cannot split a model output of type {type(output).__name__} into per-image rows")


@torch.no_grad()
def perturbation_scores(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    masks: torch.Tensor,
    patch_ids: torch.Tensor,
    *,
    baseline: str | float = "zeros",
    batch_size: int = 256,
) -> torch.Tensor:
    """Scores ``[N, B]`` of ``target`` for every image of ``x`` perturbed by every mask ``[N, P]``.

    The model runs on ``max(1, batch_size // B)`` masks × ``B`` images per forward; each mask's rows
    are passed to :func:`~attnbook.explain.gradcam.select_score` as a batch aligned with ``x``.
    """
    batch = x.shape[0]
    base = _baseline_image(x, patch_ids, baseline)  # [B, 3, H, W]
    ids = patch_ids.to(x.device)
    per_forward = max(1, batch_size // batch)
    scores = []
    for chunk in masks.to(x.device).split(per_forward):
        keep = chunk[:, ids].unsqueeze(1).unsqueeze(1).to(x.dtype)  # [m, 1, 1, H, W]
        images = keep * x + (1 - keep) * base  # [m, B, 3, H, W]
        output = model(images.flatten(0, 1))
        scores += [select_score(_rows(output, i * batch, (i + 1) * batch), target) for i in range(len(chunk))]
    return torch.stack(scores).float().cpu()  # [N, B]


def lime(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    *,
    grid: int = 7,
    num_samples: int = 1000,
    baseline: str | float = "zeros",
    alpha: float = 0.0,
    kernel_width: float = 0.25,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LIME coefficients per patch ``[B, grid, grid]`` for ``target``'s score of each image in ``x``.

    Paper: Ribeiro et al. 2016, §3.3-3.4, Eq. 1-2 (locally weighted linear surrogate) · BLA §4.3 (7×7
    patches, 1000 samples, least squares). Upsample with
    :func:`~attnbook.explain.postprocess.upsample` for a pixel map.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be an image batch [B, C, H, W], got {tuple(x.shape)}")
    patch_ids = patch_index_map(x.shape[-2], x.shape[-1], grid)  # [H, W]
    masks = sample_masks(num_samples, grid * grid, generator)  # [N, P]
    scores = perturbation_scores(model, x, target, masks, patch_ids, baseline=baseline, batch_size=batch_size)
    weights = lime_kernel(cosine_distance_to_all_on(masks), kernel_width)  # [N]
    coef, _ = weighted_ridge(masks, scores, weights, alpha)  # [B, P]
    return coef.view(-1, grid, grid).to(x.device)

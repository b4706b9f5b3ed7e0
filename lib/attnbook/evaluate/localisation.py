"""Localisation on the generator's truth, one value per image: where the map's mass and peak fall.

All functions take maps ``[B, H, W]`` (non-negative, at mask resolution) and return ``[B]`` (or
``[B, P]``), NaN where undefined (empty region, all-zero map), as :mod:`attnbook.metrics` does.
Quantus 0.6 implements three of them; tests/evaluate checks ours against it:

* :func:`attnbook.metrics.pointing_game` ~ ``quantus.PointingGame`` (Zhang et al. 2016). Ties: we take
  the first maximum, Quantus counts a hit if *any* maximum is inside; an empty mask is NaN here and a
  hit there.
* :func:`relevance_mass_accuracy` = ``quantus.RelevanceMassAccuracy`` (Arras et al. 2022, CLEVR-XAI):
  share of the (non-negative) mass inside the mask.
* :func:`relevance_rank_accuracy` = ``quantus.RelevanceRankAccuracy`` (Arras et al. 2022): share of the
  K highest-ranked pixels inside the mask, K = mask size.
"""
from __future__ import annotations

import torch
from torch import Tensor

from attnbook.metrics import (
    far,
    landmark_regression_error,
    map_centroids,
    mass_in_region,
    pointing_game,
    scale_by_bbox,
)

__all__ = ["landmark_error", "localisation", "part_centres", "relevance_mass_accuracy", "relevance_rank_accuracy"]


def relevance_mass_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """``Σ_{p∈M} R_p / Σ_p R_p`` per image (CLEVR-XAI, Arras et al. 2022, Eq. in §4.2) = mass in region."""
    return mass_in_region(maps, masks)


def relevance_rank_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """``|top-K(R) ∩ M| / K`` with ``K = |M|`` per image (CLEVR-XAI, Arras et al. 2022, §4.2).

    Ties in ``R`` at the K-th value are broken by pixel order (row-major, earlier pixel first, as a
    stable sort of ``-R`` would); Quantus sorts ``-R`` with numpy's unstable default, so only ties can
    differ. The K-th value comes from a top-k, not a full sort.
    NaN for an empty mask.
    """
    flat, inside = maps.flatten(1), masks.flatten(1).bool()
    size = inside.sum(dim=1)  # K per image
    if int(size.max()) == 0:
        return torch.full(size.shape, float("nan"), dtype=maps.dtype)
    top = flat.topk(int(size.max()), dim=1).values  # descending; no full sort
    kth = top.gather(1, (size - 1).clamp(min=0)[:, None])  # the K-th largest value
    above = flat > kth
    ties = flat == kth  # take tied pixels in row-major order until K are chosen
    chosen = above | (ties & (ties.cumsum(dim=1) <= (size[:, None] - above.sum(dim=1, keepdim=True))))
    hits = (chosen & inside).sum(dim=1).to(maps.dtype)
    return (hits / size.clamp(min=1)).masked_fill(size == 0, float("nan"))


def localisation(maps: Tensor, truth: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every localisation score of maps ``[B, H, W]`` against a batch of benchmark truth (records keys).

    Returns ``pointing_object``, ``pointing_disc`` (peak on the discriminative part), ``mass_object``
    (= relevance mass accuracy), ``rank_object`` (relevance rank accuracy), ``mass_disc``,
    ``mass_parts`` ``[B, P]``, ``far`` (EAT, Eq. 13-14); each ``[B]`` unless noted.
    """
    mask, parts = truth["mask"], truth["part_masks"]
    out = {
        "pointing_object": pointing_game(maps, mask),
        "mass_object": relevance_mass_accuracy(maps, mask),
        "rank_object": relevance_rank_accuracy(maps, mask),
        "mass_parts": mass_in_region(maps, parts),
        "far": far(maps, mask),
    }
    if "disc_mask" in truth:
        disc = truth["disc_mask"]
        out["pointing_disc"] = pointing_game(maps, disc)
        out["mass_disc"] = mass_in_region(maps, disc).masked_fill(~disc.flatten(1).any(dim=1), float("nan"))
    return out


def part_centres(maps: Tensor, image_size: int, bbox: Tensor) -> Tensor:
    """Centres of mass ``[N, K, 2]`` of part maps ``[N, K, h, w]`` in image pixels, box-normalised
    (``(p − (x0, y0)) / (w, h)``, the CUB protocol); an empty map's centre is the image centre."""
    points = map_centroids(maps.float().clamp(min=0), (image_size, image_size)).nan_to_num(image_size / 2)
    return scale_by_bbox(points, bbox.float())


def landmark_error(fit_maps: Tensor, fit_truth: dict[str, Tensor], test_maps: Tensor,
                   test_truth: dict[str, Tensor]) -> float:
    """Landmark error from map centroids (Region Grouping, Huang & Li 2020, §4, Tables 2/4, CUB variant): a
    linear regressor per landmark from the K part centres (:func:`part_centres`) to the landmark, fitted on its
    visible instances of ``fit_*`` and applied to ``test_*``; mean L2 error in % of the box size. Part maps
    ``[N, K, h, w]``; truth dicts hold ``image``, ``bbox``, ``landmarks``, ``landmark_visible``."""
    size = fit_truth["image"].shape[-1]
    error = landmark_regression_error(
        part_centres(fit_maps, size, fit_truth["bbox"]), scale_by_bbox(fit_truth["landmarks"], fit_truth["bbox"]),
        part_centres(test_maps, size, test_truth["bbox"]),
        scale_by_bbox(test_truth["landmarks"], test_truth["bbox"]),
        fit_visible=fit_truth["landmark_visible"], test_visible=test_truth["landmark_visible"], per_landmark=True)
    return 100 * error

"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018): do the maps change when the model
they explain is destroyed?

* **Cascading model-parameter randomisation** (§3.1): re-initialise the model's layers one after
  another from the top (logits) down, cumulatively, and compare each map with the original one.
* **Label randomisation** (§3.2, data randomisation): compare the maps of a model trained on the
  true labels with those of the same architecture trained on permuted labels
  (:func:`permuted_labels` makes the labels; training is the caller's).

Similarity (§3.1, "Similarity metrics"): Spearman rank correlation of the maps, with and without
absolute values (identical for our non-negative maps, both reported for the paper's table), and SSIM
of the maps min-max normalised to [0, 1] (Wang et al. 2004). A map that stays similar (guided backprop,
guided Grad-CAM in the paper) fails the check.

Conventions shared with Quantus 0.6's ``MPRT`` (the test oracle): the layers are the modules that
have ``reset_parameters`` in ``named_modules`` order, reversed (top-down); the generator is seeded with
``seed + 1`` before each reset; the model is deep-copied (the caller's model is untouched).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.explain.postprocess import normalize
from attnbook.metrics import spearman

__all__ = ["cascading_randomisation", "label_randomisation", "map_similarity", "permuted_labels",
           "randomisable_layers", "ssim"]

SSIM_WINDOW, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03  # scikit-image's defaults (uniform 7×7 window)


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean structural similarity ``[B]`` of single-channel images ``[B, H, W]`` (Wang et al. 2004, Eq. 13).

    ``SSIM = (2 μa μb + C1)(2 σab + C2) / ((μa² + μb² + C1)(σa² + σb² + C2))``, ``C_i = (K_i L)²``,
    local statistics over a uniform 7×7 window with the unbiased (N − 1) covariance, averaged over
    the window positions that lie fully inside the image — scikit-image's
    ``structural_similarity(a, b, data_range=L)`` defaults.
    """
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"need two [B, H, W] batches of the same shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    x, y = a.double()[:, None], b.double()[:, None]
    n = SSIM_WINDOW**2

    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, SSIM_WINDOW, stride=1)

    mx, my = mean(x), mean(y)
    cov = n / (n - 1)
    vx, vy = cov * (mean(x * x) - mx * mx), cov * (mean(y * y) - my * my)
    vxy = cov * (mean(x * y) - mx * my)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).float()


def map_similarity(original: Tensor, other: Tensor) -> dict[str, Tensor]:
    """Adebayo et al.'s similarities of maps ``[B, H, W]``: ``spearman``, ``spearman_abs`` and ``ssim``
    (on per-map min-max normalised maps), each ``[B]``."""
    return {"spearman": spearman(other, original), "spearman_abs": spearman(other.abs(), original.abs()),
            "ssim": ssim(normalize(original), normalize(other))}


def randomisable_layers(model: nn.Module) -> list[str]:
    """The names of ``model``'s modules that can be re-initialised, top (output) first."""
    return [name for name, m in model.named_modules() if hasattr(m, "reset_parameters")][::-1]


def cascading_randomisation(model: nn.Module, make_maps: Callable[[nn.Module, Tensor, Tensor], Tensor],
                            images: Tensor, targets: Tensor, *, seed: int = 42,
                            layers: list[str] | None = None,
                            at: Collection[str] | None = None) -> dict[str, dict[str, Tensor]]:
    """Similarity of the maps after re-initialising ``layers`` (default :func:`randomisable_layers`)
    cumulatively, top-down, with the original maps.

    ``make_maps(model, images, targets) -> [B, H, W]`` builds the explanation on a given model (e.g.
    ``lambda m, x, t: posthoc_maps_fn("gradcam", m, layer="layer3")(x, t)[:, 0]``). Returns, per layer
    name in randomisation order, :func:`map_similarity` of the maps of the model randomised down to that
    layer with those of the intact model. ``at``: compare only after these layers' resets (every layer is still
    reset, in order; the maps — the cost — are computed only there), e.g. the first and the last layer.
    """
    original = make_maps(model, images, targets).detach()
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    out: dict[str, dict[str, Tensor]] = {}
    for name in layers if layers is not None else randomisable_layers(model):
        torch.manual_seed(seed + 1)
        modules[name].reset_parameters()
        if at is None or name in at:
            out[name] = map_similarity(original, make_maps(randomised, images, targets).detach())
    return out


def label_randomisation(make_maps: Callable[[nn.Module, Tensor, Tensor], Tensor], model: nn.Module,
                        random_label_model: nn.Module, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Adebayo et al. §3.2: :func:`map_similarity` of the maps of ``model`` (trained on the true labels)
    with those of ``random_label_model`` (same architecture, trained on :func:`permuted_labels`)."""
    return map_similarity(make_maps(model, images, targets).detach(),
                          make_maps(random_label_model, images, targets).detach())


def permuted_labels(labels: Tensor, seed: int = 0) -> Tensor:
    """Adebayo et al. §3.2's randomised labels: a fixed random permutation of the training labels
    (class frequencies kept, every image-label link broken)."""
    generator = torch.Generator().manual_seed(seed)
    return labels[torch.randperm(len(labels), generator=generator)]

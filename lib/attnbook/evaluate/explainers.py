"""One calling convention for every explanation the evaluation scores: a *map function*
``(images [B, 3, H, W], targets [B, T]) -> maps [B, T, H, W]``, non-negative, at image resolution —
one map per image and requested class.

* :func:`attention_maps_fn` wraps a model of the kit's attention interface
  (:mod:`attnbook.methods.base`: ``attend(images) -> Attention``); its maps are class-agnostic, so the
  same map answers every target (its contrastivity is 0 by construction, as it should be).
* :func:`posthoc_maps_fn` wraps an explainer of :data:`attnbook.explain.EXPLAINERS` (CAM, Grad-CAM,
  Grad-CAM++, guided backprop, guided Grad-CAM, LIME, …). The gradient-weighted family answers all T
  targets from ONE forward pass (:func:`multi_target_gradcam`); the others are called once per target.
* :func:`random_maps_fn` and :func:`edge_maps_fn`: the floors (a random map; a Sobel edge map, which
  knows where the bird is without knowing what the model does).

Conventions: maps are bilinearly resized to the image (``align_corners=False``) and negative values
are clipped to 0 (LIME's and Grad-CAM's negative evidence is dropped; FunnyBirds sums signed
attributions — with non-negative maps the two agree).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbook.explain import EXPLAINERS
from attnbook.explain.gradcam import WEIGHTINGS, LayerSpec, attention_maps, capture_activations, select_score
from attnbook.explain.postprocess import upsample

MapFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["MapFn", "attention_maps_fn", "edge_maps_fn", "multi_target_gradcam", "posthoc_maps_fn",
           "random_maps_fn"]


def _targets(targets: Tensor, batch: int) -> Tensor:
    targets = targets[:, None] if targets.ndim == 1 else targets
    if targets.ndim != 2 or targets.shape[0] != batch:
        raise ValueError(f"targets must be [B, T] class indices with B={batch}, got {tuple(targets.shape)}")
    return targets.long()


def _finish(maps: Tensor, size: tuple[int, int]) -> Tensor:  # [B, T, h, w] -> [B, T, H, W], >= 0
    return upsample(maps.float(), size).clamp(min=0)


def multi_target_gradcam(model: nn.Module, layer: LayerSpec, images: Tensor, targets: Tensor,
                         method: str = "gradcam") -> Tensor:
    """Gradient-weighted maps ``[B, T, h, w]`` (feature resolution, ReLU'd) for T classes per image.

    One forward pass; then per target one ``autograd.grad`` from the scores down to the captured layer
    only (the stages below it are not differentiated), so T targets cost one forward and T partial
    backwards instead of T full forward-backward passes (captum: one call per target). Grad-CAM
    (Selvaraju et al. 2017, Eq. 1-2) or any weighting of :data:`attnbook.explain.gradcam.WEIGHTINGS`.
    The parameters' ``requires_grad`` flags are switched off during the call (so no graph is built for
    them) and restored afterwards, also on error; do not call it concurrently on one model.
    """
    targets = _targets(targets, images.shape[0])
    params = [p for p in model.parameters() if p.requires_grad]
    try:  # no graph below the layer, no weight gradients above it: only dS/dA is needed
        for p in params:
            p.requires_grad_(False)
        with torch.enable_grad():
            with capture_activations(model, [layer]) as acts:
                output = model(images.detach())
            maps = []
            for t in range(targets.shape[1]):
                score = select_score(output, targets[:, t])
                (m,) = attention_maps(acts, score, method, retain_graph=t < targets.shape[1] - 1)
                maps.append(m.detach())
    finally:
        for p in params:
            p.requires_grad_(True)
    return torch.stack(maps, dim=1)


def posthoc_maps_fn(name: str, model: nn.Module, *, layer: LayerSpec | None = None,
                    fc: LayerSpec | None = None, **kw: object) -> MapFn:
    """A map function for explainer ``name`` of :data:`attnbook.explain.EXPLAINERS` on ``model``."""
    if name not in EXPLAINERS:
        raise ValueError(f"unknown explainer {name!r}; choose one of {list(EXPLAINERS)}")
    if name in WEIGHTINGS and layer is None:
        raise ValueError(f"explainer {name!r} needs layer= (e.g. 'layer3')")

    def maps_fn(images: Tensor, targets: Tensor) -> Tensor:
        targets = _targets(targets, images.shape[0])
        if name in WEIGHTINGS:
            maps = multi_target_gradcam(model, layer, images, targets, name)
        else:
            maps = torch.stack([EXPLAINERS[name](model, images, targets[:, t], layer=layer, fc=fc, **kw).detach()
                                for t in range(targets.shape[1])], dim=1)
        return _finish(maps, tuple(images.shape[-2:]))

    maps_fn.__name__ = name
    return maps_fn


def attention_maps_fn(model: nn.Module, map_index: int | None = None, class_aware: bool = False) -> MapFn:
    """A map function for a model with ``attend(images) -> Attention`` (methods/base.py): the sum of
    its N maps (``map_index=None``; BR-NPA's ranked maps, B-CNN's maps) or map ``map_index``.

    ``class_aware``: the model's ``attend(images, labels=…)`` gives a map per requested class (Sharpen Focus:
    its target map for ``labels``); called once per target column, the same map index each time. Otherwise the
    maps are class-agnostic and one map answers every target."""
    if not callable(getattr(model, "attend", None)):
        raise TypeError(f"{type(model).__name__} has no attend(images) method (see attnbook.methods.base)")

    def pick(maps: Tensor) -> Tensor:  # [B, N, h, w] -> [B, 1, h, w]
        return maps.sum(dim=1, keepdim=True) if map_index is None else maps[:, map_index:map_index + 1]

    def maps_fn(images: Tensor, targets: Tensor) -> Tensor:
        targets = _targets(targets, images.shape[0])
        size = tuple(images.shape[-2:])
        if class_aware:  # no graph outside attend (a head that needs gradients enables them itself)
            with torch.no_grad():
                maps = torch.cat([pick(model.attend(images, labels=targets[:, t]).maps.detach())
                                  for t in range(targets.shape[1])], dim=1)
            return _finish(maps, size)
        with torch.no_grad():
            maps = model.attend(images).maps  # [B, N, h, w]
        return _finish(pick(maps), size).expand(-1, targets.shape[1], -1, -1)

    maps_fn.__name__ = f"attend[{'sum' if map_index is None else map_index}{', per class' if class_aware else ''}]"
    return maps_fn


def random_maps_fn(seed: int = 0, cells: int = 8) -> MapFn:
    """The random floor: uniform noise on a ``cells`` × ``cells`` grid, a fresh map per image and target,
    deterministic in ``seed`` and the call order."""
    generator = torch.Generator().manual_seed(seed)

    def maps_fn(images: Tensor, targets: Tensor) -> Tensor:
        targets = _targets(targets, images.shape[0])
        noise = torch.rand(images.shape[0], targets.shape[1], cells, cells, generator=generator)
        return _finish(noise.to(images.device), tuple(images.shape[-2:]))

    maps_fn.__name__ = "random"
    return maps_fn


def edge_maps_fn() -> MapFn:
    """The edge floor: Sobel gradient magnitude of the grey image (Adebayo et al. 2018's edge detector)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernel = torch.stack([kx, kx.T])[:, None]  # [2, 1, 3, 3]

    def maps_fn(images: Tensor, targets: Tensor) -> Tensor:
        targets = _targets(targets, images.shape[0])
        grey = images.mean(dim=1, keepdim=True)
        grad = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernel.to(images))
        return grad.norm(dim=1, keepdim=True).expand(-1, targets.shape[1], -1, -1)

    maps_fn.__name__ = "edges"
    return maps_fn

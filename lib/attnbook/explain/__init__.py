"""Post-hoc explainers behind one registry: :data:`EXPLAINERS` is the single list the CLI, the
chapters and the tests enumerate.

Every entry has the signature ``(model, x, target, *, layer=None, fc=None, **kw) -> [B, h', w']``:
``x`` is an image batch ``[B, 3, H, W]``, ``target`` a LongTensor ``[B]`` of classes (or an int, or
a callable ``score_fn(output) -> [B]`` except for CAM), ``layer`` the feature layer (module or
dotted name) for layer-based explainers, ``fc`` the linear classifier after GAP for CAM. Maps come
at the explainer's native resolution (feature map, patch grid or input) and are not normalised;
:func:`explain` resizes them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attnbook.explain.cam import model_activation_map, model_cam
from attnbook.explain.gradcam import WEIGHTINGS, LayerSpec, Target, grad_attention
from attnbook.explain.guided_backprop import guided_backprop, guided_gradcam, saliency
from attnbook.explain.lime import lime
from attnbook.explain.postprocess import normalize, upsample

Explainer = Callable[..., torch.Tensor]


def _require(name: str, **given: Any) -> None:
    missing = [key for key, value in given.items() if value is None]
    if missing:
        needed = " and ".join(f"{key}=" for key in missing)
        raise ValueError(f"explainer {name!r} needs {needed} (e.g. layer='layer4', fc='fc' for a ResNet)")


def _gradient_explainer(method: str) -> Explainer:
    def explainer(model: nn.Module, x: torch.Tensor, target: Target, *, layer: LayerSpec | None = None,
                  fc: LayerSpec | None = None, **kw: Any) -> torch.Tensor:
        _require(method, layer=layer)
        return grad_attention(model, layer, x, target, method, **kw)

    explainer.__doc__ = f"{method} map at ``layer`` (see attnbook.explain.gradcam)."
    return explainer


def _cam(model: nn.Module, x: torch.Tensor, target: Target, *, layer: LayerSpec | None = None,
         fc: LayerSpec | None = None) -> torch.Tensor:
    """CAM from ``layer``'s features and the weights of ``fc``."""
    _require("cam", layer=layer, fc=fc)
    return model_cam(model, x, target, layer=layer, fc=fc)


def _activation(model: nn.Module, x: torch.Tensor, target: Target, *, layer: LayerSpec | None = None,
                fc: LayerSpec | None = None) -> torch.Tensor:
    """Channel-mean activation of ``layer`` (class-agnostic: ``target`` is ignored)."""
    _require("activation", layer=layer)
    return model_activation_map(model, x, layer=layer)


def _guided_backprop(model: nn.Module, x: torch.Tensor, target: Target, *, layer: LayerSpec | None = None,
                     fc: LayerSpec | None = None) -> torch.Tensor:
    """Guided backprop reduced to ``[B, H, W]`` by :func:`saliency`."""
    return saliency(guided_backprop(model, x, target))


def _guided_gradcam(model: nn.Module, x: torch.Tensor, target: Target, *, layer: LayerSpec | None = None,
                    fc: LayerSpec | None = None) -> torch.Tensor:
    """Guided Grad-CAM reduced to ``[B, H, W]`` by :func:`saliency`."""
    _require("guided_gradcam", layer=layer)
    return saliency(guided_gradcam(model, x, target, layer=layer))


def _lime(model: nn.Module, x: torch.Tensor, target: Target, *, layer: LayerSpec | None = None,
          fc: LayerSpec | None = None, **kw: Any) -> torch.Tensor:
    """LIME coefficients on a patch grid ``[B, g, g]`` (keyword options of :func:`lime`)."""
    return lime(model, x, target, **kw)


EXPLAINERS: dict[str, Explainer] = {
    "cam": _cam,
    "activation": _activation,
    **{method: _gradient_explainer(method) for method in WEIGHTINGS},  # gradcam, gradcam++, channelwise, pixelwise
    "guided_backprop": _guided_backprop,
    "guided_gradcam": _guided_gradcam,
    "lime": _lime,
}


def explain(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    *,
    layer: LayerSpec | None = None,
    fc: LayerSpec | None = None,
    size: int | tuple[int, int] | None = None,
    **kw: Any,
) -> torch.Tensor:
    """Run explainer ``name`` of :data:`EXPLAINERS`; upsample the map to ``size`` (bilinear) if given."""
    try:
        explainer = EXPLAINERS[name]
    except KeyError:
        raise ValueError(f"unknown explainer {name!r}; choose one of {list(EXPLAINERS)}") from None
    maps = explainer(model, x, target, layer=layer, fc=fc, **kw)  # [B, h', w']
    return maps if size is None else upsample(maps, size)


__all__ = ["EXPLAINERS", "Explainer", "explain", "normalize", "upsample"]

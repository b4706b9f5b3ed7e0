"""Class activation maps (CAM) and the class-agnostic activation map — gradient-free explainers.

Both read a layer's features from one forward pass (no backward).
"""
from __future__ import annotations

import torch
from torch import nn

from attnbook.explain.gradcam import LayerSpec, capture_activations, resolve_layer


def cam(features: torch.Tensor, fc_weight: torch.Tensor, target: torch.Tensor | int) -> torch.Tensor:
    """CAM (Zhou et al. CVPR 2016, §2): ``M_c(x, y) = ReLU(Σ_k w^c_k f_k(x, y))`` → ``[B, h, w]``.

    ``features`` ``[B, K, h, w]`` feed global average pooling and a linear layer with weight
    ``fc_weight`` ``[C, K]``; ``target`` ``[B]`` picks class ``c`` per sample. The bias is left out
    (constant in space). The ReLU is a convention of later work (Grad-CAM compares against
    ReLU'd CAM), not in Zhou et al.; with it, Grad-CAM at the GAP layer equals CAM / (h·w).
    """
    if features.ndim != 4:
        raise ValueError(f"features must be [B, K, h, w], got {tuple(features.shape)}")
    if fc_weight.ndim != 2 or fc_weight.shape[1] != features.shape[1]:
        raise ValueError(
            f"fc_weight must be [C, K={features.shape[1]}] to match the features, got {tuple(fc_weight.shape)}; "
            "pass the linear layer that follows global average pooling of this feature map"
        )
    batch = features.shape[0]
    if isinstance(target, int):
        target = torch.full((batch,), target, dtype=torch.long)
    if not isinstance(target, torch.Tensor) or target.shape != (batch,) or target.is_floating_point():
        raise ValueError(f"CAM needs class indices: a LongTensor of shape [{batch}] or an int, got {target!r}")
    weights = fc_weight[target.to(fc_weight.device)]  # [B, K]
    return torch.relu(torch.einsum("bk,bkhw->bhw", weights.to(features.dtype), features))


def activation_map(features: torch.Tensor) -> torch.Tensor:
    """Class-agnostic activation map ``ReLU((1/K) Σ_k f_k)`` → ``[B, h, w]``.

    Zagoruyko & Komodakis (ICLR 2017, §3.1) "activation-based attention" ``F_sum(A) = Σ_k |A_k|^p``
    with p = 1, divided by K; for the usual post-ReLU features ``|A_k| = A_k`` and the two agree.
    """
    if features.ndim != 4:
        raise ValueError(f"features must be [B, K, h, w], got {tuple(features.shape)}")
    return torch.relu(features.mean(dim=1))


def layer_features(model: nn.Module, layer: LayerSpec, x: torch.Tensor) -> torch.Tensor:
    """The output ``[B, K, h, w]`` of ``layer`` for input ``x`` (one forward, no gradients)."""
    with torch.no_grad(), capture_activations(model, [layer]) as acts:
        model(x)
    return acts[0]


def model_cam(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, *, layer: LayerSpec, fc: LayerSpec
) -> torch.Tensor:
    """CAM of ``model`` for ``x``: features at ``layer`` (before GAP), weights of the linear ``fc``.

    E.g. torchvision ResNet: ``layer="layer4", fc="fc"``; a :class:`~attnbook.models.heads.GAPHead`
    model: ``fc="head.fc"``.
    """
    linear = resolve_layer(model, fc)
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"fc must be an nn.Linear (the classifier after GAP), got {type(linear).__name__}")
    return cam(layer_features(model, layer, x), linear.weight.detach(), target)


def model_activation_map(model: nn.Module, x: torch.Tensor, *, layer: LayerSpec) -> torch.Tensor:
    """:func:`activation_map` of ``model``'s features at ``layer``."""
    return activation_map(layer_features(model, layer, x))

"""Gradient-weighted attention maps — Grad-CAM, Grad-CAM++, Sharpen Focus's channel-/pixel-wise.

One piece of machinery serves all four and both uses (post-hoc explanation, and differentiable
attention inside a training loss):

1. :func:`capture_activations` records a layer's output ``A`` ``[B, K, h, w]`` during one forward;
2. :func:`attention_maps` takes ``dS/dA`` with ``torch.autograd.grad`` of the *summed* per-sample
   scores ``S`` (one backward for the whole batch) and applies a weighting from :data:`WEIGHTINGS`,
   then a ReLU → ``[B, h, w]`` at feature resolution;
3. :func:`grad_attention` chains both for the common case.

Summing scores over the batch gives per-sample gradients only when samples do not interact
downstream of the layer — true in ``eval()`` mode. In ``train()`` mode batch-norm statistics couple
the samples (as in every training-time implementation of Sharpen Focus); the maps are then the
gradients of the batch's summed score.

With ``create_graph=True`` the map stays differentiable w.r.t. the model's parameters (Sharpen
Focus, Wang et al. ICCV 2019, §3.1: the attention losses train the network through the gradients).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

LayerSpec = nn.Module | str
ScoreFn = Callable[[Any], torch.Tensor]
Target = torch.Tensor | int | ScoreFn
Weighting = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

GRADCAM_PP_EPS = 1e-6  # pytorch-grad-cam's stabiliser in the α denominator


# ------------------------------------------------------------------------------------------------
# layers, scores, activations
# ------------------------------------------------------------------------------------------------
def resolve_layer(model: nn.Module, layer: LayerSpec) -> nn.Module:
    """Return ``layer`` itself (a submodule of ``model``) or the submodule at a dotted name.

    Names are those of ``model.named_modules()``: ``"layer3"``, ``"backbone.layer3"``,
    ``"features.28"``. An unknown name raises ``ValueError`` listing the valid ones.
    """
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be an nn.Module or a dotted name, got {type(layer).__name__}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [name for name, _ in model.named_modules() if name]
        raise ValueError(f"no layer named {layer!r} in {type(model).__name__}; valid names: {names}") from None


def select_score(output: Any, target: Target) -> torch.Tensor:
    """The per-sample score ``[B]`` to explain.

    ``target`` is a class index per sample (LongTensor ``[B]``; an ``int`` means the same class for
    all), giving ``output[b, target[b]]`` for a logits tensor ``[B, C]``; or a callable
    ``score_fn(output) -> [B]`` for anything else (an attribute head, a tuple of outputs, a
    softmax probability).
    """
    if callable(target):
        score = target(output)
        if not isinstance(score, torch.Tensor) or score.ndim != 1:
            shape = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
            raise ValueError(f"score_fn must return a [B] tensor, got {shape}")
        return score
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        raise TypeError(
            "a class-index target needs a model output of shape [B, C]; for other outputs pass a "
            "callable target score_fn(output) -> [B]"
        )
    batch = output.shape[0]
    if isinstance(target, int):
        target = torch.full((batch,), target, dtype=torch.long, device=output.device)
    if not isinstance(target, torch.Tensor) or target.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"target must be a LongTensor [B], an int or a callable, got {target!r}")
    if target.shape != (batch,):
        raise ValueError(f"target must have shape [{batch}] (one class per sample), got {tuple(target.shape)}")
    return output.gather(1, target.long().to(output.device).unsqueeze(1)).squeeze(1)


@contextmanager
def capture_activations(
    model: nn.Module, layers: LayerSpec | Sequence[LayerSpec]
) -> Iterator[list[torch.Tensor]]:
    """Record the outputs of ``layers`` during ONE forward of ``model``.

    Yields a list holding, once the block exits, one tensor per layer in the order of ``layers``
    (a single layer may be passed without a list). Each recorded tensor is the
    layer's own output; the network continues on a clone, so an in-place op after the layer (VGG's
    ``ReLU(inplace=True)`` after a conv) cannot overwrite it. Outputs that carry no graph (frozen
    backbone, input without grad) are made to require grad so :func:`attention_maps` can still
    differentiate w.r.t. them. Hooks are removed on exit, also on error.

    Usage::

        with capture_activations(model, ["layer3", "layer4"]) as acts:
            logits = model(x)
        a3, a4 = attention_maps(acts, logits[range(B), y], method="pixelwise", create_graph=True)
    """
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    modules = [resolve_layer(model, layer) for layer in layers]
    labels = [layer if isinstance(layer, str) else type(layer).__name__ for layer in layers]
    slots: list[torch.Tensor | None] = [None] * len(modules)
    captured: list[torch.Tensor] = []

    def make_hook(index: int) -> Callable:
        def hook(module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {type(module).__name__} returns {type(output).__name__}, not a tensor")
            if slots[index] is not None:
                raise RuntimeError(
                    f"layer {labels[index]!r} ran twice in one forward (a reused module, or two forwards in "
                    "one capture); pick a layer that runs once, e.g. a block such as 'layer3'"
                )
            if torch.is_grad_enabled() and not output.requires_grad:
                output = output.detach().requires_grad_(True)  # a new leaf; the caller's tensor is untouched
            slots[index] = output
            return output.clone()

        return hook

    handles = [m.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)]
    try:
        yield captured
        missing = [labels[i] for i, s in enumerate(slots) if s is None]
        if missing:
            raise RuntimeError(f"layers {missing} did not run in the forward pass")
        captured.extend(slots)  # type: ignore[arg-type]
    finally:
        for handle in handles:
            handle.remove()


# ------------------------------------------------------------------------------------------------
# weightings: (A [B,K,h,w], dS/dA [B,K,h,w]) -> map before ReLU [B,h,w]
# ------------------------------------------------------------------------------------------------
def _channel_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bk,bkhw->bhw", weights, activations)  # Σ_k α_k A^k


def gradcam_weighting(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, Eq. 1-2): ``α_k = mean_ij dS/dA^k_ij``, ``Σ_k α_k A^k``."""
    return _channel_sum(grads.mean(dim=(2, 3)), activations)


def gradcam_pp_weighting(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, Eq. 19 and 9).

    With the exponential score ``exp(S)`` the higher derivatives reduce to powers of ``g = dS/dA``:
    ``α_ij = g² / (2g² + Σ_ab A_ab · g³)`` (α = 0 where g = 0), ``w_k = Σ_ij α_ij ReLU(g_ij)``.
    Same convention (and eps) as pytorch-grad-cam's ``GradCAMPlusPlus``.
    """
    g2 = grads.pow(2)
    g3 = g2 * grads
    sum_a = activations.sum(dim=(2, 3), keepdim=True)  # [B, K, 1, 1]
    alpha = g2 / (2 * g2 + sum_a * g3 + GRADCAM_PP_EPS)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * grads.clamp(min=0)).sum(dim=(2, 3))  # [B, K]
    return _channel_sum(weights, activations)


def channelwise_weighting(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Sharpen Focus channel-wise attention (Wang et al. 2019, §3.1, Eq. 3-4): ``α_k = mean_ij ReLU(g)``."""
    return _channel_sum(grads.clamp(min=0).mean(dim=(2, 3)), activations)


def pixelwise_weighting(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Sharpen Focus pixel-wise attention (Wang et al. 2019, §3.1, Eq. 5): ``(1/K) Σ_k g^k ⊙ A^k``."""
    return (grads * activations).mean(dim=1)


WEIGHTINGS: dict[str, Weighting] = {
    "gradcam": gradcam_weighting,
    "gradcam++": gradcam_pp_weighting,
    "channelwise": channelwise_weighting,
    "pixelwise": pixelwise_weighting,
}


def _weighting(method: str) -> Weighting:
    try:
        return WEIGHTINGS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; choose one of {list(WEIGHTINGS)}") from None


# ------------------------------------------------------------------------------------------------
# maps
# ------------------------------------------------------------------------------------------------
def attention_maps(
    activations: Sequence[torch.Tensor],
    score: torch.Tensor,
    method: str = "gradcam",
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> list[torch.Tensor]:
    """Maps ``[B, h, w]`` (ReLU'd, feature resolution) of ``score`` ``[B]`` at each captured layer.

    One ``autograd.grad`` call for all layers and samples, seeded with ones (the gradient of
    ``score.sum()``). ``create_graph=True`` keeps the maps differentiable w.r.t. the parameters,
    through both the activations and the gradients (the channel weights); with ``False`` the maps
    still depend on the activations but the gradients are constants. ``retain_graph`` (default:
    ``create_graph``) keeps the forward graph for a further map or loss.
    """
    weighting = _weighting(method)
    if score.ndim != 1:
        raise ValueError(f"score must be [B], got shape {tuple(score.shape)}")
    for a in activations:
        if a.ndim != 4:
            raise ValueError(f"gradient attention needs [B, K, h, w] activations, got {tuple(a.shape)}")
    grads = torch.autograd.grad(
        score.sum(), list(activations), create_graph=create_graph, retain_graph=retain_graph
    )
    return [torch.relu(weighting(a, g)) for a, g in zip(activations, grads)]


def grad_attention(
    model: nn.Module,
    layer: LayerSpec,
    x: torch.Tensor,
    target: Target,
    method: str = "gradcam",
    create_graph: bool = False,
) -> torch.Tensor:
    """Gradient attention ``[B, h, w]`` of ``target``'s score at ``layer``: one forward, one backward.

    ``method`` is a key of :data:`WEIGHTINGS` (``"gradcam"``, ``"gradcam++"``, ``"channelwise"``,
    ``"pixelwise"``). Maps are at the layer's resolution, after ReLU, not normalised (see
    :mod:`attnbook.explain.postprocess`); detached unless ``create_graph``. The model's train/eval
    mode is left as it is.
    Paper: Grad-CAM Eq. 1-2 · Grad-CAM++ Eq. 19 · Sharpen Focus §3.1, Eq. 1-5.
    """
    _weighting(method)  # fail before the forward pass on a bad name
    with torch.enable_grad():
        with capture_activations(model, [layer]) as acts:
            output = model(x)
        score = select_score(output, target)
        if score.shape[0] != x.shape[0]:
            raise ValueError(f"score has {score.shape[0]} entries for a batch of {x.shape[0]} images")
        (maps,) = attention_maps(acts, score, method, create_graph=create_graph)
    return maps if create_graph else maps.detach()

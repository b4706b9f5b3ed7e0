"""Guided backpropagation and Guided Grad-CAM.

Guided backprop (Springenberg et al. ICLR-W 2015, §3.4, Fig. 1): through every ReLU the backward pass
keeps a gradient only where the forward input was positive AND the incoming gradient is positive.
Implemented by temporarily replacing the ``forward`` of every ``nn.ReLU`` module with a custom
autograd Function; this works for modules reused several times in one forward (torchvision ResNet
blocks call one in-place ReLU twice). ReLUs called as functions (``F.relu``) cannot be swapped.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from attnbook.explain.gradcam import LayerSpec, Target, grad_attention, select_score
from attnbook.explain.postprocess import upsample


class GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward ``ReLU(grad_out) · 1[x > 0]`` (Springenberg et al. 2015, Fig. 1)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        """``ReLU(x)``, saved for the backward pass. Any shape."""
        out = x.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor) -> torch.Tensor:
        """The guided gradient ``ReLU(grad_out) · 1[x > 0]`` (Springenberg et al. 2015, Fig. 1)."""
        (out,) = ctx.saved_tensors
        return grad_out.clamp(min=0) * (out > 0).to(grad_out.dtype)


def _guided_forward(x: torch.Tensor) -> torch.Tensor:
    return GuidedReLU.apply(x)


@contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Within the block every ``nn.ReLU`` of ``model`` back-propagates guided; yields how many.

    The original ``forward`` of each module is restored on exit, also on error. The guided ReLU is
    out-of-place, so ``inplace=True`` modules stop mutating their input while swapped.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(
            f"{type(model).__name__} has no nn.ReLU modules; guided backprop swaps ReLU modules and cannot "
            "reach functional F.relu calls — build the model with nn.ReLU layers"
        )
    missing = object()
    saved = [m.__dict__.get("forward", missing) for m in relus]
    try:
        for m in relus:
            m.forward = _guided_forward
        yield len(relus)
    finally:
        for m, original in zip(relus, saved):
            if original is missing:
                del m.forward
            else:
                m.forward = original


def guided_backprop(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Guided-backprop gradients ``[B, 3, H, W]`` of ``target``'s score w.r.t. the input ``x``.

    One forward and one backward for the batch (summed per-sample scores; samples independent in
    ``eval()`` mode).
    """
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), guided_relus(model):
        score = select_score(model(inputs), target)
        (grads,) = torch.autograd.grad(score.sum(), inputs)
    return grads


def saliency(grads: torch.Tensor) -> torch.Tensor:
    """Reduce input gradients ``[B, C, H, W]`` to a map ``[B, H, W]``: max over channels of ``|g|``.

    The reduction of Simonyan et al. (ICLR-W 2014, §3.1) for image-specific saliency.
    """
    if grads.ndim != 4:
        raise ValueError(f"grads must be [B, C, H, W], got {tuple(grads.shape)}")
    return grads.abs().amax(dim=1)


def guided_gradcam(model: nn.Module, x: torch.Tensor, target: Target, *, layer: LayerSpec) -> torch.Tensor:
    """Guided Grad-CAM ``[B, 3, H, W]`` (Selvaraju et al. ICCV 2017, §3.1).

    Guided backprop ⊙ Grad-CAM at ``layer`` upsampled bilinearly to the input size. Grad-CAM is used
    unnormalised; per-image scaling does not change the map's shape.
    """
    gradcam = upsample(grad_attention(model, layer, x, target, "gradcam"), tuple(x.shape[-2:]))  # [B, H, W]
    return guided_backprop(model, x, target) * gradcam.unsqueeze(1)

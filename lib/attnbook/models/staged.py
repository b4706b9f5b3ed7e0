"""Model plumbing shared by chapters that fine-tune part of a backbone under an attention head.

A :class:`StagedModel` is ``head(tail(x))``: the trainable backbone stages (``tail``) under any head of
:mod:`attnbook.methods` (GAP, BR-NPA, B-CNN, BLA …), fed with the cached output of the frozen stages
before them. :class:`ImageModel` puts the frozen prefix back in front, so that post-hoc explainers and
figures see images. Both answer the attention interface (:mod:`attnbook.methods.base`).
Chapter: nbs/05_brnpa.ipynb.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from attnbook.methods.base import Attention
from attnbook.models.backbones import Backbone

STEM, HEAD = "stem", "head"  # tail_of: the whole backbone / none of it (train the head on cached maps)


class StagedModel(nn.Module):
    """``head(tail(x))``: the trained backbone stages (``tail``) and a head; ``x`` is the cached output of
    the frozen stages before them (images when the whole backbone trains)."""

    def __init__(self, tail: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.tail, self.head = tail, head

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, ...]`` cached stage outputs -> ``[B, K]`` logits."""
        return self.head(self.tail(inputs))

    def attend(self, inputs: torch.Tensor) -> Attention:
        """The head's attention, with the feature-vector norms ``‖f_i‖`` in ``extras["norms"]`` ``[B, h, w]``."""
        features = self.tail(inputs)  # [B, C, h, w]
        return self.head.attend(features).with_extras(norms=features.norm(dim=1))


class ImageModel(nn.Module):
    """Images → logits through the frozen ``prefix`` (up to stage ``cut``) and a :class:`StagedModel`:
    what the post-hoc explainers and the figures need."""

    def __init__(self, prefix: Backbone | None, cut: str | None, model: StagedModel) -> None:
        super().__init__()
        self.prefix, self.cut, self.model = prefix, cut, model

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.prefix is None else self.prefix.features(images, [self.cut])[self.cut]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` images -> ``[B, K]`` logits."""
        return self.model(self._inputs(images))

    def attend(self, images: torch.Tensor) -> Attention:
        """The staged model's attention on images, through the frozen prefix. ``[B, 3, H, W] -> Attention``."""
        return self.model.attend(self._inputs(images))


def tail_of(backbone: Backbone, start: str) -> nn.Module:
    """The stages from ``start`` on (``"stem"``: the whole backbone with its normalisation; ``"head"``: none)."""
    if start == STEM:
        return backbone
    if start == HEAD:
        return nn.Identity()
    names = backbone.stage_names[backbone.stage_names.index(start):]
    return nn.Sequential(OrderedDict((name, getattr(backbone, name)) for name in names))


def last_convs(module: nn.Module, n: int = 3) -> list[str]:
    """Names of the last ``n`` convolutions on the main path of ``module`` (shortcut convs excluded):
    the layers of BR-NPA's Fig. 8."""
    names = [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in name]
    return names[-n:]


def _append_norm(store: list[float], grad: torch.Tensor) -> None:
    store.append(grad.norm().item())


@contextmanager
def record_grad_norms(module: nn.Module, names: Sequence[str]) -> Iterator[dict[str, list[float]]]:
    """Collect ‖∂L/∂W‖ of each named conv at every backward pass inside the block. Paper: BR-NPA Fig. 8."""
    norms: dict[str, list[float]] = {name: [] for name in names}
    handles = [module.get_submodule(name).weight.register_hook(partial(_append_norm, norms[name]))
               for name in names]
    try:
        yield norms
    finally:
        for handle in handles:
            handle.remove()

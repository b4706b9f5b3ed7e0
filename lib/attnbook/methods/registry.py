"""One source of truth for the heads a chapter, a benchmark or the cross-paper chapter can build by name.

Every head here implements the attention interface of :mod:`attnbook.methods.base`.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from attnbook.methods.bcnn import BCNNHead
from attnbook.methods.bla import BLA_VARIANTS
from attnbook.methods.brnpa import BRNPAHead
from attnbook.methods.eat import EATHead
from attnbook.methods.region_grouping import RegionGroupingHead
from attnbook.methods.sharpen_focus import SharpenFocusHead
from attnbook.models.heads import GAPHead

HEADS: dict[str, Callable[..., nn.Module]] = {
    "gap": GAPHead,
    "brnpa": BRNPAHead,  # BR-NPA Algorithm 1
    "bcnn": BCNNHead,  # B-CNN as BR-NPA §4.1 describes it (materialised product)
    "bcnn_einsum": partial(BCNNHead, materialize=False),  # the same maths by one contraction
    "eat": EATHead,  # EAT Eq. 1-6 (options: num_attributes, lam, eta, integrator, …); maps = Grad-CAM
    # Region Grouping Eq. 1-4 (options: num_parts, assignment, attention, alpha, beta); maps = the K assignment
    # maps, Q^T a in extras["attribution"]
    "region_grouping": RegionGroupingHead,
    "sharpen_focus": SharpenFocusHead,  # Sharpen Focus §3.1 (option: attention); maps = target and confuser attention
    **{name: factory for name, factory in BLA_VARIANTS.items() if name != "bl"},  # "bl" is "gap"
}


def make_head(kind: str, channels: int, num_classes: int, **options: Any) -> nn.Module:
    """A head on a ``[B, channels, h, w]`` map by name (:data:`HEADS`); ``options`` go to its constructor."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
    return HEADS[kind](channels, num_classes, **options)

"""One interface for every model that explains itself: ``forward`` gives logits, ``attend`` gives logits
*and* the maps the model explains with.

Every trainable head of the book (GAP, BLA / BLA-T / BLA-PH, L2X-F, BR-NPA, B-CNN; EAT, Sharpen Focus
and Region Grouping when their chapters land) answers the same two calls on a backbone feature map
``[B, C, h, w]``::

    head(features)          -> logits [B, K]
    head.attend(features)   -> Attention(logits [B, K], maps [B, N, h, w], names, extras)

**Map convention.** ``maps[:, k]`` is the k-th map the method offers as its explanation, at the feature
map's resolution and **non-negative**. For heads that pool (GAP, BLA, L2X-F, BR-NPA, B-CNN) these are
the spatial weights the head pools the features with (GAP: uniform; BLA/L2X-F: the soft map and the
hard selection; BR-NPA: the N ranked maps w^(k), rank 1 first; B-CNN: its C' maps). Scales are
method-specific (a BR-NPA map sums to 1, a B-CNN map is a raw ReLU output), so code that compares
methods uses scale-free scores — share of mass in a region, pointing game, rank correlation
(:mod:`attnbook.metrics`). ``names`` labels the maps (``None``: ranked, "map 1" … "map N");
``extras`` holds method-specific tensors (BR-NPA: ``vectors``, ``positions``, ``aux_logits``).

Code that consumes attention (the evaluation engine, explorer widgets, metrics) calls ``attend`` and
reads these fields; it never asks which class it holds.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class Attention:
    """What a model attends to for a batch (see the module docstring for the map convention)."""

    logits: torch.Tensor  # [B, K]
    maps: torch.Tensor  # [B, N, h, w], non-negative
    names: tuple[str, ...] | None = None  # one label per map; None = ranked maps "map 1" … "map N"
    extras: Mapping[str, Any] = field(default_factory=dict)  # method-specific tensors

    def __post_init__(self) -> None:
        if self.logits.ndim != 2 or self.maps.ndim != 4 or self.maps.shape[0] != self.logits.shape[0]:
            raise ValueError(
                f"Attention needs logits [B, K] and maps [B, N, h, w] with the same B; got "
                f"{tuple(self.logits.shape)} and {tuple(self.maps.shape)}"
            )
        if self.names is not None and len(self.names) != self.maps.shape[1]:
            raise ValueError(f"{len(self.names)} names for {self.maps.shape[1]} maps")

    @property
    def map_names(self) -> tuple[str, ...]:
        """The maps' labels: ``names``, or "map 1" … "map N" for ranked maps."""
        return self.names or tuple(f"map {k + 1}" for k in range(self.maps.shape[1]))

    def map(self, name: str) -> torch.Tensor:
        """One map by its label. ``-> [B, h, w]``."""
        names = self.map_names
        if name not in names:
            raise KeyError(f"no map named {name!r}; this attention has {names}")
        return self.maps[:, names.index(name)]

    def with_extras(self, **extras: Any) -> Attention:
        """A copy with more method-specific entries (e.g. the feature norms a wrapper computed)."""
        return Attention(self.logits, self.maps, self.names, {**self.extras, **extras})


@runtime_checkable
class AttentionModel(Protocol):
    """A model that explains itself: logits from ``forward``, logits and maps from ``attend``."""

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w] -> [B, K]`` logits."""

    def attend(self, features: torch.Tensor) -> Attention:
        """The logits and the maps the model explains with. ``[B, C, h, w] -> maps [B, N, h, w]``."""


def check_features(features: torch.Tensor, channels: int | None = None) -> None:
    """Raise a ``ValueError`` naming the problem unless ``features`` is a ``[B, channels, h, w]`` map."""
    if features.ndim != 4:
        raise ValueError(f"features must be a [B, C, h, w] map, got shape {tuple(features.shape)}")
    if channels is not None and features.shape[1] != channels:
        raise ValueError(f"features have {features.shape[1]} channels, the head expects {channels}")


def uniform_maps(features: torch.Tensor) -> torch.Tensor:
    """Global average pooling's weights, 1/(h·w) everywhere. ``[B, C, h, w] -> [B, 1, h, w]``."""
    batch, _, height, width = features.shape
    return features.new_full((batch, 1, height, width), 1.0 / (height * width))

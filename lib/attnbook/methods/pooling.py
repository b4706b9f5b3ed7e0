"""The pooling machinery BLA and L2X-F share: pool the feature map over *selected* positions.

Paper: BLA §3 (Fig. 1, the explanation module and its test-time pooling E), §3.3 (L2X-F).
Chapter: nbs/04_bla.ipynb. Subclasses: :class:`~attnbook.methods.bla.BoundedLogitAttentionHead`,
:class:`~attnbook.methods.l2x.L2XFeatureHead`.

An *explanation head* replaces global average pooling by a pooling over selected positions of the
feature map ``f_1..f_n`` (n = h·w) and then applies the classifier L (dropout → ``fc`` of a
:class:`~attnbook.models.heads.GAPHead`)::

    training   v = Σ_i w_i f_i                  soft weights w (BLA Eq. 1/2; L2X's relaxed mask)
    test time  v = (1/‖δ‖₁) Σ_i δ_i f_i          hard explanation δ ∈ {0,1}ⁿ (BLA §3, E's pooling)
    logits     = fc(dropout(v))

:class:`SelectionPoolingHead` holds that machinery once; a subclass says how positions are scored,
how the soft weights and the hard mask follow from the scores, and which soft map it explains with.
Its :meth:`~SelectionPoolingHead.attend` returns two maps, ``("soft", "hard")``: the soft map and
the hard selection δ as 0/1 (:mod:`attnbook.methods.base`).
"""
from __future__ import annotations

import abc
import copy
from typing import Self

import torch
from torch import nn

from attnbook.methods.base import Attention, check_features
from attnbook.models.heads import GAPHead

SOFT, HARD = "soft", "hard"


def pool_positions(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over positions, ``v = Σ_i w_i f_i`` (BLA Eq. 1). ``[B,C,h,w], [B,h,w] -> [B,C]``."""
    return torch.einsum("bchw,bhw->bc", features, weights)


def uniform_weights(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``δ / ‖δ‖₁`` per image: the test-time pooling weights of BLA §3. ``bool [B,h,w] -> [B,h,w]``."""
    counts = mask.sum(dim=(1, 2), keepdim=True)  # [B, 1, 1]
    if bool((counts == 0).any()):
        raise ValueError("a hard explanation selects no position; every δ needs ‖δ‖₁ ≥ 1")
    return mask.to(dtype) / counts.to(dtype)


def _classifier(
    in_channels: int, num_classes: int, dropout: float | None, base_head: GAPHead | None, share: bool
) -> GAPHead:
    """The head L: a fresh :class:`GAPHead`, or a trained one copied (or shared) from ``base_head``."""
    if base_head is None:
        if share:
            raise ValueError("share_base=True needs base_head=<a trained GAPHead> to share")
        return GAPHead(in_channels, num_classes, 0.0 if dropout is None else dropout)
    if not isinstance(base_head, GAPHead):
        raise TypeError(f"base_head must be a GAPHead (dropout → fc), got {type(base_head).__name__}")
    shape = (base_head.fc.in_features, base_head.fc.out_features)
    if shape != (in_channels, num_classes):
        raise ValueError(
            f"base_head maps {shape[0]} channels to {shape[1]} classes, but the head was asked for "
            f"{in_channels} → {num_classes}; use from_base_head(base_head) to take its sizes"
        )
    if dropout is not None and dropout != base_head.dropout.p:
        raise ValueError(
            f"dropout={dropout} conflicts with base_head's dropout {base_head.dropout.p}; "
            "leave dropout=None to keep the base head's"
        )
    return base_head if share else copy.deepcopy(base_head)


class SelectionPoolingHead(nn.Module, abc.ABC):
    """Explanation module + classifier L: pools over selected positions instead of averaging.

    Paper: BLA §3 (Fig. 1). ``forward`` pools with the soft weights in training mode and with the
    uniform hard explanation in eval mode (override with ``hard=True/False``). The 1×1 conv ``scorer``
    (``g_i = uᵀ f_i``; no bias, as in the paper — the authors' Keras conv has one: ``bias=True``) is
    Glorot-uniform initialised (§4.2). ``classifier`` is a :class:`GAPHead` whose ``dropout`` and ``fc``
    are applied to the pooled vector; with ``base_head`` it starts from a trained head's weights
    (copied, or shared with ``share_base=True``), and ``freeze_classifier=True`` stops L's training.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dropout: float | None = None,
        *,
        base_head: GAPHead | None = None,
        share_base: bool = False,
        freeze_classifier: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.classifier = _classifier(in_channels, num_classes, dropout, base_head, share_base)
        self.scorer = nn.Conv2d(in_channels, 1, kernel_size=1, bias=bias)  # g_i = uᵀ f_i
        nn.init.xavier_uniform_(self.scorer.weight)
        if bias:
            nn.init.zeros_(self.scorer.bias)
        if freeze_classifier:
            self.set_classifier_trainable(False)

    @classmethod
    def from_base_head(
        cls, base_head: GAPHead, *, share: bool = False, freeze: bool = False, **kwargs
    ) -> Self:
        """Start from a trained base head L (its sizes, dropout and weights); ``freeze`` for post-hoc Q."""
        return cls(
            base_head.fc.in_features, base_head.fc.out_features, base_head=base_head,
            share_base=share, freeze_classifier=freeze, **kwargs,
        )

    def set_classifier_trainable(self, trainable: bool) -> None:
        """Freeze (``False``) or unfreeze the classifier L; the explanation module Q stays trainable."""
        for param in self.classifier.parameters():
            param.requires_grad_(trainable)

    def selector_scores(self, features: torch.Tensor) -> torch.Tensor:
        """The 1×1-conv scores ``g_i = uᵀ f_i``. ``[B,C,h,w] -> [B,h,w]``."""
        check_features(features, self.scorer.in_channels)
        return self.scorer(features)[:, 0]  # [B, h, w]

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Per-position logits the soft weights, hard mask and soft map derive from. ``[B,h,w]``."""
        return self.selector_scores(features)

    @abc.abstractmethod
    def soft_weights(self, scores: torch.Tensor) -> torch.Tensor:
        """Training-time pooling weights ``w`` from the scores. ``[B,h,w] -> [B,h,w]``."""

    @abc.abstractmethod
    def hard_mask(self, scores: torch.Tensor) -> torch.Tensor:
        """Test-time hard explanation δ (at least one position per image). ``[B,h,w] -> bool [B,h,w]``."""

    @abc.abstractmethod
    def soft_map(self, scores: torch.Tensor) -> torch.Tensor:
        """The soft explanation (a distribution over positions). ``[B,h,w] -> [B,h,w]``."""

    def explain(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(soft map [B,h,w], hard explanation δ bool [B,h,w])`` for a feature map."""
        scores = self.scores(features)
        return self.soft_map(scores), self.hard_mask(scores)

    def _weights(self, features: torch.Tensor, scores: torch.Tensor, hard: bool | None) -> torch.Tensor:
        hard = not self.training if hard is None else hard
        if hard:
            return uniform_weights(self.hard_mask(scores), features.dtype)
        return self.soft_weights(scores)

    def pooling_weights(self, features: torch.Tensor, hard: bool | None = None) -> torch.Tensor:
        """The ``w`` in ``v = Σ_i w_i f_i``: soft in training, ``δ/‖δ‖₁`` in eval (or as ``hard`` says)."""
        return self._weights(features, self.scores(features), hard)

    def _classify(self, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        pooled = pool_positions(features, weights)  # [B, C]
        return self.classifier.fc(self.classifier.dropout(pooled))

    def forward(self, features: torch.Tensor, hard: bool | None = None) -> torch.Tensor:
        """``[B,C,h,w] -> [B,K]`` logits of L on the explanation-pooled features."""
        return self._classify(features, self.pooling_weights(features, hard))

    def attend(self, features: torch.Tensor, hard: bool | None = None) -> Attention:
        """Logits as :meth:`forward` and the maps ``("soft", "hard")``: soft map and δ as 0/1. ``[B, 2, h, w]``."""
        scores = self.scores(features)
        logits = self._classify(features, self._weights(features, scores, hard))
        maps = torch.stack([self.soft_map(scores), self.hard_mask(scores).to(scores.dtype)], dim=1)
        return Attention(logits, maps, (SOFT, HARD))

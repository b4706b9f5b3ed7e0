"""L2X-F: learning to explain (Chen et al. 2018) at the feature level, and the pooling head it shares with BLA.

Paper: BLA §3 ("Explanation module"), §3.3 ("Fixed size explanations: L2X-F"), §4.2 (baseline).
Chapter: the BLA chapter (``bla.py`` builds every variant from :data:`attnbook.methods.bla.BLA_VARIANTS`).

An *explanation head* replaces global average pooling by a pooling over selected positions of the
feature map ``f_1..f_n`` (n = h·w) and then applies the classifier L (dropout → ``fc`` of a
:class:`~attnbook.models.heads.GAPHead`)::

    training   v = Σ_i w_i f_i                  soft weights w (BLA Eq. 1/2; L2X's relaxed mask)
    test time  v = (1/‖δ‖₁) Σ_i δ_i f_i          hard explanation δ ∈ {0,1}ⁿ (BLA §3, E's pooling)
    logits     = fc(dropout(v))

:class:`SelectionPoolingHead` holds that machinery once; a subclass says how positions are scored,
how the soft weights and the hard mask follow from the scores, and which soft map it explains with.

L2X-F (this module). A selector scores each position, ``s_i = uᵀ f_i`` (1×1 conv, one filter).
Training draws k relaxed one-hot samples by the Gumbel-softmax trick (Jang et al. 2016) and combines
them by an element-wise max (a relaxed k-hot mask; Chen et al. 2018, as the BLA authors' code does)::

    w = max_{j<k} softmax(τ · (s + G_j)),     G_j ~ Gumbel(0, 1) i.i.d. over positions

Test time keeps exactly the k highest-scoring positions (k-hot δ), pooled uniformly. Defaults follow
the BLA authors' code: k = 8, τ = 0.1. **τ multiplies** there (Jang et al. and Chen et al. divide by
their temperature, so τ here is the reciprocal of theirs: Chen et al.'s τ = 0.1 is ``tau=10`` here).
The soft map used to explain is ``softmax(s)``, the distribution the Gumbel draws sample from.
"""
from __future__ import annotations

import abc
import copy
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

from attnbook.models.heads import GAPHead


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
        if features.ndim != 4:
            raise ValueError(f"features must be a [B, C, h, w] map, got shape {tuple(features.shape)}")
        if features.shape[1] != self.scorer.in_channels:
            raise ValueError(
                f"features have {features.shape[1]} channels, the head expects {self.scorer.in_channels}"
            )
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

    def pooling_weights(self, features: torch.Tensor, hard: bool | None = None) -> torch.Tensor:
        """The ``w`` in ``v = Σ_i w_i f_i``: soft in training, ``δ/‖δ‖₁`` in eval (or as ``hard`` says)."""
        scores = self.scores(features)
        hard = not self.training if hard is None else hard
        if hard:
            return uniform_weights(self.hard_mask(scores), features.dtype)
        return self.soft_weights(scores)

    def forward(self, features: torch.Tensor, hard: bool | None = None) -> torch.Tensor:
        """``[B,C,h,w] -> [B,K]`` logits of L on the explanation-pooled features."""
        pooled = pool_positions(features, self.pooling_weights(features, hard))  # [B, C]
        return self.classifier.fc(self.classifier.dropout(pooled))


class L2XFeatureHead(SelectionPoolingHead):
    """L2X-F: k Gumbel-softmax draws (max-combined) in training, exactly the top-k positions at test time.

    Paper: BLA §3.3, §4.2 (after Chen et al. 2018). ``k`` = explanation size (default 8, the authors'
    code); ``tau`` multiplies ``s + G`` (default 0.1, the authors' code; see the module docstring).
    """

    def __init__(
        self, in_channels: int, num_classes: int, dropout: float | None = None, *,
        k: int = 8, tau: float = 0.1, **kwargs,
    ) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (the explanation size) must be a positive int, got {k!r}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0 (it multiplies the Gumbel-perturbed scores), got {tau}")
        super().__init__(in_channels, num_classes, dropout, **kwargs)
        self.k = k
        self.tau = tau

    def _check_k(self, scores: torch.Tensor) -> None:
        n = scores.shape[1] * scores.shape[2]
        if self.k > n:
            raise ValueError(f"k={self.k} exceeds the {n} positions of the feature map; choose k ≤ {n}")

    def soft_weights(self, scores: torch.Tensor) -> torch.Tensor:
        self._check_k(scores)
        flat = scores.flatten(1)  # [B, n]
        draws = flat.unsqueeze(1).expand(-1, self.k, -1).contiguous()  # [B, k, n]
        # F.gumbel_softmax divides by its tau: 1/τ gives softmax(τ·(s + G)) per draw.
        relaxed = F.gumbel_softmax(draws, tau=1.0 / self.tau, dim=-1)  # [B, k, n]
        return relaxed.amax(dim=1).view_as(scores)  # element-wise max over the k draws

    def hard_mask(self, scores: torch.Tensor) -> torch.Tensor:
        self._check_k(scores)
        flat = scores.flatten(1)  # [B, n]
        top = flat.topk(self.k, dim=1).indices  # [B, k]; ties broken by topk, so exactly k
        mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, top, True)
        return mask.view_as(scores)

    def soft_map(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.flatten(1).softmax(dim=1).view_as(scores)

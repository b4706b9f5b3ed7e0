"""Bounded logit attention (BLA): a trainable explanation module that replaces global average pooling.

Paper: Baumhauer et al. 2021, "Bounded logit attention: Learning to explain image classifiers",
§3.1 (module Q, Eq. 1; thresholding, Eq. 2; discretisation E), §3.2 (post-hoc use), §4.2 (variants).

On the feature map ``f_1..f_n`` (n = h·w) the explanation module Q computes::

    g_i = uᵀ f_i                       1×1 convolution, one filter
    ℓ_i = β(g_i) = min(g_i, 0)         bounded logits (ℓ ≤ 0)
    q   = softmax(θ · ℓ)               over all n positions
    v   = Σ_i q_i f_i                  (Eq. 1) training pooling; then dropout → fc (the head L)

θ **multiplies** the logits: the paper writes ``q = σ(θ · ℓ)`` and calls θ a temperature, and the
authors' code computes ``softmax(0.1 · p)``. θ = 0.1 (the default) therefore *flattens* q (it is a
conventional temperature of 10). q is exactly uniform on the bounded set {i : ℓ_i = 0}.

Thresholding (BLA-T). Eq. 2 reads ``v = Σ_i 1[q_i > γ] f_i``; taken literally its weights carry no
gradient to Q, yet the text says it *thresholds the weights* q to add learning pressure on Q. So the
paper mode keeps q where it exceeds γ: ``w_i = q_i · 1[q_i > γ]``. It does **not** renormalise: Eq. 2
has no normaliser (unlike E's pooling, which divides by ‖δ‖₁ explicitly) and Eq. 1, which it modifies,
has none either. The authors' code instead uses ``w_i = relu(q_i − γ)``, also unnormalised (mode
``"code"``). γ defaults to 0.98/n (the experiments and the code; the text proposes 1/n, which with the
strict ``>`` would zero a uniform q entirely).

Test time (E): ``δ_i = 1 iff ℓ_i = 0`` and ``v = (1/‖δ‖₁) Σ_i δ_i f_i``. If every g_i < 0 no logit
reaches the bound and δ would be empty; then δ falls back to the position(s) of the largest logit.
Both cases are one rule, ``δ_i = 1 iff ℓ_i = max_j ℓ_j`` (max ℓ = 0 whenever any g_i ≥ 0), which is
what the authors' code computes.

Variants (§4.2), one source of truth in :data:`BLA_VARIANTS`: BL (plain :class:`GAPHead`), L2X-F
(:class:`~attnbook.methods.l2x.L2XFeatureHead`), BLA, BLA-T (paper threshold), BLA-PH (BLA-T with the
trained head L frozen; only Q learns). As in the paper and the code, the explanation heads can start
from a trained BL head (``base_head=`` / ``from_base_head``).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from attnbook.methods.l2x import L2XFeatureHead
from attnbook.methods.pooling import SelectionPoolingHead
from attnbook.models.heads import GAPHead

THRESHOLD_MODES: tuple[str, ...] = ("none", "paper", "code")
DEFAULT_GAMMA_FACTOR = 0.98  # γ = 0.98 / n (BLA §4.2; the authors' code)


def bounded_logits(scores: torch.Tensor) -> torch.Tensor:
    """β(g) = min(g, 0) (BLA §3.1)."""
    return scores.clamp(max=0.0)


def threshold_weights(q: torch.Tensor, gamma: float, mode: str) -> torch.Tensor:
    """Thresholded pooling weights (BLA Eq. 2): ``"paper"`` q·1[q > γ], ``"code"`` relu(q − γ), ``"none"`` q."""
    if mode == "paper":
        return q * (q > gamma)
    if mode == "code":
        return torch.relu(q - gamma)
    if mode == "none":
        return q
    raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES}, got {mode!r}")


class BoundedLogitAttentionHead(SelectionPoolingHead):
    """BLA explanation module Q + head L; soft q-pooling in training, hard δ-pooling in eval.

    Paper: BLA §3.1, Eq. 1 (``threshold_mode="none"``, BLA) and Eq. 2 (``"paper"``/``"code"``, BLA-T).
    ``theta`` multiplies the bounded logits (default 0.1); ``gamma`` is the threshold (``None`` →
    0.98/(h·w)). Other keywords (``dropout``, ``base_head``, ``share_base``, ``freeze_classifier``,
    ``bias``) as in :class:`~attnbook.methods.pooling.SelectionPoolingHead`.
    """

    def __init__(
        self, in_channels: int, num_classes: int, dropout: float | None = None, *,
        theta: float = 0.1, threshold_mode: str = "none", gamma: float | None = None, **kwargs,
    ) -> None:
        if theta <= 0:
            raise ValueError(f"theta must be > 0 (it multiplies the bounded logits), got {theta}")
        if threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES}, got {threshold_mode!r}")
        if gamma is not None and not 0.0 <= gamma < 1.0:
            raise ValueError(f"gamma must lie in [0, 1) (q is a distribution), got {gamma}; None → 0.98/n")
        super().__init__(in_channels, num_classes, dropout, **kwargs)
        self.theta = theta
        self.threshold_mode = threshold_mode
        self.gamma = gamma

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """The bounded logits ℓ = min(uᵀ f, 0). ``[B,C,h,w] -> [B,h,w]``, all ≤ 0."""
        return bounded_logits(self.selector_scores(features))

    def gamma_for(self, n: int) -> float:
        """The threshold γ for n positions (``gamma``, or 0.98/n by default)."""
        return DEFAULT_GAMMA_FACTOR / n if self.gamma is None else self.gamma

    def soft_map(self, scores: torch.Tensor) -> torch.Tensor:
        """q = softmax(θ·ℓ) over all positions (BLA §3.1). ``[B,h,w] -> [B,h,w]``."""
        return (self.theta * scores).flatten(1).softmax(dim=1).view_as(scores)

    def soft_weights(self, scores: torch.Tensor) -> torch.Tensor:
        """q thresholded as ``threshold_mode`` says (BLA Eq. 1; Eq. 2 for BLA-T). ``[B,h,w] -> [B,h,w]``."""
        n = scores.shape[1] * scores.shape[2]
        return threshold_weights(self.soft_map(scores), self.gamma_for(n), self.threshold_mode)

    def hard_mask(self, scores: torch.Tensor) -> torch.Tensor:
        """δ_i = 1 iff ℓ_i = 0, falling back to argmax ℓ when no logit is at the bound (see module doc)."""
        return scores == scores.amax(dim=(1, 2), keepdim=True)


def post_hoc_head(
    in_channels: int, num_classes: int, *, base_head: GAPHead | None = None, **kwargs
) -> BoundedLogitAttentionHead:
    """BLA-PH (§4.2): the BLA-T setup with the trained head L frozen, so only Q is trained."""
    if base_head is None:
        raise ValueError("BLA-PH explains a trained classifier: pass base_head=<the trained BL GAPHead>")
    kwargs.setdefault("threshold_mode", "paper")
    return BoundedLogitAttentionHead(
        in_channels, num_classes, base_head=base_head, freeze_classifier=True, **kwargs
    )


BLA_VARIANTS: dict[str, Callable[..., nn.Module]] = {
    "bl": GAPHead,
    "l2x_f": L2XFeatureHead,
    "bla": BoundedLogitAttentionHead,
    "bla_t": partial(BoundedLogitAttentionHead, threshold_mode="paper"),
    "bla_ph": post_hoc_head,
}


def build_head(variant: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """Construct the head of a BLA §4.2 variant; ``kwargs`` go to its constructor (e.g. ``base_head=``)."""
    if variant not in BLA_VARIANTS:
        raise ValueError(f"unknown BLA variant {variant!r}; choose one of {sorted(BLA_VARIANTS)}")
    return BLA_VARIANTS[variant](in_channels, num_classes, **kwargs)

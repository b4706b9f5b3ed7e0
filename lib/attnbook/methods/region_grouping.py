"""Region Grouping (Huang & Li, "Interpretable and Accurate Fine-grained Recognition via Region Grouping",
CVPR 2020, §3): a part dictionary groups a feature map into K soft regions, a Beta prior on each part's
occurrence over the mini-batch shapes the regions, region features are attended and classified.

* Eq. 1, soft assignment ``q^k_ij = softmax_k(−‖(x_ij − d_k)/σ_k‖²/2)`` → ``Q`` ``[B, K, h, w]``;
  :func:`assign_paper` (the equation) and :func:`assign_code` (the authors' form: ``2 d·x − ‖x‖² − ‖d‖²`` clamped
  at ≤ 0, divided by ``β_k = sigmoid(s_k)``). Both read the same parameter ``s_k``: with ``σ_k = sqrt(β_k / 2)``
  the two are equal (``−‖x − d‖²/β = −‖x − d‖²/(2σ²)``); the clamp only removes rounding error. The code's
  ``σ_k`` lies in ``(0, 1/√2)``, the paper's in ``(0, 1)``.
* Part occurrence ``t_k = max_ij (G * Q^k)`` (:func:`part_occurrence`; ``G`` a Gaussian kernel of radius 2 and
  std 0.4, *valid* convolution as the authors' code).
* Eq. 2, the occurrence prior ``L_W`` (:func:`occurrence_prior_loss`): the sorted occurrences of each part over
  the N images of a mini-batch against the Beta(α, β) quantiles at ``(2n − 1)/(2N)``, both log-rescaled,
  mean absolute difference (a 1-D Wasserstein distance), averaged over parts.
* Eq. 3, region features ``z_k = z'_k/‖z'_k‖``, ``z'_k = Σ q (x − d_k)/σ_k / Σ q`` (:func:`region_features`);
  ``f_z``: residual bottlenecks of 1×1 convs; attention ``a = softmax_k(f_a(Z))``; Eq. 4
  ``ŷ = W · BN(Σ_k a_k f_z(z_k))``; pixel attribution ``Q^T a``.

Chapter: ``nbs/03_region_grouping.ipynb``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from attnbook.methods.base import Attention, check_features

ASSIGNMENTS = ("paper", "code")
EPS = 1e-5  # ε of Eq. 2


def sigma_from_smooth(smooth: torch.Tensor) -> torch.Tensor:
    """``σ_k = sqrt(sigmoid(s_k) / 2)``: the authors' temperature ``β_k = sigmoid(s_k)`` as the paper's σ_k."""
    return (torch.sigmoid(smooth) / 2).sqrt()


def assign_paper(x: torch.Tensor, dictionary: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Eq. 1 as written: ``softmax_k(−‖(x_ij − d_k)/σ_k‖²/2)``. ``x`` ``[B, C, h, w]``, ``dictionary`` ``[K, C]``,
    ``sigma`` ``[K]`` → ``Q`` ``[B, K, h, w]`` (sums to 1 over k)."""
    diff = x[:, None] - dictionary[None, :, :, None, None]  # [B, K, C, h, w]
    logits = -(diff / sigma[None, :, None, None, None]).pow(2).sum(2) / 2  # Eq. 1 exponent
    return logits.softmax(dim=1)


def assign_code(x: torch.Tensor, dictionary: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    """The authors' Eq. 1: ``softmax_k(min(2 d_k·x − ‖x‖² − ‖d_k‖², 0) / sigmoid(s_k))`` (expanded squared
    distance, clamped at 0, temperature ``sigmoid(s_k)``). Equals :func:`assign_paper` with
    ``σ = sigma_from_smooth(smooth)``."""
    cx = torch.einsum("kc,bchw->bkhw", dictionary, x)
    x_sq = x.pow(2).sum(1, keepdim=True)  # [B, 1, h, w]
    c_sq = dictionary.pow(2).sum(1)[None, :, None, None]  # [1, K, 1, 1]
    beta = torch.sigmoid(smooth)[None, :, None, None]
    return ((2 * cx - x_sq - c_sq).clamp(max=0.0) / beta).softmax(dim=1)


def gaussian_kernel(radius: int = 2, std: float = 0.4) -> torch.Tensor:
    """``G``: ``[2r+1, 2r+1]``, ``exp(−(i² + j²)/(2 std²))`` normalised to sum 1 (the authors' kernel)."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    weight = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * std * std))
    return weight / weight.sum()


def part_occurrence(assign: torch.Tensor, radius: int = 2, std: float = 0.4) -> torch.Tensor:
    """``t_k = max_ij (G * Q^k)`` (§3.1 "Part Occurrence"): ``Q`` ``[B, K, h, w]`` → ``τ`` ``[B, K]``.

    Valid (unpadded) convolution as the authors' code; radius 0 (or a map smaller than the kernel) pools
    the raw map."""
    size = 2 * radius + 1
    if radius == 0 or min(assign.shape[-2:]) < size:
        return assign.amax(dim=(2, 3))
    k = assign.shape[1]
    weight = gaussian_kernel(radius, std).to(assign)[None, None].expand(k, 1, size, size)
    return F.conv2d(assign, weight, groups=k).amax(dim=(2, 3))


@lru_cache(maxsize=64)
def _quantiles(n: int, alpha: float, beta: float) -> tuple[float, ...]:
    grid = (2 * np.arange(1, n + 1, dtype=np.float64) - 1) / (2 * n)
    return tuple(stats.beta.ppf(grid, alpha, beta).tolist())


def beta_quantiles(n: int, alpha: float, beta: float) -> torch.Tensor:
    """``F̂⁻¹((2i − 1)/(2N))``, i = 1 … N: the Beta(α, β) prior at the mid-points of N equal bins ``[N]`` (float64;
    cached, as scipy's ppf is slow at extreme α, β and every training step asks for the same N)."""
    return torch.tensor(_quantiles(n, float(alpha), float(beta)), dtype=torch.float64)


def occurrence_prior_loss(occurrence: torch.Tensor, alpha: float = 1.0, beta: float = 1e-3,
                          eps: float = EPS) -> torch.Tensor:
    """Eq. 2, ``L_W``: ``(1/N) Σ_n |log(τ*_k[n] + ε) − log(F̂⁻¹((2n−1)/(2N)) + ε)|``, averaged over the K parts.

    ``occurrence`` ``[N, K]`` (one row per image of the mini-batch) → a scalar. ``τ*_k`` is column k sorted
    ascending; without the logs this is the 1-D Wasserstein distance between the empirical distribution of
    the N occurrences and the N prior quantiles."""
    if occurrence.ndim != 2:
        raise ValueError(f"occurrence must be [N, K], got {tuple(occurrence.shape)}")
    empirical, _ = occurrence.sort(dim=0)  # τ*_k, ascending per part
    prior = beta_quantiles(occurrence.shape[0], alpha, beta).to(occurrence)[:, None]  # [N, 1]
    return ((empirical + eps).log() - (prior + eps).log()).abs().mean()


def region_features(x: torch.Tensor, assign: torch.Tensor, dictionary: torch.Tensor, sigma: torch.Tensor,
                    eps: float = EPS) -> torch.Tensor:
    """Eq. 3: ``z'_k = Σ_ij q^k_ij (x_ij − d_k)/σ_k / Σ_ij q^k_ij``, ``z_k = z'_k/‖z'_k‖`` → ``Z`` ``[B, C, K]``."""
    weighted = torch.einsum("bkhw,bchw->bkc", assign, x)  # Σ q x
    mass = assign.sum(dim=(2, 3))[..., None].clamp(min=eps)  # Σ q  [B, K, 1]
    residual = (weighted / mass - dictionary[None]) / sigma[None, :, None]  # [B, K, C]
    return F.normalize(residual, dim=2).transpose(1, 2)


class Bottleneck1x1(nn.Module):
    """Residual bottleneck of three 1×1 convs with BN and ReLU (``f_z`` and ``f_a`` of §3.2), on ``[B, C, K, 1]``."""

    def __init__(self, channels: int, hidden: int, out_channels: int | None = None) -> None:
        super().__init__()
        out = out_channels or channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out))
        self.shortcut = (nn.Identity() if out == channels else
                         nn.Sequential(nn.Conv2d(channels, out, 1, bias=False), nn.BatchNorm2d(out)))
        nn.init.zeros_(self.body[-1].weight)  # the authors zero the last BN of each residual block

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, C, K, 1] -> [B, out, K, 1]``."""
        return F.relu(self.body(z) + self.shortcut(z))


@dataclass(frozen=True)
class RegionOutput:
    """Everything the head computes for a batch."""

    logits: torch.Tensor  # [B, classes]
    assign: torch.Tensor  # Q [B, K, h, w], sums to 1 over K
    attention: torch.Tensor  # a [B, K], sums to 1 (uniform without attention)
    occurrence: torch.Tensor  # τ [B, K]

    @property
    def attribution(self) -> torch.Tensor:
        """Pixel attribution ``Q^T a`` ``[B, 1, h, w]`` (§3.3)."""
        return torch.einsum("bkhw,bk->bhw", self.assign, self.attention)[:, None]


class RegionGroupingHead(nn.Module):
    """The Region Grouping module on a backbone map ``[B, C, h, w]`` (§3; the authors group ResNet layer3's output
    and replace layer4 with this head).

    ``assignment``: ``"code"`` (default; clamped expanded distance) or ``"paper"`` (Eq. 1 as written) — equal up
    to rounding. ``attention=False``: ``a = 1/K`` (Table 7's "w/o attention"). ``out_channels`` of ``f_z``
    (the code: 2× the input); ``n_post`` / ``n_att`` residual bottlenecks in ``f_z`` / ``f_a`` (code: 4 / 2).
    ``alpha``, ``beta``: the Beta prior of Eq. 2; ``radius``, ``std``: the Gaussian kernel of ``t_k``.
    """

    def __init__(self, channels: int, num_classes: int, num_parts: int = 5, *, assignment: str = "code",
                 attention: bool = True, out_channels: int | None = None, n_post: int = 1, n_att: int = 1,
                 alpha: float = 1.0, beta: float = 1e-3, radius: int = 2, std: float = 0.4) -> None:
        super().__init__()
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}")
        if num_parts < 2:
            raise ValueError(f"num_parts must be ≥ 2, got {num_parts}")
        self.channels, self.num_parts, self.assignment, self.use_attention = channels, num_parts, assignment, attention
        self.alpha, self.beta, self.radius, self.std = alpha, beta, radius, std
        out = out_channels or 2 * channels
        self.dictionary = nn.Parameter(torch.empty(num_parts, channels))  # D = [d_1 … d_K]
        self.smooth = nn.Parameter(torch.zeros(num_parts))  # s_k: σ_k = sqrt(sigmoid(s_k)/2), s_k = 0 at start
        nn.init.kaiming_normal_(self.dictionary[:, :, None, None])
        with torch.no_grad():
            self.dictionary.clamp_(min=1e-5)  # the code's positive dictionary (features follow a ReLU)
        hidden = max(channels // 4, 4)
        self.f_z = nn.Sequential(Bottleneck1x1(channels, hidden, out),
                                 *[Bottleneck1x1(out, max(out // 4, 4)) for _ in range(n_post - 1)])
        self.f_a = nn.Sequential(*[Bottleneck1x1(channels, hidden) for _ in range(n_att)],
                                 nn.Conv2d(channels, 1, 1), nn.BatchNorm2d(1), nn.ReLU()) if attention else None
        self.bn = nn.BatchNorm1d(out)
        self.fc = nn.Linear(out, num_classes)  # W of Eq. 4

    @property
    def sigma(self) -> torch.Tensor:
        """σ_k ``[K]``."""
        return sigma_from_smooth(self.smooth)

    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """Eq. 1: ``Q`` ``[B, K, h, w]``."""
        if self.assignment == "paper":
            return assign_paper(features, self.dictionary, self.sigma)
        return assign_code(features, self.dictionary, self.smooth)

    def outputs(self, features: torch.Tensor) -> RegionOutput:
        """Logits, assignment maps, region attention and part occurrences of ``features`` ``[B, C, h, w]``."""
        check_features(features, self.channels)
        q = self.assign(features)
        z = region_features(features, q, self.dictionary, self.sigma)[..., None]  # Z [B, C, K, 1]
        if self.f_a is not None:
            a = self.f_a(z)[:, 0, :, 0].softmax(dim=1)  # a = softmax(f_a(Z)) [B, K]
        else:
            a = z.new_full((z.shape[0], self.num_parts), 1.0 / self.num_parts)
        pooled = torch.einsum("bck,bk->bc", self.f_z(z)[..., 0], a)  # f_z(Z) a
        logits = self.fc(self.bn(pooled))  # Eq. 4 (before the softmax)
        return RegionOutput(logits, q, a, part_occurrence(q, self.radius, self.std))

    def prior_loss(self, out: RegionOutput) -> torch.Tensor:
        """Eq. 2 on this batch's occurrences with the head's Beta(α, β)."""
        return occurrence_prior_loss(out.occurrence, self.alpha, self.beta)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w] -> [B, classes]`` logits."""
        return self.outputs(features).logits

    def attend(self, features: torch.Tensor) -> Attention:
        """Logits and the K assignment maps ``Q`` (named "part 1" … "part K"; each pixel's maps sum to 1).

        The pixel attribution ``Q^T a`` ``[B, 1, h, w]`` is in ``extras["attribution"]`` (not a map: the maps
        stay a partition of the pixels, what part centroids and overlap scores read), the region attention
        ``a`` ``[B, K]`` in ``extras["attention"]`` and ``τ`` in ``extras["occurrence"]``."""
        out = self.outputs(features)
        names = tuple(f"part {k + 1}" for k in range(self.num_parts))
        return Attention(out.logits, out.assign, names, {"attribution": out.attribution,
                                                         "attention": out.attention, "occurrence": out.occurrence})


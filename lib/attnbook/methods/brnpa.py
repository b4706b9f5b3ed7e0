"""BR-NPA: non-parametric attention by representative feature vectors.

Paper: BR-NPA (Gomez et al.) §3, Algorithm 1; ablations §4.3 (Tables 4/7 and 5).
Chapter: nbs/05_brnpa.ipynb.

Algorithm 1 on the feature vectors ``f_i`` of one image (i over the h·w positions)::

    (1)    a_i ← ‖f_i‖²             activation "squared_norm" (authors' code: ‖f_i‖, "norm")
    for k = 1..N:
           i_max ← argmax_i a_i
    (2)    s_i ← cos(f_i, f_{i_max})
    (3)    w_i ← s_i / Σ_i' s_i'    attention map k (no softmax)
    (4)    f̂_k ← Σ_i w_i f_i        representative vector k
    (5,6)  a_i ← (1 − w_i)·a_i      "weight" (authors' code: (1 − s_i)·a_i, "similarity")

The f̂_k are concatenated and fed to a linear classifier; the w^(k) are N maps ranked by
activation.

Non-negative features. Step (3) divides by Σ s, which is a valid normalisation only when every
s_i ≥ 0, i.e. when the features are non-negative — as they are after the backbone's final ReLU
(the authors' code neither clamps nor checks). Here negative features raise a ``ValueError``
rather than being clamped: clamping would silently run a different algorithm on a backbone whose
final ReLU was removed, and an error names the fix (keep the ReLU). The check costs one reduction.

Two things the paper leaves implicit, decided as the authors' code does:

* ``suppression="weight"`` (the paper's rule) barely changes ``a``: Σ w = 1 over h·w positions,
  so each ``w_i`` is small unless the map is concentrated, and the next argmax can fall on the same
  position again. ``"similarity"`` zeroes the picked position (s_{i_max} = 1), so picks always move.
* The activation only chooses i_max (argmax is not differentiable), so it is computed without
  gradient; gradients reach the features through the similarities and the weighted sums.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnbook.methods.base import Attention, check_features

ACTIVATIONS = ("squared_norm", "norm")
SUPPRESSIONS = ("weight", "similarity")
SELECTIONS = ("active", "random")
# Paper §4.3, Table 5: the vector subsets fed to the extra classifiers (1-based ranks).
TABLE5_SUBSETS: tuple[tuple[int, ...], ...] = ((1, 2), (2, 3), (1,), (2,), (3,))
_EPS = 1e-8


@dataclass(frozen=True)
class NPAResult:
    """What Algorithm 1 returns for a batch."""

    vectors: torch.Tensor  # [B, N, C] representative vectors f̂_1..f̂_N
    maps: torch.Tensor  # [B, N, h, w] attention maps w^(k); each sums to 1 over positions
    positions: torch.Tensor  # [B, N] int64 flat index (row·w + col) of each map's i_max


def _check_options(n_maps: int, activation: str, suppression: str, selection: str) -> None:
    if n_maps < 1:
        raise ValueError(f"n_maps must be at least 1, got {n_maps}")
    for name, value, choices in (
        ("activation", activation, ACTIVATIONS),
        ("suppression", suppression, SUPPRESSIONS),
        ("selection", selection, SELECTIONS),
    ):
        if value not in choices:
            raise ValueError(f"{name}={value!r} is not one of {choices}")


def _check_features(features: torch.Tensor) -> None:
    check_features(features)
    if bool((features < 0).any()):
        raise ValueError(
            "BR-NPA needs non-negative features (Algorithm 1 step 3 divides by the sum of cosine "
            f"similarities); got a minimum of {features.min().item():.3g}. Keep the backbone's "
            "final ReLU, or apply torch.relu to the features."
        )


def _random_positions(
    batch: int, length: int, n_maps: int, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """N distinct positions per sample, uniformly at random (Table 4, 'Random'). # [B, N]"""
    if n_maps > length:
        raise ValueError(f"cannot draw {n_maps} distinct random positions from a map of {length}")
    rng_device = generator.device if generator is not None else device
    scores = torch.rand(batch, length, generator=generator, device=rng_device)  # [B, L]
    return scores.topk(n_maps, dim=1).indices.to(device)


def representative_vectors(
    features: torch.Tensor,
    n_maps: int = 3,
    activation: str = "squared_norm",
    suppression: str = "weight",
    selection: str = "active",
    refine: bool = True,
    generator: torch.Generator | None = None,
) -> NPAResult:
    """Algorithm 1, vectorised over the batch (the loop runs over the N maps only).

    Paper: BR-NPA §3, Alg. 1, steps (1)–(6); ablation switches from §4.3 / Table 4:

    * ``selection="random"``: i_max are N distinct positions drawn uniformly at random instead of
      the argmax of the activation (from ``generator`` if given, else the global RNG). The
      authors' code draws each map's position independently, so two maps may repeat a position.
    * ``refine=False``: "simply concatenates all the active vectors" — f̂_k is the raw f_{i_max};
      the maps w^(k) and the suppression are computed as usual (as in the authors' code).
    """
    _check_options(n_maps, activation, suppression, selection)
    _check_features(features)
    batch, channels, height, width = features.shape
    flat = features.flatten(2)  # [B, C, L]
    norm = flat.norm(dim=1)  # [B, L]
    unit = flat / norm.clamp_min(_EPS).unsqueeze(1)  # [B, C, L]; zero vectors stay zero
    with torch.no_grad():
        score = norm.square() if activation == "squared_norm" else norm.clone()  # (1) [B, L]
    random_picks = (
        _random_positions(batch, height * width, n_maps, features.device, generator)
        if selection == "random" else None
    )
    vectors, maps, positions = [], [], []
    for k in range(n_maps):
        i_max = score.argmax(dim=1) if random_picks is None else random_picks[:, k]  # [B]
        gather_index = i_max.view(batch, 1, 1).expand(batch, channels, 1)
        anchor = unit.gather(2, gather_index).squeeze(2)  # [B, C]
        sim = torch.einsum("bcl,bc->bl", unit, anchor)  # (2) [B, L]
        weight = sim / sim.sum(dim=1, keepdim=True).clamp_min(_EPS)  # (3) [B, L]
        if refine:
            vectors.append(torch.einsum("bcl,bl->bc", flat, weight))  # (4) [B, C]
        else:
            vectors.append(flat.gather(2, gather_index).squeeze(2))  # raw f_{i_max}, [B, C]
        with torch.no_grad():
            score = score * (1 - (weight if suppression == "weight" else sim))  # (5,6)
        maps.append(weight.view(batch, height, width))
        positions.append(i_max)
    return NPAResult(
        vectors=torch.stack(vectors, dim=1),
        maps=torch.stack(maps, dim=1),
        positions=torch.stack(positions, dim=1),
    )


def _check_subsets(subsets: Sequence[Sequence[int]], n_maps: int) -> tuple[tuple[int, ...], ...]:
    checked = tuple(tuple(int(i) for i in subset) for subset in subsets)
    for subset in checked:
        valid_ranks = all(1 <= i <= n_maps for i in subset)
        if not subset or len(set(subset)) != len(subset) or not valid_ranks:
            raise ValueError(
                f"aux subset {subset} must be non-empty 1-based ranks in 1..{n_maps}, no repeats"
            )
    if len(set(checked)) != len(checked):
        raise ValueError(f"aux subsets {checked} contain duplicates")
    return checked


def _subset_key(subset: tuple[int, ...]) -> str:
    return "_".join(map(str, subset))


class BRNPAHead(nn.Module):
    """Algorithm 1 → concatenated vectors [B, N·C] → dropout → linear. Paper: BR-NPA §3.

    ``aux_subsets`` reproduces Table 5 as the paper did it (§4.3): one extra linear classifier per
    subset of vectors (1-based ranks, e.g. ``(1, 2)``; :data:`TABLE5_SUBSETS` is the paper's five),
    trained jointly by adding its cross-entropy to the loss (:func:`subset_cross_entropy`), on
    *detached* vectors so that it cannot shape the features. Its logits are in
    ``extras["aux_logits"]`` of :meth:`attend`; the main classifier still sees all N vectors.
    ``forward`` returns the logits; :meth:`attend` an :class:`~attnbook.methods.base.Attention` with the N
    ranked maps (rank 1 first) and ``extras``: ``vectors`` [B, N, C], ``positions`` [B, N] (each map's
    i_max) and ``aux_logits`` (1-based rank subset → [B, K]).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        n_maps: int = 3,
        activation: str = "squared_norm",
        suppression: str = "weight",
        selection: str = "active",
        refine: bool = True,
        dropout: float = 0.0,
        aux_subsets: Sequence[Sequence[int]] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_options(n_maps, activation, suppression, selection)
        self.in_channels, self.n_maps = in_channels, n_maps
        self.activation, self.suppression = activation, suppression
        self.selection, self.refine, self.generator = selection, refine, generator
        self.aux_subsets = _check_subsets(aux_subsets, n_maps)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_maps * in_channels, num_classes)
        self.aux_fc = nn.ModuleDict(
            {_subset_key(s): nn.Linear(len(s) * in_channels, num_classes) for s in self.aux_subsets}
        )

    def attend(self, features: torch.Tensor) -> Attention:
        """Algorithm 1, then the classifiers (BR-NPA §3; Table 5's, §4.3). ``[B, C, h, w] -> maps [B, N, h, w]``."""
        check_features(features, self.in_channels)
        npa = representative_vectors(
            features, self.n_maps, self.activation, self.suppression, self.selection, self.refine,
            self.generator,
        )
        vectors = self.dropout(npa.vectors)  # [B, N, C]
        aux_logits = {  # Table 5: detached, so these classifiers cannot shape the features
            subset: self.aux_fc[_subset_key(subset)](
                vectors[:, [i - 1 for i in subset]].detach().flatten(1)  # [B, |subset|·C]
            )
            for subset in self.aux_subsets
        }
        return Attention(
            logits=self.fc(vectors.flatten(1)),  # [B, K]
            maps=npa.maps,  # ranked: names None
            extras={"vectors": npa.vectors, "positions": npa.positions, "aux_logits": aux_logits},
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w] -> [B, K]`` logits of the main classifier."""
        return self.attend(features).logits


def subset_cross_entropy(output: Attention, target: torch.Tensor) -> torch.Tensor:
    """Σ over the auxiliary subset classifiers of CE(logits, target): the extra Table 5 terms.

    Paper: BR-NPA §4.3 ("the final new loss function is an accumulation of the 6 cross-entropy
    terms"): add this to the main loss. Zero when the head has no ``aux_subsets``.
    """
    aux = output.extras.get("aux_logits", {})
    terms = [F.cross_entropy(logits, target) for logits in aux.values()]
    return torch.stack(terms).sum() if terms else output.logits.new_zeros(())

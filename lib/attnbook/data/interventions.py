"""In-domain interventions on the synthetic benchmark: the same test image rendered again with parts
removed, parts drawn as another class draws them, or another habitat behind the bird.

FunnyBirds (Hesse et al., ICCV 2023, §3) gives part importance a causal ground truth by re-rendering
a bird with parts removed; the generator of :mod:`attnbook.data.synthetic` can do the same, and more,
because every image is a deterministic function of (spec, split, index): :func:`rerender` replays the
image's random draws and draws it again with

* ``remove`` ``[N, P]`` bool — parts left out (nothing is inpainted: what the part covered, another
  part or the habitat, shows through, because it was drawn there before the part);
* ``donor`` ``[N, P]`` long — class whose version (colour, pattern, shape) of part ``k`` is drawn
  (``-1``: the image's own class); ``donor[:, disc] = confuser`` turns a bird into its confuser;
* ``habitat`` ``[N]`` long — background texture (``-1``: the image's own); the grating keeps the
  image's own jitter and phase, so swapping a ``test_aligned`` image to the habitat of its
  ``test_conflicting`` twin reproduces that twin bit for bit.

With no intervention the result equals :func:`~attnbook.data.synthetic.generate_split` bit for bit;
with one, every pixel the changed parts' soft borders (≤ 1.5 px beyond the part) do not reach is
unchanged. Ground truth fields follow the *rendered* scene where it is pixel truth (``mask``,
``part_masks``, ``bbox``, ``landmark_visible``, ``disc_mask``) and the *original* label otherwise
(``label``, ``attributes``, ``confuser``); ``bias_aligned`` follows the rendered habitat
(single-label specs; a multi-label image keeps its original flag).

:func:`minimal_sufficient_part_sets` derives, per class, FunnyBirds' minimal sufficient part sets
from the class × attribute matrix (the ground truth of its CSDC check).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch
from torch import Tensor

from attnbook.data import synthetic as S
from attnbook.data.spec import BenchmarkSpec, check_split

__all__ = ["rerender", "minimal_sufficient_part_sets", "part_distance", "shared_parts", "keep_from_bits",
           "twin_habitats", "hybrid_design", "HybridDesign"]


def _scene_rows(spec: BenchmarkSpec, split: str, indices: Tensor,
                habitat: Tensor | None) -> dict[str, Tensor]:
    """The scene (all random draws) of images ``indices`` [N], with the background of ``habitat`` [N]
    (``-1``: own) computed on whole 128-index chunks as the generator computes it (same bits)."""
    design = S._design(spec)
    chunk_of, offset = indices // S._CHUNK, indices % S._CHUNK
    ids = chunk_of.unique()  # sorted
    chunks = [S._sample_chunk(spec, design, split, int(c)) for c in ids]
    position = torch.searchsorted(ids, chunk_of) * S._CHUNK + offset
    rows = {key: torch.cat([c[key] for c in chunks])[position] for key in chunks[0]}
    if habitat is None or bool((habitat < 0).all()):
        return rows
    pairs = torch.stack([chunk_of, habitat], dim=1)[habitat >= 0].unique(dim=0)
    for c, h in pairs.tolist():
        chunk = chunks[int(torch.searchsorted(ids, torch.tensor(c)))]
        params = S.background_params(design, torch.full_like(chunk["habitat"], h), chunk["bg_jitter"],
                                     spec.resolution)
        chosen = (chunk_of == c) & (habitat == h)
        for key, value in params.items():
            rows[key][chosen] = value[offset[chosen]]
        rows["habitat"][chosen] = h
    return rows


def rerender(spec: BenchmarkSpec, split: str, indices: Tensor | list[int], *, remove: Tensor | None = None,
             donor: Tensor | None = None, habitat: Tensor | None = None,
             batch_size: int | None = None) -> dict[str, Tensor]:
    """Images ``indices`` [N] of ``split`` rendered again under the interventions (module docstring).

    ``remove`` [N, P] bool, ``donor`` [N, P] long and ``habitat`` [N] long may each be None (no change).
    An index may repeat (one image, several interventions). Multi-label specs apply ``remove`` and
    ``donor`` to every bird of the image. Returns the sample dict of :mod:`attnbook.data.records`
    stacked over N, rendered ``batch_size`` at a time (default ~2^17 pixels).
    """
    check_split(split)
    indices = torch.as_tensor(indices, dtype=torch.long).flatten()
    size, num = spec.split_size(split), len(indices)
    if num == 0 or int(indices.min()) < 0 or int(indices.max()) >= size:
        raise ValueError(f"indices must be a non-empty list in [0, {size}) for split {split!r}")
    num_parts = len(spec.parts)
    for name, value, shape in (("remove", remove, (num, num_parts)), ("donor", donor, (num, num_parts)),
                               ("habitat", habitat, (num,))):
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
    if donor is not None and int(donor.max()) >= spec.num_classes:
        raise ValueError(f"donor classes must be < num_classes={spec.num_classes} (or -1 for own)")
    if habitat is not None and int(habitat.max()) >= spec.num_habitats:
        raise ValueError(f"habitat must be < num_habitats={spec.num_habitats} (or -1 for own)")
    design = S._design(spec)
    scene = _scene_rows(spec, split, indices, habitat)
    slots = scene["classes"].shape[1]
    if remove is not None:
        scene["keep"] = (~remove.bool())[:, None, :].expand(num, slots, num_parts)
    if donor is not None:
        own = scene["classes"][:, :, None].expand(num, slots, num_parts)
        scene["donor"] = torch.where(donor[:, None, :] >= 0, donor[:, None, :].long(), own)
    if habitat is not None and not spec.multilabel:
        scene["bias_aligned"] = scene["habitat"] == design.class_habitat[scene["classes"][:, 0]]
    batch_size = batch_size or max(1, S._RENDER_PIXELS // spec.resolution**2)
    out: dict[str, Tensor] = {}
    for lo in range(0, num, batch_size):
        batch = S._render(spec, design, {k: v[lo:lo + batch_size] for k, v in scene.items()})
        if not out:
            out = {k: v.new_empty((num, *v.shape[1:])) for k, v in batch.items()}
        for key, value in batch.items():
            out[key][lo:lo + len(value)] = value
    return out


def keep_from_bits(subsets: Tensor, num_parts: int) -> Tensor:
    """Bit masks ``[M]`` (bit k set: part k kept) → ``[M, P]`` bool, True = part kept."""
    return (subsets[:, None] >> torch.arange(num_parts)) & 1 == 1


def twin_habitats(spec: BenchmarkSpec, split: str, indices: Tensor) -> Tensor:
    """Each image's habitat in the *other* test split: ``test_aligned`` ↔ ``test_conflicting`` (same
    birds); for ``train`` the conflicting split's draw. The default background swap of the evaluation."""
    other = "test_aligned" if split == "test_conflicting" else "test_conflicting"
    return _scene_rows(spec, other, torch.as_tensor(indices, dtype=torch.long), None)["habitat"]


# ------------------------------------------------------------------------------------------------
# Class design → which parts identify a class


def part_distance(spec: BenchmarkSpec) -> Tensor:
    """``[C, C, P]`` bool: part ``k`` of class ``c`` looks different from part ``k`` of class ``c'``
    (differs in at least one attribute group: colour, pattern or shape)."""
    values = S._design(spec).table.values  # [C, P, G]
    return (values[:, None] != values[None, :]).any(dim=3)


def shared_parts(spec: BenchmarkSpec) -> Tensor:
    """``[C, C, P]`` bool: classes ``c`` and ``c'`` draw part ``k`` identically (FunnyBirds' overlap)."""
    return ~part_distance(spec)


def minimal_sufficient_part_sets(spec: BenchmarkSpec) -> list[list[tuple[int, ...]]]:
    """Per class, the inclusion-minimal sets of parts (indices into ``spec.parts``) that identify it.

    FunnyBirds (Hesse et al. 2023, §4.1, CSDC): a bird showing only the parts ``S`` is still
    recognisable as class ``c`` iff no other class draws every part of ``S`` as ``c`` does, i.e. ``S``
    meets the set ``D(c, c')`` of parts on which ``c'`` differs from ``c`` for *every* ``c' ≠ c``; the
    minimal sufficient sets are the minimal hitting sets of ``{D(c, c')}``. With confusable pairs
    ``D(c, confuser) = {disc part}``, so every set contains the discriminative part. Enumerated by
    size over all 2^P subsets (P ≤ 7), sorted by size then indices. Every class gets its sets
    (the FunnyBirds framework returns none for the last class index; we do not reproduce that).
    """
    differ = part_distance(spec)  # [C, C, P]
    num_classes, num_parts = differ.shape[0], differ.shape[2]
    result: list[list[tuple[int, ...]]] = []
    for c in range(num_classes):
        others = differ[c, torch.arange(num_classes) != c]  # [C-1, P]
        found: list[tuple[int, ...]] = []
        for size in range(1, num_parts + 1):
            for subset in combinations(range(num_parts), size):
                if any(set(f) <= set(subset) for f in found):
                    continue  # a superset of a sufficient set is not minimal
                if bool(others[:, list(subset)].any(dim=1).all()):
                    found.append(subset)
        result.append(found)
    return result



@dataclass(frozen=True)
class HybridDesign:
    """Per class ``c``: the ``partner`` class [C] (−1: none) whose version of the parts ``donated`` [C, P] a hybrid
    of ``c`` is drawn with, and the parts ``own`` [C, P] it keeps in ``c``'s version (disjoint, both non-empty,
    together the parts on which ``c`` and the partner differ; parts they draw alike are in neither)."""

    partner: Tensor
    own: Tensor
    donated: Tensor

    def donors(self, labels: Tensor) -> Tensor:
        """The ``donor`` argument of :func:`rerender` ``[N, P]`` that turns images of ``labels`` into hybrids."""
        partner = self.partner[labels]
        use = self.donated[labels] & (partner >= 0)[:, None]
        return torch.where(use, partner[:, None].expand_as(use), torch.full_like(use, -1, dtype=torch.long))


def hybrid_design(spec: BenchmarkSpec) -> HybridDesign:
    """Hybrid birds for target sensitivity where no two classes share disjoint parts with a third (FunnyBirds'
    TS, Hesse et al. 2023 §4.3, needs such a triple; the fine-grained analog has none at 10 classes).

    A hybrid of class ``c`` is ``c``'s image with some parts drawn as its partner ``c2`` draws them, so it carries
    parts of two classes: ``own`` (``c``'s, FunnyBirds' O1) and ``donated`` (``c2``'s, O2). The partner is the
    first class after ``c`` (cyclic order) that differs from ``c`` in ≥ 2 parts, preferring one whose
    identifying part differs from ``c``'s; a class's identifying parts are those on which it differs from a class
    at part distance 1 (its confuser). ``own`` takes ``c``'s identifying parts, ``donated`` the partner's, the
    other differing parts alternate (in part order) between the smaller of the two sets.
    """
    differ = part_distance(spec)  # [C, C, P]
    num_classes, num_parts = differ.shape[0], differ.shape[2]
    count = differ.sum(dim=2)
    ident = (differ & (count == 1)[:, :, None]).any(dim=1)  # [C, P] parts that tell c from a confuser
    partner = torch.full((num_classes,), -1, dtype=torch.long)
    own = torch.zeros(num_classes, num_parts, dtype=torch.bool)
    donated = torch.zeros_like(own)
    for c in range(num_classes):
        order = [(c + j) % num_classes for j in range(1, num_classes)]
        ok = [c2 for c2 in order if int(count[c, c2]) >= 2]
        if not ok:
            continue
        best = next((c2 for c2 in ok if (ident[c] & differ[c, c2]).any()
                     and (ident[c2] & differ[c, c2] & ~ident[c]).any()), ok[0])
        o1 = ident[c] & differ[c, best]
        o2 = ident[best] & differ[c, best] & ~o1
        for k in (differ[c, best] & ~o1 & ~o2).nonzero()[:, 0].tolist():
            target = o1 if int(o1.sum()) < int(o2.sum()) else o2  # ties: the partner's set first
            target[k] = True
        if o1.any() and o2.any():
            partner[c], own[c], donated[c] = best, o1, o2
    return HybridDesign(partner, own, donated)

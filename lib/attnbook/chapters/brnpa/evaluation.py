"""Chapter 5's evaluation of an attention model, image by image: correctness (Tables 1/4/5/6), sparsity
(§4.3, Table 6), repeated anchors (Alg. 1 with the paper's suppression rule) and, where the data carry
ground truth, where each map's mass lies (§4.4, Fig. 5).

Every model is read through the one attention interface (:mod:`attnbook.methods.base`): ``attend`` gives
logits, maps and ``extras`` (``norms`` from :class:`~attnbook.models.staged.StagedModel`; BR-NPA's
``positions`` and ``aux_logits``). No code here asks which head it holds. GAP's map is uniform 1/(h·w)
(the chapter used to use ones): every score computed from the maps here — sparsity max / mean, share of
mass in a region, pointing game — is scale-free, so the scale does not matter (up to rounding).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from attnbook import metrics
from attnbook.chapters.brnpa.config import DISC, OBJECT, TABLE5_SUBSETS
from attnbook.chapters.brnpa.pipeline import ImageTask
from attnbook.data import records as R
from attnbook.explain.postprocess import upsample
from attnbook.models.staged import StagedModel
from attnbook.train import model_input


@dataclass(frozen=True)
class Evaluation:
    """Per test image: correctness, sparsity and (with ground truth) where each map's mass lies."""

    hits: torch.Tensor  # [N] bool
    sparsity: torch.Tensor  # [N] BR-NPA §4.3: max / mean of the norm-weighted mean map (in [1, h·w])
    aux_hits: dict[tuple[int, ...], torch.Tensor]  # Table 5 subset → [N] bool
    repeats: torch.Tensor | None  # [N] bool: BR-NPA picked an anchor position twice
    mass: torch.Tensor | None  # [N, M, R] share of (map k × norm) inside region r; NaN for an empty region
    pointing: torch.Tensor | None  # [N, M] peak of map k × norm on the discriminative part (NaN: none)
    regions: tuple[str, ...] = ()
    map_size: tuple[int, int] = (0, 0)
    mean_map: torch.Tensor | None = None  # [N, h, w] the norm-weighted mean map whose max / mean is the sparsity

    @property
    def accuracy(self) -> float:
        """Share of test images classified correctly."""
        return float(self.hits.float().mean())

    @property
    def cells(self) -> int:
        """Cells h·w of the attention maps: the largest value max / mean can take."""
        return self.map_size[0] * self.map_size[1]

    @property
    def sparsity_normalised(self) -> torch.Tensor:
        """Per-image sparsity on [0, 1] (:func:`normalised_sparsity`), comparable across map sizes."""
        return normalised_sparsity(self.sparsity, self.cells)


def normalised_sparsity(sparsity: torch.Tensor, cells: int) -> torch.Tensor:
    """The paper's sparsity s = max / mean of an h·w map rescaled by its range: (s − 1) / (h·w − 1).

    s lies in [1, h·w] (1: uniform; h·w: all the mass on one cell), so the raw value of a finer map can grow
    by the larger bound alone; the rescaled value is 0 for a uniform and 1 for a one-cell map at every size.
    NaN where s is (an all-zero map) and for a single-cell map (no range)."""
    if cells < 2:
        return torch.full_like(sparsity, float("nan"))
    return (sparsity - 1) / (cells - 1)


def area_resample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps ``[N, h, w]`` resampled by area onto ``size`` = (H, W): each target cell is the mean of the source
    over the region it covers (exactly: nearest upsampling to the least common multiple grid, then average
    pooling), so the mean of every map is kept."""
    (h, w), (height, width) = maps.shape[-2:], size
    fine_h, fine_w = math.lcm(h, height), math.lcm(w, width)
    fine = maps.repeat_interleave(fine_h // h, dim=-2).repeat_interleave(fine_w // w, dim=-1)
    return F.avg_pool2d(fine[:, None], (fine_h // height, fine_w // width))[:, 0]


def sparsity_on_grid(evaluation: Evaluation, size: tuple[int, int]) -> torch.Tensor:
    """Per-image sparsity max / mean at equal cell count: the norm-weighted mean map resampled by area onto
    ``size`` (e.g. the low-resolution model's grid, so that the bound h·w is the same on both sides); NaN for
    an all-zero map. On the evaluation's own grid this is its sparsity."""
    if evaluation.mean_map is None:
        raise ValueError("this evaluation kept no mean maps (evaluate_attention keeps them)")
    grid = area_resample(evaluation.mean_map, size).flatten(1)
    mean = grid.mean(dim=1)
    return (grid.max(dim=1).values / mean).masked_fill(mean == 0, float("nan"))


def per_seed_on_grid(evaluations: Sequence[Evaluation], size: tuple[int, int]) -> np.ndarray:
    """One value per evaluation (seed): the mean over its images of :func:`sparsity_on_grid` (NaNs skipped)."""
    return np.array([float(torch.nanmean(sparsity_on_grid(e, size))) for e in evaluations])


def pooled(evaluations: Sequence[Evaluation], attribute: str) -> torch.Tensor:
    """An :class:`Evaluation` attribute concatenated over evaluations (seeds), for descriptive means over all
    images; tests over seeds use :func:`per_seed`."""
    return torch.cat([getattr(e, attribute) for e in evaluations])


def per_seed(evaluations: Sequence[Evaluation], attribute: str) -> np.ndarray:
    """One value per evaluation (seed): the mean of an attribute over its images (NaNs skipped; NaN when none is
    defined). ``"hits"`` gives the accuracy. The unit of replication of a claim about training is the seed."""
    return np.array([float(torch.nanmean(getattr(e, attribute).float())) for e in evaluations])


def subset_hits(evaluations: Sequence[Evaluation]) -> dict[tuple[int, ...], list[torch.Tensor]]:
    """Table 5: per subset of ranked vectors (main classifier = ``(1, 2, 3)``), the hits of every seed."""
    return {(1, 2, 3): [e.hits for e in evaluations],
            **{s: [e.aux_hits[s] for e in evaluations] for s in TABLE5_SUBSETS}}


def region_masks(batch: Mapping[str, torch.Tensor], part_names: Sequence[str]) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Object, discriminative part and every named part as masks ``[B, R, H, W]`` with their names."""
    masks = torch.cat([batch[R.MASK][:, None], batch[R.DISC_MASK][:, None], batch[R.PART_MASKS]], dim=1)
    return masks, (OBJECT, DISC, *part_names)


def disc_pointing(weighted: torch.Tensor, disc: torch.Tensor) -> torch.Tensor:
    """Pointing game of each map ``[B, M, h, w]`` on the discriminative part ``[B, H, W]`` → ``[B, M]``."""
    up = upsample(weighted, tuple(disc.shape[-2:]))
    return torch.stack([metrics.pointing_game(up[:, k], disc) for k in range(up.shape[1])], dim=1)


@torch.no_grad()
def evaluate_attention(model: StagedModel, data: Dataset, part_names: Sequence[str] = (),
                       batch_size: int = 64) -> Evaluation:
    """Run ``model`` over ``data`` in eval mode; ground-truth scores when the samples carry masks.

    Sparsity is the paper's (§4.3): max / mean of the maps' mean × ‖f_i‖; mass and pointing use each
    map × ‖f_i‖ (the RGB rendering of §4.1), upsampled to the masks."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    columns: dict[Any, list[torch.Tensor]] = defaultdict(list)
    regions: tuple[str, ...] = ()
    for batch in DataLoader(data, batch_size=batch_size):
        out = model.attend(model_input(batch).to(device))
        norms = out.extras["norms"]  # [B, h, w]
        label = batch[R.LABEL].to(device)
        columns["hits"].append((out.logits.argmax(1) == label).cpu())
        columns["sparsity"].append(metrics.sparsity(out.maps, norms).cpu())
        columns["mean_map"].append((out.maps.mean(dim=1) * norms).cpu())  # what metrics.sparsity scores
        for subset, logits in out.extras.get("aux_logits", {}).items():
            columns[subset].append((logits.argmax(1) == label).cpu())
        positions = out.extras.get("positions")  # [B, N] anchors i_max (BR-NPA only)
        if positions is not None:
            distinct = torch.tensor([len(set(p)) for p in positions.tolist()])
            columns["repeats"].append(distinct < positions.shape[1])
        if R.DISC_MASK in batch and R.PART_MASKS in batch:
            weighted = (out.maps * norms[:, None]).cpu()  # [B, M, h, w]
            masks, regions = region_masks(batch, part_names)
            columns["mass"].append(metrics.mass_per_map(weighted, masks))
            columns["pointing"].append(disc_pointing(weighted, batch[R.DISC_MASK]))
    model.train(was_training)
    cat = {key: torch.cat(value) for key, value in columns.items()}
    return Evaluation(hits=cat["hits"], sparsity=cat["sparsity"],
                      aux_hits={k: v for k, v in cat.items() if isinstance(k, tuple)},
                      repeats=cat.get("repeats"), mass=cat.get("mass"), pointing=cat.get("pointing"),
                      regions=regions, map_size=tuple(out.maps.shape[-2:]), mean_map=cat["mean_map"])


def region_areas(task: ImageTask) -> dict[str, float]:
    """Mean share of the image each region covers: what a uniform map puts there (chance level of §4.4's
    hierarchy); empty for a dataset without part masks."""
    if not (task.info.has(R.DISC_MASK) and task.info.has(R.PART_MASKS)):
        return {}
    batch = next(iter(DataLoader(task.test, batch_size=len(task.test))))
    masks, names = region_masks(batch, task.info.part_names)
    return dict(zip(names, masks.float().mean(dim=(0, 2, 3)).tolist()))

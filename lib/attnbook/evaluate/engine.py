"""The evaluation engine: any explanation (a trainable attention or a post-hoc explainer, as a map
function of :mod:`attnbook.evaluate.explainers`) scored on the synthetic benchmark's test images with
the same metrics, batched:

1. localisation on truth (:func:`attnbook.evaluate.localisation.localisation`) of the true-class map;
2. FunnyBirds' protocol (:mod:`attnbook.evaluate.funnybirds`) on part importances of the maps for the
   true and the predicted class (one call of the map function, so Grad-CAM needs one forward pass per
   batch); target sensitivity on hybrid birds (``ts="hybrid"``, default: the maps of the true class and its
   partner on the hybrid, :func:`attnbook.data.interventions.hybrid_design`) or FunnyBirds' own rule on the
   unchanged images (``ts="shared"``: the two TS classes explained beside the true and predicted class);
3. in-domain single deletion: SD (Spearman of each part's logit drop with its attributed mass);
4. cost: images/s of explanation + metrics, with the model's share (classifying the counterfactuals,
   shared by every explainer of one model through a :class:`~attnbook.evaluate.variants.VariantLogits`)
   timed apart.

Sanity checks (:mod:`attnbook.evaluate.sanity`) need re-initialised models and are run separately.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from attnbook.data.interventions import hybrid_design, twin_habitats
from attnbook.data.spec import BenchmarkSpec
from attnbook.data.synthetic import generate_split
from attnbook.evaluate.explainers import MapFn
from attnbook.evaluate.funnybirds import (
    FunnyBirdsResult,
    PartImportance,
    TargetSensitivityInputs,
    default_dilation,
    funnybirds_scores,
    oracle_importances,
    part_importances,
    sufficient_set_table,
    ts_classes,
)
from attnbook.evaluate.localisation import localisation
from attnbook.evaluate.variants import VariantLogits

__all__ = ["Evaluation", "classify", "evaluate", "oracle_evaluation", "split_images"]


@dataclass
class Evaluation:
    """One explanation's scores on N images."""

    name: str
    summary: dict[str, float]  # localisation means (NaN-skipping) and FunnyBirds scores
    per_image: dict[str, Tensor]  # localisation [N] / [N, P], FunnyBirds per image
    funnybirds: FunnyBirdsResult | None
    seconds: dict[str, float] = field(default_factory=dict)  # explain, metrics, counterfactuals
    maps: Tensor | None = None  # the true-class maps [N, H, W] (for similarities between runs)

    @property
    def images_per_second(self) -> float:
        """Explanation + metrics throughput (counterfactual rendering and classification excluded)."""
        return self.summary["images"] / max(self.seconds["explain"] + self.seconds["metrics"], 1e-12)


def split_images(spec: BenchmarkSpec, split: str, indices: Tensor | None = None) -> dict[str, Tensor]:
    """The sample tensors of ``indices`` (default: all) of ``split``, generated."""
    tensors = generate_split(spec, split).tensors
    return tensors if indices is None else {k: v[indices] for k, v in tensors.items()}


def classify(model: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Logits ``[N, K]`` of ``model`` on ``images`` (no grad, model's device, CPU result)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(images[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(images), batch_size)])


def evaluate(model: nn.Module, maps_fn: MapFn, spec: BenchmarkSpec, split: str = "test_aligned", *,
             indices: Tensor | None = None, data: dict[str, Tensor] | None = None,
             variants: VariantLogits | None = None, swaps: Tensor | None = None, protocol: bool = True,
             batch_size: int = 64, dilation: int | None = None, ts_shared: int | None = None,
             ts: str = "hybrid", name: str | None = None) -> Evaluation:
    """Score ``maps_fn`` (explaining ``model``) on images ``indices`` of ``split`` (module docstring).

    ``data``: the images' sample tensors if already generated (else generated here); ``variants``: a
    cache of the model's counterfactual logits to share between explainers (else made here; it must
    hold the same images); ``swaps`` ``[N, V]``: habitats for the background interventions (default:
    each image's habitat in the other test split); ``protocol=False`` skips FunnyBirds (localisation
    only, one map per image); ``dilation``: part-mask dilation (default
    :func:`~attnbook.evaluate.funnybirds.default_dilation`); ``ts``: ``"hybrid"`` or ``"shared"`` (module
    docstring; ``ts_shared`` is FunnyBirds' number of shared parts for ``"shared"``, None: any).
    """
    if ts not in ("hybrid", "shared"):
        raise ValueError(f"ts must be 'hybrid' or 'shared', got {ts!r}")
    size = spec.split_size(split)
    indices = torch.arange(size) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    data = split_images(spec, split, indices) if data is None else data
    images, labels = data["image"], data["label"]
    if len(images) != len(indices):
        raise ValueError(f"data holds {len(images)} images for {len(indices)} indices")
    dilation = default_dilation(spec.resolution) if dilation is None else dilation
    seconds = {"explain": 0.0, "metrics": 0.0, "counterfactuals": 0.0}

    start = time.perf_counter()
    logits = variants._parts[:, variants.full].clone() if variants is not None else classify(model, images)
    if variants is None and protocol:
        variants = VariantLogits(model, spec, split, indices, logits)
    seconds["classify"] = time.perf_counter() - start
    pairs = ts_classes(spec, ts_shared)[labels] if ts == "shared" else None  # [N, 2]
    explained = [labels, logits.argmax(1)] + (list(pairs.clamp(min=0).unbind(1)) if pairs is not None else [])
    targets = torch.stack(explained, dim=1) if protocol else labels[:, None]

    per_batch: list[dict[str, Tensor]] = []
    true_maps: list[Tensor] = []
    importances: list[PartImportance] = []
    device = next(model.parameters()).device
    for lo in range(0, len(images), batch_size):
        truth = {k: v[lo:lo + batch_size] for k, v in data.items()}
        tick = time.perf_counter()
        maps = maps_fn(truth["image"].to(device), targets[lo:lo + batch_size].to(device)).detach().float().cpu()
        tock = time.perf_counter()
        per_batch.append(localisation(maps[:, 0], truth))
        true_maps.append(maps[:, 0])
        if protocol:
            importances.append(part_importances(maps, truth["part_masks"], truth["mask"], dilation))
        seconds["explain"] += tock - tick
        seconds["metrics"] += time.perf_counter() - tock
    ts_inputs = None
    if protocol and ts == "hybrid":
        ts_inputs = _hybrid_inputs(maps_fn, variants, spec, labels, batch_size, dilation, device, seconds)
    per_image = {k: torch.cat([b[k] for b in per_batch]) for k in per_batch[0]}
    summary = {"images": float(len(images)), "accuracy": float((logits.argmax(1) == labels).double().mean())}
    summary.update({k: float(torch.nanmean(v.double())) for k, v in per_image.items() if v.ndim == 1})

    result = None
    if protocol:
        imp = PartImportance(*(torch.cat([getattr(i, f) for i in importances]) for f in ("parts", "background",
                                                                                        "total")))
        swaps = twin_habitats(spec, split, indices)[:, None] if swaps is None else swaps
        before = variants.seconds
        tick = time.perf_counter()
        _warm(variants, swaps)
        result = funnybirds_scores(variants, labels, logits, imp, sufficient_set_table(spec), pairs, swaps,
                                   ts=ts_inputs)
        seconds["counterfactuals"] = variants.seconds - before
        seconds["metrics"] += time.perf_counter() - tick - seconds["counterfactuals"]
        summary.update(result.scores)
        summary["threshold"] = result.threshold
        per_image.update({f"fb_{k}": v for k, v in result.per_image.items()})
    summary["images_per_second"] = summary["images"] / max(seconds["explain"] + seconds["metrics"], 1e-12)
    return Evaluation(name or getattr(maps_fn, "__name__", "maps"), summary, per_image, result, seconds,
                      torch.cat(true_maps))


def _warm(variants: VariantLogits, swaps: Tensor) -> None:
    """Render the explainer-independent counterfactuals first (single deletions, background swaps)."""
    variants.single_deletions()
    if swaps.numel():
        variants.habitats(torch.arange(swaps.shape[0])[:, None].expand_as(swaps), swaps)


def _hybrid_inputs(maps_fn: MapFn, variants: VariantLogits, spec: BenchmarkSpec, labels: Tensor, batch_size: int,
                   dilation: int, device: torch.device, seconds: dict[str, float]) -> TargetSensitivityInputs:
    """TS on hybrid birds: the maps of the true class c1 and its partner c2 on each image's hybrid (own parts O1,
    the partner's O2) and the model's logits on the hybrid without O1 / O2 (cached in ``variants``).

    The importances compared are *shares* of each map's total mass (FunnyBirds compares raw sums): two maps of
    one explainer for two classes differ in scale (Grad-CAM's grows with the class score), and on raw sums the
    larger map wins on O1 and loses on O2 whatever its layout — every image would score exactly 0.5."""
    design = hybrid_design(spec)
    before = variants.seconds
    data, logits = variants.hybrids(design, labels)
    seconds["counterfactuals"] += variants.seconds - before
    partner = design.partner[labels]
    targets = torch.stack([labels, partner.clamp(min=0)], dim=1)
    imps = []
    for lo in range(0, len(labels), batch_size):
        tick = time.perf_counter()
        maps = maps_fn(data["image"][lo:lo + batch_size].to(device),
                       targets[lo:lo + batch_size].to(device)).detach().float().cpu()
        tock = time.perf_counter()
        imp = part_importances(maps, data["part_masks"][lo:lo + batch_size], data["mask"][lo:lo + batch_size],
                               dilation)
        imps.append(imp.parts / imp.total.clamp(min=1e-12)[..., None])  # shares of each map's mass
        seconds["explain"] += tock - tick
        seconds["metrics"] += time.perf_counter() - tock
    imp = torch.cat(imps)  # [N, 2, P]
    return TargetSensitivityInputs(c1=labels, c2=partner, o1=design.own[labels], o2=design.donated[labels],
                                   pair=partner >= 0, base=logits[0], without_o1=logits[1], without_o2=logits[2],
                                   imp1=imp[:, 0], imp2=imp[:, 1])


def oracle_evaluation(variants: VariantLogits, spec: BenchmarkSpec, labels: Tensor, *, swaps: Tensor | None = None,
                      name: str = "oracle") -> Evaluation:
    """FunnyBirds' quantities of the causal ceiling (:func:`~attnbook.evaluate.funnybirds.oracle_importances`:
    importances = the model's own single-deletion logit drops) on the images of ``variants``; TS is NaN (on the
    hybrids it would pass by construction) and there is no map, so no localisation."""
    indices = variants.indices
    logits = variants.parts(torch.arange(len(indices)), torch.full((len(indices),), variants.full))
    swaps = twin_habitats(spec, variants.split, indices)[:, None] if swaps is None else swaps
    start = time.perf_counter()
    targets = torch.stack([labels, logits.argmax(1)], dim=1)
    imp = oracle_importances(variants, targets, swaps)
    result = funnybirds_scores(variants, labels, logits, imp, sufficient_set_table(spec), None, swaps)
    summary = {"images": float(len(labels)), "accuracy": float((logits.argmax(1) == labels).double().mean()),
               **result.scores, "threshold": result.threshold}
    seconds = {"explain": 0.0, "metrics": time.perf_counter() - start, "counterfactuals": 0.0}
    per_image = {f"fb_{k}": v for k, v in result.per_image.items()}
    return Evaluation(name, summary, per_image, result, seconds)

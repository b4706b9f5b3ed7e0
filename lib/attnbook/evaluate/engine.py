"""The evaluation engine: any explanation (a trainable attention or a post-hoc explainer, as a map
function of :mod:`attnbook.evaluate.explainers`) scored on the synthetic benchmark's test images with
the same metrics, batched:

1. localisation on truth (:func:`attnbook.evaluate.localisation.localisation`) of the true-class map;
2. FunnyBirds' protocol (:mod:`attnbook.evaluate.funnybirds`) on part importances of the maps for the
   true, the predicted and the two TS classes — all four from one call of the map function, so Grad-CAM
   needs one forward pass per batch;
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

from attnbook.data.interventions import twin_habitats
from attnbook.data.spec import BenchmarkSpec
from attnbook.data.synthetic import generate_split
from attnbook.evaluate.explainers import MapFn
from attnbook.evaluate.funnybirds import (
    FunnyBirdsResult,
    PartImportance,
    default_dilation,
    funnybirds_scores,
    part_importances,
    sufficient_set_table,
    ts_classes,
)
from attnbook.evaluate.localisation import localisation
from attnbook.evaluate.variants import VariantLogits

__all__ = ["Evaluation", "classify", "evaluate", "split_images"]


@dataclass
class Evaluation:
    """One explanation's scores on N images."""

    name: str
    summary: dict[str, float]  # localisation means (NaN-skipping) and FunnyBirds scores
    per_image: dict[str, Tensor]  # localisation [N] / [N, P], FunnyBirds per image
    funnybirds: FunnyBirdsResult | None
    seconds: dict[str, float] = field(default_factory=dict)  # explain, metrics, counterfactuals

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
             name: str | None = None) -> Evaluation:
    """Score ``maps_fn`` (explaining ``model``) on images ``indices`` of ``split`` (module docstring).

    ``data``: the images' sample tensors if already generated (else generated here); ``variants``: a
    cache of the model's counterfactual logits to share between explainers (else made here; it must
    hold the same images); ``swaps`` ``[N, V]``: habitats for the background interventions (default:
    each image's habitat in the other test split); ``protocol=False`` skips FunnyBirds (localisation
    only, one map per image); ``dilation``: part-mask dilation (default
    :func:`~attnbook.evaluate.funnybirds.default_dilation`).
    """
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
    pairs = ts_classes(spec, ts_shared)[labels]  # [N, 2]
    targets = torch.stack([labels, logits.argmax(1), *pairs.clamp(min=0).unbind(1)], dim=1)
    targets = torch.where(targets >= 0, targets, labels[:, None])
    targets = targets if protocol else labels[:, None]

    per_batch: list[dict[str, Tensor]] = []
    importances: list[PartImportance] = []
    device = next(model.parameters()).device
    for lo in range(0, len(images), batch_size):
        truth = {k: v[lo:lo + batch_size] for k, v in data.items()}
        tick = time.perf_counter()
        maps = maps_fn(truth["image"].to(device), targets[lo:lo + batch_size].to(device)).detach().float().cpu()
        tock = time.perf_counter()
        per_batch.append(localisation(maps[:, 0], truth))
        if protocol:
            importances.append(part_importances(maps, truth["part_masks"], truth["mask"], dilation))
        seconds["explain"] += tock - tick
        seconds["metrics"] += time.perf_counter() - tock
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
        result = funnybirds_scores(variants, labels, logits, imp, sufficient_set_table(spec), pairs, swaps)
        seconds["counterfactuals"] = variants.seconds - before
        seconds["metrics"] += time.perf_counter() - tick - seconds["counterfactuals"]
        summary.update(result.scores)
        summary["threshold"] = result.threshold
        per_image.update({f"fb_{k}": v for k, v in result.per_image.items()})
    summary["images_per_second"] = summary["images"] / max(seconds["explain"] + seconds["metrics"], 1e-12)
    return Evaluation(name or getattr(maps_fn, "__name__", "maps"), summary, per_image, result, seconds)


def _warm(variants: VariantLogits, swaps: Tensor) -> None:
    """Render the explainer-independent counterfactuals first (single deletions, background swaps)."""
    variants.single_deletions()
    if swaps.numel():
        variants.habitats(torch.arange(swaps.shape[0])[:, None].expand_as(swaps), swaps)

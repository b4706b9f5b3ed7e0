"""Chapter 6's evaluation: every method of one seed through :func:`attnbook.evaluate.evaluate` on the same
bias-aligned test images (localisation on truth, FunnyBirds' quantities and dimensions, single deletion, cost),
localisation again on their bias-conflicting twins (same bird, another habitat) with the similarity of each
method's map across the twins, Adebayo et al.'s cascading randomisation, and example maps under interventions
for the explorer.

Chapter: ``nbs/06_compare.ipynb``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from attnbook.chapters.compare.config import FLOORS, HEADS, CompareConfig
from attnbook.chapters.compare.pipeline import LAST_BLOCK, CompareModel
from attnbook.data import records as R
from attnbook.data.interventions import rerender, twin_habitats
from attnbook.data.synthetic import Benchmark
from attnbook.evaluate import (
    MapFn,
    VariantLogits,
    attention_maps_fn,
    cascading_randomisation,
    classify,
    edge_maps_fn,
    evaluate,
    map_similarity,
    posthoc_maps_fn,
    random_maps_fn,
)

LOCALISATION = ("pointing_object", "pointing_disc", "mass_object", "rank_object", "mass_disc", "far")
FUNNYBIRDS = ("csdc", "pc", "dc", "d", "bi", "sd", "ts", "completeness", "correctness", "contrastivity", "mean_xai")
INTERVENTIONS = ("original", "habitat swapped", "disc part → confuser's", "disc part removed")


@dataclass
class MethodResult:
    """One method of one seed: the engine's summary on each split, map similarity across the twins, sanity."""

    method: str
    family: str  # "attention" | "post-hoc" | "floor"
    model: str  # the model it explains ("gap" = the plain CNN, or the head kind)
    summary: dict[str, dict[str, float]]  # split -> engine summary
    twin_similarity: dict[str, float] = field(default_factory=dict)  # spearman / ssim, aligned vs conflicting
    sanity: dict[str, float] = field(default_factory=dict)  # spearman after randomising the top / all layers
    curves: dict[str, Tensor] = field(default_factory=dict)  # FunnyBirds curves over the 80 thresholds


def method_family(method: str) -> str:
    """``attention`` (a trained head), ``post-hoc`` (explains the plain CNN) or ``floor``."""
    return "attention" if method in HEADS else "floor" if method in FLOORS else "post-hoc"


def maps_fn_for(config: CompareConfig, method: str, model: nn.Module, seed: int) -> MapFn:
    """The engine's map function of ``method`` on ``model`` (a head's own attention; EAT: its class map)."""
    if method in HEADS:
        return attention_maps_fn(model, 0 if method == "eat" else None)
    if method == "random":
        return random_maps_fn(seed)
    if method == "edges":
        return edge_maps_fn()
    kw = {"num_samples": config.lime_samples} if method == "lime" else {}
    return posthoc_maps_fn(method, model, layer=LAST_BLOCK, fc="head.fc", **kw)


def methods_of(config: CompareConfig) -> list[str]:
    """Every method this run scores: the heads, the post-hoc explainers, the floors."""
    return list(config.heads) + list(config.explainers) + list(FLOORS)


def _sanity(config: CompareConfig, method: str, model: nn.Module, images: Tensor, labels: Tensor,
            seed: int) -> dict[str, float]:
    """Spearman of the true-class map with the original after randomising the top layer and all layers
    (Adebayo et al. §3.1, cascading); LIME skipped (cost) and NaN."""
    if method == "lime":
        return {"sanity_top": float("nan"), "sanity_full": float("nan")}

    def make_maps(m: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        return maps_fn_for(config, method, m, seed)(x, t[:, None])[:, 0]

    cascade = cascading_randomisation(model, make_maps, images, labels, seed=seed)
    steps = list(cascade.values())
    return {"sanity_top": float(torch.nanmean(steps[0]["spearman"].double())),
            "sanity_full": float(torch.nanmean(steps[-1]["spearman"].double()))}


def evaluate_seed(config: CompareConfig, bench: Benchmark, models: dict[str, CompareModel],
                  seed: int) -> dict[str, MethodResult]:
    """Every method of one seed (module docstring); the plain CNN's counterfactual logits are shared by
    its post-hoc explainers and the floors."""
    spec = bench.spec
    n = min(config.n_explain, spec.split_size("test_aligned"))
    indices = torch.arange(n)
    data = {s: {k: v[:n] for k, v in bench.split(s).tensors.items()} for s in ("test_aligned", "test_conflicting")}
    variants: dict[str, VariantLogits] = {}
    out: dict[str, MethodResult] = {}
    m_sanity = min(config.n_sanity, n)
    for method in methods_of(config):
        kind = method if method in HEADS else "gap"
        model = models[kind]
        if kind not in variants:
            logits = classify(model, data["test_aligned"][R.IMAGE])
            variants[kind] = VariantLogits(model, spec, "test_aligned", indices, logits)
        fn = maps_fn_for(config, method, model, seed)
        aligned = evaluate(model, fn, spec, "test_aligned", indices=indices, data=data["test_aligned"],
                           variants=variants[kind], name=method)
        conflicting = evaluate(model, fn, spec, "test_conflicting", indices=indices, data=data["test_conflicting"],
                               protocol=False, name=method)
        summary = {"test_aligned": aligned.summary, "test_conflicting": conflicting.summary}
        labels = data["test_aligned"][R.LABEL]
        maps = [fn(data[s][R.IMAGE], labels[:, None])[:, 0].detach() for s in ("test_aligned", "test_conflicting")]
        similarity = map_similarity(*maps)
        twin = {k: float(torch.nanmean(similarity[k].double())) for k in ("spearman", "ssim")}
        sanity = _sanity(config, method, model, data["test_aligned"][R.IMAGE][:m_sanity], labels[:m_sanity], seed)
        curves = aligned.funnybirds.curves if aligned.funnybirds is not None else {}
        out[method] = MethodResult(method, method_family(method), kind, summary, twin, sanity, curves)
    return out


def intervention_images(bench: Benchmark, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """The first ``n`` bias-aligned test images under each of :data:`INTERVENTIONS` → images
    ``[n, V, 3, H, W]``, object masks ``[n, V, H, W]`` and labels ``[n]``."""
    spec = bench.spec
    idx = torch.arange(n)
    first = {k: v[:n] for k, v in bench.test_aligned.tensors.items()}
    labels = first[R.LABEL]
    disc = bench.disc_part[labels]
    habitat = twin_habitats(spec, "test_aligned", idx)  # the bias-conflicting twin's habitat
    donor = torch.full((n, len(spec.parts)), -1, dtype=torch.long)
    remove = torch.zeros(n, len(spec.parts), dtype=torch.bool)
    has = disc >= 0
    donor[has.nonzero()[:, 0], disc[has]] = bench.confusers[labels][has]
    remove[has.nonzero()[:, 0], disc[has]] = True
    views = [first, rerender(spec, "test_aligned", idx, habitat=habitat),
             rerender(spec, "test_aligned", idx, donor=donor), rerender(spec, "test_aligned", idx, remove=remove)]
    return (torch.stack([v[R.IMAGE] for v in views], 1), torch.stack([v[R.MASK] for v in views], 1), labels)


def example_maps(config: CompareConfig, bench: Benchmark, models: dict[str, CompareModel], seed: int,
                 n: int = 3) -> dict[str, Tensor]:
    """Maps of every method (true class) on the first ``n`` images under each intervention:
    ``{"images", "masks", "labels", "maps": [n, V, M, H, W], "methods"}``."""
    images, masks, labels = intervention_images(bench, n)
    flat = images.flatten(0, 1)
    targets = labels.repeat_interleave(images.shape[1])[:, None]
    maps = []
    for method in methods_of(config):
        model = models[method if method in HEADS else "gap"]
        maps.append(maps_fn_for(config, method, model, seed)(flat, targets)[:, 0].detach().view(*images.shape[:2],
                                                                                                *images.shape[-2:]))
    return {"images": images, "masks": masks, "labels": labels, "maps": torch.stack(maps, 2),
            "methods": methods_of(config)}

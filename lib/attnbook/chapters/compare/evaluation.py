"""Chapter 6's evaluation: every method of one seed through :func:`attnbook.evaluate.evaluate` on the same
bias-aligned test images (localisation on truth, FunnyBirds' quantities and dimensions with target sensitivity on
hybrid birds, single deletion, cost), localisation again on their bias-conflicting twins (same bird, another
habitat) with the similarity of each method's map across the twins, Adebayo et al.'s cascading randomisation and
label randomisation, the landmark error from the centroids of the part maps of the heads that have parts, the
causal ceiling (oracle), and example maps under interventions for the explorer.

Chapter: ``nbs/06_compare.ipynb``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from attnbook.chapters.compare.config import (
    CEILING,
    CLASS_AWARE,
    FLOORS,
    HEADS,
    LANDMARK_BASELINES,
    PART_MAPS,
    CompareConfig,
)
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
    landmark_error,
    map_similarity,
    oracle_evaluation,
    posthoc_maps_fn,
    random_maps_fn,
)
from attnbook.evaluate.sanity import randomisable_layers

LOCALISATION = ("pointing_object", "pointing_disc", "mass_object", "rank_object", "mass_disc", "far")
FUNNYBIRDS = ("csdc", "pc", "dc", "d", "bi", "sd", "ts", "completeness", "correctness", "contrastivity", "mean_xai",
              "important_parts", "completeness_empty", "ts_valid")
INTERVENTIONS = ("original", "habitat swapped", "disc part → confuser's", "disc part removed")


@dataclass
class MethodResult:
    """One method of one seed: the engine's summary on each split, map similarity across the twins, sanity."""

    method: str
    family: str  # "attention" | "post-hoc" | "floor"
    model: str  # the model it explains ("gap" = the plain CNN, or the head kind)
    summary: dict[str, dict[str, float]]  # split -> engine summary
    twin_similarity: dict[str, float] = field(default_factory=dict)  # spearman / ssim, aligned vs conflicting
    sanity: dict[str, float] = field(default_factory=dict)  # cascading (top / all layers) and label randomisation
    curves: dict[str, Tensor] = field(default_factory=dict)  # FunnyBirds curves over the 80 thresholds


def method_family(method: str) -> str:
    """``attention`` (a trained head), ``post-hoc`` (explains the plain CNN), ``floor`` or ``ceiling``."""
    if method == CEILING:
        return "ceiling"
    return "attention" if method in HEADS else "floor" if method in FLOORS else "post-hoc"


def maps_fn_for(config: CompareConfig, method: str, model: nn.Module, seed: int) -> MapFn:
    """The engine's map function of ``method`` on ``model`` (a head's own attention; EAT: its class map; Sharpen
    Focus: its target attention for each requested class)."""
    if method in CLASS_AWARE:
        return attention_maps_fn(model, 0, class_aware=True)
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
    (Adebayo et al. §3.1, cascading; every layer is reset, the maps compared at those two steps only); LIME
    skipped (cost) and NaN."""
    if method == "lime":
        return {"sanity_top": float("nan"), "sanity_full": float("nan")}

    def make_maps(m: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        return maps_fn_for(config, method, m, seed)(x, t[:, None])[:, 0]

    layers = randomisable_layers(model)
    cascade = cascading_randomisation(model, make_maps, images, labels, seed=seed, at=(layers[0], layers[-1]))
    steps = list(cascade.values())
    return {"sanity_top": float(torch.nanmean(steps[0]["spearman"].double())),
            "sanity_full": float(torch.nanmean(steps[-1]["spearman"].double()))}


def evaluate_seed(config: CompareConfig, bench: Benchmark, models: dict[str, CompareModel], seed: int,
                  random_models: dict[str, CompareModel] | None = None,
                  render_cache: dict[tuple, Any] | None = None) -> dict[str, MethodResult]:
    """Every method of one seed (module docstring). The counterfactual logits of one model are shared by every
    explainer of it (the plain CNN: its post-hoc explainers and the floors); rendered counterfactual images are
    shared by every model through ``render_cache`` (pass one dict for all seeds: the images do not depend on
    the model). ``random_models``: the same kinds trained on permuted labels (label randomisation)."""
    spec = bench.spec
    n = min(config.n_explain, spec.split_size("test_aligned"))
    indices = torch.arange(n)
    data = {s: {k: v[:n] for k, v in bench.split(s).tensors.items()} for s in ("test_aligned", "test_conflicting")}
    labels = data["test_aligned"][R.LABEL]
    cache: dict[tuple, Any] = {} if render_cache is None else render_cache
    variants: dict[str, VariantLogits] = {}
    out: dict[str, MethodResult] = {}
    m_sanity = min(config.n_sanity, n)
    for method in methods_of(config):
        kind = method if method in HEADS else "gap"
        model = models[kind]
        if kind not in variants:
            logits = classify(model, data["test_aligned"][R.IMAGE])
            variants[kind] = VariantLogits(model, spec, "test_aligned", indices, logits, render_cache=cache)
        fn = maps_fn_for(config, method, model, seed)
        aligned = evaluate(model, fn, spec, "test_aligned", indices=indices, data=data["test_aligned"],
                           variants=variants[kind], name=method)
        conflicting = evaluate(model, fn, spec, "test_conflicting", indices=indices, data=data["test_conflicting"],
                               protocol=False, name=method)
        summary = {"test_aligned": aligned.summary, "test_conflicting": conflicting.summary}
        similarity = map_similarity(aligned.maps, conflicting.maps)
        twin = {k: float(torch.nanmean(similarity[k].double())) for k in ("spearman", "ssim")}
        sanity = _sanity(config, method, model, data["test_aligned"][R.IMAGE][:m_sanity], labels[:m_sanity], seed)
        if random_models is not None:
            sanity.update(_label_randomisation(config, method, aligned.maps, random_models[kind],
                                               data["test_aligned"][R.IMAGE], labels, seed))
        curves = aligned.funnybirds.curves if aligned.funnybirds is not None else {}
        out[method] = MethodResult(method, method_family(method), kind, summary, twin, sanity, curves)
    oracle = oracle_evaluation(variants["gap"], spec, labels, name=CEILING)
    out[CEILING] = MethodResult(CEILING, "ceiling", "gap", {"test_aligned": oracle.summary, "test_conflicting": {}},
                                curves=oracle.funnybirds.curves)
    for method, error in landmark_errors(config, bench, models, seed).items():
        if method not in out:  # a landmark baseline that is not an explainer (the trunk's activation channels)
            out[method] = MethodResult(method, "baseline", "gap", {"test_aligned": {}, "test_conflicting": {}})
        out[method].summary["test_aligned"]["landmark"] = error
    return out


def _label_randomisation(config: CompareConfig, method: str, maps: Tensor, random_model: nn.Module,
                         images: Tensor, labels: Tensor, seed: int) -> dict[str, float]:
    """Adebayo et al. §3.2: Spearman and SSIM of the true-class maps of the model trained on the true labels
    (``maps``, from the engine) with those of the same method on the model trained on permuted labels; LIME
    skipped (cost) and NaN, as in :func:`_sanity`."""
    if method == "lime":
        return {"label_spearman": float("nan"), "label_ssim": float("nan")}
    fn = maps_fn_for(config, method, random_model, seed)
    other = torch.cat([fn(images[lo:lo + 64], labels[lo:lo + 64, None])[:, 0].detach()
                       for lo in range(0, len(images), 64)])
    similarity = map_similarity(maps, other)
    return {f"label_{k}": float(torch.nanmean(similarity[k].double())) for k in ("spearman", "ssim")}


def _part_maps(method: str, models: dict[str, CompareModel], images: Tensor, seed: int, k: int) -> Tensor:
    """Part maps ``[N, K, h, w]``: a head's own (from :data:`PART_MAPS`), or a baseline's — ``activation``: the
    plain CNN trunk's ``k`` channels of largest mean activation on ``images``' first call (fitting split),
    ``random``: uniform noise maps."""
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(len(images), k, 6, 6, generator=generator)
    with torch.no_grad():
        if method == "activation":
            return torch.cat([models["gap"].trunk(images[lo:lo + 256]) for lo in range(0, len(images), 256)])
        return torch.cat([models[method].part_maps(images[lo:lo + 256])[:, PART_MAPS[method]:]
                          for lo in range(0, len(images), 256)])


def landmark_errors(config: CompareConfig, bench: Benchmark, models: dict[str, CompareModel],
                    seed: int) -> dict[str, float]:
    """Landmark error from map centroids (% of the box; Region Grouping's Tables 2/4 protocol, fitted on the first
    ``n_fit`` training images, tested on the first ``n_explain`` bias-aligned test images) of every head with
    parts and of the baselines (keys ``landmark_<baseline>`` are not methods of the table; ``activation`` /
    ``random`` use K = 5 maps)."""
    n = min(config.n_explain, bench.spec.split_size("test_aligned"))
    fit = {k: v[:config.n_fit] for k, v in bench.train.tensors.items()}
    test = {k: v[:n] for k, v in bench.test_aligned.tensors.items()}
    out = {}
    for method in [m for m in config.heads if m in PART_MAPS] + list(LANDMARK_BASELINES):
        fit_maps = _part_maps(method, models, fit[R.IMAGE], seed, 5)
        test_maps = _part_maps(method, models, test[R.IMAGE], seed + 1, 5)
        if method == "activation":  # the top-5 channels on the fitting split
            top = fit_maps.mean(dim=(0, 2, 3)).topk(5).indices
            fit_maps, test_maps = fit_maps[:, top], test_maps[:, top]
        out[method] = landmark_error(fit_maps, fit, test_maps, test)
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

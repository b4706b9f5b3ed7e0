"""Chapter 1's evaluation: accuracy on both test splits, mean attribute accuracy, FAR of Grad-CAM at the last
conv layer on object masks (three ways of averaging over images), and EAR's explanations against the known
class attributes, with two baselines (attribute-head confidence, random attributes).

Chapter: ``nbs/01_eat.ipynb``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from attnbook import metrics
from attnbook.chapters.eat.config import SPLITS, EATConfig
from attnbook.chapters.eat.pipeline import EATModel
from attnbook.data import records as R
from attnbook.data.synthetic import Benchmark
from attnbook.methods.eat import sentence
from attnbook.train import predict

EXPLAINERS = ("ear", "confidence", "random")


@dataclass
class Evaluation:
    """One trained model (kind × seed) scored on the first ``n_explain`` objects of both test splits."""

    accuracy: dict[str, float]  # split -> accuracy over the whole split
    attribute_accuracy: float  # mean over test images and attributes (bias-aligned split), σ(a) > 0.5
    far: dict[str, torch.Tensor]  # split -> per-image FAR [n] (NaN where undefined)
    pi: dict[str, torch.Tensor]  # split -> [n, 2] mean attention on object / background (max-normalised maps)
    disc_mass: dict[str, torch.Tensor]  # split -> share of the class map on the discriminative part [n]
    hits: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # explainer -> {true, disc} [n] bool
    wrong_shared: torch.Tensor | None = None  # per wrong prediction: top-k names an attribute both classes share
    examples: dict[str, object] = field(default_factory=dict)  # maps and sentences of the first images


def attend_images(model: EATModel, images: torch.Tensor, batch_size: int = 64):
    """The head's attention (:meth:`EATHead.attend`) on ``f_img(images)``, in batches; fields concatenated."""
    parts = []
    for start in range(0, len(images), batch_size):
        with torch.no_grad():
            features = model.trunk(images[start:start + batch_size])
        parts.append(model.head.attend(features))
    return (torch.cat([p.maps for p in parts]),
            {k: torch.cat([p.extras[k] for p in parts]) for k in ("ear", "top", "attribute_logits", "predicted")})


def explanation_hits(top: torch.Tensor, predicted: torch.Tensor, bench: Benchmark) -> dict[str, torch.Tensor]:
    """Per image: does the top-k hold an attribute the predicted class has (``true``)? the predicted class's own
    value of the slot that separates it from its confuser (``disc``; NaN-free: classes without one count as
    misses)?"""
    attrs = bench.class_attributes.bool()
    has = attrs[predicted]  # [n, Na]
    confuser = bench.confusers[predicted]
    disc = has & ~attrs[confuser.clamp(min=0)] & (confuser >= 0)[:, None]
    return {"true": has.gather(1, top).any(1), "disc": disc.gather(1, top).any(1)}


def evaluate(config: EATConfig, model: EATModel, bench: Benchmark, seed: int, kind: str) -> Evaluation:
    """Score one model; EAR hits (and their baselines) only for EAT."""
    accuracy, far, pi, disc_mass = {}, {}, {}, {}
    result = Evaluation(accuracy, 0.0, far, pi, disc_mass)
    for split in SPLITS:
        t = bench.split(split).tensors
        accuracy[split] = float((predict(model, bench.split(split)).argmax(1) == t[R.LABEL]).float().mean())
        n = min(config.n_explain, len(t[R.LABEL]))
        maps, extras = attend_images(model, t[R.IMAGE][:n])
        class_map = metrics.resize_to(maps[:, 0], t[R.MASK][:n])
        class_map = class_map / class_map.amax((1, 2), keepdim=True).clamp(min=1e-12)  # max 1 per image
        mask = t[R.MASK][:n].float()
        far[split] = metrics.far(class_map, t[R.MASK][:n])
        pi[split] = torch.stack([(class_map * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1),
                                 (class_map * (1 - mask)).sum((1, 2)) / (1 - mask).sum((1, 2)).clamp(min=1)], 1)
        disc_mass[split] = metrics.mass_in_region(class_map, t[R.DISC_MASK][:n])
        m = min(6, n)
        result.examples[split] = {"images": t[R.IMAGE][:m], "masks": t[R.MASK][:m], "maps": maps[:m]}
        if split == "test_aligned":
            labels = bench.class_attributes[t[R.LABEL][:n]]
            result.attribute_accuracy = float(((extras["attribute_logits"] > 0).float() == labels).float().mean())
            if kind == "eat":
                _explanations(config, result, bench, extras, t, n, seed)
    return result


def _explanations(config: EATConfig, result: Evaluation, bench: Benchmark, extras: dict, t: dict, n: int,
                  seed: int) -> None:
    k, predicted = config.top_k, extras["predicted"]
    num_attributes = extras["ear"].shape[1]
    gen = torch.Generator().manual_seed(seed)
    tops = {"ear": extras["top"], "confidence": extras["attribute_logits"].topk(k, dim=1).indices,
            "random": torch.rand(n, num_attributes, generator=gen).topk(k, dim=1).indices}
    result.hits = {name: explanation_hits(top, predicted, bench) for name, top in tops.items()}
    wrong = predicted != t[R.LABEL][:n]
    attrs = bench.class_attributes.bool()
    shared = attrs[predicted] & attrs[t[R.LABEL][:n]]
    result.wrong_shared = shared.gather(1, tops["ear"]).any(1)[wrong]
    names, classes = bench.info.attribute_names, bench.info.class_names
    m = min(6, n)
    result.examples["ear"] = {
        "labels": t[R.LABEL][:m], "predicted": predicted[:m],
        "sentences": [sentence([names[a] for a in extras["top"][i].tolist()], classes[int(predicted[i])])
                      for i in range(m)],
        "attributes": [[names[a] for a in extras["top"][i].tolist()] for i in range(m)]}


def majority_attribute_accuracy(bench: Benchmark) -> float:
    """Mean attribute accuracy of predicting each attribute's more frequent value (bias-aligned test split)."""
    labels = bench.class_attributes[bench.test_aligned.tensors[R.LABEL]]
    p = labels.mean(0)
    return float(torch.maximum(p, 1 - p).mean())


def far_summaries(ev: Evaluation, split: str) -> dict[str, float]:
    """FAR over images three ways: median and mean of per-image FAR (images where it is defined), and the
    ratio of means ``mean PI(AT, M) / mean PI(AT, 1−M)`` (maps max-normalised per image)."""
    values = ev.far[split][~torch.isnan(ev.far[split])]
    pi = ev.pi[split]
    return {"median": float(values.median()) if len(values) else float("nan"),
            "mean": float(values.mean()) if len(values) else float("nan"),
            "ratio_of_means": float(pi[:, 0].mean() / pi[:, 1].mean().clamp(min=1e-12))}

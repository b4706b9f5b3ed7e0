"""Chapter 1's evaluation: accuracy on every test split, mean attribute accuracy, FAR of Grad-CAM at the last
conv layer on object masks (three ways of averaging over images), and EAR's explanations against the known
class attributes, with two baselines (attribute-head confidence, random attributes).

Chapter: ``nbs/01_eat.ipynb``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from attnbook import metrics
from attnbook.chapters.eat.config import EATConfig
from attnbook.chapters.eat.data import EATTask, explained_indices, first_records, labels_of
from attnbook.chapters.eat.pipeline import EATModel, gradcam_layers
from attnbook.data import records as R
from attnbook.explain.gradcam import grad_attention
from attnbook.methods.eat import sentence
from attnbook.train import predict

EXPLAINERS = ("ear", "confidence", "random")


@dataclass
class Evaluation:
    """One trained model (kind × seed) scored on the first ``n_explain`` objects of each test split."""

    accuracy: dict[str, float]  # split -> accuracy over the whole split
    attribute_accuracy: float  # mean over test images and attributes (first test split), σ(a) > 0.5
    far: dict[str, torch.Tensor]  # split -> per-image FAR [n] (NaN where undefined)
    pi: dict[str, torch.Tensor]  # split -> [n, 2] mean attention on object / background (max-normalised maps)
    disc_mass: dict[str, torch.Tensor]  # split -> share of the class map on the discriminative part [n] (testbed)
    pi_block3: dict[str, torch.Tensor] = field(default_factory=dict)  # split -> as ``pi``, Grad-CAM at block 3
    hits: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # explainer -> {true, disc} [n] bool
    wrong_shared: torch.Tensor | None = None  # per wrong prediction: top-k names an attribute both classes share
    wrong_shared_random: torch.Tensor | None = None  # the same for k random attributes
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


def object_background(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``[PI(AT, M), PI(AT, 1−M)]`` per image (Eq. 14) of maps upsampled to the masks and max-normalised per
    image. ``maps [n, h, w]``, ``masks [n, H, W]`` -> ``[n, 2]``."""
    maps = metrics.resize_to(maps, masks)
    maps = maps / maps.amax((1, 2), keepdim=True).clamp(min=1e-12)
    mask = masks.float()
    return torch.stack([(maps * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1),
                        (maps * (1 - mask)).sum((1, 2)) / (1 - mask).sum((1, 2)).clamp(min=1)], 1)


def gradcam_at(model: EATModel, images: torch.Tensor, layer: str, target: torch.Tensor,
               batch_size: int = 64) -> torch.Tensor:
    """Grad-CAM (Eq. 11–12) of ``target``'s final score ``c`` at a trunk layer (``pipeline.gradcam_layers``)."""
    return torch.cat([grad_attention(model, layer, images[i:i + batch_size], target[i:i + batch_size])
                      for i in range(0, len(images), batch_size)])


def explanation_hits(top: torch.Tensor, predicted: torch.Tensor, task: EATTask) -> dict[str, torch.Tensor]:
    """Per image: does the top-k hold an attribute the predicted class has (``true``)? the predicted class's own
    value of the slot that separates it from its confuser (``disc``; only where the data names confusers)?"""
    attrs = task.class_attributes.bool()
    has = attrs[predicted]  # [n, Na]
    hits = {"true": has.gather(1, top).any(1)}
    if task.has_confusers:
        disc = has & ~attrs[task.confusers[predicted]]
        hits["disc"] = disc.gather(1, top).any(1)
    return hits


def evaluate(config: EATConfig, model: EATModel, task: EATTask, seed: int, kind: str) -> Evaluation:
    """Score one model on every test split of ``task``; EAR hits (and their baselines) only for EAT; FAR only
    where the data set has object masks (not SUN attributes)."""
    accuracy, far, pi, disc_mass = {}, {}, {}, {}
    result = Evaluation(accuracy, 0.0, far, pi, disc_mass)
    layers = gradcam_layers(config)
    for index, (split, data) in enumerate(task.splits.items()):
        accuracy[split] = float((predict(model, data).argmax(1) == labels_of(data)).float().mean())
        t = first_records(data, config.n_explain)
        n = len(t[R.LABEL])
        maps, extras = attend_images(model, t[R.IMAGE])
        m = min(6, n)
        names = task.info.attribute_names
        result.examples[split] = {"images": t[R.IMAGE][:m], "maps": maps[:m],  # maps[:, 1:]: the top attributes
                                  "attributes": [[names[a] for a in extras["top"][i].tolist()] for i in range(m)]}
        if R.MASK in t:
            class_map = metrics.resize_to(maps[:, 0], t[R.MASK])
            class_map = class_map / class_map.amax((1, 2), keepdim=True).clamp(min=1e-12)  # max 1 per image
            far[split] = metrics.far(class_map, t[R.MASK])
            pi[split] = object_background(maps[:, 0], t[R.MASK])
            block3 = gradcam_at(model, t[R.IMAGE], layers["block3"], extras["predicted"])
            result.pi_block3[split] = object_background(block3, t[R.MASK])
            result.examples[split]["masks"] = t[R.MASK][:m]
            if R.DISC_MASK in t:
                disc_mass[split] = metrics.mass_in_region(class_map, t[R.DISC_MASK])
        if index == 0:
            labels = task.class_attributes[t[R.LABEL]]
            result.attribute_accuracy = float(((extras["attribute_logits"] > 0).float() == labels).float().mean())
            if kind == "eat":
                _explanations(config, result, task, extras, t, n, seed)
    return result


def evaluate_models(config: EATConfig, models: dict[str, dict[int, EATModel]], task: EATTask | None) -> dict:
    """:func:`evaluate` of every model × seed of ``models`` (``{kind: {seed: model}}``) on ``task``:
    ``{kind: {seed: Evaluation}}`` (empty when there is no task)."""
    if task is None:
        return {}
    return {kind: {s: evaluate(config, model, task, s, kind) for s, model in by_seed.items()}
            for kind, by_seed in models.items()}


def _explanations(config: EATConfig, result: Evaluation, task: EATTask, extras: dict, t: dict, n: int,
                  seed: int) -> None:
    k, predicted = extras["top"].shape[1], extras["predicted"]  # top_k, at most the number of attributes
    num_attributes = extras["ear"].shape[1]
    gen = torch.Generator().manual_seed(seed)
    tops = {"ear": extras["top"], "confidence": extras["attribute_logits"].topk(k, dim=1).indices,
            "random": torch.rand(n, num_attributes, generator=gen).topk(k, dim=1).indices}
    result.hits = {name: explanation_hits(top, predicted, task) for name, top in tops.items()}
    wrong = predicted != t[R.LABEL]
    attrs = task.class_attributes.bool()
    shared = attrs[predicted] & attrs[t[R.LABEL]]
    result.wrong_shared = shared.gather(1, tops["ear"]).any(1)[wrong]
    result.wrong_shared_random = shared.gather(1, tops["random"]).any(1)[wrong]
    names, classes = task.info.attribute_names, task.info.class_names
    m = min(6, n)
    result.examples["ear"] = {
        "labels": t[R.LABEL][:m], "predicted": predicted[:m],
        "sentences": [sentence([names[a] for a in extras["top"][i].tolist()], classes[int(predicted[i])])
                      for i in range(m)],
        "attributes": [[names[a] for a in extras["top"][i].tolist()] for i in range(m)]}


def majority_attribute_accuracy(task: EATTask, n: int | None = None) -> float:
    """Mean attribute accuracy of predicting each attribute's more frequent value, on the images attribute accuracy
    is measured on (the first test split's :func:`~.data.explained_indices` of ``n``; all of them if ``None``)."""
    split = next(iter(task.splits.values()))
    labels = labels_of(split)
    labels = task.class_attributes[labels if n is None else labels[explained_indices(split, n)]]
    p = labels.mean(0)
    return float(torch.maximum(p, 1 - p).mean())


def ratio_of_means(pi: torch.Tensor) -> float:
    """FAR averaged over images as ``mean PI(AT, M) / mean PI(AT, 1−M)`` (``pi [n, 2]``)."""
    return float(pi[:, 0].mean() / pi[:, 1].mean().clamp(min=1e-12))


def far_summaries(ev: Evaluation, split: str) -> dict[str, float]:
    """FAR over images three ways: median and mean of per-image FAR (images where it is defined), and the
    ratio of means ``mean PI(AT, M) / mean PI(AT, 1−M)`` (maps max-normalised per image); and the ratio of
    means with Grad-CAM at block 3 instead of the last block (``block3``)."""
    if split not in ev.far:  # no object masks (SUN attributes)
        return {}
    values = ev.far[split][~torch.isnan(ev.far[split])]
    return {"median": float(values.median()) if len(values) else float("nan"),
            "mean": float(values.mean()) if len(values) else float("nan"),
            "ratio_of_means": ratio_of_means(ev.pi[split]), "block3": ratio_of_means(ev.pi_block3[split])}

"""Chapter 2's evaluation: accuracy; and what the paper says the losses do, measured on ground truth — the
separability of the target's and the confuser's maps, the share of the target's map on the discriminative part,
the consistency between the inner and the last layer — for every attention (Grad-CAM, A_ch, A_px) at both layers;
multi-label AP and AUC.

* **Which pair.** On the synthetic analog the confuser of an image is its class's designed partner (the pair
  differs only in the discriminative part); on real data the model's most confusing class (top-1 if wrong, else
  second). Images of a class without a partner are skipped.
* **Separability**: ``sIoU(Â^T, Â^Conf)`` with Mask = 1 (Eq. 6 without the training mask) on per-sample
  max-normalised maps at the layer's own resolution; lower = more separable.
* **Discriminative part**: the share of the target map's mass (bilinearly upsampled to the image) inside
  ``disc_mask`` (:func:`attnbook.metrics.mass_in_region`).
* **Consistency**: ``1 − L_ac``: the share of the inner target map inside the last layer's mask (Eq. 7–8).

Maps are taken in eval mode (batch-norm statistics fixed: each image's own gradient).
Chapter: ``nbs/02_sharpen_focus.ipynb``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from attnbook import metrics
from attnbook.chapters.sharpen_focus.config import ATTENTIONS, LAYERS
from attnbook.chapters.sharpen_focus.pipeline import Task
from attnbook.data import records as R
from attnbook.explain.postprocess import upsample
from attnbook.methods.sharpen_focus import (
    SharpenFocusModel,
    consistency_loss,
    most_confusing_class,
    normalize_maps,
    soft_iou,
    soft_mask,
)
from attnbook.train import predict


@dataclass
class Evaluation:
    """One trained model scored on the test split (accuracy) and on its first ``n_explain`` paired images (maps)."""

    accuracy: float
    separability: dict[str, dict[str, float]]  # attention -> layer -> mean sIoU(target, confuser), Mask = 1
    disc_mass: dict[str, dict[str, float]]  # attention -> layer -> mean share on the disc part (NaN: no truth)
    consistency: dict[str, float]  # attention -> mean share of the inner target map inside the last-layer mask
    n_maps: int = 0
    examples: dict[str, object] = field(default_factory=dict)


def explain_set(task: Task, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` test images that have a confuser: images, labels, confusers, disc masks (synthetic)."""
    if task.bench is not None:
        t = task.test.tensors
        confusers = task.bench.confusers[t[R.LABEL]]
        keep = (confusers >= 0).nonzero()[:n, 0]
        return {"images": t[R.IMAGE][keep], "labels": t[R.LABEL][keep], "confusers": confusers[keep],
                "disc": t[R.DISC_MASK][keep], "mask": t[R.MASK][keep]}
    samples = [task.test[i] for i in range(min(n, len(task.test)))]
    batch = torch.utils.data.default_collate(samples)
    return {"images": batch[R.IMAGE], "labels": batch[R.LABEL]}


def maps_of(model: SharpenFocusModel, images: torch.Tensor, labels: torch.Tensor, confusers: torch.Tensor | None,
            batch_size: int = 100) -> tuple[dict[str, dict[str, torch.Tensor]], torch.Tensor]:
    """Raw maps ``{attention: {layer: [n, 2, h, w]}}`` (target, confuser) in batches, and the confusers used
    (the model's most confusing class where ``confusers`` is None)."""
    model.eval()
    device = next(model.parameters()).device
    parts, used = [], []
    for start in range(0, len(images), batch_size):
        x, y = images[start:start + batch_size].to(device), labels[start:start + batch_size].to(device)
        if confusers is None:
            with torch.no_grad():
                c = most_confusing_class(model(x), y)
        else:
            c = confusers[start:start + batch_size].to(device)
        parts.append(model.class_maps(x, y, c)[1])
        used.append(c.cpu())
    maps = {a: {layer: torch.cat([p[a][layer] for p in parts]).cpu() for layer in LAYERS} for a in ATTENTIONS}
    return maps, torch.cat(used)


def pair_scores(maps: dict[str, torch.Tensor], disc: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per image ``[n]``: separability at each layer, disc-part share of the target map at each layer (if ``disc``),
    and consistency — from one attention's raw maps ``{layer: [n, 2, h, w]}``."""
    norm = {layer: torch.stack([normalize_maps(maps[layer][:, k]) for k in (0, 1)], 1) for layer in LAYERS}
    out = {f"sep_{layer}": soft_iou(norm[layer][:, 0], norm[layer][:, 1]) for layer in LAYERS}
    mask = soft_mask(norm["last"][:, 0])
    inner = norm["inner"][:, 0]
    out["consistency"] = 1 - consistency_loss(inner, upsample(mask, tuple(inner.shape[-2:])))
    if disc is not None:
        for layer in LAYERS:
            up = upsample(norm[layer][:, 0], tuple(disc.shape[-2:])).clamp(min=0)
            out[f"disc_{layer}"] = metrics.mass_in_region(up, disc)
    return out


def test_accuracy(model: SharpenFocusModel, task: Task) -> float:
    """Top-1 accuracy on the whole test split."""
    logits = predict(model, task.test)
    labels = task.test.tensors[R.LABEL] if task.bench is not None else torch.tensor(
        [int(task.test[i][R.LABEL]) for i in range(len(task.test))])
    return float((logits.argmax(1) == labels).float().mean())


def evaluate(model: SharpenFocusModel, task: Task, n_explain: int, n_examples: int = 6) -> Evaluation:
    """Accuracy on the whole test split; maps of the first ``n_explain`` paired test images for every attention."""
    accuracy = test_accuracy(model, task)
    chosen = explain_set(task, n_explain)
    maps, confusers = maps_of(model, chosen["images"], chosen["labels"], chosen.get("confusers"))
    disc = chosen.get("disc")
    separability, disc_mass, consistency = {}, {}, {}
    for attention in ATTENTIONS:
        scores = pair_scores(maps[attention], disc)
        separability[attention] = {layer: _nanmean(scores[f"sep_{layer}"]) for layer in LAYERS}
        disc_mass[attention] = {layer: _nanmean(scores[f"disc_{layer}"]) if disc is not None else float("nan")
                                for layer in LAYERS}
        consistency[attention] = _nanmean(scores["consistency"])
    m = min(n_examples, len(chosen["images"]))
    examples = {"images": chosen["images"][:m], "labels": chosen["labels"][:m], "confusers": confusers[:m],
                "disc": disc[:m] if disc is not None else None,
                "maps": {a: {layer: maps[a][layer][:m] for layer in LAYERS} for a in ATTENTIONS},
                }
    return Evaluation(accuracy, separability, disc_mass, consistency, len(chosen["images"]), examples)


def _nanmean(values: torch.Tensor) -> float:
    return float(torch.nanmean(values.float())) if len(values) else float("nan")


def evaluate_multilabel(model: SharpenFocusModel, bench) -> dict[str, float]:
    """Macro mean AP and ROC AUC over classes on the multi-label test split (Table 6's metrics)."""
    scores = predict(model, bench.test_aligned)
    targets = bench.test_aligned.tensors[R.LABEL]
    return {"ap": metrics.mean_average_precision(scores, targets), "auc": metrics.mean_roc_auc(scores, targets)}

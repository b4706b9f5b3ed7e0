"""Chapter 4 (BLA), §4.2: the heads BL, L2X-F, BLA, BLA-T, BLA-PH on cached features, their hard
explanations against the ground truth, and the paired tests behind Table 1.

Paper: BLA §4.2 — BL (dropout 0.2 → dense) first, then every explanation head from BL's weights (Adam
1e-3, batch 32), accuracy and loss **with the hard explanation** (§3, E's pooling), Wilcoxon
signed-rank tests over seeds. Heads are built by name (:func:`attnbook.methods.registry.make_head`) and
read through the attention interface (:mod:`attnbook.methods.base`): an explanation head's ``attend``
returns the maps ``("soft", "hard")``. Ground truth (not in the paper): size ‖δ‖₁, share of δ on the
object and on the discriminative part, against CAM of BL thresholded at τ·max.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from attnbook import metrics, stats
from attnbook.chapters.bla.config import (
    ALL_HEADS,
    CAM,
    CODE_THRESHOLD,
    EXPLANATION_HEADS,
    BLAConfig,
    head_names,
    seeds,
)
from attnbook.chapters.bla.tasks import HeadTask
from attnbook.config import device_for
from attnbook.explain.cam import cam
from attnbook.methods.pooling import HARD, SOFT
from attnbook.methods.registry import make_head
from attnbook.seeding import derive_seed, seed_everything
from attnbook.train import FEATURES, TrainConfig, evaluate, fit

# chapter head name → its kind in attnbook.methods.registry ("bl", the plain GAP head, is built on its own).
_HEAD_KINDS = {"l2x_f": "l2x_f", "bla": "bla", "bla_t": "bla_t", "bla_ph": "bla_ph", CODE_THRESHOLD: "bla_t"}


def variant_head(name: str, base: nn.Module, config: BLAConfig) -> nn.Module:
    """A §4.2 explanation head starting from the trained BL head ``base`` (copied; BLA-PH keeps it frozen).

    L2X-F with k (BLA §3.3), BLA (Eq. 1), BLA-T with the paper's threshold (Eq. 2), BLA-PH, and BLA-T
    with the authors' ``relu(q − γ)`` (``"bla_t_code"``)."""
    if name not in _HEAD_KINDS:
        raise ValueError(f"unknown head {name!r}; choose one of {list(_HEAD_KINDS)}")
    options: dict[str, Any] = {"k": config.l2x_k} if name == "l2x_f" else {"theta": config.theta}
    if name == CODE_THRESHOLD:
        options["threshold_mode"] = "code"
    return make_head(_HEAD_KINDS[name], base.fc.in_features, base.fc.out_features, base_head=base, **options)


def train_heads(task: HeadTask, config: BLAConfig, seed: int) -> dict[str, nn.Module]:
    """BL (dropout 0.2 → dense; Glorot-initialised Q) for ``task.epochs``, then every other head from BL's
    weights for as many epochs (BLA §4.2: Adam 1e-3, batch 32). Returned in eval mode (hard explanations)."""
    device = device_for(config)
    train_config = TrainConfig(epochs=task.epochs, seed=seed, device=device, progress=False)
    seed_everything(seed)
    base = make_head("gap", task.channels, task.num_classes, dropout=config.dropout)
    fit(base, task.train, train_config)
    heads: dict[str, nn.Module] = {"bl": base}
    for name in head_names(config):
        if name != "bl":
            seed_everything(derive_seed(seed, ALL_HEADS.index(name)))  # Q's init: the same in any run
            heads[name] = variant_head(name, base, config)
            fit(heads[name], task.train, train_config)
    return {name: head.eval() for name, head in heads.items()}


def thresholded_cam(base: nn.Module, features: Tensor, target: Tensor, tau: float) -> Tensor:
    """Hard CAM explanation: cells with CAM ≥ τ·max (CAM = Grad-CAM at a GAP head's input). ``bool [N, h, w]``."""
    maps = cam(features, base.fc.weight.detach(), target)  # [N, h, w], ReLU'd
    return maps >= tau * maps.amax(dim=(1, 2), keepdim=True)


@torch.no_grad()
def soft_and_hard(heads: dict[str, nn.Module], name: str, features: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """(soft map, hard δ ``bool``) ``[N, h, w]`` of head ``name`` — its ``attend`` maps ``"soft"`` and
    ``"hard"`` (BLA §3: q and E's δ); ``"cam"``: BL's CAM for its predicted class, as a distribution, and
    thresholded at ``tau``·max."""
    if name != CAM:
        out = heads[name].attend(features)
        return out.map(SOFT), out.map(HARD).bool()
    base = heads["bl"]
    target = base(features).argmax(1)
    maps = cam(features, base.fc.weight, target)  # [N, h, w]
    soft = maps / maps.sum(dim=(1, 2), keepdim=True).clamp(min=torch.finfo(maps.dtype).tiny)
    return soft, thresholded_cam(base, features, target, tau)


def explained_by(heads: dict[str, nn.Module]) -> tuple[str, ...]:
    """Names whose hard explanations a run has: its explanation heads, then ``"cam"`` (of BL)."""
    return tuple(name for name in heads if name in EXPLANATION_HEADS) + (CAM,)


def hard_explanations(heads: dict[str, nn.Module], features: Tensor, config: BLAConfig) -> dict[str, Tensor]:
    """δ ``bool [N, h, w]`` of every explanation head, and of CAM thresholded for BL's predicted class."""
    return {name: soft_and_hard(heads, name, features, config.cam_threshold)[1] for name in explained_by(heads)}


def explanation_scores(hard: Tensor, task: HeadTask) -> dict[str, Tensor]:
    """Per image: size ‖δ‖₁, share of δ's area on the object (precision; a uniformly random cell scores
    the object's share), share of the discriminative part that δ covers (recall; NaN without one)."""
    selected = hard.float()
    disc_total = task.disc_cells.sum(dim=(1, 2))
    disc_recall = (selected * task.disc_cells).sum(dim=(1, 2)) / disc_total
    return {"size": selected.sum(dim=(1, 2)), "object_precision": metrics.mass_in_region(selected, task.object_cells),
            "disc_recall": disc_recall.masked_fill(disc_total == 0, float("nan"))}


def _spearman(a: Tensor, b: Tensor) -> float:
    return float(metrics.spearman(a[None].float(), b[None].float())[0])


@dataclass
class TaskResults:
    """Everything §4.2 measured on one dataset, over all seeds."""

    task: HeadTask
    scores: list[dict[str, Any]] = field(default_factory=list)  # task, seed, head, acc, loss
    truth: list[dict[str, Any]] = field(default_factory=list)  # task, seed, method, explanation scores
    heads: dict[str, nn.Module] = field(default_factory=dict)  # the first seed's heads
    sizes: dict[str, Tensor] = field(default_factory=dict)  # the first seed's explanation sizes [N_test]


def run_task(task: HeadTask, config: BLAConfig) -> TaskResults:
    """Train all heads for every seed; score them (hard-explanation accuracy and loss, BLA §4.2) and, on
    the analogs, their hard explanations against the ground truth."""
    out = TaskResults(task)
    features = task.test.tensors[FEATURES].to(device_for(config))
    for seed in seeds(config):
        first = not out.heads
        heads = train_heads(task, config, seed)
        for name, head in heads.items():
            result = evaluate(head, task.test)
            out.scores.append({"task": task.key, "seed": seed, "head": name, "acc": result["acc"],
                               "loss": result["loss"]})
        if task.object_cells is not None:
            for method, hard in hard_explanations(heads, features, config).items():
                scored = {k: v.cpu() for k, v in explanation_scores(hard.cpu(), task).items()}
                out.truth.append({"task": task.key, "seed": seed, "method": method,
                                  "size_mean": float(scored["size"].mean()), "size_sd": float(scored["size"].std()),
                                  "object_precision": float(scored["object_precision"].mean()),
                                  "disc_recall": float(torch.nanmean(scored["disc_recall"])),
                                  "size_area_r": _spearman(scored["size"], task.object_area)})
                if first:
                    out.sizes[method] = scored["size"]
        if first:
            out.heads = heads
    return out


def scores_frame(results: Sequence[TaskResults]) -> pd.DataFrame:
    """Per (task, seed, head): hard-explanation accuracy and loss."""
    return pd.DataFrame([row for r in results for row in r.scores])


TRUTH_COLUMNS = ("task", "seed", "method", "size_mean", "size_sd", "object_precision", "disc_recall", "size_area_r")


def truth_frame(results: Sequence[TaskResults]) -> pd.DataFrame:
    """Per (task, seed, method): the explanation scores against the ground truth (no rows, same columns, on
    real data, which carry no ground truth)."""
    return pd.DataFrame([row for r in results for row in r.truth], columns=list(TRUTH_COLUMNS))


def per_seed(scores: pd.DataFrame, task: str, a: str, b: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``metric`` of heads ``a`` and ``b`` on ``task``, aligned by seed (the seeds both have); None if either
    head is missing or fewer than two seeds have both."""
    table = scores[scores.task == task].pivot(index="seed", columns="head", values=metric)
    if a not in table or b not in table:
        return None
    table = table[[a, b]].dropna()
    return (table[a].to_numpy(), table[b].to_numpy()) if len(table) >= 2 else None


def paired_seeds(scores: pd.DataFrame, task: str, a: str, b: str, metric: str,
                 margin: float | None = None) -> stats.Evidence | None:
    """``b`` vs ``a`` on ``metric`` over seeds, paired by seed — each seed's heads share BL and the frozen
    features — by the paper's Wilcoxon signed-rank test (BLA §4.2; effect: Hodges–Lehmann estimate of b − a,
    TOST within ±``margin`` when given); None if either head is missing or there are fewer than two seeds.
    Every seed tied (e.g. all at accuracy 1) gives evidence that :func:`attnbook.stats.decide` calls
    inconclusive."""
    values = per_seed(scores, task, a, b, metric)
    if values is None:
        return None
    return stats.paired(*values, margin=margin, method="wilcoxon", unit="seeds")

"""Chapter 4 (BLA), §4.3 (Table 2): how faithful BLA-T's soft map and CAM are to LIME.

Paper: BLA §4.3 — LIME for the baseline model (7 × 7 patches, 1000 random occlusion patterns, black
when absent, least squares), Spearman rank correlation with BLA-T's soft map q and with CAM (= Grad-CAM
for a GAP head). Here: the same protocol on the feature grid's patches, on fewer images and samples in
the cheaper profiles.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from attnbook import metrics
from attnbook.chapters.bla.config import BLAConfig
from attnbook.chapters.bla.heads import TaskResults
from attnbook.chapters.bla.tasks import backbone_autocast
from attnbook.explain.cam import cam
from attnbook.explain.lime import lime
from attnbook.methods.pooling import SOFT
from attnbook.models.backbones import Backbone, Classifier


@dataclass
class Faithfulness:
    """Per image: LIME coefficients on the feature grid and their rank correlations (BLA §4.3)."""

    rows: pd.DataFrame  # task, image, lime_cam, lime_bla_t
    lime_maps: dict[str, Tensor]  # task -> [m, g, g]


def measure(config: BLAConfig, backbone: Backbone, results: Sequence[TaskResults]) -> Faithfulness:
    """LIME for the baseline model F ∘ BL (patches = feature cells, black when absent, least squares)
    on the first ``lime_images`` kept test images (:func:`~attnbook.chapters.bla.tasks.shown_indices`),
    explaining BL's predicted class; Spearman ρ with BLA-T's soft map q (its ``attend`` map ``"soft"``)
    and with CAM (BLA §4.3, Table 2)."""
    rows, maps = [], {}
    for r in results:
        base = r.heads["bl"]
        model = Classifier(backbone, base).eval()
        m = min(config.lime_images, len(r.task.images))
        device = next(base.parameters()).device
        images = r.task.images[:m].to(device)
        features = r.task.shown_features(m).to(device)
        with torch.no_grad():
            target = base(features).argmax(1)
            cam_map = cam(features, base.fc.weight, target)  # [m, g, g]
            soft = r.heads["bla_t"].attend(features).map(SOFT) if "bla_t" in r.heads else None
        generator = torch.Generator().manual_seed(config.seed)
        with backbone_autocast(config, device):
            coef = lime(model, images, target, grid=r.task.grid, num_samples=config.lime_samples,
                        generator=generator).float()  # [m, g, g]
        maps[r.task.key] = coef.cpu()
        rho_cam = metrics.spearman(coef, cam_map)
        rho_bla = metrics.spearman(coef, soft) if soft is not None else torch.full((m,), float("nan"))
        rows += [{"task": r.task.key, "image": i, "lime_cam": float(rho_cam[i]), "lime_bla_t": float(rho_bla[i])}
                 for i in range(m)]
    return Faithfulness(pd.DataFrame(rows), maps)


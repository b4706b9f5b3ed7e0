"""The evaluation engine of the cross-paper comparison (issue 14): every trainable attention and
post-hoc explainer scored on the same synthetic test images, with in-domain interventions as causal
ground truth.

* :mod:`~attnbook.evaluate.explainers` — one map-function convention for attention models and
  post-hoc explainers (multi-target Grad-CAM from one forward pass; random and edge floors);
* :mod:`~attnbook.evaluate.localisation` — pointing game, mass on object / parts / disc part, FAR,
  relevance rank accuracy, landmark error from the centroids of part maps;
* :mod:`~attnbook.evaluate.funnybirds` — FunnyBirds' CSDC, PC, DC, D, BI, SD, TS and dimension scores;
* :mod:`~attnbook.evaluate.variants` — cached model outputs on re-rendered counterfactuals;
* :mod:`~attnbook.evaluate.sanity` — Adebayo et al.'s randomisation checks (Spearman, SSIM);
* :mod:`~attnbook.evaluate.engine` — :func:`evaluate`, all of it batched, with its cost.
"""
from __future__ import annotations

from attnbook.evaluate.engine import Evaluation, classify, evaluate, oracle_evaluation, split_images
from attnbook.evaluate.explainers import (
    MapFn,
    attention_maps_fn,
    edge_maps_fn,
    multi_target_gradcam,
    posthoc_maps_fn,
    random_maps_fn,
)
from attnbook.evaluate.funnybirds import (
    THRESHOLDS,
    FunnyBirdsResult,
    funnybirds_scores,
    oracle_importances,
    part_importances,
    target_sensitivity,
)
from attnbook.evaluate.localisation import (
    landmark_error,
    localisation,
    part_centres,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from attnbook.evaluate.sanity import (
    cascading_randomisation,
    label_randomisation,
    map_similarity,
    permuted_labels,
    ssim,
)
from attnbook.evaluate.variants import VariantLogits

__all__ = [
    "THRESHOLDS", "Evaluation", "FunnyBirdsResult", "MapFn", "VariantLogits", "attention_maps_fn",
    "cascading_randomisation", "classify", "edge_maps_fn", "evaluate", "funnybirds_scores", "label_randomisation",
    "landmark_error", "localisation", "map_similarity", "multi_target_gradcam", "oracle_evaluation",
    "oracle_importances", "part_centres", "part_importances", "permuted_labels", "posthoc_maps_fn", "random_maps_fn",
    "relevance_mass_accuracy", "relevance_rank_accuracy", "split_images", "ssim", "target_sensitivity",
]

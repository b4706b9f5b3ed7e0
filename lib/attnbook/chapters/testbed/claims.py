"""Chapter 0's claims ledger: the papers' claims the testbed itself can test, as synthetic analogs.

Chapter: ``nbs/00_testbed.ipynb``.
"""
from __future__ import annotations

import pandas as pd
import torch

from attnbook import metrics, stats
from attnbook.chapters.testbed.config import TestbedConfig
from attnbook.chapters.testbed.pipeline import Explanations
from attnbook.data import records as R
from attnbook.ledger import record_claim
from attnbook.runs import RunRecorder


def record_scores(recorder: RunRecorder, scores: pd.DataFrame) -> None:
    """Log each explainer's scores on the bias-aligned split (``explain/<name>/<score>``) and glue the best
    pointer on the object (``explain/best_pointer``, ``explain/best_pointing``)."""
    aligned = scores[scores.split == "test_aligned"]
    for row in aligned.itertuples():
        recorder.log(f"explain/{row.explainer}/pointing_object", row.pointing_object)
        for key in ("far_median", "mass_object", "pointing_disc_part", "mass_disc_part", "sparsity"):
            value = getattr(row, key)
            if pd.notna(value):
                recorder.log(f"explain/{row.explainer}/{key}", value)
    best = aligned.sort_values("pointing_object", ascending=False).iloc[0]
    recorder.text("explain/best_pointer", best.explainer)
    recorder.number("explain/best_pointing", float(best.pointing_object))


def record_claims(recorder: RunRecorder, correct: dict[str, torch.Tensor], ex: Explanations,
                  config: TestbedConfig) -> None:
    """Claims of the papers that the testbed itself can test (as synthetic analogs).

    Both compare two measurements on **the same test objects**, so both are paired (exact McNemar on the
    discordant objects): aligned vs conflicting accuracy of one model; Grad-CAM vs guided Grad-CAM hits of
    the same model. Neither is a claim about training, so the unit is the test object, not the seed.
    """
    setting = (f"synthetic {config.preset} analog, {config.resolution} px, {config.arch} from scratch, "
               f"p_bias={config.p_bias}, {config.profile} profile, seed {config.seed}")
    conflicting, aligned = correct["test_conflicting"], correct["test_aligned"]
    record_claim(recorder, id="eat-habitat-bias", paper="EAT",
                 claim="a base model trained with habitat bias relies on the background (premise of EAT): "
                       "accuracy on bias-aligned > bias-conflicting images of the same objects",
                 paper_value="qualitative", ours=f"{aligned.float().mean():.3f} vs {conflicting.float().mean():.3f}",
                 setting=setting, expect="increase",
                 evidence=stats.paired_proportions(conflicting, aligned, unit="objects"),
                 note="accuracy aligned vs conflicting; effect = aligned − conflicting")
    split = "test_aligned"
    if {"gradcam", "guided_gradcam"} <= set(ex.maps[split]):
        mask = ex.truth[split][R.MASK]
        miss = {k: metrics.pointing_game(ex.maps[split][k], mask) != 1 for k in ("gradcam", "guided_gradcam")}
        record_claim(recorder, id="rg-table6-guided", paper="Region Grouping",
                     claim="Table 6: Guided Grad-CAM misses the object less often than Grad-CAM in the pointing "
                           "game (pointing error, iNat2017)",
                     paper_value="8.2% vs 11.8%",
                     ours=f"{miss['guided_gradcam'].float().mean():.1%} vs {miss['gradcam'].float().mean():.1%}",
                     setting=setting + ", boxes → object masks", expect="decrease",
                     evidence=stats.paired_proportions(miss["gradcam"], miss["guided_gradcam"], unit="objects"),
                     note=f"pointing error on {len(mask)} bias-aligned test objects; effect = guided − Grad-CAM")

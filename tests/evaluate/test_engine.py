"""The engine end to end on a tiny benchmark: every score present and in range, the counterfactual
cache shared between explainers, an oracle map beating the floors, class-agnostic maps scoring no
contrastivity."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnbook.data.synthetic import spec_for
from attnbook.evaluate import (
    VariantLogits,
    attention_maps_fn,
    classify,
    edge_maps_fn,
    evaluate,
    posthoc_maps_fn,
    random_maps_fn,
    split_images,
)
from attnbook.methods.base import Attention

SPEC = spec_for("fine_grained", resolution=32, test_per_class=2, seed=1)  # 32 test images; TS pairs exist


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, SPEC.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))

    def attend(self, x: torch.Tensor) -> Attention:
        f = self.features(x)
        return Attention(self.fc(f.mean(dim=(2, 3))), f.norm(dim=1, keepdim=True))


@pytest.fixture(scope="module")
def setup() -> tuple[Tiny, dict[str, torch.Tensor], VariantLogits]:
    torch.manual_seed(0)
    model = Tiny().eval()
    data = split_images(SPEC, "test_aligned")
    indices = torch.arange(len(data["image"]))
    return model, data, VariantLogits(model, SPEC, "test_aligned", indices, classify(model, data["image"]))


FRACTIONS = ("pointing_object", "mass_object", "rank_object", "pointing_disc", "mass_disc", "csdc", "pc", "dc",
             "d", "bi", "sd", "completeness", "accuracy")


def test_every_score_present_and_in_range(setup):
    model, data, variants = setup
    ev = evaluate(model, posthoc_maps_fn("gradcam", model, layer="features.3"), SPEC, data=data,
                  variants=variants, batch_size=10)
    for key in FRACTIONS:
        assert 0.0 <= ev.summary[key] <= 1.0, key
    assert ev.summary["far"] > 0 and ev.images_per_second > 0
    assert 0.01 <= ev.summary["threshold"] <= 0.5
    assert ev.per_image["mass_parts"].shape == (32, len(SPEC.parts))
    assert ev.funnybirds.counts["ts_pairs"] > 0 and ev.funnybirds.curves["pc"].shape == (80,)
    assert set(ev.seconds) >= {"explain", "metrics", "counterfactuals"}


def test_counterfactuals_are_shared_between_explainers(setup):
    model, data, variants = setup
    first = evaluate(model, edge_maps_fn(), SPEC, data=data, variants=variants)
    rendered = variants.rendered
    again = evaluate(model, edge_maps_fn(), SPEC, data=data, variants=variants)
    assert variants.rendered == rendered and again.seconds["counterfactuals"] == 0.0  # all cached
    fresh = evaluate(model, edge_maps_fn(), SPEC, data=data)  # its own cache, same numbers
    for key in ("csdc", "pc", "dc", "d", "bi", "sd", "ts"):
        a, b = first.summary[key], fresh.summary[key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-6), key


def test_an_oracle_map_beats_the_floors(setup):
    model, data, variants = setup
    disc = data["disc_mask"].float() + 1e-4 * data["mask"].float()
    position = {"next": 0}

    def oracle(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # the truth, in batch order
        lo = position["next"]
        position["next"] += len(images)
        return disc[lo:lo + len(images), None].expand(-1, targets.shape[1], -1, -1)

    best = evaluate(model, oracle, SPEC, data=data, variants=variants, batch_size=8)
    floor = evaluate(model, random_maps_fn(0), SPEC, data=data, variants=variants, batch_size=8)
    assert best.summary["pointing_disc"] == 1.0 and best.summary["mass_disc"] > 0.99
    assert floor.summary["mass_disc"] < 0.2 and floor.summary["pointing_object"] < 0.6
    # every minimal sufficient set holds the disc part: the oracle's CSDC is at least the mean 1/|S|
    assert best.funnybirds.counts["correct"] > 0
    assert best.summary["csdc"] == 1.0 > floor.summary["csdc"]  # fine_grained: {disc part} is sufficient


def test_class_agnostic_attention_has_no_contrastivity(setup):
    model, data, variants = setup
    ev = evaluate(model, attention_maps_fn(model), SPEC, data=data, variants=variants)
    assert math.isnan(ev.summary["ts"]) or ev.summary["ts"] == 0.0  # same map for c1 and c2: no comparison won
    loc = evaluate(model, attention_maps_fn(model), SPEC, data=data, protocol=False)
    assert loc.funnybirds is None and loc.summary["mass_object"] == pytest.approx(ev.summary["mass_object"])

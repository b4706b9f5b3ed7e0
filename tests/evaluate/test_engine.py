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

    best = evaluate(model, oracle, SPEC, data=data, variants=variants, batch_size=8, ts="shared")  # maps by order
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


def test_hybrid_ts_is_defined_where_funnybirds_pairs_do_not_exist():
    from attnbook.evaluate.funnybirds import ts_classes

    spec = spec_for("fine_grained", num_classes=10, resolution=32, test_per_class=2, seed=0)
    assert (ts_classes(spec)[:, 0] < 0).all()  # FunnyBirds' own rule: no class has a pair → TS undefined
    torch.manual_seed(0)
    model = Tiny.__new__(Tiny)
    nn.Module.__init__(model)
    model.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
    model.fc = nn.Linear(16, 10)
    model.eval()
    data = split_images(spec, "test_aligned")
    shared = evaluate(model, posthoc_maps_fn("gradcam", model, layer="features.3"), spec, data=data, ts="shared")
    assert math.isnan(shared.summary["ts"])
    cache: dict = {}
    variants = VariantLogits(model, spec, "test_aligned", torch.arange(len(data["image"])),
                             classify(model, data["image"]), render_cache=cache)
    hybrid = evaluate(model, posthoc_maps_fn("gradcam", model, layer="features.3"), spec, data=data,
                      variants=variants)
    assert hybrid.funnybirds.counts["ts_pairs"] == len(data["image"])  # every class has a partner
    assert hybrid.funnybirds.counts["ts_valid"] > 0 and 0.0 <= hybrid.summary["ts"] <= 1.0
    agnostic = evaluate(model, attention_maps_fn(model), spec, data=data, variants=variants)
    assert agnostic.summary["ts"] == 0.0  # one map for both classes: it never puts more mass on either's parts
    # a second model of the same spec reuses every rendered counterfactual (hybrids included)
    other = VariantLogits(model, spec, "test_aligned", torch.arange(len(data["image"])),
                          classify(model, data["image"]), render_cache=cache)
    size = len(cache)
    again = evaluate(model, posthoc_maps_fn("gradcam", model, layer="features.3"), spec, data=data, variants=other)
    assert len(cache) == size and again.funnybirds.counts["ts_pairs"] == len(data["image"])
    assert again.summary["ts"] == hybrid.summary["ts"] and again.summary["bi"] == hybrid.summary["bi"]


def test_hybrid_ts_scores_an_ideal_map_one_and_a_swapped_map_zero(setup):
    from attnbook.data.interventions import hybrid_design, rerender

    model, data, variants = setup
    design = hybrid_design(SPEC)
    labels = data["label"]
    hybrids = rerender(SPEC, "test_aligned", torch.arange(len(labels)), donor=design.donors(labels))
    own = torch.einsum("np,nphw->nhw", design.own[labels].float(), hybrids["part_masks"].float())
    donated = torch.einsum("np,nphw->nhw", design.donated[labels].float(), hybrids["part_masks"].float())

    def ideal(swap: bool):  # class c's map on c's parts, the partner's map on the donated parts (hybrid calls only)
        calls = {"n": 0}

        def maps_fn(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            first = images.shape[0] == len(labels) and torch.equal(images, hybrids["image"])
            if not first:  # the unchanged images: any map
                return torch.ones(images.shape[0], targets.shape[1], *images.shape[-2:])
            calls["n"] += 1
            pair = (donated, own) if swap else (own, donated)
            return torch.stack(pair, dim=1) + 1e-3
        return maps_fn, calls

    good, calls = ideal(False)
    ev = evaluate(model, good, SPEC, data=data, variants=variants, batch_size=len(labels))
    assert calls["n"] == 1 and ev.funnybirds.counts["ts_valid"] > 0
    assert ev.summary["ts"] == 1.0
    bad, _ = ideal(True)
    assert evaluate(model, bad, SPEC, data=data, variants=variants, batch_size=len(labels)).summary["ts"] == 0.0

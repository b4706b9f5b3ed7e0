"""Chapter 6 (Where do they look?): profiles, the table's CIs against scipy, the ranking, the interventions the
explorer shows, and one tiny seed end to end through the engine."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from attnbook.chapters.compare import claims, evaluation, pipeline
from attnbook.chapters.compare.config import CHAPTER, FUNNYBIRDS_REFERENCE, HEADS, NOT_RUN, PROFILES


def test_profiles_seeds_and_reference_row():
    assert PROFILES["cpu"].n_seeds >= 3 and PROFILES["gpu"].n_seeds >= 10 and PROFILES["paper"].n_seeds >= 10
    assert PROFILES["smoke"].n_seeds in (1, 2)
    assert PROFILES["gpu"].resolution > PROFILES["cpu"].resolution
    assert FUNNYBIRDS_REFERENCE["csdc"] == 0.735 and FUNNYBIRDS_REFERENCE["ts"] == 0.806
    assert set(CHAPTER.parameters) <= set(PROFILES["cpu"].__dataclass_fields__)


def test_method_family():
    assert evaluation.method_family("bla_t") == "attention"
    assert evaluation.method_family("gradcam") == "post-hoc"
    assert evaluation.method_family("edges") == "floor"


def _table() -> pd.DataFrame:
    rows = []
    for seed, (a, b) in enumerate([(0.5, 0.7), (0.4, 0.65), (0.55, 0.8)]):
        rows += [{"seed": seed, "method": "gradcam", "completeness": a},
                 {"seed": seed, "method": "bla_t", "completeness": b}]
    return pd.DataFrame(rows)


def test_main_table_ci_matches_scipy_and_lists_not_run():
    table = _table()
    frame = claims.main_table(table, metrics=("completeness",))
    v = np.array([0.5, 0.4, 0.55])
    low, high = sps.t.interval(0.95, 2, loc=v.mean(), scale=sps.sem(v))
    assert frame.loc["gradcam", "completeness"] == f"{v.mean():.3f} ± {(high - low) / 2:.3f}"
    for method in NOT_RUN:
        assert frame.loc[method, "completeness"].startswith("not run yet")


def test_ranking_pairs_over_seeds():
    ranked = claims.ranking(_table(), "completeness")
    assert list(ranked.method) == ["bla_t", "gradcam"]
    d = np.array([0.5, 0.4, 0.55]) - np.array([0.7, 0.65, 0.8])
    assert ranked.loc[2, "vs_leader"] == pytest.approx(d.mean())
    assert ranked.loc[2, "p"] == pytest.approx(sps.ttest_rel(np.array([0.5, 0.4, 0.55]),
                                                             np.array([0.7, 0.65, 0.8])).pvalue)


def test_main_tables_fit_the_page_and_cover_every_metric():
    assert all(len(metrics) <= 5 for metrics in claims.TABLE_GROUPS.values())
    covered = {m for metrics in claims.TABLE_GROUPS.values() for m in metrics}
    assert {"accuracy", "mass_object", "landmark", "csdc", "ts", "mean_xai", "label_spearman"} <= covered
    rows = [{"seed": s, "method": m, **{k: 0.5 + 0.01 * s for k in covered}} for s in range(3)
            for m in ("gradcam", "bla_t")]
    tables = claims.main_tables(pd.DataFrame(rows))
    for title, frame in tables.items():
        width = len(max(frame.index, key=len)) + sum(max(len(c), frame[c].str.len().max()) + 2 for c in frame)
        assert width <= 100, (title, width)  # characters of a rendered row: the page's width at the book's font


@pytest.fixture(scope="module")
def tiny():
    config = PROFILES["smoke"].__class__(**{**PROFILES["smoke"].__dict__, "n_seeds": 1, "n_explain": 4,
                                            "n_sanity": 2, "n_fit": 16,
                                            "heads": ("bla_t", "eat", "region_grouping", "sharpen_focus"),
                                            "explainers": ("gradcam",)})
    bench = pipeline.make_data(config)
    models = pipeline.train_seed(config, bench, 0, None)
    return config, bench, models


def test_interventions_first_view_is_the_test_image(tiny):
    _, bench, _ = tiny
    images, masks, labels = evaluation.intervention_images(bench, 2)
    assert images.shape[:2] == (2, len(evaluation.INTERVENTIONS))
    assert torch.equal(images[:, 0], bench.test_aligned.tensors["image"][:2])
    assert torch.equal(labels, bench.test_aligned.tensors["label"][:2])
    assert not torch.equal(images[:, 3], images[:, 0])  # the discriminative part removed changes pixels
    assert torch.equal(images[:, 1], bench.test_conflicting.tensors["image"][:2])  # habitat swap = the twin


def test_heads_share_the_plain_cnn_trunk(tiny):
    _, _, models = tiny
    for kind in ("bla_t", "eat", "region_grouping"):
        for a, b in zip(models[kind].trunk.state_dict().values(), models["gap"].trunk.state_dict().values()):
            assert torch.equal(a, b)


def test_shared_trunk_caches_by_content_and_never_serves_a_randomised_copy(tiny):
    import copy

    _, bench, models = tiny
    head = models["bla_t"]
    assert isinstance(head.trunk, pipeline.SharedTrunk) and head.trunk is models["eat"].trunk
    images = bench.test_aligned.tensors["image"][:3]
    with torch.no_grad():
        first = head.trunk(images)
        again = head.trunk(images.clone())  # same content, another tensor: served from the cache
        assert again is first and torch.equal(first, models["gap"].trunk(images))
        randomised = copy.deepcopy(head)
        for m in randomised.trunk.modules():
            if hasattr(m, "reset_parameters") and m is not randomised.trunk:
                m.reset_parameters()
        assert not torch.equal(randomised.trunk(images), first)  # recomputed, not the intact trunk's cache


def test_random_label_split_moves_attributes_with_labels(tiny):
    _, bench, _ = tiny
    split = pipeline.random_label_split(bench.train, seed=3)
    from attnbook.evaluate import permuted_labels

    assert torch.equal(split.tensors["label"], permuted_labels(bench.train.tensors["label"], seed=3))
    def pairs(t: dict) -> tuple:  # the (label, attributes) rows as a multiset
        rows = torch.cat([t["label"][:, None].float(), t["attributes"].float()], dim=1)
        return tuple(t_.tolist() for t_ in rows.unique(dim=0, return_counts=True))

    assert pairs(split.tensors) == pairs(bench.train.tensors)  # each label keeps its image's attributes...
    assert (split.tensors["label"] != bench.train.tensors["label"]).float().mean() > 0.5  # ...on another image
    assert torch.equal(split.tensors["image"], bench.train.tensors["image"])  # images untouched


def test_one_seed_end_to_end(tiny):
    config, bench, models = tiny
    random_models = pipeline.train_seed(config, bench, 0, None, random_labels=True)
    results = evaluation.evaluate_seed(config, bench, models, 0, random_models, {})
    assert set(results) == {"bla_t", "eat", "region_grouping", "sharpen_focus", "gradcam", "random", "edges",
                            "oracle", "activation"}
    for method in ("eat", "region_grouping", "random", "activation"):  # part maps → landmark error (% of box)
        assert 0 < results[method].summary["test_aligned"]["landmark"] < 200
    for method in ("bla_t", "gradcam", "sharpen_focus", "edges"):
        assert -1 <= results[method].sanity["label_spearman"] <= 1
    assert math.isclose(results["edges"].sanity["label_spearman"], 1.0)  # edges ignore the model
    assert results["bla_t"].summary["test_aligned"]["ts"] == 0.0  # class-agnostic
    assert results["oracle"].family == "ceiling" and results["oracle"].summary["test_aligned"]["sd"] > 0.5
    assert all(m in HEADS for m in ("bla_t", "eat", "sharpen_focus"))
    table = claims.per_seed({0: results})
    for key in ("mass_object", "completeness", "sd"):
        values = table[key].to_numpy(dtype=float)
        assert np.all((values[np.isfinite(values)] >= 0) & (values[np.isfinite(values)] <= 1))
    assert math.isclose(table.set_index("method").loc["edges", "sanity_full"], 1.0)  # edges ignore the model
    examples = evaluation.example_maps(config, bench, models, 0, n=1)
    assert examples["maps"].shape[:3] == (1, len(evaluation.INTERVENTIONS), len(examples["methods"]))


def test_gpu_profile_code_path_with_lime_runs_on_cpu(tiny):
    """The gpu/paper profiles add LIME; its path through the engine, shrunk, on the tiny seed's models."""
    config, bench, models = tiny
    assert "lime" in PROFILES["gpu"].explainers and PROFILES["gpu"].needs_gpu
    small = config.__class__(**{**config.__dict__, "heads": (), "explainers": ("lime",), "lime_samples": 16,
                                "n_explain": 2})
    results = evaluation.evaluate_seed(small, bench, models, 0, random_models=models)  # stand-in random models
    lime = results["lime"].summary["test_aligned"]
    assert 0 <= lime["mass_object"] <= 1 and math.isnan(results["lime"].sanity["sanity_full"])
    assert math.isnan(results["lime"].sanity["label_spearman"])  # skipped for cost, like the cascade
    assert math.isclose(results["edges"].sanity["label_spearman"], 1.0, abs_tol=1e-6)


def test_region_grouping_map_is_its_pixel_attribution(tiny):
    """Q's maps partition the pixels (sum 1 everywhere: uniform under the engine's sum); the engine gets Q^T a."""
    _, bench, models = tiny
    images = bench.test_aligned.tensors["image"][:2]
    with torch.no_grad():
        att = models["region_grouping"].attend(images)
        raw = models["region_grouping"].head.attend(models["region_grouping"].trunk(images))
    assert att.names == ("attribution",) and att.maps.shape[1] == 1
    expected = torch.einsum("bkhw,bk->bhw", raw.maps, raw.extras["attention"])
    assert torch.allclose(att.maps[:, 0], expected, atol=1e-5)
    assert torch.allclose(raw.maps.sum(1), torch.ones_like(raw.maps[:, 0]), atol=1e-4)

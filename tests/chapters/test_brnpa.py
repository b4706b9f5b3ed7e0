"""Chapter 5's pipeline pieces on hand-made inputs, plus one tiny end-to-end run of the pipeline."""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnbook import ledger, metrics, runs, stats
from attnbook.chapters.brnpa import claims, evaluation, explanations, figures, pipeline, studies
from attnbook.chapters.brnpa import config as brnpa
from attnbook.config import ConfigError
from attnbook.data import records as R
from attnbook.methods.bcnn import BCNNHead
from attnbook.methods.brnpa import BRNPAHead
from attnbook.methods.distillation import distillation_loss
from attnbook.methods.registry import make_head
from attnbook.models.backbones import build_backbone
from attnbook.models.staged import StagedModel, last_convs, record_grad_norms, tail_of
from attnbook.profiling import StepCost, cost_ratios, step_cost
from attnbook.train import FEATURES, FeatureDataset


def test_overrides_and_inconsistent_configs_are_refused():
    assert brnpa.CHAPTER.resolve("smoke", 0, n_seeds="3", epochs=2).n_seeds == 3
    with pytest.raises(ConfigError, match="unknown parameter 'lr'"):
        brnpa.CHAPTER.resolve("smoke", 0, lr=0.1)
    with pytest.raises(ValueError, match="lie before train_from"):
        brnpa.BRNPAConfig(train_from="layer4", stride_one=("layer3", "layer4"))
    with pytest.raises(ValueError, match="must include 'brnpa'"):
        brnpa.BRNPAConfig(efficiency_heads=("bcnn",))
    assert brnpa.seeds(brnpa.BRNPAConfig(seed=3, n_seeds=2)) == (3, 4)
    assert brnpa.ablation_seeds(brnpa.BRNPAConfig(seed=3, ablation_seeds=3)) == (3, 4, 5)


def test_config_imports_no_torch_and_the_registry_points_at_it():
    code = ("import sys, attnbook.chapters.brnpa.config; "
            "assert not {'torch', 'pandas', 'matplotlib'} & set(sys.modules), 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)
    from attnbook.chapters import get_chapter

    assert get_chapter("05_brnpa") is brnpa.CHAPTER


def test_light_config_mirrors_the_library_names():
    """The torch-free config mirrors names defined in torch-importing modules; they must agree."""
    from attnbook.methods import brnpa as method
    from attnbook.methods.registry import HEADS
    from attnbook.models import backbones, staged

    assert brnpa.TABLE5_SUBSETS == method.TABLE5_SUBSETS
    assert brnpa.RESNET_STRIDE_STAGES == backbones.RESNET_STRIDE_STAGES
    assert brnpa.RESNETS == tuple(name for name in backbones.BACKBONES if name.startswith("resnet"))
    assert (brnpa.STEM, brnpa.HEAD) == (staged.STEM, staged.HEAD)
    assert set(brnpa.KINDS) | set(brnpa.PROFILES["gpu"].efficiency_heads) <= set(HEADS)


def test_no_module_dispatches_on_method_classes():
    package = Path(pipeline.__file__).parent
    for path in package.glob("*.py"):
        assert not re.search(r"isinstance\([^)]*(Head|Output)\b", path.read_text()), path.name
        assert len(path.read_text().splitlines()) < 500, f"{path.name} has 500 lines or more"


def test_make_head_kinds():
    assert isinstance(make_head("brnpa", 8, 3, suppression="similarity"), BRNPAHead)
    assert make_head("bcnn", 8, 3).materialize and not make_head("bcnn_einsum", 8, 3).materialize
    with pytest.raises(ValueError, match="unknown head"):
        make_head("vit", 8, 3)


@pytest.mark.parametrize("kind", brnpa.KINDS)
def test_attend_returns_logits_maps_and_feature_norms(kind):
    features = torch.rand(2, 8, 3, 3)
    model = StagedModel(nn.Identity(), make_head(kind, 8, 4)).eval()
    out = model.attend(features)
    torch.testing.assert_close(out.logits, model(features))
    torch.testing.assert_close(out.extras["norms"], features.norm(dim=1))
    assert out.maps.shape == ((2, 1, 3, 3) if kind == "gap" else (2, 3, 3, 3))
    if kind == "gap":  # GAP's pooling weights: uniform 1/(h·w)
        torch.testing.assert_close(out.maps, torch.full((2, 1, 3, 3), 1 / 9))
        assert out.extras.get("positions") is None
    if kind == "brnpa":
        torch.testing.assert_close(out.maps.sum(dim=(2, 3)), torch.ones(2, 3))
        assert out.extras["positions"].shape == (2, 3)


def test_stride_one_variant_doubles_the_map_and_tails_cut_at_a_stage():
    state = build_backbone("resnet18").state_dict()
    config = brnpa.BRNPAConfig()
    low, high = pipeline.backbone_variant(config, state, False), pipeline.backbone_variant(config, state, True)
    x = torch.rand(1, 3, 64, 64)
    assert low(x).shape[-2:] == (2, 2) and high(x).shape[-2:] == (4, 4)
    tail = tail_of(high, "layer4")
    assert [name for name, _ in tail.named_children()] == ["layer4"]
    torch.testing.assert_close(tail(high.features(x, ["layer3"])["layer3"]), high(x))
    assert tail_of(high, "stem") is high and isinstance(tail_of(high, brnpa.HEAD), nn.Identity)
    assert last_convs(tail) == ["layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]


def test_recorded_gradient_norms_are_those_of_the_weights_and_hooks_go_away():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 1))
    with record_grad_norms(net, ["0", "2"]) as norms:
        for _ in range(2):
            net.zero_grad()
            net(torch.rand(1, 1, 4, 4)).sum().backward()
    assert len(norms["0"]) == 2 and norms["2"][-1] == pytest.approx(net[2].weight.grad.norm().item())
    net(torch.rand(1, 1, 4, 4)).sum().backward()
    assert len(norms["0"]) == 2


def test_mass_and_pointing_of_hand_made_maps():
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True  # top half
    masks[0, 1, 0, 0] = True  # one pixel
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, 0] = 1.0  # all on the pixel
    maps[0, 1] = 1.0  # uniform
    mass = metrics.mass_per_map(maps, masks)  # [1, maps, regions]
    torch.testing.assert_close(mass, torch.tensor([[[1.0, 1.0], [0.5, 1 / 16]]]))
    torch.testing.assert_close(evaluation.disc_pointing(maps, masks[:, 1]), torch.tensor([[1.0, 1.0]]))


def test_normalised_sparsity_by_hand():
    # 2×2 maps (4 cells): uniform → max/mean 1; one cell → 4 (the bound h·w); [3, 1, 0, 0] → 3/1 = 3
    maps = torch.tensor([[1.0, 1, 1, 1], [0, 0, 4, 0], [3, 1, 0, 0]]).reshape(3, 1, 2, 2)
    raw = metrics.sparsity(maps, torch.ones(3, 2, 2))
    torch.testing.assert_close(raw, torch.tensor([1.0, 4.0, 3.0]))
    torch.testing.assert_close(evaluation.normalised_sparsity(raw, 4), torch.tensor([0.0, 1.0, 2 / 3]))
    # the same one-cell map at 7×7 scores 49 raw but still 1 normalised: the bound grows, the scale does not
    peak = torch.zeros(1, 1, 7, 7)
    peak[0, 0, 3, 3] = 1.0
    raw49 = metrics.sparsity(peak, torch.ones(1, 7, 7))
    assert float(raw49) == pytest.approx(49.0) and float(evaluation.normalised_sparsity(raw49, 49)) == pytest.approx(1)
    assert evaluation.normalised_sparsity(torch.tensor([1.0]), 1).isnan().all()  # a 1×1 map has no range


def test_sparsity_at_equal_cell_count_resamples_the_finer_map_by_area():
    # one hot cell in the middle of a 7×7 map: 49 on its own grid; on a 4×4 grid its mass splits over the four
    # central cells (each covers a quarter of it), so max/mean = 4 — the finer map's bound no longer counts
    fine = torch.zeros(1, 7, 7)
    fine[0, 3, 3] = 1.0
    coarse = evaluation.area_resample(fine, (4, 4))
    torch.testing.assert_close(coarse.sum() * 49 / 16, torch.tensor(1.0))  # the mean is kept
    assert torch.count_nonzero(coarse) == 4
    torch.testing.assert_close(evaluation.area_resample(fine, (7, 7)), fine)
    e = _evaluation([True], [49.0], size=(7, 7), mean_map=fine)
    torch.testing.assert_close(evaluation.sparsity_on_grid(e, (4, 4)), torch.tensor([4.0]))
    torch.testing.assert_close(evaluation.sparsity_on_grid(e, (7, 7)), e.sparsity)  # own grid: the sparsity
    uniform = _evaluation([True], [1.0], size=(7, 7), mean_map=torch.ones(1, 7, 7))
    np.testing.assert_allclose(evaluation.per_seed_on_grid([e, uniform], (4, 4)), [4.0, 1.0], rtol=1e-6)


def _evaluation(hits, sparsity, size=(2, 2), mass=None, mean_map=None) -> evaluation.Evaluation:
    return evaluation.Evaluation(hits=torch.tensor(hits), sparsity=torch.tensor(sparsity, dtype=torch.float),
                                 aux_hits={}, repeats=None, mass=mass, pointing=None, map_size=size,
                                 mean_map=mean_map)


def test_per_seed_values_average_images_within_each_seed():
    evals = [_evaluation([True, False, True, True], [2.0, float("nan"), 4.0, 3.0]),
             _evaluation([False, False, True, True], [1.0, 1.0, 1.0, 1.0], size=(1, 1))]
    np.testing.assert_allclose(evaluation.per_seed(evals, "hits"), [0.75, 0.5])
    np.testing.assert_allclose(evaluation.per_seed(evals, "sparsity"), [3.0, 1.0])  # NaN image skipped
    normalised = evaluation.per_seed(evals, "sparsity_normalised")  # (s − 1) / 3 on 2×2; none on 1×1
    assert normalised[0] == pytest.approx(2 / 3) and np.isnan(normalised[1])
    assert evals[0].cells == 4


def test_training_claims_are_tested_over_seeds(tmp_path):
    rec = runs.start("05_brnpa", run_dir=tmp_path, profile="smoke", seed=0, params={})
    a, b = [0.50, 0.60, 0.55, 0.52, 0.58, 0.61], [0.60, 0.70, 0.66, 0.61, 0.69, 0.70]
    claims._seed_claim(rec, id="six", claim="c", paper_value="p", a=a, b=b, setting="s", note="accuracy per seed")
    claims._seed_claim(rec, id="one", claim="c", paper_value="p", a=[0.5, float("nan")], b=[0.6, 0.7], setting="s",
                       note="n")
    claims._seed_claim(rec, id="same", claim="c", paper_value="p", a=[0.5, 0.6], b=[0.55, 0.65], setting="s",
                       note="n")
    six, one, same = rec.claims
    assert (six.status, six.test, six.n, six.unit) == ("reproduced", "paired t", 6, "seeds")
    assert six.effect == pytest.approx(np.mean(np.subtract(b, a))) and six.ci[0] < six.effect < six.ci[1]
    assert six.ours == "0.660 vs 0.560"
    assert (one.status, one.n, one.test) == ("inconclusive", 1, None) and "at least 2" in one.note
    # two seeds that differ by the same amount: no variance for a t test, so the exact sign test decides
    assert (same.status, same.test, same.n, same.p_value) == ("inconclusive", "exact sign test (no variance)", 2, 0.5)
    assert "n = 2" in same.note
    assert all(ledger.check_row(asdict(row)) is None for row in rec.claims)


def _truth_dataset(features: torch.Tensor, labels: torch.Tensor) -> FeatureDataset:
    n, _, h, w = features.shape
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    mask[:, 0, 0] = True
    return FeatureDataset({FEATURES: features, R.LABEL: labels, R.MASK: mask, R.DISC_MASK: mask,
                           R.PART_MASKS: mask[:, None]})


def test_evaluate_counts_hits_repeated_anchors_and_mass():
    # Position 0 has norm 3 and three positions point its way (w = 1/4 on each): with the paper's
    # (1 − w) suppression a_0 = 0.75·9 > 2.5², so the argmax stays at 0; with (1 − s) the picks move to
    # positions 4 and 5, the other two directions.
    vectors = torch.tensor([[3.0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 2.5, 0], [0, 0, 1]])
    features = vectors.T.reshape(1, 3, 2, 3).repeat(2, 1, 1, 1)
    data = _truth_dataset(features, torch.tensor([0, 1]))
    for suppression, repeated in (("weight", True), ("similarity", False)):
        head = BRNPAHead(3, 2, suppression=suppression)
        result = evaluation.evaluate_attention(StagedModel(nn.Identity(), head), data, ["part"])
        assert result.repeats.tolist() == [repeated, repeated]
        assert result.hits.sum() == 1  # identical inputs, one prediction, two labels
        assert result.regions == (brnpa.OBJECT, brnpa.DISC, "part") and result.map_size == (2, 3)
        # map 1 × norm on a 2×3 map, upsampled to itself: the anchor's share of the weighted mass
        weighted = head.attend(features[:1]).maps[0, 0] * features[0].norm(dim=0)
        assert result.mass[0, 0, 0] == pytest.approx(float(weighted[0, 0] / weighted.sum()), abs=1e-6)


def test_gap_evaluation_has_no_anchors_and_a_uniform_sparsity():
    features = torch.ones(2, 3, 2, 3)  # equal norms everywhere: a uniform norm-weighted map
    result = evaluation.evaluate_attention(StagedModel(nn.Identity(), make_head("gap", 3, 2)),
                                           _truth_dataset(features, torch.tensor([0, 1])), ["part"])
    assert result.repeats is None and result.aux_hits == {}
    torch.testing.assert_close(result.sparsity, torch.ones(2))
    torch.testing.assert_close(result.mass[:, 0, 0], torch.full((2,), 1 / 6))


def test_distillation_objective_is_equation_1_on_stored_teacher_logits():
    model = StagedModel(nn.Identity(), nn.Flatten())
    batch = {FEATURES: torch.randn(4, 3, 1, 1), brnpa.TEACHER_LOGITS: torch.randn(4, 3),
             R.LABEL: torch.tensor([0, 1, 2, 0])}
    out = pipeline.Distillation(alpha=0.3, temperature=2.0)(model, batch)
    expected = distillation_loss(batch[FEATURES].flatten(1), batch[brnpa.TEACHER_LOGITS], batch[R.LABEL],
                                 alpha=0.3, temperature=2.0)
    torch.testing.assert_close(out.loss, expected)
    pure_ce = pipeline.Distillation(alpha=1.0, temperature=2.0)(model, batch).loss
    torch.testing.assert_close(pure_ce, F.cross_entropy(batch[FEATURES].flatten(1), batch[R.LABEL]))


def test_with_columns_adds_a_row_per_sample():
    data = FeatureDataset({R.LABEL: torch.arange(3)})
    wrapped = pipeline.WithColumns(data, {"extra": torch.tensor([[1.0], [2.0], [3.0]])})
    assert wrapped[2] == {R.LABEL: torch.tensor(2), "extra": torch.tensor([3.0])}
    with pytest.raises(ValueError, match="one row per sample"):
        pipeline.WithColumns(data, {"extra": torch.zeros(2)})


def test_ablation_variants_that_run_the_same_algorithm_share_one_model():
    config = brnpa.BRNPAConfig(activation="squared_norm", suppression="similarity")
    keys = {name: studies.variant_key(config, options) for name, (_, options) in brnpa.ABLATIONS.items()}
    assert keys["rules_similarity"] == keys["active_refine"]
    assert len(set(keys.values())) == len(keys) - 1


def test_cost_ratios_and_their_status():
    long = pd.DataFrame([
        {"backbone": "resnet18", "head": "brnpa", "ms_per_step": 10.0, "peak_mib": 100.0, "features": "512×4×4"},
        {"backbone": "resnet18", "head": "bcnn", "ms_per_step": 25.0, "peak_mib": 0.0, "features": "512×4×4"},
        {"backbone": "resnet50", "head": "brnpa", "error": "OOM"},
        {"backbone": "resnet50", "head": "bcnn", "ms_per_step": 5.0, "peak_mib": 1.0, "features": "2048×4×4"},
    ])
    ratios = cost_ratios(long, reference="brnpa")
    assert ratios["backbone"].tolist() == ["resnet18"]
    assert ratios["time ratio"].iloc[0] == pytest.approx(2.5) and ratios["memory ratio"].iloc[0] == 0
    assert claims.efficiency_metrics(ratios) == {"efficiency/time_ratio_bcnn_over_brnpa_resnet18": 2.5,
                                                 "efficiency/memory_ratio_bcnn_over_brnpa_resnet18": 0.0}


def test_cost_rule_names_itself_counts_backbones_and_decides_only_when_every_ratio_agrees():
    above = claims.ratio_rule({"resnet18": 1.5, "resnet50": 2.0})
    assert above.test == "measured ratio > 1 on each of resnet18, resnet50" and above.unit == "backbones"
    assert (above.n, above.effect, above.p_value) == (2, pytest.approx(0.5), 0.0)  # weakest backbone: 1.5
    assert stats.decide(above, "increase").status == "reproduced"
    below = claims.ratio_rule({"resnet18": 0.5, "resnet50": float("nan")})
    assert below.n == 1 and stats.decide(below, "increase").status == "not reproduced"
    mixed = claims.ratio_rule({"resnet18": 0.5, "resnet50": 2.0})
    assert mixed.p_value == 1.0 and mixed.effect == pytest.approx(-0.5)
    assert claims.ratio_rule({}) is None and claims.ratio_rule({"resnet18": float("inf")}) is None


def test_gradient_variance_ratio_is_a_geometric_mean_over_seeds_and_layers():
    study = studies.ResolutionStudy({}, {("brnpa", 0): {"a": [1.0, 2.0, 3.0], "b": [1.0, 1.0, 4.0]},
                                         ("bcnn", 0): {"a": [2.0, 4.0, 6.0], "b": [2.0, 2.0, 8.0]}}, {})
    table = figures.grad_variance_table(study)
    assert table.loc[(table.kind == "brnpa") & (table.layer == "a"), "variance"].item() == pytest.approx(1.0)
    numbers = claims.grad_metrics(table)
    assert numbers["fig8/grad_var_ratio_bcnn_over_brnpa"] == pytest.approx(4.0)  # doubled norms
    assert numbers["fig8/grad_cv_ratio_bcnn_over_brnpa"] == pytest.approx(1.0)


def test_area_metrics_name_the_chance_levels():
    areas = {brnpa.OBJECT: 0.25, brnpa.DISC: 0.05, "head": 0.02}
    assert claims.area_metrics(areas) == {"hierarchy/disc_area": 0.05, "hierarchy/object_area": 0.25}
    assert claims.area_metrics({}) == {}


def test_step_cost_in_process():
    spec = StepCost("resnet18", "bcnn", image_size=32, batch_size=2, steps=1, warmup=0, threads=2, num_classes=3)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    cost = step_cost(spec)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert cost["ms_per_step"] > 0 and cost["features"] == "512×1×1"
    assert cost["head_params_m"] == pytest.approx(sum(p.numel() for p in BCNNHead(512, 3).parameters()) / 1e6)


def test_tiny_pipeline_end_to_end(tmp_path):
    """Every stage on a 2-class benchmark at 32 px: a ledger with computed statuses and a valid record."""
    config = brnpa.BRNPAConfig(
        profile="smoke", resolution=32, num_classes=2, train_per_class=4, test_per_class=2, pretrain_epochs=0,
        epochs=1, ablation_epochs=1, n_seeds=1, ablation_seeds=2, batch_size=4, n_explain=2, n_localize=2)
    task = pipeline.load_task(config)
    state = pipeline.pretrain(config, task).backbone.state_dict()
    inputs = pipeline.prepare_inputs(config, state, task, config.train_from)
    assert inputs.cut == "layer3" and inputs.train[0][FEATURES].shape == (256, 2, 2)
    study = studies.resolution_study(config, state, inputs, task)
    assert set(study.evaluations) == {(k, r, 0) for k in brnpa.KINDS for r in brnpa.RESOLUTIONS}
    assert study.evaluations["brnpa", "high", 0].map_size == (2, 2)  # 32 px: layer4 1×1 → 2×2
    ablations = studies.ablation_study(config, state, task)
    table5 = figures.subset_table(ablations["active_refine"])
    assert table5["vectors"].tolist() == ["{1, 2, 3}", "{1, 2}", "{2, 3}", "{1}", "{2}", "{3}"]
    examples = explanations.explain_examples(inputs, study, task, n=2)
    assert set(examples.heat) == set(brnpa.POST_HOC) and examples.rgb["BR-NPA"].shape == (2, 3, 32, 32)
    assert len(figures.localization_table(examples)) == len(brnpa.POST_HOC) + 3
    recorder = runs.start("05_brnpa", run_dir=tmp_path, profile="smoke", seed=0, params={})
    ratios = cost_ratios(pd.DataFrame([
        {"backbone": "resnet18", "head": h, "ms_per_step": t, "peak_mib": 1.0, "features": "512×1×1"}
        for h, t in (("brnpa", 1.0), ("bcnn", 2.0))]), reference="brnpa")
    grad_table = figures.grad_variance_table(study)
    assert (grad_table["steps"] == 2).all()
    for numbers in (claims.resolution_metrics(study), claims.ablation_metrics(ablations),
                    claims.hierarchy_metrics(study), claims.grad_metrics(grad_table),
                    claims.area_metrics(evaluation.region_areas(task))):
        recorder.numbers(numbers)
    table5_numbers = {k: v for k, v in recorder.metrics.items() if k.startswith("table5/")}
    expected = {f"table5/{'_'.join(map(str, s))}": a for s, a in zip(table5["subset"], table5["accuracy"])}
    assert table5_numbers == expected
    claims.record_claims(recorder, config, task, {task.name: study}, ablations, grad_table, ratios)
    rows = {c.id: c for c in recorder.claims}
    assert {"brnpa-t1-analog", "brnpa-t1-cub", "brnpa-t2-reid", "brnpa-t4-active", "brnpa-t5-rank12",
            "brnpa-t6-sparsity-brnpa", "brnpa-t6-sparsity-vs-cnn", "brnpa-fig4-cnn-sparsity", "brnpa-fig8",
            "brnpa-fig9-time", "brnpa-hierarchy-1v2"} <= set(rows)
    assert rows["brnpa-t1-cub"].status == "not run" and rows["brnpa-fig9-time"].status == "reproduced"
    fig9 = rows["brnpa-fig9-time"]
    assert (fig9.test, fig9.n, fig9.unit) == ("measured ratio > 1 on each of resnet18", 1, "backbones")
    assert "on resnet18 at 112 px, batch 4, on cpu" in fig9.claim and "single measurements" in fig9.note
    # one stage-B seed: no test over seeds is possible; the ablations ran 2 seeds and are tested over them
    assert rows["brnpa-t1-analog"].status == "inconclusive" and rows["brnpa-t1-analog"].n == 1
    assert rows["brnpa-t4-active"].unit == "seeds" and rows["brnpa-t4-active"].n == 2
    assert "2 seed(s)" in rows["brnpa-t4-active"].setting
    assert rows["brnpa-hierarchy-1v2"].unit == "test images (seed 0)"
    assert "hierarchical bootstrap" in rows["brnpa-hierarchy-1v2"].note
    assert all(np.isfinite(v) for v in recorder.metrics.values())
    recorder.finish()
    record = runs.read_record(tmp_path)
    assert all(ledger.check_row(row) is None for row in record["claims"])
    table6 = figures.resolution_table(study)
    assert {"normalised sparsity", "sparsity on low-res grid", "cells"} <= set(table6.columns)
    assert "equal cell count (the 2×2 map resampled by area onto the 1×1 grid)" in rows["brnpa-fig4-cnn-sparsity"].claim

"""Chapter 5's pipeline pieces on hand-made inputs, plus one tiny end-to-end run of the pipeline."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnbook import runs
from attnbook.chapters import brnpa
from attnbook.config import ConfigError
from attnbook.data import records as R
from attnbook.methods.bcnn import BCNNHead
from attnbook.methods.brnpa import BRNPAHead
from attnbook.methods.distillation import distillation_loss
from attnbook.models.backbones import build_backbone
from attnbook.train import FEATURES, FeatureDataset


def test_overrides_and_inconsistent_configs_are_refused():
    assert brnpa.CHAPTER.resolve("smoke", 0, n_seeds="3", epochs=2).n_seeds == 3
    with pytest.raises(ConfigError, match="unknown parameter 'lr'"):
        brnpa.CHAPTER.resolve("smoke", 0, lr=0.1)
    with pytest.raises(ValueError, match="lie before train_from"):
        brnpa.BRNPAConfig(train_from="layer4", stride_one=("layer3", "layer4"))
    with pytest.raises(ValueError, match="must include 'brnpa'"):
        brnpa.BRNPAConfig(efficiency_heads=("bcnn",))


def test_make_head_kinds():
    assert isinstance(brnpa.make_head("brnpa", 8, 3, suppression="similarity"), BRNPAHead)
    assert brnpa.make_head("bcnn", 8, 3).materialize and not brnpa.make_head("bcnn_einsum", 8, 3).materialize
    with pytest.raises(ValueError, match="unknown head"):
        brnpa.make_head("vit", 8, 3)


@pytest.mark.parametrize("kind", brnpa.KINDS)
def test_attend_returns_logits_maps_and_feature_norms(kind):
    features = torch.rand(2, 8, 3, 3)
    model = brnpa.StagedModel(nn.Identity(), brnpa.make_head(kind, 8, 4)).eval()
    out = model.attend(features)
    torch.testing.assert_close(out.logits, model(features))
    torch.testing.assert_close(out.norms, features.norm(dim=1))
    assert out.maps.shape == ((2, 1, 3, 3) if kind == "gap" else (2, 3, 3, 3))
    if kind == "gap":
        assert (out.maps == 1).all() and out.positions is None
    if kind == "brnpa":
        torch.testing.assert_close(out.maps.sum(dim=(2, 3)), torch.ones(2, 3))
        assert out.positions.shape == (2, 3)


def test_stride_one_variant_doubles_the_map_and_tails_cut_at_a_stage():
    state = build_backbone("resnet18").state_dict()
    config = brnpa.BRNPAConfig()
    low, high = brnpa.backbone_variant(config, state, False), brnpa.backbone_variant(config, state, True)
    x = torch.rand(1, 3, 64, 64)
    assert low(x).shape[-2:] == (2, 2) and high(x).shape[-2:] == (4, 4)
    tail = brnpa.tail_of(high, "layer4")
    assert [name for name, _ in tail.named_children()] == ["layer4"]
    torch.testing.assert_close(tail(high.features(x, ["layer3"])["layer3"]), high(x))
    assert brnpa.tail_of(high, "stem") is high and isinstance(brnpa.tail_of(high, brnpa.HEAD), nn.Identity)
    assert brnpa.last_convs(tail) == ["layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]


def test_recorded_gradient_norms_are_those_of_the_weights_and_hooks_go_away():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 1))
    with brnpa.record_grad_norms(net, ["0", "2"]) as norms:
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
    mass = brnpa.map_mass(maps, masks)  # [1, maps, regions]
    torch.testing.assert_close(mass, torch.tensor([[[1.0, 1.0], [0.5, 1 / 16]]]))
    torch.testing.assert_close(brnpa.disc_pointing(maps, masks[:, 1]), torch.tensor([[1.0, 1.0]]))


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
        evaluation = brnpa.evaluate(brnpa.StagedModel(nn.Identity(), head), data, ["part"])
        assert evaluation.repeats.tolist() == [repeated, repeated]
        assert evaluation.hits.sum() == 1  # identical inputs, one prediction, two labels
        assert evaluation.regions == (brnpa.OBJECT, brnpa.DISC, "part") and evaluation.map_size == (2, 3)
        # map 1 × norm on a 2×3 map, upsampled to itself: the anchor's share of the weighted mass
        weighted = head.attend(features[:1]).maps[0, 0] * features[0].norm(dim=0)
        assert evaluation.mass[0, 0, 0] == pytest.approx(float(weighted[0, 0] / weighted.sum()), abs=1e-6)


def test_distillation_objective_is_equation_1_on_stored_teacher_logits():
    model = brnpa.StagedModel(nn.Identity(), nn.Flatten())
    batch = {FEATURES: torch.randn(4, 3, 1, 1), brnpa.TEACHER_LOGITS: torch.randn(4, 3),
             R.LABEL: torch.tensor([0, 1, 2, 0])}
    out = brnpa.Distillation(alpha=0.3, temperature=2.0)(model, batch)
    expected = distillation_loss(batch[FEATURES].flatten(1), batch[brnpa.TEACHER_LOGITS], batch[R.LABEL],
                                 alpha=0.3, temperature=2.0)
    torch.testing.assert_close(out.loss, expected)
    pure_ce = brnpa.Distillation(alpha=1.0, temperature=2.0)(model, batch).loss
    torch.testing.assert_close(pure_ce, F.cross_entropy(batch[FEATURES].flatten(1), batch[R.LABEL]))


def test_with_columns_adds_a_row_per_sample():
    data = FeatureDataset({R.LABEL: torch.arange(3)})
    wrapped = brnpa.WithColumns(data, {"extra": torch.tensor([[1.0], [2.0], [3.0]])})
    assert wrapped[2] == {R.LABEL: torch.tensor(2), "extra": torch.tensor([3.0])}
    with pytest.raises(ValueError, match="one row per sample"):
        brnpa.WithColumns(data, {"extra": torch.zeros(2)})


def test_ablation_variants_that_run_the_same_algorithm_share_one_model():
    config = brnpa.BRNPAConfig(activation="squared_norm", suppression="similarity")
    keys = {name: brnpa.variant_key(config, options) for name, (_, options) in brnpa.ABLATIONS.items()}
    assert keys["rules_similarity"] == keys["active_refine"]
    assert len(set(keys.values())) == len(keys) - 1


def test_cost_ratios_and_their_status():
    long = pd.DataFrame([
        {"backbone": "resnet18", "head": "brnpa", "ms_per_step": 10.0, "peak_mib": 100.0, "features": "512×4×4"},
        {"backbone": "resnet18", "head": "bcnn", "ms_per_step": 25.0, "peak_mib": 0.0, "features": "512×4×4"},
        {"backbone": "resnet50", "head": "brnpa", "error": "OOM"},
        {"backbone": "resnet50", "head": "bcnn", "ms_per_step": 5.0, "peak_mib": 1.0, "features": "2048×4×4"},
    ])
    ratios = brnpa.efficiency_ratios(long)
    assert ratios["backbone"].tolist() == ["resnet18"]
    assert ratios["time ratio"].iloc[0] == pytest.approx(2.5) and ratios["memory ratio"].iloc[0] == 0
    assert brnpa.efficiency_metrics(ratios) == {"efficiency/time_ratio_bcnn_over_brnpa_resnet18": 2.5,
                                                "efficiency/memory_ratio_bcnn_over_brnpa_resnet18": 0.0}
    assert brnpa._all_above_one([1.5, 2.0]) == "reproduced"
    assert brnpa._all_above_one([0.5, float("nan")]) == "not reproduced"
    assert brnpa._all_above_one([0.5, 2.0]) == brnpa._all_above_one([]) == "inconclusive"


def test_gradient_variance_ratio_is_a_geometric_mean_over_seeds_and_layers():
    study = brnpa.ResolutionStudy({}, {("brnpa", 0): {"a": [1.0, 2.0, 3.0], "b": [1.0, 1.0, 4.0]},
                                       ("bcnn", 0): {"a": [2.0, 4.0, 6.0], "b": [2.0, 2.0, 8.0]}}, {})
    table = brnpa.grad_variance_table(study)
    assert table.loc[(table.kind == "brnpa") & (table.layer == "a"), "variance"].item() == pytest.approx(1.0)
    metrics = brnpa.grad_metrics(table)
    assert metrics["fig8/grad_var_ratio_bcnn_over_brnpa"] == pytest.approx(4.0)  # doubled norms
    assert metrics["fig8/grad_cv_ratio_bcnn_over_brnpa"] == pytest.approx(1.0)


def test_step_cost_in_process():
    spec = brnpa.StepCost("resnet18", "bcnn", image_size=32, batch_size=2, steps=1, warmup=0, threads=2,
                          num_classes=3)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    cost = brnpa.step_cost(spec)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert cost["ms_per_step"] > 0 and cost["features"] == "512×1×1"
    assert cost["head_params_m"] == pytest.approx(sum(p.numel() for p in BCNNHead(512, 3).parameters()) / 1e6)


def test_tiny_pipeline_end_to_end(tmp_path):
    """Every stage on a 2-class benchmark at 32 px: a ledger with computed statuses and a valid record."""
    config = brnpa.CHAPTER.resolve("smoke", 0).__class__(
        profile="smoke", resolution=32, num_classes=2, train_per_class=4, test_per_class=2, pretrain_epochs=0,
        epochs=1, ablation_epochs=1, n_seeds=1, batch_size=4, n_explain=2, n_localize=2)
    task = brnpa.load_task(config)
    state = brnpa.pretrain(config, task).backbone.state_dict()
    inputs = brnpa.prepare_inputs(config, state, task, config.train_from)
    assert inputs.cut == "layer3" and inputs.train[0][FEATURES].shape == (256, 2, 2)
    study = brnpa.resolution_study(config, state, inputs, task)
    assert set(study.evaluations) == {(k, r, 0) for k in brnpa.KINDS for r in brnpa.RESOLUTIONS}
    assert study.evaluations["brnpa", "high", 0].map_size == (2, 2)  # 32 px: layer4 1×1 → 2×2
    ablations = brnpa.ablation_study(config, state, task)
    table5 = brnpa.subset_table(ablations["active_refine"])
    assert table5["vectors"].tolist() == ["{1, 2, 3}", "{1, 2}", "{2, 3}", "{1}", "{2}", "{3}"]
    examples = brnpa.explain_examples(inputs, study, task, n=2)
    assert set(examples.heat) == set(brnpa.POST_HOC) and examples.rgb["BR-NPA"].shape == (2, 3, 32, 32)
    assert len(brnpa.localization_table(examples)) == len(brnpa.POST_HOC) + 3
    recorder = runs.start("05_brnpa", run_dir=tmp_path, profile="smoke", seed=0, params={})
    ratios = brnpa.efficiency_ratios(pd.DataFrame([
        {"backbone": "resnet18", "head": h, "ms_per_step": t, "peak_mib": 1.0, "features": "512×1×1"}
        for h, t in (("brnpa", 1.0), ("bcnn", 2.0))]))
    grad_table = brnpa.grad_variance_table(study)
    assert (grad_table["steps"] == 2).all()
    for numbers in (brnpa.resolution_metrics(study), brnpa.ablation_metrics(ablations),
                    brnpa.hierarchy_metrics(study), brnpa.grad_metrics(grad_table)):
        recorder.log_many(numbers)
    brnpa.record_claims(recorder, config, task, {task.name: study}, ablations, grad_table, ratios)
    ids = [c.id for c in recorder.claims]
    assert {"brnpa-t1-analog", "brnpa-t1-cub", "brnpa-t2-reid", "brnpa-t4-active", "brnpa-t5-rank12",
            "brnpa-t6-sparsity-brnpa", "brnpa-fig8", "brnpa-fig9-time", "brnpa-hierarchy-1v2"} <= set(ids)
    statuses = {c.id: c.status for c in recorder.claims}
    assert statuses["brnpa-t1-cub"] == "not run" and statuses["brnpa-fig9-time"] == "reproduced"
    assert all(np.isfinite(v) for v in recorder.metrics.values())
    recorder.finish()
    assert runs.read_record(tmp_path)["claims"]

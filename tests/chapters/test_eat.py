"""Chapter 1's pieces on hand-made inputs (the smoke run of the notebook covers the rest)."""
import numpy as np
import pandas as pd
import pytest
import torch

from attnbook.chapters.eat import claims, evaluation, pipeline
from attnbook.chapters.eat import config as eat_config
from attnbook.chapters.eat.data import EATTask, explained_indices, first_records
from attnbook.config import ConfigError, resolve
from attnbook.data.synthetic import make_benchmark, spec_for
from attnbook.ledger import check_row
from attnbook.runs import RunRecorder


@pytest.fixture(scope="module")
def bench():
    return make_benchmark(spec_for("fine_grained", num_classes=4, train_per_class=2, test_per_class=2, resolution=32))


@pytest.fixture(scope="module")
def task(bench):
    return EATTask("synthetic", bench.train, {"test_aligned": bench.test_aligned}, bench.class_attributes,
                   bench.confusers, bench.info, bench.spec.key())


def test_explanation_hits_follow_the_class_attribute_matrix(bench, task):
    attrs = bench.class_attributes.bool()
    c, partner = 0, int(bench.confusers[0])
    own = attrs[c].nonzero()[:, 0]
    disc = (attrs[c] & ~attrs[partner]).nonzero()[:, 0]
    absent = (~attrs[c]).nonzero()[:, 0]
    assert len(disc) == 1, "confusable classes differ in one attribute slot"
    top = torch.stack([torch.stack([own[0], absent[0], absent[1]]),  # a true attribute, not the separating one
                       torch.stack([disc[0], absent[0], absent[1]]),  # the separating attribute
                       absent[:3]])  # nothing the class has
    hits = evaluation.explanation_hits(top, torch.tensor([c, c, c]), task)
    expected_disc = [bool(own[0] == disc[0]), True, False]
    assert hits["true"].tolist() == [True, True, False] and hits["disc"].tolist() == expected_disc
    unknown = EATTask("real", bench.train, {}, bench.class_attributes, torch.full_like(bench.confusers, -1),
                      bench.info, "k")  # real data names no confusers: no "disc" hits
    assert set(evaluation.explanation_hits(top, torch.tensor([c, c, c]), unknown)) == {"true"}


def test_far_summaries_three_ways():
    ev = evaluation.Evaluation(accuracy={}, attribute_accuracy=0.0,
                               far={"s": torch.tensor([1.0, 3.0, float("nan"), 8.0])},
                               pi={"s": torch.tensor([[0.2, 0.1], [0.6, 0.1]])}, disc_mass={},
                               pi_block3={"s": torch.tensor([[0.1, 0.1], [0.1, 0.1]])})
    out = evaluation.far_summaries(ev, "s")
    assert out["median"] == pytest.approx(3.0) and out["mean"] == pytest.approx(4.0)
    assert out["ratio_of_means"] == pytest.approx(0.4 / 0.1) and out["block3"] == pytest.approx(1.0)


def test_object_background_is_eq14_on_max_normalised_maps():
    maps = torch.tensor([[[2.0, 1.0], [0.0, 0.0]]])  # max 2 -> [[1, .5], [0, 0]]
    masks = torch.tensor([[[1, 0], [0, 0]]], dtype=torch.bool)
    pi = evaluation.object_background(maps, masks)
    assert pi.tolist() == [[1.0, pytest.approx(0.5 / 3)]]


def test_far_ratio_is_the_geometric_mean_ratio_with_a_ci():
    table = pd.DataFrame([{"model": m, "seed": s, "far": v} for m, vals in (("base", (1.0, 2.0, 4.0)),
                                                                             ("eat", (2.0, 2.0, 16.0)))
                          for s, v in enumerate(vals)])
    ratio, (low, high) = claims.far_ratio(table, "far")
    assert ratio == pytest.approx((2 * 1 * 4) ** (1 / 3)) and low < ratio < high


def test_ablations_change_only_their_choice():
    config = eat_config.PROFILES["cpu"]
    assert pipeline.head_settings(config, "base") == (None, 1.0, 0.0, 0.0)
    assert pipeline.head_settings(config, "aux") == (None, 1.0, 0.0, config.attribute_weight)
    assert pipeline.head_settings(config, "lam0.5_eta1.5") == (config.integrator, 0.5, 1.5, config.attribute_weight)
    assert pipeline.model_kinds(config) == ("base", "eat", *eat_config.ABLATIONS)
    with pytest.raises(ConfigError, match="'nope' is not one of"):
        resolve(eat_config.PROFILES, "cpu", {"ablations": ("aux", "nope")}, allowed=("ablations",))


def test_ablation_table_is_paired_over_seeds():
    rows = [{"model": m, "seed": s, **{c: base + d * s for c in claims.ABLATION_METRICS}}
            for m, base, d in (("eat", 0.5, 0.01), ("aux", 0.6, 0.02)) for s in range(4)]
    out = claims.ablation_table(pd.DataFrame(rows))
    assert set(out.variant) == {"aux"} and len(out) == len(claims.ABLATION_METRICS)
    assert out.difference.to_numpy() == pytest.approx([0.1 + 0.015] * len(out))
    assert claims.ablation_table(pd.DataFrame(rows[:4])).empty


def test_majority_attribute_accuracy_is_a_floor(task):
    floor = evaluation.majority_attribute_accuracy(task)
    assert 0.5 <= floor < 1


def test_models_build_and_base_has_no_integrator(bench):
    config = eat_config.PROFILES["smoke"]
    base = pipeline.build_model(config, "base", 4, len(bench.info.attribute_names))
    eat = pipeline.build_model(config, "eat", 4, len(bench.info.attribute_names))
    assert base.head.g_i is None and eat.head.g_i is not None
    x = bench.test_aligned.tensors["image"][:2]
    assert base(x).shape == eat(x).shape == (2, 4)
    with pytest.raises(ValueError, match="unknown model"):
        pipeline.build_model(config, "gap", 4, 3)


def test_every_paper_number_has_a_row_and_rows_keep_the_rules(tmp_path):
    recorder = RunRecorder(notebook="01_eat", run_dir=tmp_path, params={}, profile="smoke", seed=0, config={},
                           device="cpu")
    rows = []
    for kind, shift in (("base", 0.0), ("eat", 0.1)):
        for s in range(4):
            rows.append({"model": kind, "seed": s, "acc_test_aligned": 0.5 + shift + (0.01 + shift / 20) * s,
                         "acc_test_conflicting": 0.2 + shift - 0.01 * s, "attr_acc": 0.9 + 0.01 * s,
                         "far_ratio_of_means_test_aligned": 1.5 + shift * s,
                         "far_ratio_of_means_test_conflicting": 1.2 + shift * s,
                         **{f"{n}_{k}_hit": 0.2 + 0.1 * s for n in ("ear", "random") for k in ("true", "disc")}})
    claims.record_claims(recorder, pd.DataFrame(rows), eat_config.PROFILES["smoke"], majority=0.8)
    ids = [c.id for c in recorder.claims]
    assert sum(len(v) for t in (claims.TABLE_II, claims.TABLE_III, claims.TABLE_IV) for v in t.values()) == 33
    assert len(ids) == len(set(ids)) == 33 + 1 + 7  # + SUN's FAR row ("not run": no masks)
    assert all(check_row(vars(c)) is None for c in recorder.claims)
    status = {c.id: c.status for c in recorder.claims}
    assert status["eat-table2-analog-test_aligned"] == "reproduced"  # +0.1 … +0.115: paired t
    assert status["eat-ear-true"] == "inconclusive"  # identical hit rates
    assert status["eat-table2-sun-resnet18"] == status["eat-table4-sun"] == "not run"


def test_sun_rows_are_measured_when_the_paper_profile_reads_it(tmp_path):
    recorder = RunRecorder(notebook="01_eat", run_dir=tmp_path, params={}, profile="paper", seed=0, config={},
                           device="cpu")
    config = eat_config.PROFILES["paper"]
    cub = pd.DataFrame([{"model": m, "seed": s, "acc_test": 0.5 + 0.1 * (m == "eat") + 0.01 * s * (m == "eat"),
                         "attr_acc": 0.9, "far_ratio_of_means_test": 2.0 + s}
                        for m in ("base", "eat") for s in range(6)])
    sun = cub.drop(columns="far_ratio_of_means_test")  # no masks: no FAR columns
    claims.record_other_data(recorder, config, {"sun_attributes": 0.25}, {"sun_attributes": (sun, 0.8)})
    claims.record_claims(recorder, cub, config, majority=0.8, others={"sun_attributes": (sun, 0.8)})
    rows = {c.id: c for c in recorder.claims}
    assert rows["eat-table2-sun-resnet18"].status == "reproduced" and rows["eat-table3-sun-resnet18"].ours == \
        "0.900 vs 0.800"
    assert rows["eat-table2-sun-resnet50"].note.startswith("this run measures ResNet18; the paper profile measures")
    assert rows["eat-table2-cub-pnasnet5"].note.startswith("PNASNet-5 is not in torchvision")
    assert "eat-table4-sun-resnet18" not in rows and rows["eat-table4-sun"].status == "not run"
    assert rows["eat-table2-sun-resnet18"].setting.startswith("SUN attributes (224 px")
    assert recorder.metrics["sun/accuracy/eat"] == pytest.approx(0.625) and recorder.metrics["sun/n_seeds"] == 6
    assert recorder.texts["sun/summary"].startswith("Over 6 training seeds the base model reaches 50.0%")


def test_a_paper_run_measures_the_column_of_its_backbone(tmp_path):
    from dataclasses import replace

    config = replace(eat_config.PROFILES["paper"], arch="alexnet")
    assert eat_config.measured_backbone(config) == "AlexNet" and eat_config.measured_backbone(
        eat_config.PROFILES["cpu"]) is None
    assert pipeline.gradcam_layers(config) == {"block3": "trunk.conv4", "block4": "trunk.conv5"}
    recorder = RunRecorder(notebook="01_eat", run_dir=tmp_path, params={}, profile="paper", seed=0, config={},
                           device="cpu")
    cub = pd.DataFrame([{"model": m, "seed": s, "acc_test": 0.5 + 0.01 * s, "attr_acc": 0.9,
                         "far_ratio_of_means_test": 2.0} for m in ("base", "eat") for s in range(3)])
    claims.record_claims(recorder, cub, config, majority=0.8, others={"sun_attributes": (cub, 0.8)})
    status = {c.id: c.status for c in recorder.claims}
    assert status["eat-table2-cub-alexnet"] != "not run" and status["eat-table2-sun-alexnet"] != "not run"
    assert status["eat-table4-cub-alexnet"] != "not run" and status["eat-table2-cub-resnet18"] == "not run"
    claims.record_published(recorder, config)
    assert recorder.texts["paper/backbone"] == "AlexNet" and recorder.metrics["paper/sun/accuracy/base"] == 37.97


def test_mild_bias_rows_pair_eat_with_base_over_seeds(tmp_path):
    recorder = RunRecorder(notebook="01_eat", run_dir=tmp_path, params={}, profile="cpu", seed=0, config={},
                           device="cpu")
    config = eat_config.PROFILES["cpu"]
    noise = [0.01, -0.02, 0.0, 0.02, -0.01, 0.015]
    rows = [{"model": m, "seed": s, "acc_test_aligned": 0.8 + noise[s], "acc_test_conflicting": c + noise[s] / 2,
             "far_ratio_of_means_test_aligned": 1.5 + noise[s], "far_ratio_of_means_test_conflicting": 1.2}
            for m, c in (("base", 0.3), ("eat", 0.4)) for s in range(6)]
    summary = claims.record_mild(recorder, pd.DataFrame(rows), config, num_classes=10)
    by = summary.set_index("column")
    assert by.loc["acc_test_conflicting", "EAT − base"] == pytest.approx(0.1)
    assert by.loc["bias_gap", "EAT − base"] == pytest.approx(-0.1) and by.loc["bias_gap", "seeds"] == 6
    status = {c.id: c.status for c in recorder.claims}
    assert status["eat-mild-acc-test-conflicting"] == status["eat-mild-bias-gap"] == "reproduced"
    assert status["eat-mild-acc-test-aligned"] == "inconclusive"  # identical per seed: every unit ties
    assert recorder.metrics["mild/chance"] == pytest.approx(0.1) and recorder.metrics["mild/p_bias"] == 0.5
    assert all(check_row(vars(c)) is None for c in recorder.claims)
    empty = RunRecorder(notebook="01_eat", run_dir=tmp_path / "e", params={}, profile="paper", seed=0, config={},
                        device="cpu")
    assert claims.record_mild(empty, pd.DataFrame(), eat_config.PROFILES["paper"], 200).empty
    assert {c.status for c in empty.claims} == {"not run"} and len(empty.claims) == len(claims.MILD_METRICS)


def test_mild_bias_task_is_the_same_testbed_with_another_p_bias():
    from attnbook.chapters.eat.data import make_data, mild_bias_task

    config = eat_config.PROFILES["smoke"]
    main, mild = make_data(config), mild_bias_task(config)
    assert mild.name == "mild_bias" and mild.key != main.key
    assert torch.equal(mild.class_attributes, main.class_attributes) and mild.has_masks
    for split in main.splits:  # the same test objects: only the training split's habitats change
        assert torch.equal(mild.splits[split].tensors["image"], main.splits[split].tensors["image"])
    aligned = mild.train.tensors["bias_aligned"].float().mean()
    assert aligned < main.train.tensors["bias_aligned"].float().mean()
    assert mild_bias_task(eat_config.PROFILES["paper"]) is None


def test_overrides_are_validated_and_the_config_mirrors_the_library():
    from attnbook.methods.eat import INTEGRATORS

    assert eat_config.INTEGRATORS == INTEGRATORS
    with pytest.raises(ConfigError, match="unknown parameter 'lr'"):
        eat_config.CHAPTER.resolve("smoke", 0, lr=0.1)
    assert eat_config.CHAPTER.resolve("smoke", 1, n_seeds="3").n_seeds == 3
    assert pipeline.seeds(eat_config.CHAPTER.resolve("smoke", 5)) == [5, 6]


def test_first_records_stacks_any_dataset_like_the_synthetic_slices(bench):
    split = bench.test_aligned

    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return len(split)

        def __getitem__(self, i):
            return split[i]

    fast, slow = first_records(split, 3), first_records(Plain(), 3)
    spread = explained_indices(Plain(), 3)  # a real data set (files sorted by class): evenly spaced images
    assert len(split) == 8 and spread.tolist() == [0, 4, 7] and explained_indices(split, 3).tolist() == [0, 1, 2]
    assert set(fast) == set(slow) and all(torch.equal(fast[k], split.tensors[k][:3]) for k in fast)
    assert all(torch.equal(slow[k], split.tensors[k][spread]) for k in slow)
    assert len(first_records(Plain(), 10 ** 6)["label"]) == len(split)


def test_majority_floor_is_taken_on_the_scored_images(task):
    labels = task.splits["test_aligned"].tensors["label"][:3]
    p = task.class_attributes[labels].mean(0)
    assert evaluation.majority_attribute_accuracy(task, 3) == pytest.approx(float(torch.maximum(p, 1 - p).mean()))


def test_disc_mass_confidence_baseline_and_wrong_prediction_rows(tmp_path):
    recorder = RunRecorder(notebook="01_eat", run_dir=tmp_path, params={}, profile="cpu", seed=0, config={},
                           device="cpu")
    nan = float("nan")
    rows = []
    for kind, shift in (("base", 0.0), ("eat", 0.2)):
        for s in range(6):
            rows.append({"model": kind, "seed": s, "acc_test_aligned": 0.8, "attr_acc": 0.9,
                         "disc_mass_test_aligned": 0.1 + shift + 0.01 * s,
                         "ear_true_hit": 0.9, "random_true_hit": 0.3 + 0.01 * s, "confidence_true_hit": 0.9,
                         "wrong_shared_ear": nan if s < 2 else 0.6 + 0.05 * s,  # seeds 0, 1: no wrong prediction
                         "wrong_shared_random": nan if s < 2 else 0.2 + 0.02 * s})
    claims.record_claims(recorder, pd.DataFrame(rows), eat_config.PROFILES["cpu"], majority=0.8)
    by_id = {c.id: c for c in recorder.claims}
    assert by_id["eat-disc-mass"].status == "reproduced" and by_id["eat-disc-mass"].effect == pytest.approx(0.2)
    assert by_id["eat-ear-true"].status == "reproduced"
    assert by_id["eat-ear-true-vs-confidence"].status == "inconclusive"  # the same hit rate on every seed
    wrong = by_id["eat-ear-wrong-shared"]
    assert wrong.n == 4 and wrong.effect == pytest.approx(np.mean([0.4 + 0.03 * s for s in range(2, 6)]))
    assert all(check_row(vars(c)) is None for c in recorder.claims)

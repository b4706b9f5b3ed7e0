"""Chapter 1's pieces on hand-made inputs (the smoke run of the notebook covers the rest)."""
import pandas as pd
import pytest
import torch

from attnbook.chapters.eat import claims, evaluation, pipeline
from attnbook.chapters.eat import config as eat_config
from attnbook.chapters.eat.data import EATTask, first_records
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
    assert len(ids) == len(set(ids)) == 33 + 7
    assert all(check_row(vars(c)) is None for c in recorder.claims)
    status = {c.id: c.status for c in recorder.claims}
    assert status["eat-table2-analog-test_aligned"] == "reproduced"  # +0.1 … +0.115: paired t
    assert status["eat-ear-true"] == "inconclusive"  # identical hit rates


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
    assert set(fast) == set(slow) and all(torch.equal(fast[k], slow[k]) for k in fast)
    assert len(first_records(Plain(), 10 ** 6)["label"]) == len(split)

"""Chapter 1's pieces on hand-made inputs (the smoke run of the notebook covers the rest)."""
import pandas as pd
import pytest
import torch

from attnbook.chapters.eat import claims, evaluation, pipeline
from attnbook.chapters.eat import config as eat_config
from attnbook.config import ConfigError
from attnbook.data.synthetic import make_benchmark, spec_for
from attnbook.ledger import check_row
from attnbook.runs import RunRecorder


@pytest.fixture(scope="module")
def bench():
    return make_benchmark(spec_for("fine_grained", num_classes=4, train_per_class=2, test_per_class=2, resolution=32))


def test_explanation_hits_follow_the_class_attribute_matrix(bench):
    attrs = bench.class_attributes.bool()
    c, partner = 0, int(bench.confusers[0])
    own = attrs[c].nonzero()[:, 0]
    disc = (attrs[c] & ~attrs[partner]).nonzero()[:, 0]
    absent = (~attrs[c]).nonzero()[:, 0]
    assert len(disc) == 1, "confusable classes differ in one attribute slot"
    top = torch.stack([torch.stack([own[0], absent[0], absent[1]]),  # a true attribute, not the separating one
                       torch.stack([disc[0], absent[0], absent[1]]),  # the separating attribute
                       absent[:3]])  # nothing the class has
    hits = evaluation.explanation_hits(top, torch.tensor([c, c, c]), bench)
    expected_disc = [bool(own[0] == disc[0]), True, False]
    assert hits["true"].tolist() == [True, True, False] and hits["disc"].tolist() == expected_disc


def test_far_summaries_three_ways():
    ev = evaluation.Evaluation(accuracy={}, attribute_accuracy=0.0,
                               far={"s": torch.tensor([1.0, 3.0, float("nan"), 8.0])},
                               pi={"s": torch.tensor([[0.2, 0.1], [0.6, 0.1]])}, disc_mass={})
    out = evaluation.far_summaries(ev, "s")
    assert out["median"] == pytest.approx(3.0) and out["mean"] == pytest.approx(4.0)
    assert out["ratio_of_means"] == pytest.approx(0.4 / 0.1)


def test_majority_attribute_accuracy_is_a_floor(bench):
    floor = evaluation.majority_attribute_accuracy(bench)
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
                         **{f"{n}_{k}_hit": 0.2 + 0.1 * s for n in ("ear", "random") for k in ("true", "disc")}})
    claims.record_claims(recorder, pd.DataFrame(rows), eat_config.PROFILES["smoke"], majority=0.8)
    ids = [c.id for c in recorder.claims]
    assert sum(len(v) for t in (claims.TABLE_II, claims.TABLE_III, claims.TABLE_IV) for v in t.values()) == 33
    assert len(ids) == len(set(ids)) == 33 + 6
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

"""Chapter 4 (BLA): the pipeline's pieces on hand-sized inputs, and the whole pipeline at smoke scale."""
import dataclasses
import math
import subprocess
import sys

import matplotlib
import pandas as pd
import pytest
import torch

from attnbook import ledger, runs, stats
from attnbook.chapters.bla import claims, digits, faithfulness, figures, heads, tasks
from attnbook.chapters.bla import config as blacfg
from attnbook.config import ConfigError, RequirementError
from attnbook.data import records as R
from attnbook.data.digits import Digits
from attnbook.data.synthetic import spec_for
from attnbook.metrics import cell_fractions
from attnbook.models.heads import GAPHead
from attnbook.train import FEATURES, FeatureDataset

matplotlib.use("Agg")


# --- config and plan ------------------------------------------------------------------------------------

def test_profiles_and_overrides():
    assert blacfg.CHAPTER.notebook_parameters == ("profile", "seed", "run_dir", "n_seeds", "epochs_override",
                                                  "method")
    for profile in blacfg.PROFILES:
        blacfg.CHAPTER.resolve(profile, 0)
    config = blacfg.CHAPTER.resolve("cpu", 3, n_seeds="4", epochs_override="2", method="bla_t")
    assert blacfg.seeds(config) == (3, 4, 5, 6)
    assert blacfg.variants(config) == ("bl", "bla_t")
    assert blacfg.head_names(config) == ("bl", "bla_t", blacfg.CODE_THRESHOLD)
    assert blacfg.digits_models(config) == ("bl", "bla_t", blacfg.TEXT_GAMMA)
    assert blacfg.epochs_for(config, 30) == 2 and blacfg.epochs_for(blacfg.CHAPTER.resolve("cpu", 0), 30) == 30
    only_bla = blacfg.CHAPTER.resolve("cpu", 0, method="bla")
    assert blacfg.head_names(only_bla) == ("bl", "bla") and blacfg.digits_models(only_bla) == ("bl",)
    assert blacfg.variants(blacfg.CHAPTER.resolve("cpu", 0)) == ("bl", "l2x_f", "bla", "bla_t", "bla_ph")
    with pytest.raises(ConfigError, match="method"):
        blacfg.CHAPTER.resolve("cpu", 0, method="gradcam")
    with pytest.raises(ValueError, match="head_epochs"):
        dataclasses.replace(blacfg.PROFILES["cpu"], head_epochs=(1, 2))
    with pytest.raises(ValueError, match="analog_train"):
        dataclasses.replace(blacfg.PROFILES["cpu"], analog_train=(10, 0, 10))
    with pytest.raises(ValueError, match="bl_band"):
        dataclasses.replace(blacfg.PROFILES["cpu"], bl_band=(0.9, 0.8))


def test_analogs_are_built_from_their_calibrated_designs():
    config = blacfg.PROFILES["cpu"]
    a, b, c = (tasks.analog_spec(d, config) for d in blacfg.DATASETS_42)
    assert (a.num_classes, a.confusable_pairs, len(a.parts), a.noise) == (2, True, 4, 0.2)
    assert (a.train_per_class, a.test_per_class, a.resolution) == (config.analog_train[0], config.analog_test[0], 112)
    assert b.parts == spec_for("many_class").parts and c.parts == ("head", "body", "wing")
    assert all(s.p_bias == 1 / s.num_habitats for s in (a, b, c))  # unbiased: the class is only on the object
    assert tasks.describe_analog(a).startswith("2 classes on 4 parts (head, body, wing, tail): one confusable pair "
                                               "differing only in the wing ")
    assert "8 confusable pairs" in tasks.describe_analog(c) and "beak" not in tasks.describe_analog(c)
    assert "several attributes" in tasks.describe_analog(b)


def test_config_is_torch_free_and_mirrors_the_library_names():
    """``attnbook list`` imports the config: no torch, numpy, pandas or matplotlib; its mirrored names agree."""
    code = ("import sys, attnbook.chapters.bla.config; "
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'matplotlib') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    from attnbook.methods.bla import BLA_VARIANTS
    from attnbook.models.backbones import BACKBONES

    assert blacfg.VARIANTS == tuple(BLA_VARIANTS) and blacfg.BACKBONES == tuple(BACKBONES)
    assert set(blacfg.EXPLANATION_HEADS) == set(blacfg.ALL_HEADS) - {"bl"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_paper_profile_refuses_without_gpu_and_data():
    with pytest.raises(RequirementError, match="GPU"):
        blacfg.CHAPTER.configure("paper", 0)
    assert set(blacfg.PROFILES["paper"].datasets) == {"mnist", "cats_vs_dogs", "stanford_dogs", "cub"}


# --- §4.1 ----------------------------------------------------------------------------------------------

def test_sigmoid_bce_is_the_binary_cross_entropy():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
        model.bias.zero_()
    batch = {R.IMAGE: torch.tensor([[1.0, 0.0], [0.0, 1.0]]), R.LABEL: torch.tensor([1, 0])}
    out = digits.sigmoid_bce(model, batch)  # logits 1 and -2
    expected = -(math.log(1 / (1 + math.exp(-1))) + math.log(1 - 1 / (1 + math.exp(2)))) / 2
    assert out.loss.item() == pytest.approx(expected) and out.logits.shape == (2, 1)


def test_text_gamma_zeroes_a_uniform_q_the_code_gamma_keeps_it():
    config = blacfg.PROFILES["smoke"]
    at_bound = torch.zeros(1, 7, 7)  # every logit at the bound → q uniform = 1/49
    code = digits.digits_model("bla_t", config, side=7).head
    text = digits.digits_model(blacfg.TEXT_GAMMA, config, side=7).head
    assert code.gamma_for(49) == pytest.approx(0.98 / 49) and text.gamma_for(49) == pytest.approx(1 / 49)
    torch.testing.assert_close(code.soft_weights(at_bound), torch.full((1, 7, 7), 1 / 49))
    assert text.soft_weights(at_bound).sum() == 0  # nothing pooled: no gradient, the run cannot learn
    assert digits.digits_model("bl", config, side=7).head.__class__ is GAPHead
    with pytest.raises(ValueError, match="unknown 3-vs-8 model"):
        digits.digits_model("l2x", config, side=7)


def test_digits_summary_and_test():
    scores = pd.DataFrame({"seed": [0, 1, 0, 1], "model": ["bl", "bl", "bla_t", "bla_t"],
                           "acc": [0.9, 1.0, 0.5, 0.6], "loss": [0.1, 0.2, 0.7, 0.6], "collapsed": [0, 0, 1, 0]})
    summary = figures.digits_summary(scores).set_index("model")
    assert summary.loc["BL", "accuracy"] == stats.format_mean_se([0.9, 1.0])
    assert summary.loc["BLA-T", "collapsed runs"] == 1
    result = digits.digits_test(scores)  # independent runs: unpaired, the paper's Mann-Whitney U, with a TOST
    assert result.test == "Mann-Whitney U" and result.design == "unpaired" and result.n == 4
    assert result.effect == pytest.approx(-0.4) and result.margin == blacfg.ACC_MARGIN  # Hodges–Lehmann shift
    report = digits.digits_report(digits.DigitsResults(scores, {}))
    assert report["bl/acc"] == pytest.approx(0.95) and report["p"] == result.p_value
    assert report["p_equivalence"] == result.p_equivalence and report["bla_t_text/collapsed"] == 0
    only_bl = digits.DigitsResults(scores[scores.model == "bl"], {})
    assert digits.digits_test(only_bl.scores) is None and math.isnan(digits.digits_report(only_bl)["p"])


# --- ground truth per cell ------------------------------------------------------------------------------

def test_cell_fractions_hand_example():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True
    mask[0, 2, 3] = True
    torch.testing.assert_close(cell_fractions(mask, 2), torch.tensor([[[1.0, 0.0], [0.0, 0.25]]]))


def test_thresholded_cam_hand_example():
    base = GAPHead(2, 2)
    with torch.no_grad():
        base.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    features = torch.tensor([[[[4.0, 1.0], [2.0, 0.0]], [[0.0, 3.0], [3.0, 3.0]]]])  # [1, 2, 2, 2]
    assert torch.equal(heads.thresholded_cam(base, features, torch.tensor([0]), 0.5),
                       torch.tensor([[[True, False], [True, False]]]))  # channel 0: cells ≥ 2
    assert torch.equal(heads.thresholded_cam(base, features, torch.tensor([1]), 0.5),
                       torch.tensor([[[False, True], [True, True]]]))  # channel 1: cells ≥ 1.5


def _task_with_truth() -> tasks.HeadTask:
    object_cells = torch.tensor([[[1.0, 0.5], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    disc_cells = torch.tensor([[[0.25, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])  # image 1 has none
    features = FeatureDataset({FEATURES: torch.zeros(2, 1, 2, 2), R.LABEL: torch.tensor([0, 1])})
    return tasks.HeadTask(key="C", title="test", design="hand-made", class_names=("a", "b"), epochs=1, train=features,
                          test=features, shown=torch.tensor([0]), images=torch.zeros(1, 3, 4, 4),
                          object_cells=object_cells, disc_cells=disc_cells, object_area=torch.tensor([0.375, 0.25]))


def test_explanation_scores_hand_example():
    hard = torch.tensor([[[True, True], [False, False]], [[True, False], [False, True]]])
    scores = heads.explanation_scores(hard, _task_with_truth())
    torch.testing.assert_close(scores["size"], torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(scores["object_precision"], torch.tensor([0.75, 0.5]))
    assert scores["disc_recall"][0] == 1.0 and torch.isnan(scores["disc_recall"][1])


# --- Table 1 --------------------------------------------------------------------------------------------

def test_table1_marks_and_layout():
    rows = []
    for seed in range(6):
        for head, acc in (("bl", 0.90 + 0.001 * seed), ("l2x_f", 0.50 + 0.01 * seed), ("bla", 0.90 + 0.001 * seed),
                          ("bla_t", 0.95 + 0.002 * seed), ("bla_ph", 0.95 + 0.002 * seed)):
            rows.append({"task": "A", "seed": seed, "head": head, "acc": acc, "loss": 1 - acc})
    scores = pd.DataFrame(rows)
    table = figures.table1(scores)
    assert list(table.columns) == ["BL", "L2X-F", "BLA", "BLA-T", "BLA-PH"]
    assert list(table.index) == ["Accuracy A", "Loss A"]
    mean, se = stats.mean_se([0.90 + 0.001 * s for s in range(6)])
    assert table.loc["Accuracy A", "BL"] == f"{mean:.4f} ± {100 * se:.2f}"
    assert "†" not in table.loc["Accuracy A", "L2X-F"]  # all 6 seeds lower: significant
    assert table.loc["Accuracy A", "BLA"].startswith(f"{mean:.4f}†")  # equal to BL, differs from L2X-F (no ∗)
    assert "∗" not in table.loc["Accuracy A", "BLA"]
    assert "∗" in table.loc["Accuracy A", "BLA-PH"] and "†" not in table.loc["Accuracy A", "BLA-PH"]
    result = heads.paired_seeds(scores, "A", "bl", "l2x_f", "acc")
    assert result.test == "Wilcoxon signed-rank" and result.unit == "seeds" and result.n == 6
    assert result.effect == pytest.approx(-0.4 + 0.009 * 2.5) and result.p_value < 0.05  # Hodges–Lehmann: symmetric d
    assert heads.paired_seeds(scores, "A", "bl", "missing", "acc") is None
    assert heads.paired_seeds(scores, "A", "bla_t", "bla_ph", "acc", margin=0.01).p_equivalence is not None


# --- the pipeline at smoke scale -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The chapter's calls in the notebook's order, on the smoke profile (3×3 maps, 2 seeds)."""
    config = blacfg.CHAPTER.configure("smoke", 0)
    cache = tmp_path_factory.mktemp("cache")
    backbone, info = tasks.pretrain_backbone(config, cache)
    head_tasks = tasks.make_tasks(config, backbone)
    results = [heads.run_task(task, config) for task in head_tasks]
    faith = faithfulness.measure(config, backbone, results)
    return dict(config=config, cache=cache, backbone=backbone, info=info, tasks=head_tasks, results=results,
                faith=faith)


def test_backbone_is_frozen_and_cached(pipeline):
    backbone, config = pipeline["backbone"], pipeline["config"]
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.training
    files = list(pipeline["cache"].glob("bla-pretext-*.pt"))
    assert len(files) == 1 and pipeline["info"]["train_images"] == 16
    again, info = tasks.pretrain_backbone(config, pipeline["cache"])  # loaded, not retrained
    assert info == pipeline["info"]
    for a, b in zip(backbone.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_tasks_hold_features_and_cell_truth(pipeline):
    config = pipeline["config"]
    for task in pipeline["tasks"]:
        grid = config.resolution // 16  # layer4 at stride 1: output stride 16
        assert task.test.tensors[FEATURES].shape[1:] == (512, grid, grid)
        assert task.object_cells.shape == (len(task.test), grid, grid) and task.object_cells.max() <= 1
        assert len(task.images) == len(task.shown) == 2 and task.shown[-1] == len(task.test) - 1
        assert task.epochs == 1


def test_heads_start_from_bl_and_bla_ph_keeps_it(pipeline):
    result = pipeline["results"][2]
    trained = result.heads
    assert set(trained) == {"bl", "l2x_f", "bla", "bla_t", "bla_ph", blacfg.CODE_THRESHOLD}
    assert not any(h.training for h in trained.values())
    assert torch.equal(trained["bla_ph"].classifier.fc.weight, trained["bl"].fc.weight)  # frozen L
    assert not torch.equal(trained["bla"].classifier.fc.weight, trained["bl"].fc.weight)  # L trained on
    features = result.task.shown_features()
    assert all(trained[n].attend(features).names == ("soft", "hard") for n in trained if n != "bl")
    assert trained["bl"].attend(features).names == ("uniform",)
    scores = pd.DataFrame(result.scores)
    assert len(scores) == 2 * 6 and scores["acc"].between(0, 1).all()
    truth = pd.DataFrame(result.truth)
    assert set(truth["method"]) == {"l2x_f", "bla", "bla_t", "bla_ph", blacfg.CODE_THRESHOLD, "cam"}
    assert (truth[truth.method == "l2x_f"]["size_mean"] == pipeline["config"].l2x_k).all()
    assert truth["object_precision"].between(0, 1).all()


def test_tables_figures_and_explorer(pipeline):
    results, faith, config = pipeline["results"], pipeline["faith"], pipeline["config"]
    scores, truth = heads.scores_frame(results), heads.truth_frame(results)
    assert figures.table1(scores).shape == (6, 5)
    assert len(figures.threshold_ablation(scores)) == 3
    table = figures.truth_table(truth, results)
    assert set(table["label"]) >= {"BLA-T", "L2X-F"} and table["object_chance"].between(0, 1).all()
    assert list(figures.table2(faith.rows).columns)[:2] == ["LIME/CAM", "LIME/BLA-T"]
    assert len(faith.rows) == 3 * config.lime_images and faith.lime_maps["A"].shape == (2, 3, 3)
    for figure in (figures.figure3(scores), figures.figure2(results, config), figures.figure_truth(truth, results)):
        assert len(figure.axes) >= 6
        matplotlib.pyplot.close(figure)
    widget = figures.explorer(results, faith, config)
    picker, slider, pages = widget.children[-3:]
    assert picker.options[0] == "input" and "LIME" in picker.options and "BLA-T δ" in picker.options
    assert slider.max == 3 * config.explorer_images - 1 and len(pages.children) == 3


def test_ledger_and_metrics(pipeline, tmp_path):
    config, results, faith = pipeline["config"], pipeline["results"], pipeline["faith"]
    digit_runs = digits.DigitsResults(pd.DataFrame({"seed": [0, 1, 0, 1], "model": ["bl", "bl", "bla_t", "bla_t"],
                                                    "acc": [0.9, 0.95, 0.9, 0.94], "loss": [0.2] * 4,
                                                    "collapsed": [False] * 4}), models={}, n_train=4, n_test=2)
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="smoke", seed=0, params={}, config=config)
    scores = heads.scores_frame(results)
    claims.record_digits(recorder, config, digit_runs)
    claims.record_table1(recorder, scores)
    claims.record_truth(recorder, figures.truth_table(heads.truth_frame(results), results))
    claims.record_table2(recorder, figures.table2(faith.rows))
    claims.record_ablation(recorder, figures.threshold_ablation(scores))
    claims.record_claims(recorder, config, digit_runs, results, faith)
    ids = [c.id for c in recorder.claims]
    assert len(ids) == len(set(ids)) == 1 + 3 * (len(claims.TABLE1_CLAIMS) + 2) + 3 + 4
    assert all(c.note for c in recorder.claims if c.status == "not run")
    user_study = next(c for c in recorder.claims if c.id == "bla-4.4-user-study")
    assert user_study.status == "not run" and "human study" in user_study.note
    assert {k for k in blacfg.CHAPTER.metrics if not k.startswith("table2/")} <= set(recorder.metrics)
    assert recorder.metrics["mnist/bl/acc"] == pytest.approx(0.925) and recorder.metrics["mnist/n_train"] == 4
    assert recorder.metrics["table1/C/bla_t/acc"] == scores[(scores.task == "C") & (scores["head"] == "bla_t")][
        "acc"].mean()
    assert "truth/C/cam/disc_recall" in recorder.metrics and "truth/A/cam/disc_recall" in recorder.metrics
    assert "truth/B/cam/disc_recall" not in recorder.metrics  # NaN: B has no confusable pairs, so no disc part
    with pytest.raises(ValueError, match="recorded twice"):  # one name, one route
        claims.record_table1(recorder, scores)
    recorder.finish()  # schema-checked


def test_restricted_method_marks_missing_comparisons_not_run(pipeline, tmp_path):
    config = dataclasses.replace(pipeline["config"], method="bla")
    result = heads.run_task(pipeline["tasks"][0], config)
    assert set(result.heads) == {"bl", "bla"}
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="smoke", seed=0, params={}, config=config)
    faith = faithfulness.Faithfulness(pd.DataFrame(columns=["task", "image", "lime_cam", "lime_bla_t"]), {})
    digit_runs = digits.DigitsResults(pd.DataFrame({"seed": [0], "model": ["bl"], "acc": [0.9], "loss": [0.2],
                                                    "collapsed": [False]}), models={})
    claims.record_claims(recorder, config, digit_runs, [result], faith)
    status = {c.id: c.status for c in recorder.claims}
    assert status["bla-4.1-mnist"] == "not run"
    assert status["bla-table1-A-l2xf-acc"] == "not run" and status["bla-table1-A-bla-vs-bl-acc"] != "not run"
    figure = figures.figure2([result], config)  # falls back to the head the run has
    assert figure.texts[0].get_text().startswith("BLA explanations")
    matplotlib.pyplot.close(figure)
    picker = figures.explorer([result], faith, config).children[-3]
    assert "BLA δ" in picker.options and "BLA-T δ" not in picker.options and picker.options[-1] == "LIME"


def test_cam_as_soft_and_hard_explanation(pipeline):
    trained = pipeline["results"][0].heads
    features = pipeline["tasks"][0].shown_features()
    soft, hard = heads.soft_and_hard(trained, "cam", features, 0.5)
    torch.testing.assert_close(soft.sum(dim=(1, 2)), torch.ones(len(features)))
    assert torch.equal(hard, heads.hard_explanations(trained, features, pipeline["config"])["cam"])
    assert heads.explained_by(trained)[-1] == "cam" and "bl" not in heads.explained_by(trained)
    soft, hard = heads.soft_and_hard(trained, "bla_t", features, 0.5)  # the head's attend maps "soft", "hard"
    expected_soft, expected_hard = trained["bla_t"].explain(features)
    assert torch.equal(soft, expected_soft) and torch.equal(hard, expected_hard) and hard.dtype == torch.bool


def test_one_seed_per_run_leaves_paired_claims_to_the_grid(pipeline, tmp_path):
    config = dataclasses.replace(pipeline["config"], n_seeds=1)
    result = heads.run_task(pipeline["tasks"][1], config)
    scores = heads.scores_frame([result])
    assert heads.paired_seeds(scores, "B", "bl", "bla", "acc") is None and "†" not in figures.table1(scores).to_string()
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="smoke", seed=0, params={}, config=config)
    digit_runs = digits.DigitsResults(pd.DataFrame({"seed": [0, 0], "model": ["bl", "bla_t"], "acc": [0.9, 0.8],
                                                    "loss": [0.2, 0.3], "collapsed": [False, False]}), models={})
    claims.record_claims(recorder, config, digit_runs, [result], pipeline["faith"])
    notes = {c.id: c.note for c in recorder.claims if c.status == "not run"}
    assert "one seed per run" in notes["bla-4.1-mnist"] and "one seed per run" in notes["bla-table1-B-l2xf-acc"]


def test_a_head_trains_the_same_whatever_else_the_run_trains(pipeline):
    task, config = pipeline["tasks"][0], pipeline["config"]
    alone = heads.train_heads(task, dataclasses.replace(config, method="bla_ph"), seed=0)
    together = pipeline["results"][0].heads  # first seed = 0, all variants
    for name in ("bl", "bla_ph"):
        for a, b in zip(alone[name].state_dict().values(), together[name].state_dict().values()):
            assert torch.equal(a, b)


def test_digits_truth_scores_the_bla_t_cnn():
    config = blacfg.PROFILES["smoke"]
    test = FeatureDataset(Digits("test").grey())
    models = {"bl": digits.digits_model("bl", config, 7), "bla_t": digits.digits_model("bla_t", config, 7)}
    truth = digits.digits_truth(digits.DigitsResults(pd.DataFrame(), models), test)
    assert 1 <= truth["size"] <= 49 and 0 <= truth["on_ink"] <= 1 and 0 < truth["ink_chance"] < 1
    assert digits.digits_truth(digits.DigitsResults(pd.DataFrame(), {"bl": models["bl"]}), test) == {}
    assert digits.hard_explanation(models["bl"], test.tensors[R.IMAGE][:2]) is None  # GAP: no hard selection


def test_ties_at_a_ceiling_are_inconclusive_not_reproduced(tmp_path):
    scores = pd.DataFrame([{"task": "A", "seed": s, "head": h, "acc": 1.0, "loss": 0.01 * s}
                           for s in range(4) for h in ("bl", "bla_t")])
    evidence = heads.paired_seeds(scores, "A", "bl", "bla_t", "acc", margin=blacfg.ACC_MARGIN)
    assert evidence.all_tied and "†" in figures.table1(scores).loc["Accuracy A", "BLA-T"]  # the paper's mark
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="smoke", seed=0, params={})
    ledger.record_claim(recorder, id="x", paper="BLA", claim="no difference", paper_value="", ours="", setting="",
                        expect="equivalent", evidence=evidence)
    assert recorder.claims[0].status == "inconclusive" and "ties" in recorder.claims[0].note


def _scores(accs: dict[str, list[float]], task: str = "A") -> pd.DataFrame:
    return pd.DataFrame([{"task": task, "seed": s, "head": h, "acc": a, "loss": 1 - a}
                         for h, values in accs.items() for s, a in enumerate(values)])


def test_calibration_band_flags_analogs_outside_it(tmp_path):
    config = blacfg.PROFILES["cpu"]  # band 0.75–0.95
    scores = pd.concat([_scores({"bl": [1.0, 1.0]}, "A"), _scores({"bl": [0.8, 0.9]}, "B"),
                        _scores({"bl": [0.6, 0.7]}, "C")])
    assert claims.bl_accuracy(scores) == pytest.approx({"A": 1.0, "B": 0.85, "C": 0.65})
    flags = claims.outside_band(config, scores)
    assert set(flags) == {"A", "C"} and "outside the calibrated band 0.75–0.95" in flags["A"]
    assert "a ceiling" in flags["A"] and "a ceiling" not in flags["C"]
    assert claims.outside_band(dataclasses.replace(config, data="real"), scores) == {}  # real data: not calibrated
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="cpu", seed=0, params={})
    claims.record_constants(recorder, config)
    claims.record_calibration(recorder, config, scores)
    assert recorder.texts["calibration/outside"] == "A (1.000), C (0.650)"
    assert recorder.metrics["calibration/band_low"] == 0.75 and recorder.metrics["margin/acc"] == 0.01
    assert recorder.metrics["margin/rho"] == 0.1 and recorder.texts["paper/table1/C/acc"].startswith("0.679, 0.645")


def test_spread_evidence_compares_absolute_deviations_paired_by_seed():
    steady, wild = [0.80, 0.81, 0.80, 0.81, 0.80, 0.81], [0.70, 0.90, 0.75, 0.88, 0.72, 0.93]
    evidence = claims.spread_evidence(_scores({"bla_t": steady, "bla_ph": wild}), "A")
    assert evidence.test == "Wilcoxon signed-rank" and evidence.unit == "seeds" and evidence.n == 6
    assert evidence.effect > 0 and evidence.p_value < 0.05  # BLA-PH's deviations are larger in every seed
    assert stats.decide(evidence, "increase").status == "reproduced"
    assert claims.spread_evidence(_scores({"bla_t": steady}), "A") is None


def test_claim_rows_state_expectation_margin_and_scope(pipeline, tmp_path):
    config, results = pipeline["config"], pipeline["results"]
    digit_runs = digits.DigitsResults(pd.DataFrame({"seed": [0, 1, 0, 1], "model": ["bl", "bl", "bla_t", "bla_t"],
                                                    "acc": [0.9, 0.95, 0.9, 0.94], "loss": [0.2] * 4,
                                                    "collapsed": [False] * 4}), models={}, n_train=4, n_test=2)
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="smoke", seed=0, params={}, config=config)
    claims.record_claims(recorder, config, digit_runs, results, pipeline["faith"])
    rows = {c.id: c for c in recorder.claims}
    assert all(ledger.check_row(dataclasses.asdict(c)) is None for c in recorder.claims)
    assert all(c.expect in stats.CLAIMS for c in recorder.claims if c.status != "not run")
    for c in recorder.claims:  # a "no difference" claim states its margin, and which one and why
        if c.expect == "equivalent" and c.test:
            assert c.margin in (blacfg.ACC_MARGIN, blacfg.RHO_MARGIN) and "margin ±" in c.note
    mnist = rows["bla-4.1-mnist"]
    assert mnist.expect == "equivalent" and mnist.test == "Mann-Whitney U" and mnist.unit == "runs"
    assert "scikit-learn digits" in mnist.claim and "MNIST analog" in mnist.claim
    expects = {key: rows[f"bla-table1-{key}-blat-vs-bl-acc"].expect for key in "ABC"}
    assert expects == {"A": "decrease", "B": "decrease", "C": "equivalent"}
    assert rows["bla-table1-A-blat-vs-bla-acc"].expect == "equivalent"
    assert rows["bla-table1-B-blat-vs-bla-acc"].expect == "increase"
    t1 = rows["bla-table1-C-l2xf-acc"]
    assert t1.test == "Wilcoxon signed-rank" and t1.unit == "seeds" and t1.margin is None
    assert "synthetic fine_grained analog of CUB-200-2011, 48 px, frozen resnet18 pretrained on a separate " \
           "synthetic task" in t1.claim
    table2 = rows["bla-table2-A"]
    assert table2.unit == "images" and table2.expect == "equivalent" and "images are the unit" in table2.note
    assert rows["bla-table2-C"].expect == "increase"
    assert "outside the calibrated band" in t1.note  # smoke-sized analogs are not calibrated


def test_claim_scope_names_data_resolution_and_backbone():
    task = _task_with_truth()
    task.title = "C: fine_grained analog of CUB-200-2011"
    cpu = blacfg.PROFILES["cpu"]
    assert claims.scope_42(cpu, task) == ("synthetic fine_grained analog of CUB-200-2011, 112 px, frozen resnet18 "
                                          "pretrained on a separate synthetic task")
    task.title = "C: CUB-200-2011"
    paper = blacfg.PROFILES["paper"]
    assert claims.scope_42(paper, task) == "CUB-200-2011, 224 px, frozen efficientnet_b0 pretrained on ImageNet"

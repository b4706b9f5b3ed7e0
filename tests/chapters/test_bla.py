"""Chapter 4 (BLA): the pipeline's pieces on hand-sized inputs, and the whole pipeline at smoke scale."""
import dataclasses
import math

import matplotlib
import pandas as pd
import pytest
import torch

from attnbook import runs, stats
from attnbook.chapters import bla
from attnbook.config import ConfigError, RequirementError
from attnbook.data import records as R
from attnbook.methods.l2x import SelectionPoolingHead
from attnbook.models.heads import GAPHead
from attnbook.train import FEATURES, FeatureDataset

matplotlib.use("Agg")


# --- config and plan ------------------------------------------------------------------------------------

def test_profiles_and_overrides():
    assert bla.CHAPTER.notebook_parameters == ("profile", "seed", "run_dir", "n_seeds", "epochs", "method")
    for profile in bla.PROFILES:
        bla.CHAPTER.resolve(profile, 0)
    config = bla.CHAPTER.resolve("cpu", 3, n_seeds="4", epochs="2", method="bla_t")
    assert bla.seeds(config) == [3, 4, 5, 6]
    assert bla.variants(config) == ("bl", "bla_t") and bla.head_names(config) == ("bl", "bla_t", bla.CODE_THRESHOLD)
    assert bla.digits_models(config) == ("bl", "bla_t", bla.TEXT_GAMMA)
    assert bla.epochs_for(config, 30) == 2 and bla.epochs_for(bla.CHAPTER.resolve("cpu", 0), 30) == 30
    only_bla = bla.CHAPTER.resolve("cpu", 0, method="bla")
    assert bla.head_names(only_bla) == ("bl", "bla") and bla.digits_models(only_bla) == ("bl",)
    assert bla.variants(bla.CHAPTER.resolve("cpu", 0)) == ("bl", "l2x_f", "bla", "bla_t", "bla_ph")
    with pytest.raises(ConfigError, match="method"):
        bla.CHAPTER.resolve("cpu", 0, method="gradcam")
    with pytest.raises(ValueError, match="head_epochs"):
        dataclasses.replace(bla.PROFILES["cpu"], head_epochs=(1, 2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_paper_profile_refuses_without_gpu_and_data():
    with pytest.raises(RequirementError, match="GPU"):
        bla.CHAPTER.configure("paper", 0)
    assert set(bla.PROFILES["paper"].datasets) == {"mnist", "cats_vs_dogs", "stanford_dogs", "cub"}


# --- §4.1 ----------------------------------------------------------------------------------------------

def test_sigmoid_bce_is_the_binary_cross_entropy():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
        model.bias.zero_()
    batch = {R.IMAGE: torch.tensor([[1.0, 0.0], [0.0, 1.0]]), R.LABEL: torch.tensor([1, 0])}
    out = bla.sigmoid_bce(model, batch)  # logits 1 and -2
    expected = -(math.log(1 / (1 + math.exp(-1))) + math.log(1 - 1 / (1 + math.exp(2)))) / 2
    assert out.loss.item() == pytest.approx(expected) and out.logits.shape == (2, 1)


def test_text_gamma_zeroes_a_uniform_q_the_code_gamma_keeps_it():
    config = bla.PROFILES["smoke"]
    at_bound = torch.zeros(1, 7, 7)  # every logit at the bound → q uniform = 1/49
    code = bla.digits_model("bla_t", config, side=7).head
    text = bla.digits_model(bla.TEXT_GAMMA, config, side=7).head
    assert code.gamma_for(49) == pytest.approx(0.98 / 49) and text.gamma_for(49) == pytest.approx(1 / 49)
    torch.testing.assert_close(code.soft_weights(at_bound), torch.full((1, 7, 7), 1 / 49))
    assert text.soft_weights(at_bound).sum() == 0  # nothing pooled: no gradient, the run cannot learn
    assert bla.digits_model("bl", config, side=7).head.__class__ is GAPHead
    with pytest.raises(ValueError, match="unknown 3-vs-8 model"):
        bla.digits_model("l2x", config, side=7)


def test_digits_summary_and_test():
    scores = pd.DataFrame({"seed": [0, 1, 0, 1], "model": ["bl", "bl", "bla_t", "bla_t"],
                           "acc": [0.9, 1.0, 0.5, 0.6], "loss": [0.1, 0.2, 0.7, 0.6], "collapsed": [0, 0, 1, 0]})
    summary = bla.digits_summary(scores).set_index("model")
    assert summary.loc["BL", "accuracy"] == stats.format_mean_se([0.9, 1.0])
    assert summary.loc["BLA-T", "collapsed runs"] == 1
    result = bla.digits_test(scores)
    assert result.effect == pytest.approx(-0.4) and result.test == "Mann-Whitney U"
    report = bla.digits_report(bla.DigitsResults(scores, {}))
    assert report["acc_bl"] == pytest.approx(0.95) and report["p"] == result.p_value
    assert report["text_gamma_collapsed"] == 0
    only_bl = bla.DigitsResults(scores[scores.model == "bl"], {})
    assert bla.digits_test(only_bl.scores) is None and math.isnan(bla.digits_report(only_bl)["p"])


# --- ground truth per cell ------------------------------------------------------------------------------

def test_cell_fractions_hand_example():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True
    mask[0, 2, 3] = True
    torch.testing.assert_close(bla._cell_fractions(mask, 2), torch.tensor([[[1.0, 0.0], [0.0, 0.25]]]))


def test_thresholded_cam_hand_example():
    base = GAPHead(2, 2)
    with torch.no_grad():
        base.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    features = torch.tensor([[[[4.0, 1.0], [2.0, 0.0]], [[0.0, 3.0], [3.0, 3.0]]]])  # [1, 2, 2, 2]
    assert torch.equal(bla.thresholded_cam(base, features, torch.tensor([0]), 0.5),
                       torch.tensor([[[True, False], [True, False]]]))  # channel 0: cells ≥ 2
    assert torch.equal(bla.thresholded_cam(base, features, torch.tensor([1]), 0.5),
                       torch.tensor([[[False, True], [True, True]]]))  # channel 1: cells ≥ 1.5


def _task_with_truth() -> bla.Task:
    object_cells = torch.tensor([[[1.0, 0.5], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    disc_cells = torch.tensor([[[0.25, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])  # image 1 has none
    features = FeatureDataset({FEATURES: torch.zeros(2, 1, 2, 2), R.LABEL: torch.tensor([0, 1])})
    return bla.Task(key="C", title="test", class_names=("a", "b"), epochs=1, train=features, test=features,
                    shown=torch.tensor([0]), images=torch.zeros(1, 3, 4, 4), object_cells=object_cells,
                    disc_cells=disc_cells, object_area=torch.tensor([0.375, 0.25]))


def test_explanation_scores_hand_example():
    hard = torch.tensor([[[True, True], [False, False]], [[True, False], [False, True]]])
    scores = bla.explanation_scores(hard, _task_with_truth())
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
    table = bla.table1(scores)
    assert list(table.columns) == ["BL", "L2X-F", "BLA", "BLA-T", "BLA-PH"]
    assert list(table.index) == ["Accuracy A", "Loss A"]
    mean, se = stats.mean_se([0.90 + 0.001 * s for s in range(6)])
    assert table.loc["Accuracy A", "BL"] == f"{mean:.4f} ± {100 * se:.2f}"
    assert "†" not in table.loc["Accuracy A", "L2X-F"]  # all 6 seeds lower: significant
    assert table.loc["Accuracy A", "BLA"].startswith(f"{mean:.4f}†")  # equal to BL, differs from L2X-F (no ∗)
    assert "∗" not in table.loc["Accuracy A", "BLA"]
    assert "∗" in table.loc["Accuracy A", "BLA-PH"] and "†" not in table.loc["Accuracy A", "BLA-PH"]
    result = bla.paired(scores, "A", "bl", "l2x_f", "acc")
    assert result.effect < 0 and result.p_value < 0.05
    assert bla.paired(scores, "A", "bl", "missing", "acc") is None


# --- the pipeline at smoke scale -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The chapter's calls in the notebook's order, on the smoke profile (3×3 maps, 2 seeds)."""
    config = bla.CHAPTER.configure("smoke", 0)
    cache = tmp_path_factory.mktemp("cache")
    backbone, info = bla.pretrain_backbone(config, cache)
    tasks = bla.make_tasks(config, backbone)
    results = [bla.run_task(task, config) for task in tasks]
    faith = bla.faithfulness(config, backbone, results)
    return dict(config=config, cache=cache, backbone=backbone, info=info, tasks=tasks, results=results, faith=faith)


def test_backbone_is_frozen_and_cached(pipeline):
    backbone, config = pipeline["backbone"], pipeline["config"]
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.training
    files = list(pipeline["cache"].glob("bla-pretext-*.pt"))
    assert len(files) == 1 and pipeline["info"]["train_images"] == 16
    again, info = bla.pretrain_backbone(config, pipeline["cache"])  # loaded, not retrained
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
    heads = result.heads
    assert set(heads) == {"bl", "l2x_f", "bla", "bla_t", "bla_ph", bla.CODE_THRESHOLD}
    assert not any(h.training for h in heads.values())
    assert torch.equal(heads["bla_ph"].classifier.fc.weight, heads["bl"].fc.weight)  # frozen L
    assert not torch.equal(heads["bla"].classifier.fc.weight, heads["bl"].fc.weight)  # L trained on
    assert all(isinstance(heads[n], SelectionPoolingHead) for n in heads if n != "bl")
    scores = pd.DataFrame(result.scores)
    assert len(scores) == 2 * 6 and scores["acc"].between(0, 1).all()
    truth = pd.DataFrame(result.truth)
    assert set(truth["method"]) == {"l2x_f", "bla", "bla_t", "bla_ph", bla.CODE_THRESHOLD, "cam"}
    assert (truth[truth.method == "l2x_f"]["size_mean"] == pipeline["config"].l2x_k).all()
    assert truth["object_precision"].between(0, 1).all()


def test_tables_figures_and_explorer(pipeline):
    results, faith, config = pipeline["results"], pipeline["faith"], pipeline["config"]
    scores, truth = bla.scores_frame(results), bla.truth_frame(results)
    assert bla.table1(scores).shape == (6, 5)
    assert len(bla.threshold_ablation(scores)) == 3
    table = bla.truth_table(truth, results)
    assert set(table["label"]) >= {"BLA-T", "L2X-F"} and table["object_chance"].between(0, 1).all()
    assert list(bla.table2(faith.rows).columns)[:2] == ["LIME/CAM", "LIME/BLA-T"]
    assert len(faith.rows) == 3 * config.lime_images and faith.lime_maps["A"].shape == (2, 3, 3)
    for figure in (bla.figure3(scores), bla.figure2(results, config), bla.figure_truth(truth, results)):
        assert len(figure.axes) >= 6
        matplotlib.pyplot.close(figure)
    widget = bla.explorer(results, faith, config)
    picker, slider, pages = widget.children[-3:]
    assert picker.options[0] == "input" and "LIME" in picker.options and "BLA-T δ" in picker.options
    assert slider.max == 3 * config.explorer_images - 1 and len(pages.children) == 3


def test_ledger_and_metrics(pipeline, tmp_path):
    config, results, faith = pipeline["config"], pipeline["results"], pipeline["faith"]
    digits = bla.DigitsResults(pd.DataFrame({"seed": [0, 1, 0, 1], "model": ["bl", "bl", "bla_t", "bla_t"],
                                             "acc": [0.9, 0.95, 0.9, 0.94], "loss": [0.2] * 4,
                                             "collapsed": [False] * 4}), models={})
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="smoke", seed=0, params={}, config=config)
    bla.log_metrics(recorder, digits, bla.scores_frame(results), bla.truth_frame(results), faith)
    bla.record_claims(recorder, config, digits, results, faith)
    ids = [c.id for c in recorder.claims]
    assert len(ids) == len(set(ids)) == 1 + 3 * (len(bla.TABLE1_CLAIMS) + 2) + 3 + 4
    assert all(c.note for c in recorder.claims if c.status == "not run")
    user_study = next(c for c in recorder.claims if c.id == "bla-4.4-user-study")
    assert user_study.status == "not run" and "human study" in user_study.note
    assert {k for k in bla.CHAPTER.metrics if not k.startswith("table2/")} <= set(recorder.metrics)
    recorder.finish()  # schema-checked


def test_restricted_method_marks_missing_comparisons_not_run(pipeline, tmp_path):
    config = dataclasses.replace(pipeline["config"], method="bla")
    result = bla.run_task(pipeline["tasks"][0], config)
    assert set(result.heads) == {"bl", "bla"}
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="smoke", seed=0, params={}, config=config)
    faith = bla.Faithfulness(pd.DataFrame(columns=["task", "image", "lime_cam", "lime_bla_t"]), {})
    digits = bla.DigitsResults(pd.DataFrame({"seed": [0], "model": ["bl"], "acc": [0.9], "loss": [0.2],
                                             "collapsed": [False]}), models={})
    bla.record_claims(recorder, config, digits, [result], faith)
    status = {c.id: c.status for c in recorder.claims}
    assert status["bla-4.1-mnist"] == "not run"
    assert status["bla-table1-A-l2xf-acc"] == "not run" and status["bla-table1-A-bla-vs-bl-acc"] != "not run"
    figure = bla.figure2([result], config)  # falls back to the head the run has
    assert figure.texts[0].get_text().startswith("BLA explanations")
    matplotlib.pyplot.close(figure)
    picker = bla.explorer([result], faith, config).children[-3]
    assert "BLA δ" in picker.options and "BLA-T δ" not in picker.options and picker.options[-1] == "LIME"


def test_cam_as_soft_and_hard_explanation(pipeline):
    heads = pipeline["results"][0].heads
    features = pipeline["tasks"][0].shown_features()
    soft, hard = bla.soft_and_hard(heads, "cam", features, 0.5)
    torch.testing.assert_close(soft.sum(dim=(1, 2)), torch.ones(len(features)))
    assert torch.equal(hard, bla.hard_explanations(heads, features, pipeline["config"])["cam"])
    assert bla.explained_by(heads)[-1] == "cam" and "bl" not in bla.explained_by(heads)


def test_one_seed_per_run_leaves_paired_claims_to_the_grid(pipeline, tmp_path):
    config = dataclasses.replace(pipeline["config"], n_seeds=1)
    result = bla.run_task(pipeline["tasks"][1], config)
    scores = bla.scores_frame([result])
    assert bla.paired(scores, "B", "bl", "bla", "acc") is None and "†" not in bla.table1(scores).to_string()
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="smoke", seed=0, params={}, config=config)
    digits = bla.DigitsResults(pd.DataFrame({"seed": [0, 0], "model": ["bl", "bla_t"], "acc": [0.9, 0.8],
                                             "loss": [0.2, 0.3], "collapsed": [False, False]}), models={})
    bla.record_claims(recorder, config, digits, [result], pipeline["faith"])
    notes = {c.id: c.note for c in recorder.claims if c.status == "not run"}
    assert "one seed per run" in notes["bla-4.1-mnist"] and "one seed per run" in notes["bla-table1-B-l2xf-acc"]


def test_a_head_trains_the_same_whatever_else_the_run_trains(pipeline):
    task, config = pipeline["tasks"][0], pipeline["config"]
    alone = bla.train_heads(task, dataclasses.replace(config, method="bla_ph"), seed=0)
    together = pipeline["results"][0].heads  # first seed = 0, all variants
    for name in ("bl", "bla_ph"):
        for a, b in zip(alone[name].state_dict().values(), together[name].state_dict().values()):
            assert torch.equal(a, b)


def test_digits_truth_scores_the_bla_t_cnn():
    config = bla.PROFILES["smoke"]
    test = FeatureDataset(bla.Digits("test").grey())
    models = {"bl": bla.digits_model("bl", config, 7), "bla_t": bla.digits_model("bla_t", config, 7)}
    truth = bla.digits_truth(bla.DigitsResults(pd.DataFrame(), models), test)
    assert 1 <= truth["size"] <= 49 and 0 <= truth["on_ink"] <= 1 and 0 < truth["ink_chance"] < 1
    assert bla.digits_truth(bla.DigitsResults(pd.DataFrame(), {"bl": models["bl"]}), test) == {}


def test_ties_at_a_ceiling_are_inconclusive_not_reproduced(tmp_path):
    scores = pd.DataFrame([{"task": "A", "seed": s, "head": h, "acc": 1.0, "loss": 0.01 * s}
                           for s in range(4) for h in ("bl", "bla_t")])
    result = bla.paired(scores, "A", "bl", "bla_t", "acc")
    assert result.test == bla.TIED and "†" in bla.table1(scores).loc["Accuracy A", "BLA-T"]
    recorder = runs.start("04_bla", run_dir=tmp_path, profile="smoke", seed=0, params={})
    bla._claim_test(recorder, id="x", claim="no difference", paper_value="", setting="", result=result, expected=0,
                    ours="", missing="")
    assert recorder.claims[0].status == "inconclusive" and "identical" in recorder.claims[0].note

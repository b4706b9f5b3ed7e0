"""Chapter 2's pieces on hand-made inputs (the smoke run of the notebook covers the rest; the gpu and paper profiles'
code paths on fixture trees: test_sharpen_focus_profiles.py)."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from attnbook.chapters.sharpen_focus import claims, evaluation, pipeline
from attnbook.chapters.sharpen_focus import config as sf_config
from attnbook.config import ConfigError, RequirementError, check_requirements, shrink
from attnbook.ledger import check_row
from attnbook.runs import RunRecorder

matplotlib.use("Agg")

SMOKE = sf_config.PROFILES["smoke"]


def test_the_config_mirrors_the_library_and_overrides_are_validated():
    from attnbook.methods import sharpen_focus as sf

    assert sf_config.ATTENTIONS == sf.ATTENTIONS
    assert sf_config.PORT_OPTIONS == sf.PORT_OPTIONS
    assert sf_config.MULTILABEL_TARGETS == sf.MULTILABEL_TARGETS
    for _, options in sf_config.ABLATIONS.values():
        sf.SharpenFocusOptions().replace(**options)  # every ablation is a valid set of options
    with pytest.raises(ConfigError, match="unknown parameter 'lr'"):
        sf_config.CHAPTER.resolve("smoke", 0, lr=0.1)
    with pytest.raises(ConfigError, match="'ports' is not one of"):
        sf_config.CHAPTER.resolve("smoke", 0, ablations="ports")
    config = sf_config.CHAPTER.resolve("smoke", 5, n_seeds="3", ablations="port,batch_norm")
    assert config.n_seeds == 3 and config.ablations == ("port", "batch_norm")
    assert sf_config.seeds(config) == [5, 6, 7] and sf_config.ml_seeds(config) == [5, 6]
    with pytest.raises(ValueError, match="6n \\+ 2"):
        sf_config.SharpenFocusConfig(depth=10)
    with pytest.raises(ValueError, match="32 px"):
        sf_config.SharpenFocusConfig(data="cifar100", resolution=64)
    paper = sf_config.PROFILES["paper"]
    assert (paper.depth, paper.width, paper.epochs, paper.milestones, paper.lr, paper.batch_size) == \
        (110, 16, 160, (81, 122), 0.1, 128)


def test_options_follow_the_models_and_the_ablations():
    assert pipeline.options_for(SMOKE, "pixelwise").attention == "pixelwise"
    port = pipeline.options_for(SMOKE, "channelwise", "port")
    assert (port.grad_seed, port.normalize, port.grad_path) == ("logits", "batch", "detached")
    seed_only = pipeline.options_for(SMOKE, "channelwise", "logits_seed")
    assert (seed_only.grad_seed, seed_only.normalize, seed_only.grad_path) == ("logits", "sample", "through")
    baseline = pipeline.objective_for(SMOKE, pipeline.Job("main", "baseline", 0))
    assert not baseline.enabled
    ablation = pipeline.objective_for(SMOKE, pipeline.Job("ablation", "batch_norm", 0))
    assert ablation.enabled and ablation.options.normalize == "batch" and ablation.options.attention == "channelwise"
    assert pipeline.objective_for(SMOKE, pipeline.Job("multilabel", "pixelwise", 0)).multilabel
    jobs = pipeline.main_jobs(SMOKE)
    assert len(jobs) == 4 * SMOKE.n_seeds and len(set(j.name for j in jobs)) == len(jobs)


def test_every_model_of_a_seed_starts_from_the_same_weights():
    a, b = pipeline.build_model(SMOKE, 4, 3), pipeline.build_model(SMOKE, 4, 3)
    c = pipeline.build_model(SMOKE, 4, 4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.backbone.stem.conv.weight, c.backbone.stem.conv.weight)


def test_pad_crop_flip_keeps_size_and_content():
    torch.manual_seed(0)
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    out = pipeline.pad_crop_flip(images, pad=2)
    assert out.shape == images.shape
    assert torch.isin(out, torch.cat([images.flatten(), torch.zeros(1)])).all()  # pixels moved or zero padding
    flipped_or_not = pipeline.pad_crop_flip(images, pad=0)
    for i in range(2):
        assert torch.equal(flipped_or_not[i], images[i]) or torch.equal(flipped_or_not[i], images[i].flip(-1))


def test_the_pool_trains_like_this_process():
    """Two one-thread worker processes give the same weights as training here (every job seeds itself)."""
    config = shrink(SMOKE, num_classes=2, train_per_class=4, test_per_class=2, width=2, n_seeds=2)
    jobs = [pipeline.Job("main", "channelwise", 0), pipeline.Job("main", "baseline", 1)]
    with torch.random.fork_rng():
        here = pipeline.train_jobs(config, jobs)
    pooled = pipeline.train_jobs(shrink(config, workers=2), jobs)
    for job in jobs:
        for x, y in zip(here[job].state_dict().values(), pooled[job].state_dict().values()):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_pair_scores_on_hand_made_maps():
    target = torch.zeros(1, 2, 2)
    target[0, 0, 0] = 2.0
    confuser = torch.zeros(1, 2, 2)
    confuser[0, 1, 1] = 1.0
    maps = {"inner": torch.stack([torch.kron(target, torch.ones(2, 2)), torch.kron(confuser, torch.ones(2, 2))], 1),
            "last": torch.stack([target, confuser], 1)}
    disc = torch.zeros(1, 8, 8, dtype=torch.bool)
    disc[0, :4, :4] = True  # the target's corner
    scores = evaluation.pair_scores(maps, disc)
    assert scores["sep_inner"].item() == 0.0 and scores["sep_last"].item() == 0.0  # disjoint: fully separable
    # the last mask (1 on the target's cell) resized bilinearly to 4×4 weighs the inner target's 2×2 block
    # 1, 0.75, 0.75, 0.5625 (align_corners=False): the share inside the mask is their mean
    assert scores["consistency"].item() == pytest.approx((1 + 0.75 + 0.75 + 0.5625) / 4, abs=1e-4)
    assert scores["disc_last"].item() > 0.5
    same = {layer: torch.stack([m[:, 0], m[:, 0]], 1) for layer, m in maps.items()}
    assert evaluation.pair_scores(same, None)["sep_last"].item() == pytest.approx(1.0)


def _fake_table(shift: float = 0.05, n: int = 6) -> pd.DataFrame:
    rows = []
    for k, kind in enumerate(sf_config.MODELS):
        for s in range(n):
            row = {"model": kind, "seed": s, "accuracy": 0.5 + (shift * k if kind != "baseline" else 0) + 0.01 * s}
            for a in sf_config.ATTENTIONS:
                for layer in sf_config.LAYERS:
                    row[f"sep_{a}_{layer}"] = 0.6 - (0.1 if kind == "channelwise" else 0) - 0.01 * s \
                        - (0.05 if layer == "inner" else 0)
                    row[f"disc_{a}_{layer}"] = 0.1 + (0.05 if kind == "channelwise" else 0) + 0.003 * s
                row[f"cons_{a}"] = 0.3 + (0.1 if a == "pixelwise" else 0) + 0.01 * s * (a == "gradcam")
            rows.append(row)
    return pd.DataFrame(rows)


def test_every_paper_number_has_a_row_and_rows_keep_the_rules(tmp_path):
    recorder = RunRecorder(notebook="02_sharpen_focus", run_dir=tmp_path, params={}, profile="smoke", seed=0,
                           config={}, device="cpu")
    table = _fake_table()
    claims.record_claims(recorder, table, SMOKE)
    frame = claims.ablation_frame({"logits_seed": {s: 0.4 + 0.01 * s for s in range(6)},
                                   "port": {s: 0.5 + 0.011 * s for s in range(6)}},
                                  {s: 0.6 + 0.01 * s for s in range(6)}, {s: 0.5 + 0.01 * s for s in range(6)})
    claims.record_ablation_claims(recorder, frame, SMOKE)
    claims.record_multilabel_claims(recorder, None, SMOKE, sf_config.ML_WHY)
    ids = [c.id for c in recorder.claims]
    assert len(ids) == len(set(ids))
    paper_ids = {"sf-table2-baseline", *(f"sf-table1-{k}" for k in sf_config.TRAINED),
                 *(row[0] for row in sf_config.PAPER_ROWS)}
    assert paper_ids <= set(ids) and len(paper_ids) == 21  # Tables 1-6 of papers.md (one row per model and metric)
    assert all(check_row(vars(c)) is None for c in recorder.claims)
    status = {c.id: c.status for c in recorder.claims}
    assert all(status[i] == "not run" for i in paper_ids)  # the synthetic profile measures none of them
    assert status["sf-table1-analog-pixelwise"] == "reproduced"  # +15 points, no noise across seeds
    assert status["sf-separability-inner"] == "reproduced" and status["sf-disc-part-last"] == "reproduced"
    assert status["sf-inner-more-separable"] == "reproduced"
    assert status["sf-ablation-logits_seed"] == "reproduced"  # −20 points
    assert status["sf-port-no-gain"] == "reproduced"  # +0.1 × s/10: within ±1 point
    assert status["sf-table6-analog-ap"] == "not run"
    assert "ml_seeds=0" in {c.id: c.note for c in recorder.claims}["sf-table6-analog-ap"]


def test_sentences_say_why_a_section_did_not_run():
    assert "not run" in claims.ablation_sentence(None)
    assert "ml_seeds=0" in claims.multilabel_sentence(None, sf_config.ML_WHY)
    assert "not measured" in claims.resnet18_sentence([{}])
    frame = claims.multilabel_frame({"baseline": {0: {"ap": 0.5, "auc": 0.7}}, "channelwise": {0: {"ap": 0.6,
                                                                                                      "auc": 0.8}}})
    assert "AP 60.0 %" in claims.multilabel_sentence(frame)


# --- the paper profile -----------------------------------------------------------------------------------

def test_paper_profile_stops_early_naming_what_is_missing(monkeypatch, tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(RequirementError, match="needs a CUDA GPU"):
            sf_config.CHAPTER.configure("paper", namespace={})
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    with pytest.raises(RequirementError, match="CIFAR-100 not found .* attnbook data prepare cifar100"):
        check_requirements(shrink(sf_config.PROFILES["paper"], epochs=1))


def test_study_rows_are_measured_paired_over_seeds_or_not_run_with_the_reason(tmp_path):
    from attnbook.chapters.sharpen_focus.studies import StudyResult

    recorder = RunRecorder(notebook="02_sharpen_focus", run_dir=tmp_path, params={}, profile="paper", seed=0,
                           config={}, device="cpu")
    caltech = sf_config.STUDIES["caltech256-n30-resnet18"]
    scores = {"baseline": {s: {"accuracy": 0.70 + 0.01 * s} for s in range(6)},
              "channelwise": {s: {"accuracy": 0.75 + 0.012 * s} for s in range(6)},
              "pixelwise": {s: {"accuracy": 0.70 + 0.01 * s + (0.001 if s % 2 else -0.001)} for s in range(6)}}
    results = {"caltech256-n30-resnet18": StudyResult("caltech256-n30-resnet18", caltech, scores, n_train=90,
                                                      n_test=75),
               "voc2012-resnet18": StudyResult("voc2012-resnet18", sf_config.STUDIES["voc2012-resnet18"],
                                               why="PASCAL VOC 2012 not found at /x. Get it with: attnbook data …")}
    claims.record_study_rows(recorder, sf_config.PROFILES["paper"], results)
    rows = {c.id: c for c in recorder.claims}
    assert len(rows) == len(sf_config.PAPER_ROWS) and all(check_row(vars(c)) is None for c in rows.values())
    ach = rows["sf-table3-n30-resnet18-ach"]
    assert ach.status == "reproduced" and ach.ours == "72.5 → 78" and ach.n == 6
    assert ach.effect == pytest.approx(5.5)  # mean paired difference, points: 5 + 0.2 × mean(seed)
    assert rows["sf-table3-n30-resnet18-apx"].status == "inconclusive"  # ±0.1 points around no change
    assert rows["sf-table6-ap-ach"].status == "not run" and "VOC 2012 not found" in rows["sf-table6-ap-ach"].note
    assert rows["sf-table3-n60-vgg19-ach"].status == "not run"
    assert "not among this run's studies" in rows["sf-table3-n60-vgg19-ach"].note
    assert "ten-crop" in rows["sf-table4-tencrop"].note
    table = claims.study_table(results)
    assert list(table[table.study == "caltech256-n30-resnet18"].model) == ["baseline", "+ A_ch", "+ A_px"]
    assert table[table.study == "voc2012-resnet18"].score.tolist() == ["not run"]
    sentence = claims.studies_sentence(results)
    assert "caltech256-n30-resnet18: trained and scored" in sentence and "voc2012-resnet18: not run" in sentence
    assert claims.studies_sentence({}).startswith("none in this profile")


class _Records(torch.utils.data.Dataset):
    """Records whose image *is* the logits (with :class:`torch.nn.Identity` as the model)."""

    def __init__(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.tensors = {"image": logits, "label": labels}

    def __len__(self) -> int:
        return len(self.tensors["label"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def test_calibration_diagnostics_on_hand_made_predictions():
    from types import SimpleNamespace

    from attnbook.chapters.sharpen_focus import calibration

    eye = torch.eye(4)
    # test: labels 0 1 2 3 2; predictions 0 (right), 0 (its partner), 3 (partner), 0 (other pair), 2 (right)
    test = _Records(eye[[0, 0, 3, 0, 2]], torch.tensor([0, 1, 2, 3, 2]))
    train = _Records(eye[[0, 1, 2, 2]], torch.tensor([0, 1, 2, 3]))  # 3 of 4 right
    task = pipeline.Task("hand", train, test, None, SimpleNamespace(confusers=torch.tensor([1, 0, 3, 2])))
    d = calibration.diagnostics(torch.nn.Identity(), task)
    assert d == pytest.approx({"test_accuracy": 2 / 5, "train_accuracy": 3 / 4, "pair_accuracy": 4 / 5})
    no_pairs = calibration.diagnostics(torch.nn.Identity(), pipeline.Task("real", train, test, None))
    assert no_pairs["test_accuracy"] == pytest.approx(2 / 5) and np.isnan(no_pairs["pair_accuracy"])
    per_seed = {0: d, 1: {"test_accuracy": 0.6, "train_accuracy": 0.25, "pair_accuracy": 1.0},
                2: {"test_accuracy": 0.5, "train_accuracy": 0.5, "pair_accuracy": 0.9}}
    out = calibration.summarize(per_seed)
    for key in calibration.DIAGNOSTICS:  # numpy as the oracle: mean and sample sd (ddof=1)
        values = np.array([p[key] for p in per_seed.values()])
        assert out[key] == pytest.approx(values.mean()) and out[f"{key}_sd"] == pytest.approx(values.std(ddof=1))
    assert out["n_seeds"] == 3 and np.isnan(calibration.summarize({0: d})["test_accuracy_sd"])
    recorded = calibration.numbers(per_seed)  # what the notebook records: no test accuracy (accuracy/baseline)
    assert recorded == pytest.approx({k: out[k] for k in ("train_accuracy", "train_accuracy_sd", "pair_accuracy",
                                                          "pair_accuracy_sd")})
    assert set(calibration.numbers({0: no_pairs, 1: no_pairs})) == {"train_accuracy", "train_accuracy_sd"}
    frame = calibration.table(per_seed)
    assert list(frame.index) == ["seed 0", "seed 1", "seed 2", "mean", "sd"]
    assert frame.loc["sd", "right pair"] == pytest.approx(out["pair_accuracy_sd"])
    assert frame.loc["seed 1", "training accuracy"] == 0.25


def test_calibration_settings_change_the_cpu_profile_as_named():
    from attnbook.chapters.sharpen_focus import calibration

    cpu = sf_config.PROFILES["cpu"]
    assert (cpu.num_classes, cpu.train_per_class, cpu.batch_size, cpu.lr, cpu.epochs) == (8, 75, 16, 2e-2, 7)
    assert calibration.setting_config(cpu, "chosen") == cpu
    first = calibration.setting_config(cpu, "first")
    assert (first.num_classes, first.train_per_class, first.batch_size, first.lr, first.epochs) == (10, 60, 32, 5e-3, 7)
    b64 = calibration.setting_config(cpu, "lr2e-2-14ep-b64")
    assert (b64.lr, b64.epochs, b64.batch_size, b64.num_classes) == (2e-2, 14, 64, 10)
    assert calibration.setting_config(cpu, "colour").disc_groups == ("color",)
    with pytest.raises(ValueError, match="unknown settings"):
        calibration.calibrate(cpu, ["nope"], 1, workers=1)

"""Chapter 3's pieces on hand-made inputs (the smoke run of the notebook covers the rest)."""
import pandas as pd
import pytest
import torch

from attnbook.chapters.region_grouping import claims, evaluation, pipeline
from attnbook.chapters.region_grouping import config as rg_config
from attnbook.config import ConfigError, RequirementError, check_requirements
from attnbook.data import records as R
from attnbook.data.synthetic import make_benchmark, spec_for
from attnbook.ledger import check_row
from attnbook.runs import RunRecorder


@pytest.fixture(scope="module")
def bench():
    return make_benchmark(spec_for("fine_grained", num_classes=4, train_per_class=8, test_per_class=6, resolution=32))


def _point_maps(landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """One-hot maps ``[N, P, size, size]`` at each landmark's pixel."""
    maps = torch.zeros(len(landmarks), landmarks.shape[1], size, size)
    xy = landmarks.floor().long().clamp(0, size - 1)
    for i in range(len(landmarks)):
        for k in range(landmarks.shape[1]):
            maps[i, k, xy[i, k, 1], xy[i, k, 0]] = 1.0
    return maps


def test_landmark_error_is_small_for_maps_at_the_landmarks_and_large_for_noise(bench):
    fit, test = bench.split(evaluation.FIT).tensors, bench.split(evaluation.TEST).tensors
    exact = evaluation.landmark_error(_point_maps(fit[R.LANDMARKS], 32), _point_maps(test[R.LANDMARKS], 32), bench)
    gen = torch.Generator().manual_seed(0)
    noise = evaluation.landmark_error(torch.rand(len(fit[R.LANDMARKS]), 5, 8, 8, generator=gen),
                                      torch.rand(len(test[R.LANDMARKS]), 5, 8, 8, generator=gen), bench)
    assert exact < 5 < noise  # % of the box: pixel quantisation only vs no information


def test_part_overlap_recovers_a_permutation_of_the_true_parts(bench):
    masks = bench.test_aligned.tensors[R.PART_MASKS]
    order = torch.tensor([3, 0, 4, 1, 2])
    table, score = evaluation.part_overlap(masks[:, order].float(), masks)
    assert score == pytest.approx(1.0)
    assert table.shape == (5, 5) and torch.equal(table.argmax(1), order)
    _, worse = evaluation.part_overlap(torch.ones(len(masks), 5, 4, 4), masks)
    assert worse < 0.5


def test_baseline_maps_and_pointing_on_hand_inputs():
    features = torch.zeros(2, 3, 2, 2)
    features[:, 1] = 5.0  # the most active channel
    features[:, 2, 0, 0] = 1.0
    fit_maps, test_maps = evaluation.activation_maps(features, features, 2)
    assert torch.equal(fit_maps[:, 0], features[:, 1]) and torch.equal(test_maps[:, 1], features[:, 2])
    fit_k, test_k = evaluation.kmeans_maps(torch.rand(4, 3, 5, 5), torch.rand(2, 3, 5, 5), 3, seed=0)
    assert test_k.shape == (2, 3, 5, 5) and torch.equal(test_k.sum(1), torch.ones(2, 5, 5))
    heat = torch.zeros(2, 8, 8)
    heat[0, 1, 1] = heat[1, 6, 6] = 1.0
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.0]])  # the first peak in, the second out
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 6, 6] = True
    assert evaluation.pointing(heat, boxes, masks) == (0.5, 0.5)


def test_models_build_train_objective_and_learning_rates(bench):
    config = rg_config.CHAPTER.resolve("smoke", 0)
    x, y = bench.train.tensors[R.IMAGE][:4], bench.train.tensors[R.LABEL][:4]
    for kind in rg_config.MODELS:
        model = pipeline.build_model(config, kind, 4)
        out = pipeline.region_objective(model, {R.IMAGE: x, R.LABEL: y}, pipeline.prior_weight(config, kind))
        assert out.logits.shape == (4, 4) and torch.isfinite(out.loss)
        assert ("l_w" in out.logs) == (kind != "plain")
    model = pipeline.build_model(config, "no_attention", 4)
    assert model.head.f_a is None and pipeline.prior_weight(config, "no_prior") == 0.0
    assert pipeline.build_model(config, "inat_prior", 4).head.alpha == pipeline.INAT_PRIOR[0]
    groups = pipeline.param_groups(model, rg_config.CHAPTER.resolve("smoke", 0))
    assert len(groups) == 2 and groups[1]["lr"] == config.lr * config.new_lr_scale
    with pytest.raises(ValueError, match="unknown model"):
        pipeline.build_model(config, "gap", 4)


def _fake_table(n: int = 6) -> pd.DataFrame:
    rows = []
    for s in range(n):
        row = {"seed": s, **{f"acc_{k}": 0.7 + 0.001 * s for k in rg_config.MODELS},
               **{f"accc_{k}": 0.6 for k in rg_config.MODELS},
               "lm_full": 10 + 0.1 * s, "lm_no_prior": 14 + 0.3 * s, "lm_no_attention": 10 + 0.1 * s,
               "lm_inat_prior": 10.2 + 0.05 * s, "lm_kmeans": 16 - 0.2 * s, "lm_activation": 12 + 0.01 * s,
               "lm_uniform": 25.0, "lm_layer4": 10 + 0.1 * s + (0.01 if s % 2 else -0.01), "lm_lr20": 13 + 0.5 * s,
               "pd_full": 0.1 + 0.01 * s, "pd_no_prior": 0.2, "pd_inat_prior": 0.1, "pd_cam": 0.3 + 0.02 * s,
               "pd_gradcam": 0.3 + 0.02 * s, "pd_guided_gradcam": 0.1 + 0.01 * s + (0.002 if s % 2 else -0.002),
               "chance_disc": 0.97,
               "match_full": 0.4 + 0.01 * s, "match_no_prior": 0.2, "match_kmeans": 0.3, "match_activation": 0.1}
        rows.append(row)
    return pd.DataFrame(rows)


def test_every_paper_number_has_a_row_and_rows_keep_the_rules(tmp_path):
    recorder = RunRecorder(notebook="03_region_grouping", run_dir=tmp_path, params={}, profile="smoke", seed=0,
                           config={}, device="cpu")
    table = _fake_table()
    claims.record_numbers(recorder, table)
    claims.record_claims(recorder, table, rg_config.PROFILES["smoke"])
    ids = [c.id for c in recorder.claims]
    assert len(rg_config.PAPER_NUMBERS) == 2 + 3 + 2 + 10 + 4 + 3 + 3  # Tables 1–7 of papers.md §3
    assert len(ids) == len(set(ids)) == len(rg_config.PAPER_NUMBERS) + 19
    assert all(check_row(vars(c)) is None for c in recorder.claims)
    status = {c.id: c.status for c in recorder.claims}
    assert status["rg-t7-analog-prior-landmark"] == "reproduced"  # 10 vs 14, growing apart
    assert status["rg-t13-analog-accuracy"] == "inconclusive"  # every seed ties: no evidence either way
    assert status["rg-t6-analog-guided_gradcam"] == "inconclusive"
    assert status["rg-choice-layer4"] == "reproduced"  # within ±1 % of the box on every seed: equivalent
    assert status["rg-choice-lr20"] == "not reproduced"  # 3 % of the box and more worse
    assert recorder.metrics["landmark/full"] == pytest.approx(10.25)
    # a model this run did not train: its rows say so
    recorder2 = RunRecorder(notebook="03_region_grouping", run_dir=tmp_path / "b", params={}, profile="smoke", seed=0,
                            config={}, device="cpu")
    claims.record_claims(recorder2, table.drop(columns=["lm_inat_prior"]), rg_config.PROFILES["smoke"])
    assert {c.id: c.status for c in recorder2.claims}["rg-prior-shape"] == "not run"


def test_overrides_and_profiles_and_the_config_mirrors_the_library():
    from attnbook.methods.region_grouping import ASSIGNMENTS

    assert rg_config.ASSIGNMENTS == ASSIGNMENTS
    with pytest.raises(ConfigError, match="unknown parameter 'lr'"):
        rg_config.CHAPTER.resolve("smoke", 0, lr=0.1)
    assert rg_config.CHAPTER.resolve("smoke", 1, n_seeds="3").n_seeds == 3
    assert rg_config.seeds(rg_config.CHAPTER.resolve("smoke", 5)) == [5, 6]
    assert rg_config.CHAPTER.resolve("paper", 0).datasets == ("cub",)
    assert rg_config.CHAPTER.resolve("paper", 0, dataset="celeba").datasets == ("celeba",)
    assert rg_config.CHAPTER.resolve("paper", 0, dataset="synthetic").datasets == ()
    with pytest.raises(ValueError, match="plain"):
        rg_config.RegionGroupingConfig(models=("full",))
    celeba = rg_config.CHAPTER.resolve("paper", 0, dataset="celeba")  # the paper's CelebA settings swapped in
    assert (celeba.num_parts, celeba.resolution, celeba.prior_weight, celeba.lr, celeba.epochs) == (9, 256, 0.1, 5e-3,
                                                                                                    30)
    assert rg_config.CHAPTER.resolve("paper", 0, dataset="celeba", num_parts=7).num_parts == 7  # an override stays
    inat = rg_config.CHAPTER.resolve("paper", 0, dataset="inat2017")
    assert (inat.num_parts, inat.alpha, inat.batch_size) == (8, 2e-3, 128)
    cpu = rg_config.CHAPTER.resolve("cpu", 3)
    assert rg_config.seeds(cpu, "layer4") == [3 + k for k in range(cpu.ablation_seeds)]
    assert rg_config.kinds(cpu) == rg_config.MODELS[:4] + rg_config.ABLATIONS


def test_the_paper_profile_stops_naming_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # past the GPU check: the data set is missing
    for dataset, name in (("cub", "CUB"), ("celeba", "CelebA"), ("inat2017", "iNaturalist")):
        with pytest.raises(RequirementError, match=name):
            check_requirements(rg_config.CHAPTER.resolve("paper", 0, dataset=dataset))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RequirementError, match="CUDA"):
        check_requirements(rg_config.CHAPTER.resolve("paper", 0))


def test_the_gpu_profile_code_path_runs_on_cpu_at_tiny_sizes(tmp_path):
    """The gpu profile (every model, the prior-shape study included) through the notebook's calls, shrunk."""
    import matplotlib

    matplotlib.use("Agg")
    from attnbook.chapters.region_grouping import figures
    from attnbook.config import shrink

    config = shrink(rg_config.PROFILES["gpu"], num_classes=4, train_per_class=8, test_per_class=4, resolution=32,
                    source_resolution=48, width=4, n_seeds=2, epochs=1, batch_size=8, n_point=6, n_show=2)
    assert set(rg_config.kinds(config)) == set(rg_config.MODELS)
    recorder = RunRecorder(notebook="03_region_grouping", run_dir=tmp_path, params={}, profile="gpu", seed=0,
                           config={}, device="cpu")
    data = pipeline.make_data(config)
    assert data.train.tensors[R.IMAGE].shape[-1] == 32 and data.train.tensors[R.PART_MASKS].shape[-1] == 32
    evals = evaluation.evaluate_all(config, pipeline.train_all(config, data, None), data)
    table = claims.per_seed(evals)
    claims.record_numbers(recorder, table)
    claims.record_claims(recorder, table, config)
    status = {c.id: c.status for c in recorder.claims}
    assert all(status[i] != "not run" for i in ("rg-prior-shape", "rg-choice-layer4", "rg-choice-lr20-accuracy"))
    models = pipeline.Trained()
    for fig in (figures.figure_parts(evals, 0, n=2), figures.figure_overlap(evals, 0, data.info.part_names),
                figures.figure_errors(table), figures.figure_ablations(table, config.ablations),
                figures.figure_snapshots(models.snapshots, pipeline.snapshot_images(config, data))):
        assert fig.axes
    assert figures.explorer(evals, 0).children


def test_the_crop_keeps_landmarks_on_their_parts(bench):
    cropped = pipeline.crop_to_objects(bench.test_aligned, 32, 1.25)
    t = cropped.tensors
    xy = t[R.LANDMARKS].round().long().clamp(0, 31)
    on_part = [bool(t[R.PART_MASKS][i, k].flatten(0)[xy[i, k, 1] * 32 + xy[i, k, 0]] or
                    t[R.PART_MASKS][i, k, max(xy[i, k, 1] - 1, 0):xy[i, k, 1] + 2,
                                      max(xy[i, k, 0] - 1, 0):xy[i, k, 0] + 2].any())
               for i in range(len(xy)) for k in range(xy.shape[1]) if t[R.LANDMARK_VISIBLE][i, k]]
    assert sum(on_part) / len(on_part) > 0.9
    box = t[R.BBOX]
    assert ((box[:, 2:] - box[:, :2]).amax(1) / 32).mean() == pytest.approx(1 / 1.25, abs=0.05)


def test_snapshots_are_recorded_in_evaluation_only_and_the_lr_of_the_new_modules(bench):
    config = rg_config.CHAPTER.resolve("smoke", 0)
    model = pipeline.build_model(config, "full", 4)
    x = bench.test_aligned.tensors[R.IMAGE][:3]
    batch = {R.IMAGE: x, R.LABEL: torch.zeros(3, dtype=torch.long), pipeline.SNAPSHOT: torch.ones(3)}
    snaps: list[torch.Tensor] = []
    pipeline.region_objective(model.train(), batch, 0.5, snaps)  # a training step records nothing
    assert snaps == []
    with torch.no_grad():
        pipeline.region_objective(model.eval(), batch, 0.5, snaps)
        pipeline.region_objective(model, {R.IMAGE: x, R.LABEL: batch[R.LABEL]}, 0.5, snaps)  # unmarked: nothing
    assert len(snaps) == 1 and torch.allclose(snaps[0], model.outputs(x).assign.detach())
    assert pipeline.lr_scale(config, "lr20") == pipeline.CODE_LR_SCALE and pipeline.lr_scale(config, "full") == 1.0
    groups = pipeline.param_groups(pipeline.build_model(config, "lr20", 4), config, "lr20")
    assert groups[1]["lr"] == pytest.approx(config.lr * 20)
    layer4 = pipeline.build_model(config, "layer4", 4)  # the head groups the last block's output (half the side)
    assert layer4.outputs(x).assign.shape[-1] == model.outputs(x).assign.shape[-1] // 2
    multi = pipeline.classification_loss(torch.zeros(2, 3), torch.ones(2, 3))  # multi-hot labels: sigmoid CE
    assert multi.item() == pytest.approx(float(torch.log(torch.tensor(2.0))))


def test_train_all_records_the_snapshots_of_the_first_full_model(bench):
    from dataclasses import replace

    config = replace(rg_config.CHAPTER.resolve("smoke", 0), n_seeds=1, ablations=(), models=("plain", "full"),
                     epochs=2, batch_size=8)
    models = pipeline.train_all(config, bench, None)
    assert models.snapshots.shape[:3] == (config.n_snap, 3, config.num_parts)  # epochs 0, 1, 2
    sums = models.snapshots.sum(2)  # a partition of the pixels at every epoch
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    assert not torch.equal(models.snapshots[:, 0], models.snapshots[:, -1])


def test_chance_error_and_the_real_landmark_protocols():
    from attnbook.chapters.region_grouping import real

    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2] = True  # half the image
    masks[1, 0, 0] = True  # one pixel in 16
    assert evaluation.chance_error(masks) == pytest.approx(1 - (0.5 + 1 / 16) / 2)
    # CelebA: the authors' code divides centres and landmarks by the inter-ocular distance before the regression
    landmarks = torch.tensor([[[0.0, 0.0], [4.0, 0.0]], [[1.0, 1.0], [1.0, 3.0]]])
    c, lm = real.normalised(landmarks.clone(), landmarks, None, "interocular")
    assert torch.allclose(lm[0], landmarks[0] / 4) and torch.allclose(c[1], landmarks[1] / 2)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 2.0], [1.0, 1.0, 3.0, 5.0]])
    _, in_box = real.normalised(landmarks, landmarks, boxes, "box")
    assert torch.allclose(in_box[1, 1], torch.tensor([0.0, 0.5]))
    # centres equal to the landmarks: a perfect regression; a landmark never visible in the fitting split is skipped
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(12, 2, 2, generator=gen) * 10 + 1
    visible = torch.ones(12, 2, dtype=torch.bool)
    fit_visible = visible.clone()
    fit_visible[:, 1] = False
    box = torch.tensor([[0.0, 0.0, 12.0, 12.0]]).expand(12, 4)
    fit = real.Centres(points, points, fit_visible, box, torch.zeros(12, dtype=torch.long))
    test = real.Centres(points, points, visible, box, torch.zeros(12, dtype=torch.long))
    assert real.landmark_error(fit, test, "box") == pytest.approx(0.0, abs=1e-6)
    assert real.landmark_error(test, test, "interocular") == pytest.approx(0.0, abs=1e-6)

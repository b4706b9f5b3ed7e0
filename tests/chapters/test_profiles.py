"""Every profile's code path, run on the CPU at tiny sizes: the ``gpu`` and ``paper`` profiles of every chapter.

Each test takes a profile's config, shrinks only its sizes (:func:`attnbook.config.shrink`: CPU, tiny images,
epochs, seeds and counts — the datasets, real-data loaders, ``pretrained``, ``train_from`` and strides stay the
profile's), and makes the notebook's calls in the notebook's order on fixture trees in the real on-disk formats
(``tests/data/real/fixtures.py``, under a temporary ``ATTNBOOK_DATA``), through the claims and a schema-validated
``metrics.json``. ImageNet weights cannot be downloaded: ``pretrained=True`` loads a randomly initialised state
dict of the same architecture from a temporary ``TORCH_HOME``, in torchvision's cache format (file named with its
SHA-256 prefix, verified and read with ``weights_only=True`` by :mod:`attnbook.models.weights`).

Not covered here (reported): BR-NPA's data-loading worker processes (``num_workers`` is shrunk to 0); the fixture
images are flat grey, so Table 2's rank correlations are undefined on them and those rows read "not run".
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
import torchvision

from attnbook import runs
from attnbook.config import ConfigError, check_requirements, shrink
from attnbook.models import weights as weights_module

matplotlib.use("Agg")

_spec = importlib.util.spec_from_file_location("real_fixtures", Path(__file__).parents[1] / "data" / "real" /
                                               "fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

# MNIST with as many test threes and eights as the §4.1 figure shows (8), so the figure is drawn as on the real set.
MAKERS = {"mnist": lambda root: fixtures.make_mnist(root, test_labels=fixtures.MNIST_TEST_LABELS + (3, 8) * 3),
          "cats_vs_dogs": fixtures.make_cats_vs_dogs, "stanford_dogs": fixtures.make_stanford_dogs,
          "cub": fixtures.make_cub, "fgvc_aircraft": fixtures.make_fgvc_aircraft,
          "stanford_cars": fixtures.make_stanford_cars, "sun_attributes": fixtures.make_sun_attributes}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Every dataset a profile reads, as a fixture tree in its real on-disk format."""
    root = tmp_path_factory.mktemp("data")
    for make in MAKERS.values():
        make(root)
    return root


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A TORCH_HOME whose hub cache holds stand-in 'ImageNet' weights of the paper profiles' backbones."""
    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    urls = {}
    for arch in ("efficientnet_b0", "resnet18", "resnet50"):
        torch.manual_seed(0)
        tmp = folder / f"{arch}.tmp"
        torch.save(getattr(torchvision.models, arch)().state_dict(), tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
        tmp.rename(folder / f"{arch}-{digest}.pth")
        urls[arch] = f"https://download.invalid/models/{arch}-{digest}.pth"
    return home, urls


@pytest.fixture
def offline(monkeypatch, data_root, weights_home):
    """ATTNBOOK_DATA at the fixture trees; pretrained weights from the stand-in cache, never downloaded."""
    home, urls = weights_home
    monkeypatch.setenv("ATTNBOOK_DATA", str(data_root))
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv(weights_module.ALLOW_DOWNLOAD_ENV, raising=False)
    real_url = weights_module.weights_url
    monkeypatch.setattr(weights_module, "weights_url",
                        lambda arch, weights=weights_module.DEFAULT_WEIGHTS: urls.get(arch) or real_url(arch, weights))
    return data_root


def _show(fig) -> None:
    plt.close(fig)


def _finish(recorder: runs.RunRecorder, run_dir: Path) -> dict:
    recorder.finish()  # validates the record against the schema
    record = runs.read_record(run_dir)
    assert record["claims"] and record["metrics"]
    return record


def test_shrink_keeps_the_code_path():
    from attnbook.chapters.brnpa.config import PROFILES

    tiny = shrink(PROFILES["paper"], resolution=32, epochs=1)
    assert (tiny.needs_gpu, tiny.device, tiny.resolution, tiny.epochs) == (False, "cpu", 32, 1)
    assert tiny.datasets == PROFILES["paper"].datasets and tiny.pretrained and tiny.train_from == "stem"
    with pytest.raises(ConfigError, match="code path: datasets, pretrained"):
        shrink(PROFILES["paper"], pretrained=False, datasets=())
    with pytest.raises(ConfigError, match="code path: ablation_start, train_from"):
        shrink(PROFILES["cpu"], train_from="stem", ablation_start="stem")
    from attnbook.chapters.bla.config import PROFILES as BLA

    with pytest.raises(ConfigError, match="head_epochs"):  # the chapter's own checks still apply
        shrink(BLA["paper"], head_epochs=(1, 1))


# --- chapter 0: the testbed -------------------------------------------------------------------------------

def run_testbed(config, run_dir: Path) -> dict:
    """The calls of nbs/00_testbed.ipynb, in order."""
    from attnbook.chapters.testbed import claims, figures, pipeline

    check_requirements(config)
    recorder = runs.start("00_testbed", run_dir=run_dir, profile=config.profile, seed=config.seed, config=config,
                          params={}, device="cpu")
    bench = pipeline.make_data(config)
    recorder.numbers({"n_train": len(bench.train), "n_test": len(bench.test_aligned),
                      "n_classes": bench.spec.num_classes, "n_attributes": len(bench.info.attribute_names),
                      "object_area": pipeline.object_area(bench)}, prefix="data/")
    _show(figures.figure_samples(bench))
    _show(figures.figure_attribute_matrix(bench))
    figures.confusable_pairs_table(bench)
    recorder.number("data/bias_rate_train", float(bench.train.tensors["bias_aligned"].float().mean()))
    _show(figures.figure_bias(bench))
    model, history = pipeline.train_baseline(config, bench, recorder.checkpoint_dir)
    _show(figures.figure_history(history))
    correct = pipeline.split_correctness(model, bench)
    accuracy = {split: float(hits.float().mean()) for split, hits in correct.items()}
    recorder.numbers(accuracy, prefix="accuracy/")
    recorder.number("accuracy/bias_gap", accuracy["test_aligned"] - accuracy["test_conflicting"])
    explanations = pipeline.explain_test_objects(config, model, bench)
    scores = pipeline.score_explanations(explanations)
    recorder.table("explainer_scores", scores)
    claims.record_scores(recorder, scores)
    _show(figures.figure_maps(explanations, "test_aligned"))
    _show(figures.figure_maps(explanations, "test_conflicting"))
    figures.explorer(explanations, bench, config.explorer_images)
    claims.record_claims(recorder, correct, explanations, config)
    return _finish(recorder, run_dir)


@pytest.mark.parametrize("profile", ["gpu", "paper"])
def test_testbed_profile_runs_on_cpu(profile, tmp_path):
    from attnbook.chapters.testbed.config import PROFILES

    config = shrink(PROFILES[profile], num_classes=4, train_per_class=4, test_per_class=2, resolution=32, epochs=1,
                    batch_size=8, n_explain=4, lime_images=2, lime_samples=8, lime_grid=2, explorer_images=2)
    record = run_testbed(config, tmp_path / "run")
    assert record["profile"] == profile


# --- chapter 1: EAT ---------------------------------------------------------------------------------------

def run_eat(config, run_dir: Path) -> dict:
    """The calls of nbs/01_eat.ipynb, in order."""
    from attnbook.chapters.eat import claims, evaluation, figures, pipeline
    from attnbook.chapters.eat.data import make_data, mild_bias_task, other_tasks

    check_requirements(config)
    recorder = runs.start("01_eat", run_dir=run_dir, profile=config.profile, seed=config.seed, config=config,
                          params={}, device="cpu")
    task = make_data(config)
    recorder.numbers({"n_train": len(task.train), "n_test": len(next(iter(task.splits.values()))),
                      "n_classes": task.num_classes, "n_attributes": len(task.info.attribute_names)}, prefix="data/")
    models = pipeline.train_all(config, task, recorder.checkpoint_dir)
    evals = {kind: {s: evaluation.evaluate(config, model, task, s, kind) for s, model in by_seed.items()}
             for kind, by_seed in models.items()}
    table = claims.per_seed(evals)
    majority = evaluation.majority_attribute_accuracy(task, config.n_explain)
    claims.record_numbers(recorder, table, evals, majority, config)
    first = pipeline.seeds(config)[0]
    for split in task.splits:
        _show(figures.figure_maps(evals, first, split))
    figures.explorer(evals, first)
    figures.sentences_table(evals, first, task.info.class_names)
    claims.record_ablations(recorder, claims.ablation_table(table))
    mild_task = mild_bias_task(config)
    mild_models = pipeline.train_pair(config, mild_task, recorder.checkpoint_dir, config.mild_seeds)
    claims.record_mild(recorder, claims.per_seed(evaluation.evaluate_models(config, mild_models, mild_task)), config,
                       task.num_classes)
    others = other_tasks(config)
    measured = {name: (claims.per_seed(evaluation.evaluate_models(
                           config, pipeline.train_pair(config, other, recorder.checkpoint_dir, config.n_seeds), other)),
                       evaluation.majority_attribute_accuracy(other, config.n_explain))
                for name, other in others.items()}
    claims.record_other_data(recorder, config, {n: float(o.class_attributes.mean()) for n, o in others.items()},
                             measured)
    assert (figures.other_data_table(others) is None) == (not others)
    claims.record_claims(recorder, table, config, majority, others=measured)
    return _finish(recorder, run_dir)


EAT_TINY = dict(num_classes=4, train_per_class=4, test_per_class=2, resolution=32, epochs=1, n_seeds=2, n_explain=4,
                batch_size=4, width=8, head_hidden=8, embed_dim=4, num_workers=0)


def test_eat_gpu_profile_trains_with_two_processes(tmp_path):
    """``devices=2`` (what ``devices=0`` resolves to on a 2-GPU machine): every model of the run trained with
    DistributedDataParallel over 2 CPU processes (gloo), then evaluated and ledgered as with one."""
    from attnbook.chapters.eat.config import PROFILES

    config = shrink(PROFILES["gpu"], **{**EAT_TINY, "devices": 2, "ablations": ()})
    record = run_eat(config, tmp_path / "run")
    assert record["config"]["devices"] == 2 and "accuracy/eat/test_aligned" in record["metrics"]


@pytest.mark.parametrize("profile", ["gpu", "paper"])
def test_eat_profile_runs_on_cpu(profile, offline, tmp_path):
    """gpu: the testbed analog at the gpu profile's code path (ablations and the milder bias included); paper:
    CUB-200-2011 through its loader (class-level attributes, segmentation masks), then SUN attributes through its
    loader (class-level attributes from the per-image votes, no masks), on a (stand-in) ImageNet ResNet-18."""
    from attnbook.chapters.eat.config import PROFILES

    config = shrink(PROFILES[profile], **EAT_TINY, **({"mild_seeds": 2} if profile == "gpu" else {}))
    record = run_eat(config, tmp_path / "run")
    status = {c["id"]: c["status"] for c in record["claims"]}
    assert status["eat-table4-sun"] == "not run"  # no masks on SUN, in every profile
    if profile == "paper":  # CUB's and SUN's ResNet18 rows measured, the other backbones not run
        assert all(status[f"eat-{t}-cub-resnet18"] != "not run" for t in ("table2", "table3", "table4"))
        assert all(status[f"eat-{t}-sun-resnet18"] != "not run" for t in ("table2", "table3"))
        assert status["eat-table2-cub-resnet50"] == "not run" and status["eat-table2-sun-alexnet"] == "not run"
        assert "eat-far-conflicting" not in status and status["eat-mild-acc-test-conflicting"] == "not run"
        assert record["metrics"]["data/n_attributes"] == 2 and "accuracy/eat/test" in record["metrics"]
        # the SUN fixture: 2 classes × 5 images, 3 attributes; class means ≥ 0.5 -> one positive label per class
        assert record["metrics"]["sun/positive_rate"] == pytest.approx(1 / 3)
        assert record["metrics"]["sun/n_seeds"] == EAT_TINY["n_seeds"]
        sun = {(row["model"], row["seed"]) for row in record["tables"]["per_seed_sun"]}
        assert sun == {(m, s) for m in ("base", "eat") for s in (0, 1)}
        assert record["texts"]["sun/summary"].startswith("Over 2 training seeds")
    else:
        assert status["eat-far-conflicting"] != "not run" and "ablation/aux/acc_aligned" in record["metrics"]
        assert status["eat-mild-acc-test-conflicting"] != "not run" and record["metrics"]["mild/n_seeds"] == 2
        assert record["texts"]["sun/summary"].startswith("This profile does not read SUN")


@pytest.mark.slow
def test_eat_paper_profile_measures_another_backbone(offline, tmp_path):
    """paper with ``-p arch=resnet50`` (one run per backbone): the ResNet50 column of Tables II–IV measured on CUB and
    SUN through the same path, on the (stand-in) ImageNet ResNet-50; the ResNet18 column left to its own run."""
    from dataclasses import replace

    from attnbook.chapters.eat.config import PROFILES

    config = replace(shrink(PROFILES["paper"], **EAT_TINY), arch="resnet50")
    record = run_eat(config, tmp_path / "run")
    status = {c["id"]: c["status"] for c in record["claims"]}
    assert all(status[f"eat-{t}-cub-resnet50"] != "not run" for t in ("table2", "table3", "table4"))
    assert all(status[f"eat-{t}-sun-resnet50"] != "not run" for t in ("table2", "table3"))
    assert status["eat-table2-cub-resnet18"] == "not run" and record["texts"]["paper/backbone"] == "ResNet50"


# --- chapter 4: BLA ---------------------------------------------------------------------------------------

def run_bla(config, run_dir: Path, cache: Path) -> dict:
    """The calls of nbs/04_bla.ipynb, in order."""
    from attnbook.chapters.bla import claims, digits, faithfulness, figures, heads, tasks
    from attnbook.chapters.bla.config import LABELS, seeds, variants

    check_requirements(config)
    recorder = runs.start("04_bla", run_dir=run_dir, profile=config.profile, seed=config.seed, config=config,
                          params={}, device="cpu")
    run_seeds = seeds(config)
    recorder.numbers({"n_seeds": config.n_seeds, "seed_first": run_seeds[0], "seed_last": run_seeds[-1]})
    recorder.text("variants", ", ".join(LABELS[v] for v in variants(config)))
    claims.record_constants(recorder, config)
    digits_train, digits_test = digits.digits_data(config)
    digit_runs = digits.run_digits(config, digits_train, digits_test)
    claims.record_digits(recorder, config, digit_runs)
    recorder.table("digits_runs", digit_runs.scores)
    figures.digits_summary(digit_runs.scores)
    _show(figures.figure_digits(digit_runs, digits_test))
    recorder.numbers(digits.digits_truth(digit_runs, digits_test), prefix="mnist/bla_t/")
    backbone, backbone_info = tasks.pretrain_backbone(config, cache)
    head_tasks = tasks.make_tasks(config, backbone)
    recorder.text("backbone_source", backbone_info["source"])
    recorder.numbers({"resolution": config.resolution, "grid": head_tasks[0].grid})
    figures.tasks_table(head_tasks)
    results = [heads.run_task(task, config) for task in head_tasks]
    scores = heads.scores_frame(results)
    truth = heads.truth_frame(results)
    recorder.table("head_runs", scores)
    table_1 = figures.table1(scores)
    recorder.table("table1", table_1.reset_index())
    claims.record_table1(recorder, scores)
    claims.record_calibration(recorder, config, scores)
    _show(figures.figure3(scores))
    _show(figures.figure2(results, config))
    truth_table = figures.truth_table(truth, results)
    recorder.table("ground_truth", truth_table)
    claims.record_truth(recorder, truth_table)
    _show(figures.figure_truth(truth, results))  # real data (paper): sizes only, no object masks
    faith = faithfulness.measure(config, backbone, results)
    recorder.table("table2_per_image", faith.rows)
    table_2 = figures.table2(faith.rows)
    recorder.table("table2", table_2.reset_index())
    recorder.numbers({"lime_samples": config.lime_samples, "lime_images": config.lime_images})
    claims.record_table2(recorder, table_2)
    ablation = figures.threshold_ablation(scores)
    recorder.table("threshold_ablation", ablation)
    claims.record_ablation(recorder, ablation)
    figures.explorer(results, faith, config)
    claims.record_claims(recorder, config, digit_runs, results, faith)
    ledger = recorder.claims_frame()
    recorder.numbers({"n_claims": len(ledger), **{f"n_{status.replace(' ', '_')}": int((ledger.status == status).sum())
                                                  for status in ("reproduced", "not reproduced", "inconclusive",
                                                                 "not run")}})
    return _finish(recorder, run_dir)


BLA_TINY = dict(n_seeds=2, digits_epochs=1, resolution=64, analog_train=(3, 1, 1), analog_test=(2, 1, 1),
                pretext_classes=3, pretext_per_class=2, pretext_epochs=1, head_epochs=(1, 1, 1), l2x_k=2,
                lime_images=2, lime_samples=8, explorer_images=1)


@pytest.mark.parametrize("profile", ["gpu", "paper"])
def test_bla_profile_runs_on_cpu(profile, offline, tmp_path):
    """gpu: digits + the three analogs at the profile's strides; paper: MNIST, cats vs dogs, Stanford Dogs and
    CUB through their loaders, on the (stand-in) ImageNet EfficientNet-B0."""
    from attnbook.chapters.bla.config import PROFILES

    config = shrink(PROFILES[profile], **BLA_TINY)
    record = run_bla(config, tmp_path / "run", tmp_path / "cache")
    assert record["profile"] == profile and record["config"]["datasets"] == list(PROFILES[profile].datasets)
    settings = {c["id"]: c["setting"] for c in record["claims"]}
    if profile == "paper":  # the real datasets through their loaders, on the ImageNet backbone
        assert record["texts"]["backbone_source"].startswith("ImageNet")
        assert settings["bla-4.1-mnist"].startswith("MNIST 3 vs 8")
        for key, name in (("A", "cats vs dogs"), ("B", "Stanford Dogs"), ("C", "CUB-200-2011")):
            assert settings[f"bla-table1-{key}-blat-vs-bl-acc"].startswith(f"{name}, 64 px, frozen efficientnet_b0 "
                                                                           "pretrained on ImageNet (real images)")
    else:
        assert record["texts"]["backbone_source"].startswith("synthetic pretext task")


# --- chapter 5: BR-NPA ------------------------------------------------------------------------------------

def run_brnpa(config, run_dir: Path) -> dict:
    """The calls of nbs/05_brnpa.ipynb, in order."""
    from attnbook.chapters.brnpa import claims, evaluation, explanations, figures, pipeline, studies
    from attnbook.chapters.brnpa.config import CODE_VS_PAPER, TABLE4
    from attnbook.profiling import cost_ratios

    check_requirements(config)
    recorder = runs.start("05_brnpa", run_dir=run_dir, profile=config.profile, seed=config.seed, config=config,
                          params={}, device="cpu")
    task = pipeline.load_task(config)
    cnn = pipeline.pretrain(config, task, recorder.checkpoint_dir / "stage_a")
    state = cnn.backbone.state_dict()
    recorder.number("accuracy/pretrain", pipeline.test_accuracy(cnn, task))
    recorder.numbers({"data/n_train": len(task.train), "data/n_test": len(task.test),
                      "data/n_classes": task.num_classes, "seeds/stage_b": config.n_seeds,
                      "seeds/ablations": config.ablation_seeds, "seeds/first": config.seed})
    inputs = pipeline.prepare_inputs(config, state, task, config.train_from)
    study = studies.resolution_study(config, state, inputs, task)
    table6 = figures.resolution_table(study)
    recorder.table("table6", table6)
    recorder.numbers(claims.resolution_metrics(study))
    recorder.number("time/study_minutes", study.seconds / 60)
    _show(figures.figure_resolution(table6))
    by_dataset = {task.name: study, **studies.other_dataset_studies(config)}
    assert list(by_dataset) == (list(config.datasets) or [task.name])
    table1 = figures.table1(by_dataset)
    recorder.table("table1", table1)
    grad_table = figures.grad_variance_table(study)
    recorder.table("fig8_gradients", grad_table)
    recorder.numbers(claims.grad_metrics(grad_table))
    _show(figures.figure_grad_norms(study, config.seed))
    ablations = studies.ablation_study(config, state, task)
    table4 = figures.ablation_table(ablations, TABLE4)
    table5 = figures.subset_table(ablations["active_refine"])
    code_table = figures.ablation_table(ablations, CODE_VS_PAPER)
    for name, table in (("table4", table4), ("table5", table5.drop(columns="subset")), ("code_vs_paper", code_table)):
        recorder.table(name, table)
    recorder.numbers(claims.ablation_metrics(ablations))
    _show(figures.figure_ablations(table4, table5, code_table))
    hierarchy = figures.hierarchy_table(study)
    areas = evaluation.region_areas(task)
    recorder.table("hierarchy", hierarchy)
    recorder.numbers(claims.hierarchy_metrics(study))
    recorder.numbers(claims.area_metrics(areas))
    _show(figures.figure_hierarchy(hierarchy, areas))
    examples = explanations.explain_examples(inputs, study, task, config.n_localize)
    _show(figures.figure_maps(examples, config.n_explain))
    localization = figures.localization_table(examples)
    recorder.table("localization", localization)
    figures.explorer(examples, task, config.n_explain)
    cost = studies.efficiency(config)
    ratios = cost_ratios(cost, reference="brnpa")
    recorder.table("efficiency", cost)
    recorder.numbers(claims.efficiency_metrics(ratios))
    recorder.text("efficiency/backbones", ", ".join(config.efficiency_archs))
    recorder.numbers({"efficiency/size": config.efficiency_size, "efficiency/batch": config.efficiency_batch,
                      "efficiency/steps": config.efficiency_steps})
    recorder.text("efficiency/device", "cpu")
    _show(figures.figure_efficiency(cost))
    claims.record_claims(recorder, config, task, by_dataset, ablations, grad_table, ratios)
    return _finish(recorder, run_dir)


# One seed of each (each ResNet-50 model costs ~1 s on one thread; the tests over seeds are covered by
# test_brnpa.py's tiny pipeline); data loaded in this process (num_workers=0: a worker process per DataLoader
# costs ~0.7 s per model here, +30 s per test); efficiency_archs: one backbone of the profile's five.
BRNPA_TINY = dict(resolution=32, num_classes=2, train_per_class=2, test_per_class=2, epochs=1, ablation_epochs=1,
                  n_seeds=1, ablation_seeds=1, batch_size=4, num_workers=0, n_explain=2, n_localize=2,
                  efficiency_archs=("resnet18",), efficiency_size=32, efficiency_batch=2, efficiency_steps=1,
                  efficiency_warmup=0)
# What else each profile shrinks. paper: the cost is measured in this process (the gpu profile's test runs the
# profile's isolated measurement, a fresh process per backbone × head; the measured code is the same).
BRNPA_EXTRA = {"gpu": {"pretrain_epochs": 1}, "paper": {"efficiency_isolated": False}}


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["gpu", "paper"])
def test_brnpa_profile_runs_on_cpu(profile, offline, tmp_path):
    """gpu: ResNet-50 trained from the stem on the synthetic benchmark, layers 3-4 at stride 1; paper: the same
    on CUB, FGVC-Aircraft and Stanford Cars through their loaders, from the (stand-in) ImageNet weights."""
    from attnbook.chapters.brnpa.config import PROFILES

    config = shrink(PROFILES[profile], **{**BRNPA_TINY, **BRNPA_EXTRA[profile]})
    record = run_brnpa(config, tmp_path / "run")
    assert record["profile"] == profile and record["config"]["datasets"] == list(PROFILES[profile].datasets)
    status = {c["id"]: c["status"] for c in record["claims"]}
    table1 = {row["dataset"] for row in record["tables"]["table1"]}
    if profile == "paper":  # Table 1 on the three real datasets: tested, not "not run"
        assert table1 == {"cub", "fgvc_aircraft", "stanford_cars"}
        assert all(status[f"brnpa-t1-{name}"] != "not run" for name in table1)
    else:
        assert table1 == {"synthetic fine-grained"} and status["brnpa-t1-cub"] == "not run"

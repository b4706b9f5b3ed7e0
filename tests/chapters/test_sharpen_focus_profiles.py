"""Chapter 2's gpu and paper code paths on the CPU at tiny sizes: the paper profile's CIFAR-100 protocol and its
studies (Caltech-256, CUB-200-2011, VOC 2012, ImageNet) on fixture trees in the real on-disk formats, with stand-in
ImageNet weights in a temporary ``TORCH_HOME`` (torchvision's cache format, as tests/chapters/test_profiles.py);
studies whose weights are not there stop naming them (nothing is downloaded); ``devices`` reaches the training
loop (DistributedDataParallel over two gloo processes, the losses' double backward included)."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torchvision

from attnbook import runs
from attnbook.chapters.sharpen_focus import claims, evaluation, figures, pipeline, studies
from attnbook.chapters.sharpen_focus import config as sf_config
from attnbook.config import check_requirements, shrink
from attnbook.models import weights as weights_module

matplotlib.use("Agg")

_spec = importlib.util.spec_from_file_location("real_fixtures", Path(__file__).parents[1] / "data" / "real" /
                                               "fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

STUDIES = ("caltech256-n30-resnet18", "caltech256-n30-vgg19", "imagenet-resnet18", "cub-resnet50",
           "voc2012-resnet18")
STAND_INS = ("resnet18", "resnet50")  # vgg19 (548 MB) and resnet101 have none: their studies must stop early


def make_caltech(root: Path, classes: int = 3, per_class: int = 56) -> None:
    """Caltech-256's layout with enough images per class for N=30 training + 25 test images (the shared fixture
    has 5), plus the clutter class the loader drops."""
    home = root / "caltech256" / "256_ObjectCategories"
    for c in range(classes):
        for k in range(per_class):
            fixtures.write_image(home / f"{c + 1:03d}.class{c}" / f"{c + 1:03d}_{k + 1:04d}.jpg", value=60 * c + k,
                                 size=(12, 10))
    fixtures.write_image(home / "257.clutter" / "257_0001.jpg")


VOC_TRAIN = {f"2008_{k:06d}": {"cat": 1} if k % 2 else {"dog": 1, "person": k % 3 - 1} for k in range(6)}
VOC_VAL = {f"2009_{k:06d}": {"cat": 1} if k % 2 else {"dog": 1} for k in range(4)}


def make_voc(root: Path) -> None:
    """VOC 2012's layout with 6 train and 4 val images, cats and dogs in both (the shared fixture's val split has
    one image: no class with positives and negatives, so no AUC)."""
    home = root / "VOCdevkit" / "VOC2012"
    main = home / "ImageSets" / "Main"
    for split, table in (("train", VOC_TRAIN), ("val", VOC_VAL)):
        fixtures.write_lines(main / f"{split}.txt", list(table))
        for cls in fixtures.VOC_CLASSES:
            fixtures.write_lines(main / f"{cls}_{split}.txt", [f"{i} {table[i].get(cls, -1):>2}" for i in table])
        for k, image_id in enumerate(table):
            value = 30 * k + 80 * ("cat" in table[image_id])
            fixtures.write_image(home / "JPEGImages" / f"{image_id}.jpg", value=value)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    fixtures.make_cifar100(root)
    fixtures.make_cub(root)
    fixtures.make_imagenet(root)
    make_caltech(root)
    make_voc(root)
    return root


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A TORCH_HOME whose hub cache holds stand-in 'ImageNet' weights (random, same architecture) of ResNet-18/50."""
    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    urls = {}
    for arch in STAND_INS:
        torch.manual_seed(0)
        tmp = folder / f"{arch}.tmp"
        torch.save(getattr(torchvision.models, arch)().state_dict(), tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
        tmp.rename(folder / f"{arch}-{digest}.pth")
        urls[arch] = f"https://download.invalid/models/{arch}-{digest}.pth"
    return home, urls


@pytest.fixture
def offline(monkeypatch, data_root, weights_home):
    """ATTNBOOK_DATA at the fixture trees, TORCH_HOME at the stand-ins; never a download; CIFAR-100's checksums
    (of the real files) skipped for the fixture."""
    from attnbook.data import catalog

    home, urls = weights_home
    monkeypatch.setenv("ATTNBOOK_DATA", str(data_root))
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv(weights_module.ALLOW_DOWNLOAD_ENV, raising=False)
    real_url = weights_module.weights_url
    monkeypatch.setattr(weights_module, "weights_url",
                        lambda arch, weights=weights_module.DEFAULT_WEIGHTS: urls.get(arch) or
                        real_url(arch, weights).replace("https://download.pytorch.org", "https://download.invalid"))
    real_load = catalog.load_dataset
    monkeypatch.setattr(catalog, "load_dataset",
                        lambda name, **kw: real_load(name, **({"checksum": False} if name == "cifar100" else {}),
                                                     **kw))
    pipeline.make_data.cache_clear()
    studies._splits.cache_clear()
    yield data_root
    pipeline.make_data.cache_clear()
    studies._splits.cache_clear()


def run_notebook(config, run_dir: Path) -> dict:
    """The calls of nbs/02_sharpen_focus.ipynb, in order."""
    check_requirements(config)
    recorder = runs.start("02_sharpen_focus", run_dir=run_dir, profile=config.profile, seed=config.seed,
                          config=config, params={}, device="cpu")
    task = pipeline.make_data(config)
    recorder.numbers({"n_train": len(task.train), "n_test": len(task.test), "n_classes": task.num_classes},
                     prefix="data/")
    recorder.numbers(claims.paper_numbers())
    families = ("main",) + (("ablation",) if config.ablations else ()) + (("multilabel",) if config.ml_seeds else ())
    trained = pipeline.train_all(config, recorder.checkpoint_dir, recorder.checkpoint_context, families)
    evals = {kind: {s: evaluation.evaluate(m, task, config.n_explain) for s, m in by.items()}
             for kind, by in trained["main"].items()}
    table = claims.per_seed(evals)
    claims.record_numbers(recorder, table)
    claims.accuracy_table(table, config)
    plt.close(figures.figure_gains(table))
    first = sf_config.seeds(config)[0]
    plt.close(figures.figure_three_attentions(evals, first))
    plt.close(figures.figure_target_vs_confuser(evals, first))
    recorder.table("maps", claims.maps_table(table))
    recorder.text("disc_mass/summary", claims.disc_sentence(table))
    figures.explorer(evals, first, n=2)
    ablation = None
    if config.ablations:
        accuracy = {k: {s: evals[k][s].accuracy for s in evals[k]} for k in ("baseline", config.reference)}
        ablation = claims.ablation_frame({n: {s: evaluation.test_accuracy(m, task) for s, m in by.items()}
                                          for n, by in trained["ablation"].items()},
                                         accuracy[config.reference], accuracy["baseline"])
        claims.record_ablation(recorder, ablation)
        claims.ablation_summary(ablation)
    recorder.text("ablation/summary", claims.ablation_sentence(ablation))
    multilabel = None
    if config.ml_seeds:
        bench = pipeline.make_multilabel_data(config)
        multilabel = claims.multilabel_frame({k: {s: evaluation.evaluate_multilabel(m, bench) for s, m in by.items()}
                                              for k, by in trained["multilabel"].items()})
        claims.record_multilabel(recorder, multilabel)
    recorder.text("multilabel/summary", claims.multilabel_sentence(multilabel, sf_config.ML_WHY))
    costs = pipeline.measure_costs(config, task)
    recorder.text("cost/resnet18", claims.resnet18_sentence(costs))
    claims.record_costs(recorder, costs)
    study_results = studies.run_studies(config, recorder.checkpoint_dir, recorder.checkpoint_context)
    recorder.table("studies", claims.study_table(study_results))
    recorder.text("studies/summary", claims.studies_sentence(study_results))
    claims.record_claims(recorder, table, config, study_results)
    claims.record_ablation_claims(recorder, ablation, config)
    claims.record_multilabel_claims(recorder, multilabel, config, sf_config.ML_WHY)
    recorder.finish()
    return runs.read_record(run_dir)


@pytest.mark.slow
def test_paper_profile_runs_cifar100_and_the_studies_on_fixtures(offline, tmp_path):
    """CIFAR-100 (paper schedule and augmentation) on 4 images, then the studies: Caltech-256 N=30 ResNet-18, CUB
    ResNet-50 and VOC 2012 on stand-in ImageNet weights, ImageNet ResNet-18 from scratch — every row measured; the
    VGG-19 study (no weights here) and the unselected ones not run, with the reason."""
    config = shrink(sf_config.PROFILES["paper"], depth=8, width=2, n_seeds=2, epochs=2, milestones=(1,),
                    batch_size=4, n_explain=2, cost_steps=1, cost_resnet18=False, studies=STUDIES, study_seeds=2,
                    study_epochs=1, study_resolution=32, study_batch_size=8, study_workers=0)
    assert config.data == "cifar100" and config.augment and config.devices == 0
    record = run_notebook(config, tmp_path / "run")
    rows = {c["id"]: c for c in record["claims"]}
    status = {i: c["status"] for i, c in rows.items()}
    assert status["sf-table1-channelwise"] != "not run" and record["metrics"]["data/n_classes"] == 100
    for measured in ("sf-table3-n30-resnet18-ach", "sf-table3-n30-resnet18-apx", "sf-table4-resnet18",
                     "sf-table5-resnet50", "sf-table6-ap-ach", "sf-table6-auc-apx"):
        assert status[measured] != "not run", measured
    assert "caltech256 N=30, resnet18 (ImageNet-initialised), 32 px" in rows["sf-table3-n30-resnet18-ach"]["setting"]
    assert "from scratch" in rows["sf-table4-resnet18"]["setting"]
    assert "90 training / 75 test images" in rows["sf-table3-n30-resnet18-ach"]["setting"]  # 3 × 30 / 3 × 25
    assert status["sf-table3-n30-vgg19-ach"] == "not run" and "vgg19" in rows["sf-table3-n30-vgg19-ach"]["note"]
    assert "not in the local cache" in rows["sf-table3-n30-vgg19-ach"]["note"]
    assert status["sf-table5-resnet101"] == "not run" and "paper profile" in rows["sf-table5-resnet101"]["note"]
    assert status["sf-table2-preact164"] == "not run" and status["sf-table4-tencrop"] == "not run"
    table = {(r["study"], r["model"]) for r in record["tables"]["studies"]}
    assert ("voc2012-resnet18", "+ A_px") in table and ("caltech256-n30-vgg19", "—") in table
    assert "not run" in record["texts"]["studies/summary"]


def test_a_study_stops_before_training_naming_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    config = shrink(sf_config.PROFILES["paper"], studies=("voc2012-resnet18", "imagenet-resnet18"))
    results = studies.run_studies(config)
    assert not results["voc2012-resnet18"].ran and not results["voc2012-resnet18"].scores
    assert "attnbook data prepare voc2012" in results["voc2012-resnet18"].why
    assert "ImageNet (ILSVRC 2012) not found" in results["imagenet-resnet18"].why
    fixtures.make_voc(tmp_path / "empty")  # the data, but not the weights: named, with the fetch command
    why = studies.missing(studies.protocol(config, "voc2012-resnet18"))
    assert "ImageNet weights of resnet18 not in the local cache" in why and "ATTNBOOK_ALLOW_DOWNLOAD=1" in why


def test_vgg19_study_model_builds_offline_and_trains_its_losses_at_block4_block5(monkeypatch, tmp_path):
    """The VGG-19 protocol's model from torchvision's builder: with weights asked for and none cached it raises
    (no download); without them its inner/last layers carry Eq. 9's gradients."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(weights_module.ALLOW_DOWNLOAD_ENV, raising=False)
    study = sf_config.STUDIES["caltech256-n30-vgg19"]
    with pytest.raises(weights_module.WeightsUnavailable, match="vgg19"):
        studies.build_model(study, 3, 0)
    from dataclasses import replace

    model = studies.build_model(replace(study, pretrained=False), 3, 0)
    assert (model.inner, model.last) == ("block4", "block5")
    out = model.losses(torch.rand(2, 3, 32, 32), torch.tensor([0, 2]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.backbone.block1[0].weight.grad.abs().sum() > 0


def test_study_overrides_and_the_devices_setting_reach_the_training_config():
    config = shrink(sf_config.PROFILES["paper"], study_epochs=40, study_batch_size=4)
    cub = studies.protocol(config, "cub-resnet50")
    assert (cub.epochs, cub.milestones, cub.batch_size, cub.resolution) == (40, (30,), 4, 448)
    short = studies.protocol(shrink(config, study_epochs=2), "cub-resnet50")
    assert short.milestones == (1,)
    train = studies.train_config(config, cub, 3)
    assert (train.optimizer, train.momentum, train.lr, train.seed, train.num_workers) == ("sgd", 0.9, 1e-3, 3, 8)
    assert train.devices == max(1, torch.cuda.device_count())  # devices=0: every visible GPU
    for profile in ("gpu", "paper"):
        assert sf_config.PROFILES[profile].devices == 0
        assert pipeline.train_config(shrink(sf_config.PROFILES[profile], devices=2), 0).devices == 2
    assert pipeline.train_config(sf_config.PROFILES["cpu"], 0).devices == 1


def test_gpu_profile_trains_a_model_with_two_processes(tmp_path):
    """``devices=2`` (what ``devices=0`` gives on a 2-GPU machine): one model of the gpu profile trained with Eq. 9
    by DistributedDataParallel over 2 CPU processes (gloo) — the double backward through DDP — learns finite
    weights that differ from the initial ones."""
    config = shrink(sf_config.PROFILES["gpu"], num_classes=4, train_per_class=4, test_per_class=2, resolution=32,
                    width=2, epochs=1, batch_size=8, devices=2)
    job = pipeline.Job("main", "channelwise", 0)
    start = pipeline.build_model(config, 4, 0).state_dict()
    model, history = pipeline.train_one(config, job)
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    after = model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert not torch.equal(start["backbone.stem.conv.weight"], after["backbone.stem.conv.weight"])

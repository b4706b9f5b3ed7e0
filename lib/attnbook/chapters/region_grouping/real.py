"""Chapter 3's paper profile on real images: the task each data set gives (§4.1–4.3 of the paper, with the authors'
evaluation code's protocol) and its evaluation — accuracy, landmark regression from part centres, pointing game.

* **CUB-200-2011** (K = 5): train / test split; landmarks (15, with visibility) in box coordinates, one regressor
  per landmark fitted on its visible instances of the training images (Table 4: all classes, and the first three
  classes alone as SCOPS did); accuracy (Table 3).
* **CelebA** (K = 9): the landmark protocol (Tables 2, 7): unaligned images whose face box covers ≥ 30 % of the
  image, trained on the 40 attributes (sigmoid cross-entropy), regressors fitted on MAFL's training list and scored
  on MAFL's test list, centres and landmarks divided by each image's inter-ocular distance (the authors' code), one
  regressor for all five landmarks. Without the MAFL lists (they do not ship with CelebA) the official partition
  stands in (train / valid = fitting / test), and the setting says so. Attribute accuracy is the mean over the 40
  attributes on the test split of this protocol (Table 7's accuracy column); Table 1's aligned-image protocol is
  not run by this path.
* **iNaturalist 2017** (K = 8): train / val; pointing game on the val images that have boxes (Table 6: the peak of
  each map inside any object box), Region Grouping's ``Q^T a`` vs CAM, Grad-CAM and guided Grad-CAM of the plain
  ResNet; without box annotations that part is reported missing.

Images are squashed to ``resolution``² (the loaders' ``size``; the paper resizes the shorter side and crops, a random
crop for training). Every model is scored after its last epoch: the authors' code keeps the checkpoint that scores
best on the test set, which this book does not do. Chapter: ``nbs/03_region_grouping.ipynb``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from attnbook import metrics
from attnbook.chapters.region_grouping.config import RegionGroupingConfig
from attnbook.data import records as R
from attnbook.data.real.paths import DatasetMissingError

NORMALISERS = {"cub": "box", "celeba": "interocular", "inat2017": "none"}


@dataclass
class RealTask:
    """What a paper-profile run trains and scores on. ``fit`` (the landmark regressors' fitting split) is None
    without landmarks; ``point`` (images with object boxes, ``mask`` = their union) None without boxes;
    ``missing`` maps what this run cannot measure to the reason; ``key`` identifies the data for checkpoints."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    multilabel: bool
    info: R.DatasetInfo
    key: str
    setting: str
    fit: Dataset | None = None
    point: Dataset | None = None
    first3: tuple[int, ...] = ()  # CUB: the first three classes (Table 4 / SCOPS)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def normaliser(self) -> str:
        """How landmark coordinates are normalised: ``box`` (CUB), ``interocular`` (CelebA) or ``none``."""
        return NORMALISERS[self.name]

    @staticmethod
    def first(data: Dataset, n: int) -> dict[str, torch.Tensor]:
        """The first ``n`` samples of ``data`` stacked field by field."""
        samples = [data[i] for i in range(min(n, len(data)))]
        return {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in samples[0]}


def _cap(data: Dataset, n: int) -> Dataset:
    """The first ``n`` samples of ``data`` (all if ``n`` is 0 or more than there are)."""
    return data if n <= 0 or n >= len(data) else Subset(data, range(n))


def _labels(data: Dataset) -> list[int]:
    base, index = (data.dataset, list(data.indices)) if isinstance(data, Subset) else (data, range(len(data)))
    return [int(base.labels[i]) for i in index]


def cub_task(config: RegionGroupingConfig) -> RealTask:
    """CUB-200-2011 at ``resolution`` with boxes and the 15 landmarks (the training images also fit the regressors)."""
    from attnbook.data.catalog import load_dataset

    train, test = (load_dataset("cub", split=split, size=config.resolution, landmarks=True, bbox=True)
                   for split in ("train", "test"))
    train, test = _cap(train, config.max_images), _cap(test, config.max_images)
    base = train.dataset if isinstance(train, Subset) else train
    return RealTask("cub", train, test, base.info.num_classes, False, base.info,
                    f"cub-{config.resolution}-{len(train)}-{len(test)}",
                    f"CUB-200-2011, {config.resolution} px (squashed), {len(train)} training / {len(test)} test images",
                    fit=train, first3=(0, 1, 2))


def celeba_task(config: RegionGroupingConfig) -> RealTask:
    """CelebA's landmark protocol (module docstring): unaligned large faces, MAFL lists when present."""
    from attnbook.data.real.celeba import CelebA, large_face_indices, read_mafl_lists, require_in_the_wild

    probe = CelebA(split="all", landmarks=False)  # the home; the in-the-wild check names every missing file
    require_in_the_wild(probe.home)
    mafl = read_mafl_lists(probe.home)
    options = dict(size=config.resolution, in_the_wild=True)
    if mafl is not None:
        splits = {name: CelebA(split="all", files=files, **options) for name, files in mafl.items()}
        source = "MAFL lists (train without MAFL, fit = MAFL train, test = MAFL test)"
    else:
        splits = {name: CelebA(split=split, **options) for name, split in
                  (("train", "train"), ("fit", "valid"), ("test", "test"))}
        source = ("the official partition (train / valid as the fitting split / test): the MAFL lists "
                  "celebA_training.txt, MAFL_training.txt, MAFL_testing.txt were not found beside the CelebA files")
    large = {name: _cap(Subset(data, large_face_indices(data)), config.max_images) for name, data in splits.items()}
    info = splits["train"].info
    sizes = {name: len(data) for name, data in large.items()}
    return RealTask("celeba", large["train"], large["test"], info.num_classes, True, info,
                    f"celeba-wild-{config.resolution}-{sizes['train']}-{sizes['fit']}-{sizes['test']}",
                    f"CelebA unaligned, faces ≥ 30 % of the image, {config.resolution} px (squashed); {source}; "
                    f"{sizes['train']} training / {sizes['fit']} fitting / {sizes['test']} test images",
                    fit=large["fit"],
                    missing={"rg-t1": "Table 1 uses the aligned images and the official partition; this path trains "
                                   "the landmark protocol (unaligned large faces) only"})


def inat_task(config: RegionGroupingConfig) -> RealTask:
    """iNaturalist 2017 at ``resolution``: train / val, and the val images with boxes for the pointing game."""
    from attnbook.data.real.inat import INaturalist2017

    train = _cap(INaturalist2017(split="train", size=config.resolution), config.max_images)
    test = _cap(INaturalist2017(split="val", size=config.resolution), config.max_images)
    base = train.dataset if isinstance(train, Subset) else train
    point, missing = None, {}
    try:
        point = _cap(INaturalist2017(split="val", size=config.resolution, with_boxes=True), config.n_point)
    except DatasetMissingError as err:
        missing["rg-t6"] = f"the pointing game needs the val images' boxes: {err}"
    return RealTask("inat2017", train, test, base.info.num_classes, False, base.info,
                    f"inat2017-{config.resolution}-{len(train)}-{len(test)}",
                    f"iNaturalist 2017, {config.resolution} px (squashed), {len(train)} training / {len(test)} val "
                    f"images", point=point, missing=missing)


def make_task(config: RegionGroupingConfig) -> RealTask:
    """The :class:`RealTask` of ``config.dataset`` (loaders raise, naming the file, when something is missing)."""
    makers: dict[str, Callable[[RegionGroupingConfig], RealTask]] = {
        "cub": cub_task, "celeba": celeba_task, "inat2017": inat_task}
    if config.dataset not in makers:
        raise ValueError(f"no real-data task for dataset {config.dataset!r}; choose one of {sorted(makers)}")
    return makers[config.dataset](config)


# --- evaluation ------------------------------------------------------------------------------------------------

def batches(data: Dataset, batch_size: int, device: str | torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """``data`` in order, stacked into batches, images on ``device``."""
    for batch in DataLoader(data, batch_size=batch_size):
        batch[R.IMAGE] = batch[R.IMAGE].to(device)
        yield batch


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset, multilabel: bool, batch_size: int = 64) -> float:
    """Top-1 accuracy; multi-label: the mean over attributes of each attribute's accuracy (sign of the logit,
    CelebA's "average class accuracy")."""
    device = next(model.parameters()).device
    hits, total = torch.zeros(()), 0
    for batch in batches(data, batch_size, device):
        logits, labels = model(batch[R.IMAGE]).float().cpu(), batch[R.LABEL]
        hits = hits + (((logits > 0) == (labels > 0.5)).float().sum(0) if multilabel
                       else (logits.argmax(1) == labels).float().sum())
        total += len(labels)
    return float((hits / max(total, 1)).mean())


def normalised(centres: torch.Tensor, landmarks: torch.Tensor, boxes: torch.Tensor | None,
               normaliser: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Part centres ``[N, K, 2]`` and landmarks ``[N, L, 2]`` (pixels) in the protocol's units: box coordinates
    (CUB, :func:`~attnbook.metrics.scale_by_bbox`) or divided by the inter-ocular distance (CelebA, the authors'
    code divides both before the regression)."""
    if normaliser == "box":
        return metrics.scale_by_bbox(centres, boxes), metrics.scale_by_bbox(landmarks, boxes)
    if normaliser == "interocular":
        return metrics.scale_by_interocular(centres, landmarks), metrics.scale_by_interocular(landmarks, landmarks)
    raise ValueError(f"no landmark normalisation {normaliser!r}")


@dataclass
class Centres:
    """Per image of a split: part centres ``[N, K, 2]`` (pixels), landmarks, visibility, boxes, labels."""

    centres: torch.Tensor
    landmarks: torch.Tensor
    visible: torch.Tensor
    boxes: torch.Tensor | None
    labels: torch.Tensor


@torch.no_grad()
def centres_of(maps_fn: Callable[[torch.Tensor], torch.Tensor], data: Dataset, size: int,
               batch_size: int = 32) -> Centres:
    """Centres of mass of ``maps_fn(images)`` ``[B, K, h, w]`` over ``data``, batch by batch (images on the CPU;
    an empty map: the image centre)."""
    out: dict[str, list[torch.Tensor]] = {"c": [], "l": [], "v": [], "b": [], "y": []}
    for batch in DataLoader(data, batch_size=batch_size):
        maps = maps_fn(batch[R.IMAGE]).float().cpu().clamp(min=0)
        out["c"].append(metrics.map_centroids(maps, (size, size)).nan_to_num(size / 2))
        out["l"].append(batch[R.LANDMARKS].float())
        out["v"].append(batch[R.LANDMARK_VISIBLE].bool())
        out["y"].append(batch[R.LABEL])
        if R.BBOX in batch:
            out["b"].append(batch[R.BBOX].float())
    return Centres(torch.cat(out["c"]), torch.cat(out["l"]), torch.cat(out["v"]),
                   torch.cat(out["b"]) if out["b"] else None, torch.cat(out["y"]))


def landmark_error(fit: Centres, test: Centres, normaliser: str, classes: tuple[int, ...] = ()) -> float:
    """Mean L2 error (% of the box, or of the inter-ocular distance) of landmarks regressed from part centres,
    fitted on ``fit`` and scored on ``test`` (``classes``: only images of those classes in both)."""
    def pick(c: Centres) -> tuple[torch.Tensor, ...]:
        keep = torch.ones(len(c.labels), dtype=torch.bool) if not classes else torch.isin(
            c.labels.reshape(len(c.labels), -1)[:, 0], torch.tensor(classes))
        boxes = None if c.boxes is None else c.boxes[keep]
        return (*normalised(c.centres[keep], c.landmarks[keep], boxes, normaliser), c.visible[keep])

    fit_c, fit_l, fit_v = pick(fit)
    test_c, test_l, test_v = pick(test)
    per_landmark = normaliser == "box"  # CUB: one regressor per landmark on its visible instances
    test_v = test_v & fit_v.any(0)  # a landmark never visible in the fitting split cannot be regressed
    return 100 * metrics.landmark_regression_error(fit_c, fit_l, test_c, test_l, fit_visible=fit_v if per_landmark
                                                   else None, test_visible=test_v if per_landmark else None,
                                                   per_landmark=per_landmark)


def kmeans_fn(features_fn: Callable[[torch.Tensor], torch.Tensor], data: Dataset, k: int, seed: int,
              max_pixels: int = 10000, batch_size: int = 32) -> Callable[[torch.Tensor], torch.Tensor]:
    """DFF-style baseline: K-means of (at most ``max_pixels``) pixel features of ``data``; the returned function maps
    images to one-hot part maps ``[B, K, h, w]`` (each pixel to its nearest centre)."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    pixels, seen = [], 0
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=batch_size):
            f = features_fn(batch[R.IMAGE]).float().cpu()
            pixels.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double().numpy())
            seen += len(pixels[-1])
            if seen >= 4 * max_pixels:
                break
    data_np = np.concatenate(pixels)
    sample = data_np[rng.choice(len(data_np), min(max_pixels, len(data_np)), replace=False)]
    km = KMeans(min(k, len(sample)), n_init=2, random_state=seed).fit(sample)

    def maps(images: torch.Tensor) -> torch.Tensor:
        f = features_fn(images).float().cpu()
        labels = torch.from_numpy(km.predict(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double().numpy()))
        one_hot = torch.nn.functional.one_hot(labels.long(), k).float()
        return one_hot.view(f.shape[0], *f.shape[2:], k).permute(0, 3, 1, 2)

    return maps


def activation_fn(features_fn: Callable[[torch.Tensor], torch.Tensor], data: Dataset, k: int,
                  batch_size: int = 32) -> Callable[[torch.Tensor], torch.Tensor]:
    """Baseline: the ``k`` channels of the grouping stage with the largest mean activation on ``data``."""
    total = None
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=batch_size):
            mean = features_fn(batch[R.IMAGE]).float().cpu().mean(dim=(0, 2, 3)) * len(batch[R.IMAGE])
            total = mean if total is None else total + mean
    top = total.topk(k).indices
    return lambda images: features_fn(images)[:, top]

"""Chapter 3's evaluation: accuracy; part localisation by linear regression from K part centres to the landmarks
(Tables 2/4 protocol, CUB variant: box-normalised coordinates, one regressor per landmark on visible instances,
fitted on the training images, scored on the test images) for Region Grouping and two baselines on the plain
backbone's grouping-stage features (raw activation channels; K-means of pixel features, DFF-style); the pointing
game (Table 6) on object masks and boxes for Region Grouping's attribution ``Q^T a`` and CAM / Grad-CAM / guided
Grad-CAM of the plain backbone; and the K × P overlap of learned parts with the true part masks, matched one to one.

Chapter: ``nbs/03_region_grouping.ipynb``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch import nn

from attnbook import metrics
from attnbook.chapters.region_grouping import real
from attnbook.chapters.region_grouping.config import POSTHOC, RegionGroupingConfig
from attnbook.chapters.region_grouping.pipeline import PlainCNN, RegionGroupingModel
from attnbook.chapters.region_grouping.real import RealTask
from attnbook.data import records as R
from attnbook.data.synthetic import Benchmark
from attnbook.explain import explain
from attnbook.train import predict

FIT, TEST = "train", "test_aligned"  # the fitting split of the landmark regressors, and the test split


@dataclass
class Evaluation:
    """One trained model (kind × seed). Keys of the dicts: the method scored (the model's kind for Region Grouping
    models; the baselines and post-hoc explainers for the plain backbone)."""

    kind: str
    seed: int
    accuracy: dict[str, float]  # split -> accuracy
    landmark: dict[str, float] = field(default_factory=dict)  # method -> mean L2 error, % of the box size
    pointing: dict[str, float] = field(default_factory=dict)  # method -> pointing-game error on object masks
    pointing_box: dict[str, float] = field(default_factory=dict)  # method -> pointing-game error on boxes
    pointing_part: dict[str, float] = field(default_factory=dict)  # method -> error on the discriminative part
    chance: dict[str, float] = field(default_factory=dict)  # target -> error of a uniformly random peak (1 − area)
    overlap: dict[str, torch.Tensor] = field(default_factory=dict)  # method -> [K, P] mean soft Dice
    matching: dict[str, float] = field(default_factory=dict)  # method -> mean Dice of the one-to-one matching
    occurrence: torch.Tensor | None = None  # mean τ per part on the test split [K]
    examples: dict[str, torch.Tensor] = field(default_factory=dict)  # first n_show test images: maps for figures


@torch.no_grad()
def _batched(fn, images: torch.Tensor, batch_size: int = 128) -> list:
    return [fn(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]


def assignments(model: RegionGroupingModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``Q`` ``[N, K, h, w]``, the attribution ``Q^T a`` ``[N, 1, h, w]`` and ``τ`` ``[N, K]`` of ``images``."""
    outs = _batched(model.outputs, images)
    return (torch.cat([o.assign for o in outs]), torch.cat([o.attribution for o in outs]),
            torch.cat([o.occurrence for o in outs]))


def grouping_features(model: PlainCNN, images: torch.Tensor) -> torch.Tensor:
    """The plain backbone's grouping-stage (``layer3``) features ``[N, C, h, w]``."""
    return torch.cat(_batched(model.trunk, images))


def centres(maps: torch.Tensor, size: int, bbox: torch.Tensor) -> torch.Tensor:
    """Centres of mass of ``maps`` ``[N, K, h, w]`` in image pixels, box-normalised (CUB protocol) ``[N, K, 2]``;
    an empty map's centre is the image centre."""
    points = metrics.map_centroids(maps, (size, size)).nan_to_num(size / 2)
    return metrics.scale_by_bbox(points, bbox)


def landmark_error(fit_maps: torch.Tensor, test_maps: torch.Tensor, bench: Benchmark) -> float:
    """Tables 2/4 protocol: mean L2 error (% of the box size) of landmarks regressed from the K part centres,
    one regressor per landmark fitted on its visible instances of the fitting split."""
    fit, test = bench.split(FIT).tensors, bench.split(TEST).tensors
    size = fit[R.IMAGE].shape[-1]
    error = metrics.landmark_regression_error(
        centres(fit_maps, size, fit[R.BBOX]), metrics.scale_by_bbox(fit[R.LANDMARKS], fit[R.BBOX]),
        centres(test_maps, size, test[R.BBOX]), metrics.scale_by_bbox(test[R.LANDMARKS], test[R.BBOX]),
        fit_visible=fit[R.LANDMARK_VISIBLE], test_visible=test[R.LANDMARK_VISIBLE], per_landmark=True)
    return 100 * error


def activation_maps(fit_features: torch.Tensor, test_features: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """Baseline 1: the backbone's raw activation channels as parts — the ``k`` channels with the largest mean
    activation on the fitting split (post-ReLU, so non-negative maps)."""
    top = fit_features.mean(dim=(0, 2, 3)).topk(k).indices
    return fit_features[:, top], test_features[:, top]


def kmeans_maps(fit_features: torch.Tensor, test_features: torch.Tensor, k: int, seed: int,
                max_pixels: int = 10000) -> tuple[torch.Tensor, ...]:
    """Baseline 2 (DFF-style): K-means of the fitting split's pixel features (at most ``max_pixels`` of them),
    every pixel assigned to its nearest centre → one-hot part maps ``[N, K, h, w]``."""
    def pixels(f: torch.Tensor) -> np.ndarray:
        return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double().numpy()

    data = pixels(fit_features)
    rng = np.random.default_rng(seed)
    sample = data[rng.choice(len(data), min(max_pixels, len(data)), replace=False)]
    km = KMeans(k, n_init=2, random_state=seed).fit(sample)

    def one_hot(f: torch.Tensor) -> torch.Tensor:
        labels = torch.from_numpy(km.predict(pixels(f))).long().view(f.shape[0], *f.shape[2:])
        return torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).float()

    return one_hot(fit_features), one_hot(test_features)


def part_overlap(maps: torch.Tensor, part_masks: torch.Tensor) -> tuple[torch.Tensor, float]:
    """K × P mean soft Dice between the (upsampled) part maps ``[N, K, h, w]`` and the true part masks
    ``[N, P, H, W]``, and the mean Dice of the best one-to-one matching (Hungarian, :func:`linear_sum_assignment`)
    over min(K, P) pairs."""
    up = metrics.resize_to(maps, part_masks[:, 0]).clamp(min=0)
    up = up / up.amax(dim=(2, 3), keepdim=True).clamp(min=1e-12)  # each map max 1, as a mask is
    masks = part_masks.float()
    table = torch.stack([torch.stack([metrics.soft_iou(up[:, k], masks[:, p]).mean() for p in range(masks.shape[1])])
                         for k in range(up.shape[1])])  # [K, P]
    rows, cols = linear_sum_assignment(table.numpy(), maximize=True)
    return table, float(table.numpy()[rows, cols].mean())


def pointing(maps: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    """Pointing-game error (Table 6) of maps ``[N, H, W]``: on the object masks, and on the object boxes (the
    paper's protocol; on crops framed around the object the box covers most of the image)."""
    box_masks = metrics.boxes_to_masks(boxes, tuple(masks.shape[-2:]))
    return metrics.pointing_error_rate(maps, masks), metrics.pointing_error_rate(maps, box_masks)


def chance_error(masks: torch.Tensor) -> float:
    """The pointing-game error of a peak placed uniformly at random: 1 − the mean area fraction of the target
    (images with an empty target excluded, as :func:`~attnbook.metrics.pointing_error_rate` does)."""
    area = masks.float().flatten(1).mean(1)
    return float(1 - area[area > 0].mean())


def evaluate(config: RegionGroupingConfig, model: nn.Module, bench: Benchmark | RealTask, kind: str,
             seed: int) -> Evaluation:
    """Score one model on the test split (its parts' landmarks fitted on the training split); a real data set
    through :func:`evaluate_real`."""
    if isinstance(bench, RealTask):
        return evaluate_real(config, model, bench, kind, seed)
    fit, test = bench.split(FIT).tensors, bench.split(TEST).tensors
    accuracy = {split: float((predict(model, bench.split(split)).argmax(1) == bench.split(split).tensors[R.LABEL])
                             .float().mean()) for split in (TEST, "test_conflicting")}
    ev = Evaluation(kind, seed, accuracy)
    n, size, show = min(config.n_point, len(test[R.LABEL])), test[R.IMAGE].shape[-1], config.n_show
    images, boxes, masks = test[R.IMAGE][:n], test[R.BBOX][:n], test[R.MASK][:n]
    disc = test[R.DISC_MASK][:n]  # the smaller target: the part that tells a class from its confusable twin
    ev.chance = {"mask": chance_error(masks), "box": chance_error(metrics.boxes_to_masks(boxes, (size, size))),
                 "disc": chance_error(disc)}
    ev.examples = {"images": images[:show], "masks": masks[:show], "landmarks": test[R.LANDMARKS][:show]}
    if isinstance(model, RegionGroupingModel):
        fit_q, _, _ = assignments(model, fit[R.IMAGE])
        test_q, attribution, occurrence = assignments(model, test[R.IMAGE])
        ev.landmark[kind] = landmark_error(fit_q, test_q, bench)
        ev.overlap[kind], ev.matching[kind] = part_overlap(test_q, test[R.PART_MASKS])
        ev.occurrence = occurrence.mean(0)
        if model.head.use_attention:  # without attention Q^T a is flat: no peak to point with
            heat = metrics.resize_to(attribution[:n, 0], masks)
            ev.pointing[kind], ev.pointing_box[kind] = pointing(heat, boxes, masks)
            ev.pointing_part[kind] = metrics.pointing_error_rate(heat, disc)
        ev.examples.update(assign=test_q[:show], attribution=attribution[:show, 0])
        return ev
    fit_f, test_f = grouping_features(model, fit[R.IMAGE]), grouping_features(model, test[R.IMAGE])
    for name, (fit_maps, test_maps) in {
            "activation": activation_maps(fit_f, test_f, config.num_parts),
            "kmeans": kmeans_maps(fit_f, test_f, config.num_parts, seed),
            "uniform": (torch.ones_like(fit_f[:, :1]), torch.ones_like(test_f[:, :1]))}.items():
        ev.landmark[name] = landmark_error(fit_maps, test_maps, bench)
        ev.overlap[name], ev.matching[name] = part_overlap(test_maps, test[R.PART_MASKS])
        ev.examples[name] = test_maps[:show]
    with torch.no_grad():
        predicted = model(images).argmax(1)
    for name in POSTHOC:
        heat = explain(name, model, images, predicted, layer="layer4", fc="fc", size=(size, size)).detach()
        ev.pointing[name], ev.pointing_box[name] = pointing(heat, boxes, masks)
        ev.pointing_part[name] = metrics.pointing_error_rate(heat, disc)
        ev.examples[name] = heat[:show]
    return ev


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _posthoc(model: PlainCNN, images: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """CAM, Grad-CAM and guided Grad-CAM of the plain backbone at ``layer4`` for its predicted class ``[N, H, W]``."""
    with torch.no_grad():
        predicted = model(images).argmax(1)
    return {name: explain(name, model, images, predicted, layer="layer4", fc="fc", size=(size, size)).detach().cpu()
            for name in POSTHOC}


def evaluate_real(config: RegionGroupingConfig, model: nn.Module, task: RealTask, kind: str,
                  seed: int) -> Evaluation:
    """One model on a real data set (:mod:`~attnbook.chapters.region_grouping.real`): accuracy on the test split;
    landmark error of its part centres (Region Grouping) or of the baselines on the plain backbone's ``layer3``
    (K-means, activation channels, none), if the data set has landmarks (CUB also on its first three classes);
    pointing-game error on object boxes, if it has them."""
    device, size, show = _device(model), config.resolution, config.n_show
    ev = Evaluation(kind, seed, {TEST: real.accuracy(model, task.test, task.multilabel)})
    shown = task.first(task.test, show)
    ev.examples = {"images": shown[R.IMAGE],
                   "masks": shown.get(R.MASK, torch.ones(len(shown[R.IMAGE]), size, size, dtype=torch.bool)),
                   "landmarks": shown.get(R.LANDMARKS, torch.zeros(len(shown[R.IMAGE]), 0, 2))}
    is_rg = isinstance(model, RegionGroupingModel)
    with torch.no_grad():
        if is_rg:
            methods = {kind: lambda x: model.outputs(x.to(device)).assign}
        else:
            def features(x: torch.Tensor) -> torch.Tensor:
                return model.trunk(x.to(device))

            methods = {"activation": real.activation_fn(features, task.fit or task.train, config.num_parts),
                       "kmeans": real.kmeans_fn(features, task.fit or task.train, config.num_parts, seed),
                       "uniform": lambda x: torch.ones(len(x), 1, 2, 2)}
        for name, maps_fn in methods.items():
            ev.examples[name] = maps_fn(shown[R.IMAGE]).float().cpu()
            if task.fit is not None:
                fit_c, test_c = real.centres_of(maps_fn, task.fit, size), real.centres_of(maps_fn, task.test, size)
                ev.landmark[name] = real.landmark_error(fit_c, test_c, task.normaliser)
                for c in task.first3:  # Table 4: each of the first three classes alone (SCOPS's protocol)
                    ev.landmark[f"{name}_c{c + 1}"] = real.landmark_error(fit_c, test_c, task.normaliser, (c,))
        if is_rg:
            ev.examples["assign"] = ev.examples.pop(kind)
            ev.examples["attribution"] = model.outputs(shown[R.IMAGE].to(device)).attribution[:, 0].cpu()
    if task.point is not None and (not is_rg or model.head.use_attention):  # w/o attention Q^T a is flat
        hits: dict[str, list[torch.Tensor]] = {}
        for batch in real.batches(task.point, 32, device):
            masks = batch[R.MASK]
            if is_rg:
                with torch.no_grad():
                    heats = {kind: metrics.resize_to(model.outputs(batch[R.IMAGE]).attribution[:, 0].cpu(), masks)}
            else:
                heats = _posthoc(model, batch[R.IMAGE], masks.shape[-1])
            for name, heat in heats.items():
                hits.setdefault(name, []).append(metrics.pointing_game(heat, masks))
        ev.pointing = {name: 1.0 - float(torch.nanmean(torch.cat(h))) for name, h in hits.items()}
    if not is_rg:
        ev.examples.update(_posthoc(model, shown[R.IMAGE].to(device), size))
    return ev


def evaluate_all(config: RegionGroupingConfig, models: dict[str, dict[int, nn.Module]],
                 bench: Benchmark | RealTask) -> dict[str, dict[int, Evaluation]]:
    """:func:`evaluate` for every kind × seed."""
    return {kind: {s: evaluate(config, m, bench, kind, s) for s, m in by_seed.items()} for kind, by_seed in
            models.items()}

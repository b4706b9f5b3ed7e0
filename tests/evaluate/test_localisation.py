"""Localisation scores against Quantus 0.6 (the oracle) on benchmark masks and random maps."""
from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch

from attnbook.data.synthetic import generate_split, spec_for
from attnbook.evaluate.localisation import localisation, relevance_mass_accuracy, relevance_rank_accuracy
from attnbook.metrics import pointing_game


@pytest.fixture(scope="module")
def truth() -> dict[str, torch.Tensor]:
    return generate_split(spec_for("fine_grained", resolution=32, test_per_class=2), "test_aligned").tensors


def _quantus(metric: type, maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """Quantus on [B, 1, H, W] arrays; normalise=False, abs=False: the raw non-negative maps."""
    n = len(maps)
    x = np.zeros((n, 3, *maps.shape[-2:]), dtype=np.float32)
    scores = metric(normalise=False, abs=False, disable_warnings=True)(
        model=None, x_batch=x, y_batch=np.zeros(n, dtype=int), a_batch=maps[:, None].numpy(),
        s_batch=masks[:, None].numpy())
    return np.asarray(scores, dtype=np.float64)


def _maps(truth: dict[str, torch.Tensor], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(truth["mask"].shape, generator=gen)
    return noise + 0.5 * truth["mask"].float() * torch.rand(len(noise), 1, 1, generator=gen)  # no ties


def test_pointing_game_matches_quantus(truth):
    maps = _maps(truth)
    ours = pointing_game(maps, truth["mask"]).numpy()
    np.testing.assert_array_equal(ours, _quantus(quantus.PointingGame, maps, truth["mask"]).astype(float))
    # convention difference (stated in attnbook.metrics): an empty mask is NaN here, a hit in Quantus
    empty = torch.zeros_like(truth["mask"][:2])
    assert pointing_game(maps[:2], empty).isnan().all()
    assert _quantus(quantus.PointingGame, maps[:2], empty).all()


def test_relevance_mass_accuracy_matches_quantus(truth):
    maps = _maps(truth, 1)
    for masks in (truth["mask"], truth["disc_mask"] | truth["part_masks"][:, 0]):
        ours = relevance_mass_accuracy(maps, masks).double().numpy()
        np.testing.assert_allclose(ours, _quantus(quantus.RelevanceMassAccuracy, maps, masks), rtol=1e-5)


def test_relevance_rank_accuracy_matches_quantus(truth):
    maps = _maps(truth, 2)
    for masks in (truth["mask"], truth["part_masks"][:, 2]):
        ours = relevance_rank_accuracy(maps, masks).double().numpy()
        np.testing.assert_allclose(ours, _quantus(quantus.RelevanceRankAccuracy, maps, masks), rtol=1e-6)  # float32


def test_rank_accuracy_by_hand():
    maps = torch.tensor([[[4.0, 3.0], [2.0, 1.0]], [[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])
    masks = torch.tensor([[[True, False], [True, False]]] * 3)  # K = 2: the left column
    # top-2 pixels: {4, 3} -> 1 of 2 inside; {4, 3} at the right/bottom -> 1 of 2; ties: first pixels
    assert relevance_rank_accuracy(maps, masks).tolist() == [0.5, 0.5, 0.5]
    assert relevance_rank_accuracy(maps[:1], torch.zeros_like(masks[:1])).isnan().all()


def test_rank_accuracy_ties_follow_a_stable_sort(truth):
    maps = (_maps(truth, 3) * 4).floor()  # 6 levels: many ties at the K-th value
    masks = truth["mask"]
    order = torch.argsort(-maps.flatten(1), dim=1, stable=True)
    size = masks.flatten(1).sum(1)
    inside = masks.flatten(1).gather(1, order)
    expected = torch.stack([inside[i, :k].float().mean() for i, k in enumerate(size.tolist())])
    torch.testing.assert_close(relevance_rank_accuracy(maps, masks), expected)


def test_localisation_scores_a_perfect_and_an_inverted_map(truth):
    perfect = truth["disc_mask"].float() + 1e-3 * truth["mask"].float()
    scores = localisation(perfect, truth)
    has_disc = truth["disc_mask"].flatten(1).any(1)
    assert has_disc.all()  # fine_grained: 16 classes, all paired
    assert (scores["pointing_disc"] == 1).all() and (scores["pointing_object"] == 1).all()
    assert (scores["mass_object"] > 0.999).all() and (scores["mass_disc"] > 0.9).all()
    assert scores["mass_parts"].shape == truth["part_masks"].shape[:2]
    torch.testing.assert_close(scores["mass_parts"].sum(1), scores["mass_object"])  # parts tile the object
    inverted = localisation((~truth["mask"]).float(), truth)
    assert (inverted["mass_object"] == 0).all() and (inverted["far"] == 0).all()


def test_landmark_error_of_maps_peaked_on_the_landmarks_is_near_zero():
    from attnbook.evaluate.localisation import landmark_error

    spec = spec_for("fine_grained", resolution=32, train_per_class=8, test_per_class=4)
    fit, test = generate_split(spec, "train").tensors, generate_split(spec, "test_aligned").tensors

    def peaks(truth: dict[str, torch.Tensor]) -> torch.Tensor:  # one bump per landmark at its true position
        ys, xs = torch.meshgrid(torch.arange(32.0) + 0.5, torch.arange(32.0) + 0.5, indexing="ij")
        lm = truth["landmarks"]  # [N, L, 2] (x, y) pixels
        d2 = (xs - lm[..., 0, None, None]) ** 2 + (ys - lm[..., 1, None, None]) ** 2
        return torch.exp(-d2 / 0.5)

    exact = landmark_error(peaks(fit), fit, peaks(test), test)
    gen = torch.Generator().manual_seed(0)
    noise = landmark_error(torch.rand(len(fit["image"]), 5, 8, 8, generator=gen), fit,
                           torch.rand(len(test["image"]), 5, 8, 8, generator=gen), test)
    assert exact < 1.0 < noise  # % of the box

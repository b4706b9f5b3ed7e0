"""Tests for BR-NPA's Algorithm 1 and head (lib/attnbook/methods/brnpa.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnbook.methods.brnpa import (
    TABLE5_SUBSETS,
    BRNPAHead,
    representative_vectors,
    subset_cross_entropy,
)

OPTIONS = [(a, s) for a in ("squared_norm", "norm") for s in ("weight", "similarity")]


def _grid(vectors: list[tuple[float, float]], height: int = 2, width: int = 3) -> torch.Tensor:
    """Two-channel feature map [1, 2, h, w] whose flat position i holds vectors[i]."""
    return torch.tensor(vectors, dtype=torch.float64).T.reshape(1, 2, height, width)


# Position 0 has the largest norm (3); 1 and 4 point the same way / half-way; 2 is orthogonal.
HAND = _grid([(3, 0), (2, 0), (0, 2.5), (0, 1), (1, 1), (0, 0)])
# After picking position 0 (weights 0.2 on positions 0..4), a_0 = 0.8·9 = 7.2 > 2.5² but
# 0.8·3 = 2.4 < 2.5, so only the paper's squared norm + weight suppression re-picks position 0.
DIFFUSE = _grid([(3, 0), (1, 0), (1, 0), (1, 0), (1, 0), (0, 2.5)])
# Position 1 (norm 2.8, cos 1/√2 with position 0) vs position 2 (norm 1, orthogonal): after
# similarity suppression (1 − 1/√2)·2.8² ≈ 2.30 > 1 but (1 − 1/√2)·2.8 ≈ 0.82 < 1.
_DIAG = 2.8 / math.sqrt(2)
ANGLED = _grid([(3, 0), (_DIAG, _DIAG), (0, 1), (0.1, 0), (0.1, 0), (0.1, 0)])


def reference_npa(
    features: torch.Tensor, n_maps: int, activation: str, suppression: str, refine: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Algorithm 1 written plainly, one sample and one position at a time."""
    all_vectors, all_maps, all_positions = [], [], []
    for f in features:  # [C, h, w]
        vecs = [f[:, r, c] for r in range(f.shape[1]) for c in range(f.shape[2])]
        act = [float(v.norm()) ** (2 if activation == "squared_norm" else 1) for v in vecs]
        sample_vectors, sample_maps, sample_positions = [], [], []
        for _ in range(n_maps):
            i_max = max(range(len(act)), key=lambda i: act[i])
            sims = [float(F.cosine_similarity(v, vecs[i_max], dim=0)) for v in vecs]
            weights = [s / sum(sims) for s in sims]
            rep = sum(w * v for w, v in zip(weights, vecs)) if refine else vecs[i_max]
            suppress = weights if suppression == "weight" else sims
            act = [a * (1 - x) for a, x in zip(act, suppress)]
            sample_vectors.append(rep)
            sample_maps.append(torch.tensor(weights, dtype=f.dtype).reshape(f.shape[1:]))
            sample_positions.append(i_max)
        all_vectors.append(torch.stack(sample_vectors))
        all_maps.append(torch.stack(sample_maps))
        all_positions.append(sample_positions)
    return torch.stack(all_vectors), torch.stack(all_maps), torch.tensor(all_positions)


def test_first_map_on_hand_example() -> None:
    out = representative_vectors(HAND, n_maps=3)
    assert out.positions[0, 0] == 0  # the max-norm vector
    # cos with (1, 0): [1, 1, 0, 0, 1/√2, 0]; Σ = 2 + 1/√2
    total = 2 + 1 / math.sqrt(2)
    expected_w = torch.tensor([1, 1, 0, 0, 1 / math.sqrt(2), 0], dtype=torch.float64) / total
    torch.testing.assert_close(out.maps[0, 0].flatten(), expected_w)
    expected_vec = torch.tensor([5 + 1 / math.sqrt(2), 1 / math.sqrt(2)], dtype=torch.float64)
    expected_vec = expected_vec / total  # (3·1 + 2·1 + 1·(1/√2), 1·(1/√2)) / Σ
    torch.testing.assert_close(out.vectors[0, 0], expected_vec)


def test_maps_sum_to_one_and_vectors_are_weighted_sums() -> None:
    features = torch.rand(2, 4, 3, 5, dtype=torch.float64)
    out = representative_vectors(features, n_maps=3)
    torch.testing.assert_close(out.maps.sum(dim=(2, 3)), torch.ones(2, 3, dtype=torch.float64))
    weighted = torch.einsum("bnhw,bchw->bnc", out.maps, features)
    torch.testing.assert_close(out.vectors, weighted)


@pytest.mark.parametrize("activation,suppression", OPTIONS)
def test_suppression_moves_next_pick_on_hand_example(activation: str, suppression: str) -> None:
    out = representative_vectors(HAND, n_maps=2, activation=activation, suppression=suppression)
    assert out.positions[0].tolist() == [0, 2]  # the orthogonal, next most active vector


@pytest.mark.parametrize(
    "features,activation,suppression,second_pick",
    [
        (DIFFUSE, "squared_norm", "weight", 0),  # the paper's rule can re-pick the same position
        (DIFFUSE, "norm", "weight", 5),
        (DIFFUSE, "squared_norm", "similarity", 5),
        (DIFFUSE, "norm", "similarity", 5),
        (ANGLED, "squared_norm", "similarity", 1),
        (ANGLED, "norm", "similarity", 2),
    ],
)
def test_options_change_the_second_pick(
    features: torch.Tensor, activation: str, suppression: str, second_pick: int
) -> None:
    out = representative_vectors(features, n_maps=2, activation=activation, suppression=suppression)
    assert out.positions[0].tolist() == [0, second_pick]


def test_similarity_suppression_never_repeats_a_position() -> None:
    out = representative_vectors(torch.rand(8, 6, 4, 4), n_maps=5, suppression="similarity")
    assert all(len(set(p)) == 5 for p in out.positions.tolist())


@pytest.mark.parametrize("activation,suppression", OPTIONS)
@pytest.mark.parametrize("refine", [True, False])
def test_batched_equals_per_sample_reference(
    activation: str, suppression: str, refine: bool
) -> None:
    features = torch.rand(3, 5, 3, 4, dtype=torch.float64)
    out = representative_vectors(features, 3, activation, suppression, refine=refine)
    vectors, maps, positions = reference_npa(features, 3, activation, suppression, refine)
    assert torch.equal(out.positions, positions)
    torch.testing.assert_close(out.maps, maps)
    torch.testing.assert_close(out.vectors, vectors)


def test_no_refine_returns_the_raw_selected_vectors() -> None:
    features = torch.rand(4, 6, 3, 3)
    out = representative_vectors(features, n_maps=3, refine=False)
    raw = features.flatten(2).gather(2, out.positions.unsqueeze(1).expand(-1, 6, -1))  # [B, C, N]
    torch.testing.assert_close(out.vectors, raw.transpose(1, 2))
    assert torch.equal(out.positions, representative_vectors(features, 3).positions)


def test_random_selection_is_seeded_distinct_and_not_the_argmax() -> None:
    features = torch.rand(16, 4, 5, 5)

    def picks(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        out = representative_vectors(features, 3, selection="random", generator=generator)
        return out.positions

    assert torch.equal(picks(1), picks(1))
    assert not torch.equal(picks(1), picks(2))
    assert all(len(set(p)) == 3 for p in picks(1).tolist())
    active = representative_vectors(features, 3).positions
    assert (picks(1)[:, 0] != active[:, 0]).any()


def test_negative_features_raise() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        representative_vectors(torch.randn(1, 3, 2, 2), n_maps=1)


def test_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="suppression"):
        BRNPAHead(4, 2, suppression="softmax")
    with pytest.raises(ValueError, match="1..3"):
        BRNPAHead(4, 2, aux_subsets=[(0, 1)])
    with pytest.raises(ValueError, match="expects 4"):
        BRNPAHead(4, 2)(torch.rand(1, 5, 2, 2))


def test_head_logits_are_linear_in_concatenated_vectors_and_gradients_are_finite() -> None:
    head = BRNPAHead(in_channels=6, num_classes=4)
    features = torch.rand(3, 6, 4, 4)
    features[0, :, 0, 0] = 0  # a dead position must not produce NaN gradients
    features.requires_grad_(True)
    out = head.attend(features)
    assert out.maps.shape == (3, 3, 4, 4) and out.extras["vectors"].shape == (3, 3, 6)
    torch.testing.assert_close(out.logits, out.extras["vectors"].flatten(1) @ head.fc.weight.T + head.fc.bias)
    torch.testing.assert_close(head(features), out.logits)
    out.logits.sum().backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


def test_table5_subset_classifiers_see_detached_vectors() -> None:
    head = BRNPAHead(in_channels=6, num_classes=4, aux_subsets=TABLE5_SUBSETS)
    features = torch.rand(3, 6, 4, 4, requires_grad=True)
    out = head.attend(features)
    assert set(out.extras["aux_logits"]) == set(TABLE5_SUBSETS)
    first_two = out.extras["vectors"][:, :2].flatten(1)
    aux = head.aux_fc["1_2"]
    torch.testing.assert_close(out.extras["aux_logits"][(1, 2)], first_two @ aux.weight.T + aux.bias)
    loss = subset_cross_entropy(out, torch.tensor([0, 1, 2]))
    loss.backward()
    assert features.grad is None  # Table 5 classifiers cannot shape the features
    assert head.aux_fc["3"].weight.grad.abs().sum() > 0 and head.fc.weight.grad is None

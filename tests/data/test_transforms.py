"""Sample-dict transforms: image, masks, landmarks and boxes move together (hand-sized cases), and the
image resize agrees with torchvision's antialiased bilinear resize."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from attnbook.data.records import BBOX, IMAGE, LABEL, LANDMARK_VISIBLE, LANDMARKS, MASK, PART_MASKS
from attnbook.data.transforms import as_size, center_crop_sample, crop_sample, resize_sample, resize_shorter_side


def _sample(height: int = 4, width: int = 6) -> dict[str, torch.Tensor]:
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[1:3, 2:4] = True
    return {IMAGE: torch.rand(3, height, width), LABEL: torch.tensor(2), MASK: mask,
            PART_MASKS: torch.stack([mask, ~mask]), LANDMARKS: torch.tensor([[1.0, 0.5], [5.5, 3.5]]),
            LANDMARK_VISIBLE: torch.tensor([True, True]), BBOX: torch.tensor([2.0, 1.0, 4.0, 3.0])}


def test_resize_scales_every_field():
    out = resize_sample(_sample(), (8, 18))  # ×2 in y, ×3 in x
    assert out[IMAGE].shape == (3, 8, 18) and out[MASK].shape == (8, 18) and out[PART_MASKS].shape == (2, 8, 18)
    assert torch.equal(out[BBOX], torch.tensor([6.0, 2.0, 12.0, 6.0]))
    assert torch.equal(out[LANDMARKS], torch.tensor([[3.0, 1.0], [16.5, 7.0]]))
    expected = torch.zeros(8, 18, dtype=torch.bool)
    expected[2:6, 6:12] = True  # nearest neighbour keeps the block exact under an integer factor
    assert torch.equal(out[MASK], expected) and torch.equal(out[PART_MASKS][1], ~expected)
    assert out[LABEL] is not None and out[LANDMARK_VISIBLE].all()


def test_resize_image_matches_torchvision():
    sample = _sample(20, 30)
    ours = resize_sample(sample, (7, 11))[IMAGE]
    oracle = TF.resize(sample[IMAGE], [7, 11], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    assert torch.allclose(ours, oracle.clamp(0, 1), atol=1e-5)


def test_same_size_is_identity_and_copies():
    sample = _sample()
    out = resize_sample(sample, (4, 6))
    assert out is not sample and out[IMAGE] is sample[IMAGE]


def test_resize_shorter_side_keeps_aspect():
    out = resize_shorter_side(_sample(4, 6), 8)
    assert out[IMAGE].shape == (3, 8, 12) and torch.equal(out[BBOX], torch.tensor([4.0, 2.0, 8.0, 6.0]))


def test_crop_moves_points_and_hides_outside():
    out = crop_sample(_sample(), top=1, left=2, height=3, width=3)
    assert out[IMAGE].shape == (3, 3, 3) and torch.equal(out[MASK][:2, :2], torch.ones(2, 2, dtype=torch.bool))
    assert torch.equal(out[LANDMARKS], torch.tensor([[-1.0, -0.5], [3.5, 2.5]]))
    assert out[LANDMARK_VISIBLE].tolist() == [False, False]  # x = 3.5 ≥ width 3
    assert torch.equal(out[BBOX], torch.tensor([0.0, 0.0, 2.0, 2.0]))


def test_center_crop():
    out = center_crop_sample(_sample(4, 6), 2)  # rows 1..2, cols 2..3: exactly the mask block
    assert out[MASK].all() and torch.equal(out[BBOX], torch.tensor([0.0, 0.0, 2.0, 2.0]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive int"):
        as_size((0, 3))
    with pytest.raises(ValueError, match="does not fit"):
        crop_sample(_sample(), 0, 0, 5, 2)
    with pytest.raises(ValueError, match="needs an 'image'"):
        resize_sample({LABEL: torch.tensor(0)}, 4)

"""FGVC-Aircraft through torchvision's index: splits, annotation levels, boxes, banner removal."""
from __future__ import annotations

import torch
from fixtures import AIRCRAFT_VARIANTS, make_fgvc_aircraft

from attnbook.data.real.aircraft import FGVCAircraft
from attnbook.data.records import BBOX


def test_splits_levels_and_boxes(tmp_path):
    make_fgvc_aircraft(tmp_path)
    trainval = FGVCAircraft(tmp_path)
    assert trainval.info.class_names == AIRCRAFT_VARIANTS
    assert trainval.labels == [1, 2, 0] and len(FGVCAircraft(tmp_path, split="test")) == 3
    assert FGVCAircraft(tmp_path, annotation_level="manufacturer").info.class_names == ("Boeing", "Airbus", "Cessna")
    sample = trainval[1]  # image 2: box (2, 2, 30, 45) 1-based inclusive
    assert sample["image"].shape == (3, 50, 40)
    assert torch.equal(sample[BBOX], torch.tensor([1.0, 1.0, 30.0, 45.0]))


def test_banner_removed_and_box_clipped(tmp_path):
    make_fgvc_aircraft(tmp_path)
    sample = FGVCAircraft(tmp_path, remove_banner=True)[0]
    assert sample["image"].shape == (3, 30, 40)
    assert sample[BBOX][3].item() == 30.0

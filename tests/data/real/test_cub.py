"""CUB-200-2011 loader on a fixture tree in the real format: splits, labels, boxes, parts, attributes,
masks, resizing, and the errors for missing, truncated and corrupt files."""
from __future__ import annotations

import pytest
import torch
from fixtures import CUB_ATTRIBUTES, CUB_PARTS, HEIGHT, WIDTH, make_cub

from attnbook.data.real.base import CorruptImageError, DatasetFormatError, DatasetMissingError
from attnbook.data.real.cub import CUB200
from attnbook.data.records import ATTRIBUTES, BBOX, INDEX, LABEL, LANDMARK_VISIBLE, LANDMARKS, MASK


@pytest.fixture()
def root(tmp_path):
    make_cub(tmp_path)
    return tmp_path


def test_splits_labels_and_info(root):
    train = CUB200(root, split="train")
    test = CUB200(root, split="test")
    assert train.image_ids == [1, 3, 5] and test.image_ids == [2, 4, 6]
    assert train.labels == [0, 1, 2] and test.labels == [0, 1, 2]
    assert len(CUB200(root, split="all")) == 6
    assert train.info.class_names == ("Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross")
    assert train.info.part_names == CUB_PARTS
    sample = train[1]  # image 3
    assert sample["image"].shape == (3, HEIGHT, WIDTH) and sample["image"].dtype == torch.float32
    assert sample[LABEL].item() == 1 and sample[INDEX].item() == 1
    assert abs(sample["image"][0].mean().item() - 60 / 255) < 0.02  # red channel = 20·k for image k


def test_box_and_landmarks_in_pixels(root):
    sample = CUB200(root, split="all")[0]  # image 1: box (1, 2, w 10, h 6); part 2 hidden
    assert torch.equal(sample[BBOX], torch.tensor([1.0, 2.0, 11.0, 8.0]))
    assert torch.equal(sample[LANDMARK_VISIBLE], torch.tensor([True, False, True]))
    assert torch.equal(sample[LANDMARKS], torch.tensor([[4.0, 2.0], [0.0, 0.0], [10.0, 6.0]]))


def test_resize_scales_ground_truth(root):
    sample = CUB200(root, split="all", size=(60, 80), masks=True)[0]  # 30×40 → 60×80: factor 2
    assert sample["image"].shape == (3, 60, 80) and sample[MASK].shape == (60, 80)
    assert torch.equal(sample[BBOX], torch.tensor([2.0, 4.0, 22.0, 16.0]))
    assert torch.allclose(sample[LANDMARKS][0], torch.tensor([8.0, 4.0]))


def test_attribute_modes(root):
    image_level = CUB200(root, split="all", attributes="image")
    assert image_level.info.attribute_names == CUB_ATTRIBUTES
    # is_present = (k + a) % 2 for image k, attribute a; image 3's malformed line (extra field) is read
    assert image_level[2][ATTRIBUTES].tolist() == [0.0, 1.0]
    assert image_level[1][ATTRIBUTES].tolist() == [1.0, 0.0]
    class_level = CUB200(root, split="all", attributes="class")
    assert torch.allclose(class_level[2][ATTRIBUTES], torch.tensor([0.10, 0.50]))  # class 2 (0-based 1)
    binary = CUB200(root, split="all", attributes="class_binary")
    assert binary[0][ATTRIBUTES].tolist() == [1.0, 0.0] and binary[2][ATTRIBUTES].tolist() == [0.0, 1.0]


def test_mask_thresholds_soft_segmentation(root):
    mask = CUB200(root, split="all", masks=True)[0][MASK]
    assert mask.dtype == torch.bool and mask.sum().item() == 10 * 20  # soft rows (102/255 < 0.5) excluded
    assert mask[5:15, 10:30].all()


def test_missing_dataset_names_path_and_fix(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"CUB-200-2011 not found at .*CUB_200_2011 .*images.*"
                                                  r"attnbook data prepare cub --from"):
        CUB200(tmp_path)


def test_missing_segmentations_named(tmp_path):
    make_cub(tmp_path, segmentations=False)
    with pytest.raises(DatasetMissingError, match="segmentations"):
        CUB200(tmp_path, masks=True)


def test_truncated_label_file_names_file_and_line(root):
    path = root / "CUB_200_2011" / "image_class_labels.txt"
    path.write_text(path.read_text()[:-3])  # last line "6 3\n" cut to "6"
    with pytest.raises(DatasetFormatError, match=r"image_class_labels\.txt, line 6"):
        CUB200(root)


def test_label_file_cut_at_line_boundary(root):
    path = root / "CUB_200_2011" / "train_test_split.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:4]))
    with pytest.raises(DatasetFormatError, match=r"train_test_split\.txt has no entry for 5"):
        CUB200(root)


def test_corrupt_image_names_file(root):
    bad = root / "CUB_200_2011" / "images" / "001.Black_footed_Albatross" / "bird_0001.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(CorruptImageError, match="bird_0001.jpg"):
        CUB200(root, split="all")[0]


def test_env_var_root(root, monkeypatch):
    monkeypatch.setenv("ATTNBOOK_DATA", str(root))
    assert len(CUB200(split="test")) == 3

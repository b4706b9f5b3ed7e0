"""CelebA loader on a fixture tree: partitions, multi-hot attributes, aligned and in-the-wild landmarks,
boxes, the large-face filter, and errors for missing in-the-wild files and mismatched lists."""
from __future__ import annotations

import pytest
import torch
from fixtures import CELEBA_ATTRIBUTES, make_celeba

from attnbook.data.real.base import DatasetFormatError, DatasetMissingError
from attnbook.data.real.celeba import CelebA, large_face_indices
from attnbook.data.records import BBOX, LABEL, LANDMARK_VISIBLE, LANDMARKS


@pytest.fixture()
def root(tmp_path):
    make_celeba(tmp_path)
    return tmp_path


def test_partitions_and_multihot_attributes(root):
    assert [len(CelebA(root, split=s)) for s in ("train", "valid", "test", "all")] == [2, 2, 2, 6]
    test = CelebA(root, split="test")
    assert test.file_names == ["000005.jpg", "000006.jpg"]
    assert test.info.multilabel and test.info.class_names == CELEBA_ATTRIBUTES
    label = test[0][LABEL]  # image 5: attribute a on iff (a + 5) % 3 == 0
    assert label.dtype == torch.float32 and label.shape == (40,)
    assert label.nonzero().flatten().tolist() == [a for a in range(40) if (a + 5) % 3 == 0]


def test_aligned_landmarks_without_box(root):
    sample = CelebA(root, split="all")[1]  # image 2
    assert torch.equal(sample[LANDMARKS], torch.tensor([[12.0, 12], [28, 12], [20, 18], [12, 24], [27, 24]]))
    assert sample[LANDMARK_VISIBLE].all() and BBOX not in sample


def test_in_the_wild_landmarks_and_box(root):
    wild = CelebA(root, split="all", in_the_wild=True, size=(60, 80))  # 30×40 → ×2
    sample = wild[2]  # image 3: box (6, 1, w 20, h 14), first landmark (8, 6)
    assert torch.equal(sample[BBOX], torch.tensor([12.0, 2.0, 52.0, 30.0]))
    assert torch.equal(sample[LANDMARKS][0], torch.tensor([16.0, 12.0]))
    assert wild.paths[2].parent.name == "img_celeba"


def test_large_face_filter(root):
    wild = CelebA(root, split="all", in_the_wild=True)
    # face area 20·(20 − 2k) over 1200 pixels: k = 1..6 → 30%, 27%, 23%, 20%, 17%, 13%
    assert large_face_indices(wild) == [0]
    assert large_face_indices(wild, min_fraction=0.2) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="in_the_wild=True"):
        large_face_indices(CelebA(root))


def test_missing_in_the_wild_images(tmp_path):
    """The message says what to fetch and how to unpack it: neither prepare nor --download can supply
    img_celeba/ (a 14-part 7-Zip archive)."""
    make_celeba(tmp_path, in_the_wild=False)
    CelebA(tmp_path)  # aligned works
    home = tmp_path / "celeba"
    with pytest.raises(DatasetMissingError) as caught:
        CelebA(tmp_path, in_the_wild=True)
    message = str(caught.value)
    assert f"in-the-wild images not found at {home / 'img_celeba'}" in message
    assert "img_celeba.7z.001 … img_celeba.7z.014" in message
    assert f"`7z x DIR/img_celeba.7z.001 -o{home}`" in message
    assert message.endswith("then run: attnbook data prepare celeba --from DIR") and "--download" not in message
    (home / "img_celeba").mkdir()  # extracted, but the landmark list is still missing
    with pytest.raises(DatasetMissingError, match=r"list_landmarks_celeba\.txt is missing .*Anno/.*--from DIR$"):
        CelebA(tmp_path, in_the_wild=True)
    assert len(CelebA(tmp_path, in_the_wild=True, landmarks=False)) == 2  # boxes only: no landmark list needed


def test_truncated_attribute_file(root):
    path = root / "celeba" / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1] + [lines[-1][:30]]) + "\n")  # last row cut mid-way
    with pytest.raises(DatasetFormatError, match=r"list_attr_celeba\.txt, line 8"):
        CelebA(root)


def test_list_order_mismatch(root):
    path = root / "celeba" / "list_landmarks_align_celeba.txt"
    lines = path.read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"list_landmarks_align_celeba\.txt, line 4: image order"):
        CelebA(root)


def test_named_files_and_the_mafl_lists(root):
    from attnbook.data.real.celeba import MAFL_FILES, read_mafl_lists

    subset = CelebA(root, split="all", files=["000004.jpg", "000002.jpg"])
    assert subset.file_names == ["000002.jpg", "000004.jpg"]  # the partition file's order
    assert CelebA(root, split="test", files=["000002.jpg", "000005.jpg"]).file_names == ["000005.jpg"]
    with pytest.raises(DatasetFormatError, match="not in"):
        CelebA(root, split="all", files=["999999.jpg"])
    home = root / "celeba"
    assert read_mafl_lists(home) is None  # they do not ship with CelebA
    lists = {"train": ["000001.jpg", "000002.jpg"], "fit": ["000003.jpg 1"], "test": ["000005.jpg", "000006.jpg"]}
    for split, lines in lists.items():
        (home / MAFL_FILES[split]).write_text("".join(f"{line}\n" for line in lines))
    assert read_mafl_lists(home) == {"train": ["000001.jpg", "000002.jpg"], "fit": ["000003.jpg"],
                                     "test": ["000005.jpg", "000006.jpg"]}

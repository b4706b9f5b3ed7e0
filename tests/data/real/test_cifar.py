"""CIFAR-100 pickle loader: images, labels, class names, and a truncated batch."""
from __future__ import annotations

import pytest
import torch
from fixtures import make_cifar100

from attnbook.data.real.base import DatasetFormatError
from attnbook.data.real.cifar import CIFAR100
from attnbook.data.records import LABEL


def test_batches_and_names(tmp_path):
    make_cifar100(tmp_path)
    train, test = CIFAR100(tmp_path), CIFAR100(tmp_path, split="test")
    assert train.labels == [5, 0, 99, 5] and test.labels == [7, 7]
    assert train.info.num_classes == 100 and train.info.class_names[99] == "class99"
    sample = train[2]  # bytes = 10·2 + 99 % 10 = 29
    assert sample[LABEL].item() == 99 and torch.allclose(sample["image"], torch.full((3, 32, 32), 29 / 255))


def test_resize(tmp_path):
    make_cifar100(tmp_path)
    assert CIFAR100(tmp_path, size=64)[0]["image"].shape == (3, 64, 64)


def test_truncated_batch(tmp_path):
    home = make_cifar100(tmp_path)
    (home / "train").write_bytes((home / "train").read_bytes()[:500])
    with pytest.raises(DatasetFormatError, match=r"cifar-100-python/train.*truncated"):
        CIFAR100(tmp_path)

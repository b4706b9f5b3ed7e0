"""MNIST idx reader and loader: gzipped and plain files, the 3-vs-8 filter, truncated files."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from fixtures import MNIST_TEST_LABELS, MNIST_TRAIN_LABELS, idx_bytes, make_mnist

from attnbook.data.real.base import DatasetFormatError, DatasetMissingError
from attnbook.data.real.mnist import MNIST, read_idx
from attnbook.data.records import LABEL


@pytest.mark.parametrize("gz", [True, False])
def test_reads_idx_gzipped_or_plain(tmp_path, gz):
    make_mnist(tmp_path, gz=gz)
    train, test = MNIST(tmp_path), MNIST(tmp_path, split="test")
    assert train.labels == list(MNIST_TRAIN_LABELS) and test.labels == list(MNIST_TEST_LABELS)
    sample = train[1]
    assert sample["image"].shape == (3, 28, 28)
    assert torch.allclose(sample["image"], torch.full((3, 28, 28), 80 / 255))  # pixels = 10 × digit 8


def test_three_vs_eight_relabels(tmp_path):
    make_mnist(tmp_path)
    pair = MNIST(tmp_path, digits=(3, 8))
    assert pair.labels == [0, 1, 0, 1] and pair.info.class_names == ("3", "8")
    assert pair[1][LABEL].item() == 1 and abs(pair[1]["image"].max().item() - 80 / 255) < 1e-6
    with pytest.raises(ValueError, match="distinct values in 0..9"):
        MNIST(tmp_path, digits=(3, 3))


def test_read_idx_shape(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path.write_bytes(idx_bytes(array))
    assert np.array_equal(read_idx(path), array)


def test_truncated_idx_names_file(tmp_path):
    raw = make_mnist(tmp_path)
    path = raw / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DatasetFormatError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        MNIST(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"MNIST not found .*--from DIR_WITH_ARCHIVES.*--download"):
        MNIST(tmp_path)

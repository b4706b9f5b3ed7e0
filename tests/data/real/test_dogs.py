"""Stanford Dogs: .mat split lists, breed names, XML boxes (several dogs → enclosing box)."""
from __future__ import annotations

import pytest
import torch
from fixtures import make_stanford_dogs

from attnbook.data.real.base import DatasetFormatError
from attnbook.data.real.dogs import StanfordDogs
from attnbook.data.records import BBOX


def test_lists_labels_and_boxes(tmp_path):
    make_stanford_dogs(tmp_path)
    train, test = StanfordDogs(tmp_path), StanfordDogs(tmp_path, split="test")
    assert train.info.class_names == ("Chihuahua", "Japanese_spaniel")
    assert train.labels == [0, 1] and test.labels == [0, 1]
    assert torch.equal(train[0][BBOX], torch.tensor([0.0, 1.0, 11.0, 12.0]))  # 1-based (1, 2, 11, 12)
    assert torch.equal(test[0][BBOX], torch.tensor([1.0, 1.0, 30.0, 25.0]))  # union with the second dog


def test_broken_annotation_named(tmp_path):
    home = make_stanford_dogs(tmp_path)
    (home / "Annotation" / "n02085620-Chihuahua" / "n02085620_1").write_text("<annotation><obj")
    with pytest.raises(DatasetFormatError, match="n02085620_1"):
        StanfordDogs(tmp_path)[0]

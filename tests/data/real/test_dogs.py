"""Stanford Dogs: .mat split lists, breed names, XML boxes (0-based inclusive corners → exclusive, clipped;
several dogs → enclosing box)."""
from __future__ import annotations

import pytest
import torch
from fixtures import DOG_FOLDERS, HEIGHT, WIDTH, dog_xml, make_stanford_dogs

from attnbook.data.real.base import DatasetFormatError
from attnbook.data.real.dogs import StanfordDogs, read_xml_boxes
from attnbook.data.records import BBOX


def test_lists_labels_and_boxes(tmp_path):
    make_stanford_dogs(tmp_path)
    train, test = StanfordDogs(tmp_path), StanfordDogs(tmp_path, split="test")
    assert train.info.class_names == ("Chihuahua", "Japanese_spaniel")
    assert train.labels == [0, 1] and test.labels == [0, 1]
    assert torch.equal(train[0][BBOX], torch.tensor([1.0, 2.0, 12.0, 13.0]))  # 0-based inclusive (1, 2, 11, 12)
    assert torch.equal(test[0][BBOX], torch.tensor([2.0, 2.0, 31.0, 26.0]))  # union with the second dog


def _annotate(home, xml: str) -> None:
    (home / "Annotation" / DOG_FOLDERS[0] / "n02085620_1").write_text(xml)


def test_zero_based_edges_and_clipping(tmp_path):
    """A hand-written annotation in the ImageNet format: a dog filling the 40×30 image is written
    xmin = ymin = 0, xmax = 39, ymax = 29 (ImageNet: xmax = 499 on a 500-px image)."""
    home = make_stanford_dogs(tmp_path)
    _annotate(home, dog_xml([(0, 0, WIDTH - 1, HEIGHT - 1)]))
    assert torch.equal(StanfordDogs(tmp_path)[0][BBOX], torch.tensor([0.0, 0.0, 40.0, 30.0]))  # the whole image
    assert torch.equal(StanfordDogs(tmp_path, size=(60, 80))[0][BBOX], torch.tensor([0.0, 0.0, 80.0, 60.0]))
    _annotate(home, dog_xml([(5, 3, WIDTH + 4, HEIGHT)]))  # an annotation reaching past the edge
    assert torch.equal(StanfordDogs(tmp_path)[0][BBOX], torch.tensor([5.0, 3.0, 40.0, 30.0]))  # clipped
    assert read_xml_boxes(home / "Annotation" / DOG_FOLDERS[0] / "n02085620_1", "stanford_dogs").tolist() == [
        [5.0, 3.0, WIDTH + 5.0, HEIGHT + 1.0]]  # unclipped: the reader does not know the image


def test_broken_annotation_named(tmp_path):
    home = make_stanford_dogs(tmp_path)
    _annotate(home, "<annotation><obj")
    with pytest.raises(DatasetFormatError, match="n02085620_1"):
        StanfordDogs(tmp_path)[0]
    _annotate(home, dog_xml([(1, 2, 3, 4)]).replace("<ymax>4</ymax>", ""))
    with pytest.raises(DatasetFormatError, match=r"n02085620_1: malformed <bndbox>"):
        StanfordDogs(tmp_path)[0]

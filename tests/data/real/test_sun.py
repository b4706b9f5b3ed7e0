"""SUN attributes: classes from folders, continuous attribute votes, seeded per-class split."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from fixtures import SUN_ATTRIBUTES, make_sun_attributes

from attnbook.data.real.sun import SUNAttributes, scene_class
from attnbook.data.records import ATTRIBUTES


def test_classes_attributes_and_split(tmp_path):
    truth = make_sun_attributes(tmp_path)
    everything = SUNAttributes(tmp_path, split="all")
    assert everything.info.class_names == ("abbey", "apartment_building/outdoor")
    assert everything.info.attribute_names == SUN_ATTRIBUTES
    assert torch.allclose(everything[7][ATTRIBUTES], torch.tensor(truth["votes"][7], dtype=torch.float32))
    train = SUNAttributes(tmp_path, train_fraction=0.6)
    test = SUNAttributes(tmp_path, split="test", train_fraction=0.6)
    assert Counter(train.labels) == {0: 3, 1: 3} and Counter(test.labels) == {0: 2, 1: 2}
    assert not set(train.paths) & set(test.paths)


def test_scene_class():
    assert scene_class("a/abbey/sun_x.jpg") == "abbey"
    assert scene_class("b/bus_interior/sun_y.jpg") == "bus_interior"
    assert scene_class("a/apartment_building/outdoor/sun_z.jpg") == "apartment_building/outdoor"


def test_class_level_attributes_are_the_mean_vote_over_every_image_of_the_class(tmp_path):
    truth = make_sun_attributes(tmp_path)
    votes = np.asarray(truth["votes"])
    expected = np.stack([votes[:5].mean(0), votes[5:].mean(0)])  # abbey = images 0-4, apartment = 5-9
    train = SUNAttributes(tmp_path, train_fraction=0.6, attributes="class")
    assert np.allclose(train.class_attribute_votes, expected)  # the test images count too: a class property
    assert train.class_attribute_matrix.tolist() == [[0, 1, 0], [1, 0, 0]]  # (0.2, 0.8, 1/3), (0.7, 0.3, 1/3)
    assert torch.allclose(train[0][ATTRIBUTES], torch.tensor(expected[train.labels[0]], dtype=torch.float32))
    binary = SUNAttributes(tmp_path, split="test", attributes="class_binary", class_threshold=0.25)
    assert binary.class_attribute_matrix.tolist() == [[0, 1, 1], [1, 1, 1]]
    for k in range(len(binary)):
        assert binary[k][ATTRIBUTES].tolist() == binary.class_attribute_matrix[binary.labels[k]].tolist()
    with pytest.raises(ValueError, match="attributes"):
        SUNAttributes(tmp_path, attributes="votes")

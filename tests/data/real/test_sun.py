"""SUN attributes: classes from folders, continuous attribute votes, seeded per-class split."""
from __future__ import annotations

from collections import Counter

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

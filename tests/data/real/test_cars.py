"""Stanford Cars through torchvision's index: labels, class names and .mat boxes."""
from __future__ import annotations

import torch
from fixtures import make_stanford_cars

from attnbook.data.real.cars import StanfordCars
from attnbook.data.records import BBOX, LABEL


def test_labels_names_and_boxes(tmp_path):
    make_stanford_cars(tmp_path)
    train, test = StanfordCars(tmp_path), StanfordCars(tmp_path, split="test")
    assert train.labels == [0, 1] and test.labels == [1, 0]
    assert train.info.class_names == ("AM General Hummer SUV 2000", "Acura RL Sedan 2012")
    assert torch.equal(train[0][BBOX], torch.tensor([2.0, 3.0, 20.0, 25.0]))
    sample = test[0]
    assert sample[LABEL].item() == 1 and torch.equal(sample[BBOX], torch.tensor([4.0, 5.0, 15.0, 16.0]))

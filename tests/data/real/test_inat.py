"""iNaturalist 2017: json labels by category id, boxes from the bbox file, union mask, truncated json."""
from __future__ import annotations

import pytest
import torch
from fixtures import make_inat2017

from attnbook.data.real.base import DatasetFormatError
from attnbook.data.real.inat import INaturalist2017, box_union_mask
from attnbook.data.records import BBOX, MASK


def test_labels_by_category_id(tmp_path):
    make_inat2017(tmp_path)
    train = INaturalist2017(tmp_path)
    assert train.info.class_names == ("Corvus corax", "Quercus alba")  # sorted by id 0, 1
    assert train.labels == [1, 0, 1] and INaturalist2017(tmp_path, split="val").labels == [0]
    assert train.info.extra["supercategories"] == ("Aves", "Plantae")


def test_boxes_and_union_mask(tmp_path):
    make_inat2017(tmp_path)
    boxed = INaturalist2017(tmp_path, with_boxes=True)
    assert len(boxed) == 1 and boxed.paths[0].name == "10.jpg"
    sample = boxed[0]  # boxes (2, 3, 12, 8) and (20, 10, 25, 15)
    assert torch.equal(sample[BBOX], torch.tensor([2.0, 3.0, 25.0, 15.0]))
    assert sample[MASK].sum().item() == 10 * 5 + 5 * 5 and sample[MASK][3, 2] and not sample[MASK][9, 15]


def test_union_mask_rounds_outward():
    mask = box_union_mask(torch.tensor([[0.5, 0.5, 1.5, 2.0]]).numpy(), 4, 4)
    assert mask.nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_truncated_json(tmp_path):
    home = make_inat2017(tmp_path)
    path = home / "val2017.json"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(DatasetFormatError, match=r"val2017\.json, line 1"):
        INaturalist2017(tmp_path, split="val")

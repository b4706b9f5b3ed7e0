"""VOC 2012 multi-label targets from the per-class lists, with both treatments of 'difficult'."""
from __future__ import annotations

import pytest
from fixtures import VOC_CLASSES, make_voc

from attnbook.data.real.base import DatasetFormatError, DatasetMissingError
from attnbook.data.real.voc import VOC2012
from attnbook.data.records import LABEL


def _on(label) -> list[str]:
    return [VOC_CLASSES[k] for k in label.nonzero().flatten().tolist()]


def test_multihot_and_difficult(tmp_path):
    make_voc(tmp_path)
    train = VOC2012(tmp_path)
    assert train.image_ids == ["2008_000001", "2008_000002", "2008_000003"]
    assert train.info.class_names == VOC_CLASSES and train.info.multilabel
    assert _on(train[0][LABEL]) == ["cat"] and _on(train[1][LABEL]) == ["bicycle", "person"]
    assert _on(train[2][LABEL]) == []
    assert train.difficult.sum().item() == 2 and train.difficult[0, VOC_CLASSES.index("dog")]
    positive = VOC2012(tmp_path, difficult="positive")
    assert _on(positive[0][LABEL]) == ["cat", "dog"] and _on(positive[2][LABEL]) == ["cat"]
    assert len(VOC2012(tmp_path, split="trainval")) == 4


def test_class_list_out_of_step(tmp_path):
    home = make_voc(tmp_path)
    (home / "ImageSets" / "Main" / "dog_train.txt").write_text("2008_000001  0\n")
    with pytest.raises(DatasetFormatError, match=r"dog_train\.txt"):
        VOC2012(tmp_path)


def test_missing_class_list_named(tmp_path):
    home = make_voc(tmp_path)
    (home / "ImageSets" / "Main" / "cow_train.txt").unlink()
    with pytest.raises(DatasetMissingError, match=r"cow_train\.txt is missing.*attnbook data prepare voc2012"):
        VOC2012(tmp_path)

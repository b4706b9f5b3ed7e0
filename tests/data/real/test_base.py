"""Shared loader machinery: data root, table readers with line numbers, splits, box conventions, the
Dataset base class."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from attnbook.data.real import base
from attnbook.data.real.base import DatasetFormatError, DatasetMissingError
from attnbook.data.records import BBOX, IMAGE, INDEX, LABEL, DatasetInfo


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.delenv(base.ENV_VAR, raising=False)
    repo = Path(base.__file__).resolve().parents[4]
    assert base.default_root() == repo / "data" / "raw" and (repo / "pyproject.toml").is_file()
    monkeypatch.setenv(base.ENV_VAR, str(tmp_path))
    assert base.resolve_root(None) == tmp_path and base.resolve_root("/x") == Path("/x")


def test_read_numeric_reports_the_bad_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("header\n1 2 3\n4 x 6\n")
    with pytest.raises(DatasetFormatError, match=r"t\.txt, line 3: malformed row '4 x 6'.*prepare cub"):
        base.read_numeric(path, dataset="cub", skip=1)
    path.write_text("1 2 3 extra\n4 5\n")
    with pytest.raises(DatasetFormatError, match="line 2"):
        base.read_numeric(path, dataset="cub", usecols=(0, 1, 2))
    path.write_text("1 2 3 extra\n4 5 6\n")
    assert base.read_numeric(path, dataset="cub", usecols=(0, 1, 2)).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_read_rows_keeps_names_with_spaces(tmp_path):
    path = tmp_path / "parts.txt"
    path.write_text("1 back\n7 left eye\n\n")
    assert base.read_rows(path, 2, dataset="cub", rest=True) == [["1", "back"], ["7", "left eye"]]
    with pytest.raises(DatasetMissingError, match=r"nothing\.txt is missing.*prepare cub"):
        base.read_rows(tmp_path / "nothing.txt", 2, dataset="cub")


def test_per_class_split_counts():
    labels = [0] * 10 + [1] * 4
    train, test = base.per_class_split(labels, 3, 5, seed=0)
    assert Counter(labels[k] for k in train) == {0: 3, 1: 3}
    assert Counter(labels[k] for k in test) == {0: 5, 1: 1} and not set(train) & set(test)
    train, test = base.per_class_split(labels, 0.5, None, seed=0)
    assert (len(train), len(test)) == (7, 7)


def test_shuffled_split_floor():
    train, test = base.shuffled_split(23262, 0.8, seed=0)  # BLA's cats vs dogs
    assert (len(train), len(test)) == (18609, 4653) and sorted(train + test) == list(range(23262))


def test_box_conventions():
    assert base.box_from_one_based(1, 1, 10, 20).tolist() == [0, 0, 10, 20]
    assert base.box_from_zero_based(0, 0, 499, 374).tolist() == [0, 0, 500, 375]  # ImageNet: a full 500×375 box
    assert base.clip_box(np.array([-1.0, 2.0, 41.0, 31.0]), width=40, height=30).tolist() == [0, 2, 40, 30]
    assert base.boxes_from_xywh(np.array([[2.0, 3.0, 4.0, 5.0]])).tolist() == [[2, 3, 6, 8]]
    assert base.enclosing_box(np.array([[1, 5, 3, 6], [0, 6, 2, 9]])).tolist() == [0, 5, 3, 9]


class _Tiny(base.RecordDataset):
    name = "tiny"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.labels = [1, 0]
        self.boxes = np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
        self.info = DatasetInfo("tiny", 2, ("a", "b"), (IMAGE, LABEL, BBOX))

    def _image(self, index: int) -> torch.Tensor:
        return torch.full((3, 4, 4), float(index))


def test_record_dataset_protocol():
    data = _Tiny(size=8, transform=lambda s: {**s, "extra": torch.tensor(1)})
    sample = data[-1]
    assert sample[INDEX].item() == 1 and sample[LABEL].item() == 0 and sample[LABEL].dtype == torch.int64
    assert sample[IMAGE].shape == (3, 8, 8) and torch.equal(sample[BBOX], torch.tensor([2.0, 2.0, 6.0, 8.0]))
    batch = torch.utils.data.default_collate([data[0], data[1]])
    assert batch[IMAGE].shape == (2, 3, 8, 8) and batch[LABEL].tolist() == [1, 0]
    with pytest.raises(IndexError, match="out of range for tiny"):
        data[2]
    with pytest.raises(ValueError, match="positive int"):
        _Tiny(size=0)

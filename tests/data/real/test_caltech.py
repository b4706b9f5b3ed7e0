"""Caltech-256: seeded per-class split of 30/60 + 25 (here 2 + 2), clutter and stray files dropped."""
from __future__ import annotations

from collections import Counter

from fixtures import make_caltech256

from attnbook.data.real.caltech import Caltech256


def test_split_counts_and_classes(tmp_path):
    make_caltech256(tmp_path)
    train = Caltech256(tmp_path, n_train=2, n_test=2, seed=1)
    test = Caltech256(tmp_path, split="test", n_train=2, n_test=2, seed=1)
    assert train.info.class_names == ("ak47", "american-flag", "backpack")
    assert Counter(train.labels) == {0: 2, 1: 2, 2: 2}
    assert Counter(test.labels) == {0: 2, 1: 2, 2: 1}  # backpack has 3 images: 1 left for testing
    assert not set(train.paths) & set(test.paths)
    assert all(p.parent.parent.name == "256_ObjectCategories" for p in train.paths + test.paths)


def test_split_is_seeded(tmp_path):
    make_caltech256(tmp_path)
    assert Caltech256(tmp_path, seed=3, n_train=2).paths == Caltech256(tmp_path, seed=3, n_train=2).paths
    draws = {tuple(Caltech256(tmp_path, seed=s, n_train=2).paths) for s in range(6)}
    assert len(draws) > 1

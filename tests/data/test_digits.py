"""scikit-learn digits as the offline 3-vs-8 analog: placement, scaling, relabelling, stratified split."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from attnbook.data.digits import Digits, digit_images, stratified_split
from attnbook.data.records import IMAGE, INDEX, LABEL


def test_images_are_the_digits_in_a_centred_box():
    images, labels = digit_images(size=28, box=20)
    raw = load_digits()
    assert images.shape == (1797, 1, 28, 28) and torch.equal(labels, torch.tensor(raw.target))
    assert images.min() == 0 and images.max() <= 1
    assert images[:, :, :4].abs().sum() == 0 and images[:, :, -4:].abs().sum() == 0  # MNIST's 4 px margin
    assert images[:, :, :, :4].abs().sum() == 0 and images[:, :, :, -4:].abs().sum() == 0
    # the box, shrunk back to 8×8 by area averaging, matches the original ink counts / 16 (up to smoothing)
    back = F.adaptive_avg_pool2d(images[:, :, 4:24, 4:24], 8)[:, 0].flatten()
    original = torch.tensor(raw.images, dtype=torch.float32).flatten() / 16
    assert torch.corrcoef(torch.stack([back, original]))[0, 1] > 0.95


def test_identity_box_keeps_the_pixels():
    images, _ = digit_images(size=8, box=8)
    torch.testing.assert_close(images[:, 0], torch.tensor(load_digits().images, dtype=torch.float32) / 16)


def test_stratified_split_hand_example():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    train, test = stratified_split(labels, 0.5, seed=3)
    assert sorted(torch.cat([train, test]).tolist()) == list(range(10))
    assert (labels[test] == 0).sum() == 2 and (labels[test] == 1).sum() == 3
    again = stratified_split(labels, 0.5, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])


def test_three_vs_eight_pair():
    train, test = Digits("train"), Digits("test")
    counts = np.bincount(load_digits().target)
    assert len(train) + len(test) == counts[3] + counts[8]  # 183 + 174
    assert (test.labels == 0).sum() == round(0.3 * counts[3]) and (test.labels == 1).sum() == round(0.3 * counts[8])
    assert set(train.labels.tolist()) == {0, 1} and train.info.class_names == ("3", "8")
    sample = train[5]
    assert sample[IMAGE].shape == (3, 28, 28) and sample[LABEL].dtype == torch.int64 and sample[INDEX] == 5
    assert torch.equal(sample[IMAGE][0], sample[IMAGE][2])  # grey repeated
    grey = train.grey()
    assert grey[IMAGE].shape == (len(train), 1, 28, 28)
    # no image in both splits
    flat_train, flat_test = train.images.flatten(1), test.images.flatten(1)
    assert not (torch.cdist(flat_train, flat_test) == 0).any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        Digits("val")
    with pytest.raises(ValueError, match="distinct values"):
        Digits(digits=(3, 3))
    with pytest.raises(ValueError, match="box"):
        digit_images(size=28, box=30)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(torch.tensor([0, 1]), 1.0, 0)

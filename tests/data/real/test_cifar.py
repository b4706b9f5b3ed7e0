"""CIFAR-100 pickle loader: images, labels, class names, a truncated batch, and pickles as code: the published
md5 is checked before unpickling, and a batch that names any global beyond numpy's is refused unrun."""
from __future__ import annotations

import builtins
import pickle
import re

import pytest
import torch
from fixtures import make_cifar100

from attnbook.data.real.base import DatasetFormatError
from attnbook.data.real.cifar import CIFAR100
from attnbook.data.records import LABEL


def test_batches_and_names(tmp_path):
    make_cifar100(tmp_path)  # written like the real files: Python 2 cPickle, protocol 2
    train, test = CIFAR100(tmp_path, checksum=False), CIFAR100(tmp_path, split="test", checksum=False)
    assert train.labels == [5, 0, 99, 5] and test.labels == [7, 7]
    assert train.info.num_classes == 100 and train.info.class_names[99] == "class99"
    sample = train[2]  # bytes = 10·2 + 99 % 10 = 29
    assert sample[LABEL].item() == 99 and torch.allclose(sample["image"], torch.full((3, 32, 32), 29 / 255))


def test_resize(tmp_path):
    make_cifar100(tmp_path)
    assert CIFAR100(tmp_path, size=64, checksum=False)[0]["image"].shape == (3, 64, 64)


def test_truncated_batch(tmp_path):
    home = make_cifar100(tmp_path)
    (home / "train").write_bytes((home / "train").read_bytes()[:500])
    with pytest.raises(DatasetFormatError, match=r"cifar-100-python/train.*truncated"):
        CIFAR100(tmp_path, checksum=False)


def test_published_md5_checked_before_unpickling(tmp_path):
    make_cifar100(tmp_path)  # our own batches: not the published bytes
    with pytest.raises(DatasetFormatError, match=r"cifar-100-python/train: md5 [0-9a-f]{32} ≠ published "
                                                 r"16019d7e3df5f24257cddd939b257f8d .*refusing to unpickle"):
        CIFAR100(tmp_path)


class _Payload:
    """Unpickles as a call of ``builtins.print`` — a harmless stand-in for ``os.system``."""

    def __reduce__(self):
        return builtins.print, ("PAYLOAD RAN",)


def test_crafted_pickle_is_refused_and_never_runs(tmp_path, capsys):
    home = make_cifar100(tmp_path)
    crafted = pickle.dumps({b"data": _Payload(), b"fine_labels": []}, protocol=2)
    pickle.loads(crafted)  # the exploit is real: plain pickle runs it
    assert "PAYLOAD RAN" in capsys.readouterr().out
    (home / "train").write_bytes(crafted)
    with pytest.raises(DatasetFormatError, match=r"md5 .* refusing to unpickle"):
        CIFAR100(tmp_path)  # default: the md5 check stops it first
    with pytest.raises(DatasetFormatError) as caught:
        CIFAR100(tmp_path, checksum=False)  # no md5 to stop it: the data-only unpickler does
    message = str(caught.value)
    assert "\n" not in message and str(home / "train") in message
    assert re.search(r"refused to unpickle (__builtin__|builtins)\.print", message)  # protocol 2: __builtin__
    assert "PAYLOAD RAN" not in capsys.readouterr().out

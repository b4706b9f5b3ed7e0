"""scikit-learn's handwritten digits as an offline, real-data analog of MNIST (BLA §4.1's 3-vs-8 task).

``sklearn.datasets.load_digits`` ships with scikit-learn: 1,797 handwritten digits (the UCI
"optdigits" test set, 43 writers' NIST forms), each an 8×8 image of ink counts 0..16 (a 32×32
bitmap summed over 4×4 blocks). It is *real* handwriting but not MNIST: 1/30 as many images
(183 threes and 174 eights against MNIST's 11,982 + 1,984) at 1/12 of the pixels.

To look like MNIST to a network built for it, each image is scaled to [0, 1] (÷ 16; ink is bright,
as in MNIST), upsampled bilinearly to a ``box × box`` square and centred on a black ``size × size``
canvas — MNIST's digits fill a 20×20 box inside 28×28. Samples follow :mod:`attnbook.data.records`
(``image`` [3, size, size], grey repeated; ``label``; ``index``). There is no official split: a
seeded stratified split keeps ``test_fraction`` of each digit for testing.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from attnbook.data.records import IMAGE, INDEX, LABEL, DatasetInfo

SPLITS = ("train", "test")
INK_MAX = 16.0  # ink counts per 4×4 block of the original 32×32 bitmaps


def digit_images(size: int = 28, box: int = 20) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as ``[N, 1, size, size]`` floats in [0, 1] (digit in a centred ``box``) and labels ``[N]``."""
    if not 8 <= box <= size:
        raise ValueError(f"need 8 <= box <= size (the digit is upsampled from 8×8 into the box), got box={box}, "
                         f"size={size}")
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    data = load_digits()
    small = torch.tensor(data.images, dtype=torch.float32).div_(INK_MAX).unsqueeze(1)  # [N, 1, 8, 8]
    digits = F.interpolate(small, size=(box, box), mode="bilinear", align_corners=False).clamp_(0, 1)
    margin = (size - box) // 2
    canvas = F.pad(digits, (margin, size - box - margin, margin, size - box - margin))  # [N, 1, size, size]
    return canvas, torch.tensor(data.target, dtype=torch.int64)


def stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, test), sorted: ``round(test_fraction · n_c)`` random images of each class go to test."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero()[:, 0]
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


class Digits(Dataset):
    """scikit-learn digits as records; ``digits=(3, 8)`` keeps those and relabels them 0, 1 (like ``MNIST``).

    Paper: BLA §4.1 (MNIST 3 vs 8) — this is an offline analog, not MNIST; see the module docstring.
    The split is drawn from ``split_seed`` (fixed data, whatever the training seed).
    """

    def __init__(self, split: str = "train", *, digits: Sequence[int] = (3, 8), size: int = 28, box: int = 20,
                 test_fraction: float = 0.3, split_seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not valid; choose one of {list(SPLITS)}")
        digits = tuple(digits)
        if not digits or len(set(digits)) != len(digits) or not set(digits) <= set(range(10)):
            raise ValueError(f"digits must be distinct values in 0..9, got {digits}")
        images, labels = digit_images(size, box)
        keep = torch.isin(labels, torch.tensor(digits)).nonzero()[:, 0]
        train, test = stratified_split(labels[keep], test_fraction, split_seed)
        chosen = keep[train if split == "train" else test]
        relabel = torch.full((10,), -1, dtype=torch.int64)
        relabel[list(digits)] = torch.arange(len(digits))
        self.images = images[chosen]  # [n, 1, size, size]
        self.labels = relabel[labels[chosen]]  # [n]
        self.info = DatasetInfo(name="scikit-learn digits", num_classes=len(digits),
                                class_names=tuple(map(str, digits)), fields=(IMAGE, LABEL, INDEX),
                                extra={"split": split, "size": size, "box": box})

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {IMAGE: self.images[index].expand(3, -1, -1).contiguous(), LABEL: self.labels[index],
                INDEX: torch.tensor(index, dtype=torch.int64)}

    def grey(self) -> dict[str, Tensor]:
        """``{"image": [n, 1, size, size], "label": [n]}`` — one grey channel, as the paper's CNN takes."""
        return {IMAGE: self.images, LABEL: self.labels}


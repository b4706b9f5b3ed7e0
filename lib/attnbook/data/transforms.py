"""Geometric transforms of a whole sample dict, keeping every spatial field consistent with the image.

A sample (see :mod:`attnbook.data.records`) may carry an ``image`` [3, H, W], masks [H, W] or [P, H, W],
``landmarks`` [P, 2] as (x, y) and a ``bbox`` (x0, y0, x1, y1) — all in pixels of ``image``. Coordinates
are continuous with pixel edges on integers (pixel ``i`` spans [i, i+1)), so a resize by factor ``s``
maps ``x ↦ s·x`` and a crop at ``left`` maps ``x ↦ x − left``. Keys without geometry pass through.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbook.data.records import BBOX, DISC_MASK, IMAGE, LANDMARK_VISIBLE, LANDMARKS, MASK, PART_MASKS

_MASKS_2D = (MASK, DISC_MASK)  # [H, W]
_MASKS_3D = (PART_MASKS,)  # [P, H, W]


def as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` as (height, width); an int means a square."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"size must be a positive int or (height, width) of positive ints, got {size!r}")
    return pair  # type: ignore[return-value]


def _image_hw(sample: dict[str, Tensor]) -> tuple[int, int]:
    if IMAGE not in sample or sample[IMAGE].dim() != 3:
        raise ValueError("sample needs an 'image' tensor of shape [C, H, W]")
    return int(sample[IMAGE].shape[1]), int(sample[IMAGE].shape[2])


def _resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of a bool mask [..., H, W] (no new labels appear)."""
    lead = mask.shape[:-2]
    flat = mask.reshape(1, -1, *mask.shape[-2:]).float()  # [1, N, H, W]
    out = F.interpolate(flat, size=size, mode="nearest-exact")
    return (out > 0.5).reshape(*lead, *size)


def resize_sample(sample: dict[str, Tensor], size: int | tuple[int, int]) -> dict[str, Tensor]:
    """Resize the image to ``size`` (aspect ratio not kept) and scale masks, landmarks and box with it.

    The image is resampled bilinearly with antialiasing, masks by nearest neighbour.
    """
    height, width = as_size(size)
    old_h, old_w = _image_hw(sample)
    if (old_h, old_w) == (height, width):
        return dict(sample)
    out = dict(sample)
    image = sample[IMAGE].unsqueeze(0)  # [1, 3, H, W]
    out[IMAGE] = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False,
                               antialias=True).squeeze(0).clamp_(0.0, 1.0)
    for key in _MASKS_2D + _MASKS_3D:
        if key in sample:
            out[key] = _resize_mask(sample[key], (height, width))
    scale = torch.tensor([width / old_w, height / old_h])
    if LANDMARKS in sample:
        out[LANDMARKS] = sample[LANDMARKS] * scale  # [P, 2]
    if BBOX in sample:
        out[BBOX] = sample[BBOX] * scale.repeat(2)  # [4]
    return out


def resize_shorter_side(sample: dict[str, Tensor], size: int) -> dict[str, Tensor]:
    """Resize so that the shorter image side equals ``size``, keeping the aspect ratio (rounded)."""
    height, width = _image_hw(sample)
    scale = size / min(height, width)
    return resize_sample(sample, (max(1, round(height * scale)), max(1, round(width * scale))))


def crop_sample(sample: dict[str, Tensor], top: int, left: int, height: int, width: int) -> dict[str, Tensor]:
    """Crop the window [top, top+height) × [left, left+width); landmarks leaving it become invisible.

    The box is clipped to the window. The window must lie inside the image.
    """
    img_h, img_w = _image_hw(sample)
    if top < 0 or left < 0 or height <= 0 or width <= 0 or top + height > img_h or left + width > img_w:
        raise ValueError(f"crop window top={top} left={left} {height}x{width} does not fit the "
                         f"{img_h}x{img_w} image")
    out = dict(sample)
    out[IMAGE] = sample[IMAGE][:, top:top + height, left:left + width]
    for key in _MASKS_2D + _MASKS_3D:
        if key in sample:
            out[key] = sample[key][..., top:top + height, left:left + width]
    offset = torch.tensor([float(left), float(top)])
    if LANDMARKS in sample:
        points = sample[LANDMARKS] - offset  # [P, 2]
        inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
        out[LANDMARKS] = points
        if LANDMARK_VISIBLE in sample:
            out[LANDMARK_VISIBLE] = sample[LANDMARK_VISIBLE] & inside
    if BBOX in sample:
        box = sample[BBOX] - offset.repeat(2)
        out[BBOX] = torch.stack([box[0].clamp(0, width), box[1].clamp(0, height),
                                 box[2].clamp(0, width), box[3].clamp(0, height)])
    return out


def center_crop_sample(sample: dict[str, Tensor], size: int | tuple[int, int]) -> dict[str, Tensor]:
    """Crop the central ``size`` window (see :func:`crop_sample`)."""
    height, width = as_size(size)
    img_h, img_w = _image_hw(sample)
    return crop_sample(sample, (img_h - height) // 2, (img_w - width) // 2, height, width)

"""BR-NPA's RGB rendering of ranked maps (lib/attnbook/viz/rgb_maps.py) on hand-sized inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnbook.viz.rgb_maps import picture_grid, rgb_attention, rgb_overlay, rgb_panel_png


def _one_hot_maps() -> torch.Tensor:
    """Three 2×2 maps: map k puts all its weight on flat position k."""
    maps = torch.zeros(1, 3, 2, 2)
    for k in range(3):
        maps[0, k].view(-1)[k] = 1.0
    return maps


def test_channel_k_is_map_k_times_norm_over_the_image_peak():
    norms = torch.tensor([[[4.0, 2.0], [1.0, 8.0]]])  # position 3 (not attended) has the largest norm
    rgb = rgb_attention(_one_hot_maps(), norms)
    expected = torch.zeros(1, 3, 2, 2)
    expected[0, 0, 0, 0], expected[0, 1, 0, 1], expected[0, 2, 1, 0] = 4 / 4, 2 / 4, 1 / 4
    torch.testing.assert_close(rgb, expected)


def test_relative_brightness_of_maps_is_kept():
    """A map over low-norm vectors stays dark (the paper's invisible blue map, §4.4)."""
    maps = torch.full((1, 3, 2, 2), 0.25)  # three uniform maps
    norms = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])
    rgb = rgb_attention(maps, norms)
    torch.testing.assert_close(rgb, torch.ones(1, 3, 2, 2))  # white: all three maps equally bright
    maps[0, 2] = 0.05
    assert rgb_attention(maps, norms)[0, 2].max() == pytest.approx(0.2)


def test_fewer_maps_leave_the_other_channels_black_and_resize():
    maps = torch.ones(2, 1, 2, 2)
    rgb = rgb_attention(maps, torch.ones(2, 2, 2), size=8)
    assert rgb.shape == (2, 3, 8, 8)
    assert rgb[:, 1:].abs().max() == 0 and rgb[:, 0].min() == pytest.approx(1.0)


def test_an_all_zero_map_stays_black_without_nan():
    rgb = rgb_attention(torch.zeros(1, 3, 2, 2), torch.ones(1, 2, 2))
    assert torch.isfinite(rgb).all() and rgb.abs().max() == 0


@pytest.mark.parametrize(("maps", "norms", "message"), [
    (torch.ones(1, 4, 2, 2), torch.ones(1, 2, 2), "1 ≤ N ≤ 3"),
    (torch.ones(1, 3, 2, 2), torch.ones(1, 3, 3), "norms must be"),
    (-torch.ones(1, 3, 2, 2), torch.ones(1, 2, 2), "non-negative"),
])
def test_bad_inputs_raise(maps, norms, message):
    with pytest.raises(ValueError, match=message):
        rgb_attention(maps, norms)


def test_overlay_blends_image_and_rgb():
    image, rgb = torch.full((3, 4, 4), 0.5), torch.zeros(3, 4, 4)
    rgb[0] = 1.0
    np.testing.assert_allclose(rgb_overlay(image, rgb, alpha=0.0), np.full((4, 4, 3), 0.5))
    blended = rgb_overlay(image, rgb, alpha=0.5)
    np.testing.assert_allclose(blended[..., 0], 0.75)
    np.testing.assert_allclose(blended[..., 1], 0.25)
    with pytest.raises(ValueError, match="same shape"):
        rgb_overlay(image, torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="alpha"):
        rgb_overlay(image, rgb, alpha=2.0)


def test_panel_is_a_png_and_grid_has_one_axis_per_picture():
    image = torch.rand(3, 8, 8)
    rgb = rgb_attention(_one_hot_maps(), torch.ones(1, 2, 2), size=8)[0]
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 2:5] = True
    assert rgb_panel_png(image, rgb, "BR-NPA", mask=mask).startswith(b"\x89PNG")
    picture = np.zeros((8, 8, 3))
    fig = picture_grid([[picture, picture], [picture, picture]], ["input", "BR-NPA"])
    assert len(fig.axes) == 4 and fig.axes[1].get_title() == "BR-NPA"
    with pytest.raises(ValueError, match="2 columns"):
        picture_grid([[picture]], ["input", "BR-NPA"])

"""The house style (page-width figures, readable fonts, colour bars), widget panels, and figure cells on the page."""
from __future__ import annotations

import io

import matplotlib
import pytest
import torch
from matplotlib import pyplot as plt
from PIL import Image

from attnbook import book_pages
from attnbook.viz import plots, rgb_maps, style


@style.house_style
def _wide_figure():
    fig, axes = plt.subplots(1, 4, figsize=(16, 3))
    for ax in axes:
        ax.plot([0, 1], [1, 0])
        ax.set(title="a title", xlabel="x", ylabel="y")
    fig.tight_layout()
    return fig


def test_house_style_fits_the_page_and_keeps_text_readable():
    before = dict(matplotlib.rcParams)
    fig = _wide_figure()
    assert dict(matplotlib.rcParams) == before  # the style is a context, not a global change
    width, _ = fig.get_size_inches()
    assert width <= style.PAGE_WIDTH and fig.dpi == style.DPI
    assert min(style.text_sizes(fig)) >= style.MIN_FONT
    plt.close(fig)


def test_maps_table_uses_a_perceptual_map_with_one_colour_bar():
    images = [torch.rand(3, 32, 32) for _ in range(3)]
    maps = {f"method_{k}": torch.rand(3, 4, 4) for k in range(7)}
    fig = plots.maps_table(images, maps, masks=[torch.rand(32, 32) > 0.5 for _ in range(3)])
    assert fig.get_size_inches()[0] <= style.PAGE_WIDTH
    assert min(style.text_sizes(fig)) >= style.MIN_FONT
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1
    plt.close(fig)


def test_overlay_defaults_to_a_perceptual_map():
    import inspect

    assert inspect.signature(plots.overlay).parameters["cmap"].default == style.HEAT != "jet"


@pytest.mark.parametrize("heat", [torch.rand(4, 4), None])
def test_map_panel_is_wide_enough_for_the_page(heat):
    png = plots.map_panel_png(torch.rand(3, 32, 32), heat, "a method", mask=torch.rand(32, 32) > 0.5)
    width, height = Image.open(io.BytesIO(png)).size
    assert width >= 300 and width > height  # input beside the map, colour bar


def test_rgb_panel_is_wide_enough_for_the_page():
    rgb = rgb_maps.rgb_attention(torch.rand(1, 3, 4, 4), torch.rand(1, 4, 4), size=(32, 32))[0]
    png = rgb_maps.rgb_panel_png(torch.rand(3, 32, 32), rgb, "BR-NPA")
    assert Image.open(io.BytesIO(png)).size[0] >= 300


def test_signed_norm_is_centred_at_zero():
    norm = style.signed_norm([-1.0, 3.0])
    assert norm.vmin == -3 and norm.vmax == 3 and norm(0.0) == pytest.approx(0.5)


def _figure_output(tag):
    return {"output_type": "display_data", "data": {"image/png": tag, "text/plain": "<Figure>"}, "metadata": {}}


def test_declared_figures_get_their_own_captioned_cells():
    table = {"output_type": "execute_result", "data": {"text/html": "<table/>"}, "metadata": {}}
    specs = [{"name": f"fig-{k}", "caption": f"caption {k}", "alt": f"alt {k}"} for k in (1, 2)]
    nb = {"metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# T"},
        {"cell_type": "code", "metadata": {"attnbook": {"figures": specs}}, "source": "x",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}, _figure_output("A"),
                     _figure_output("B"), table]},
    ]}
    book_pages.split_figures(nb)
    cells = nb["cells"]
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "code", "code", "code"]
    assert cells[1]["source"] == "x" and [o["output_type"] for o in cells[1]["outputs"]] == ["stream"]
    for cell, k, tag in ((cells[2], 1, "A"), (cells[3], 2, "B")):
        assert cell["outputs"][0]["data"]["image/png"] == tag and "remove-input" in cell["metadata"]["tags"]
        assert cell["metadata"]["mystnb"] == {"figure": {"caption": f"caption {k}", "name": f"fig-{k}"},
                                              "image": {"alt": f"alt {k}"}}
    assert cells[4]["outputs"] == [table] and "mystnb" not in cells[4]["metadata"]
    assert all(c["metadata"].get(book_pages.INJECTED) for c in cells[2:])  # not in the download copy
    assert len(book_pages.download_copy(nb)["cells"]) == 2


def test_cells_without_declared_figures_are_left_alone():
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "x", "outputs": [_figure_output("A")]}]}
    assert book_pages.split_figures(nb)["cells"] == [
        {"cell_type": "code", "metadata": {}, "source": "x", "outputs": [_figure_output("A")]}]

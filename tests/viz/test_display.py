"""How tables and pictures are shown in the book: attnbook.viz.display and attnbook.viz.plots.compact_png."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attnbook.viz import display
from attnbook.viz.plots import compact_png


@pytest.fixture
def restore_pandas_options():
    yield
    for name in display.OPTIONS:
        pd.reset_option(name)


def test_table_html_keeps_whole_texts_and_dashes_missing_values():
    claim = "§4.1: BLA(-T) costs no accuracy on MNIST 3 vs 8 (no significant difference to the baseline)" * 2
    frame = pd.DataFrame({"claim": [claim, "user study"], "p_value": [0.03, np.nan], "ours": ["0.51", None]})
    html = display.table_html(frame)
    assert claim in html and "…" not in html and "..." not in html
    assert "NaN" not in html and "None" not in html and html.count(f"<td>{display.NA_REP}</td>") == 2


def test_book_tables_sets_options_and_the_html_formatter(monkeypatch, restore_pandas_options):
    registered = {}

    class Formatter:
        def for_type(self, cls, func):
            registered[cls] = func

    class Shell:
        display_formatter = type("DF", (), {"formatters": {"text/html": Formatter()}})()

    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    display.book_tables()
    assert pd.get_option("display.max_colwidth") is None and pd.get_option("display.max_columns") is None
    assert registered[pd.DataFrame] is display.table_html


def test_book_tables_outside_a_kernel_only_sets_options(restore_pandas_options):
    display.book_tables()  # no IPython shell in pytest: no error
    assert pd.get_option("display.max_colwidth") is None


def _png(array: np.ndarray, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, format="PNG")
    return out.getvalue()


def test_compact_png_is_exact_for_few_colours():
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, size=(40, 3), dtype=np.uint8)
    picture = palette[rng.integers(0, 40, size=(96, 96))]
    small = compact_png(_png(picture), min_saving=0.0)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(small)).convert("RGB")), picture)


def test_compact_png_shrinks_a_smooth_photo_like_picture_closely():
    y, x = np.mgrid[0:160, 0:160] / 160.0
    picture = (np.stack([x, y, (x + y) / 2], -1) * 255).astype(np.uint8)
    picture = np.clip(picture.astype(int) + np.random.default_rng(0).integers(-6, 7, picture.shape), 0, 255)
    data = _png(picture.astype(np.uint8))
    small = compact_png(data)
    assert len(small) < 0.8 * len(data)
    shown = np.asarray(Image.open(io.BytesIO(small)).convert("RGB")).astype(int)
    assert np.abs(shown - picture).mean() < 8  # dithered: close on average


def test_compact_png_leaves_transparency_and_small_savings_alone():
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 3] = 128
    data = _png(rgba, "RGBA")
    assert compact_png(data) == data
    flat = _png(np.full((8, 8, 3), 200, np.uint8))
    assert compact_png(flat, min_saving=0.99) == flat

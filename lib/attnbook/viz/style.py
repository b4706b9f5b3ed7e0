"""The book's house style for figures, applied in one place: every figure function of the chapters is
decorated with :func:`house_style`.

The book's content column is ~770 px wide. A figure drawn at :data:`DPI` (100) no wider than
:data:`PAGE_WIDTH` (7.5 in → 750 px) is shown at (about) its natural size, so a 9 pt label stays a
9 pt label (12.5 px) on the page instead of being shrunk to ~6 px. :func:`house_style` creates the
figure inside :data:`RC` (fonts ≥ 9 pt, 100 dpi, perceptual colour maps) and, should a figure still
come out wider than the page, shrinks its canvas (not its fonts) to :data:`PAGE_WIDTH`.

Colour maps: :data:`SEQUENTIAL` (viridis) for counts and values ≥ 0, :data:`HEAT` (magma) for attention
overlaid on images, :data:`DIVERGING` (``RdBu_r``, centred at 0 by :func:`signed_norm`) for signed maps.
Heat maps carry a colour bar (:func:`colorbar`; one shared bar for a grid of overlays).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import matplotlib as mpl
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

PAGE_WIDTH = 7.5  # inches: 750 px at DPI, within the page's ~770 px content column
DPI = 100
MIN_FONT = 9  # points: the smallest text a figure may carry
SEQUENTIAL = "viridis"
HEAT = "magma"
DIVERGING = "RdBu_r"
RC: dict[str, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": MIN_FONT,
    "ytick.labelsize": MIN_FONT,
    "legend.fontsize": MIN_FONT,
    "legend.title_fontsize": MIN_FONT,
    "figure.titlesize": 11,
    "image.cmap": SEQUENTIAL,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}

F = TypeVar("F", bound=Callable[..., Any])


def fit_width(fig: Figure, width: float = PAGE_WIDTH) -> Figure:
    """Shrink ``fig``'s canvas (keeping its aspect ratio and its font sizes) to at most ``width`` inches."""
    w, h = fig.get_size_inches()
    if w > width:
        fig.set_size_inches(width, h * width / w)
        if fig.get_layout_engine() is None:
            try:
                fig.tight_layout()
            except Exception:  # noqa: BLE001 - a layout that cannot be tightened keeps its positions
                pass
    return fig


def house_style(func: F) -> F:
    """Run a figure function inside :data:`RC`; a returned figure wider than :data:`PAGE_WIDTH` is fitted."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with mpl.rc_context(RC):
            result = func(*args, **kwargs)
            if isinstance(result, Figure):
                fit_width(result)
        return result

    return wrapper  # type: ignore[return-value]


def signed_norm(values: Any) -> Normalize:
    """A colour norm for signed values, centred at 0 (white in :data:`DIVERGING`)."""
    import numpy as np

    limit = float(np.nanmax(np.abs(values))) if np.size(values) else 1.0
    limit = limit if limit > 0 else 1.0
    return TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)


def colorbar(fig: Figure, mappable_or_cmap: Any, ax: Any, label: str, **kwargs: Any) -> Any:
    """A colour bar beside ``ax`` (an axes or a list of them). ``mappable_or_cmap`` may be a colour map name:
    then the bar shows the [0, 1] scale of a min–max normalised map ("low" … "high")."""
    if isinstance(mappable_or_cmap, str):
        mappable = mpl.cm.ScalarMappable(norm=Normalize(0, 1), cmap=mappable_or_cmap)
        bar = fig.colorbar(mappable, ax=ax, label=label, **kwargs)
        bar.set_ticks([0, 1], labels=["low", "high"])
        return bar
    return fig.colorbar(mappable_or_cmap, ax=ax, label=label, **kwargs)


def text_sizes(fig: Figure) -> list[float]:
    """The font sizes (points) of every visible, non-empty text of ``fig`` (for tests)."""
    fig.canvas.draw()  # tick labels exist once drawn
    return [t.get_fontsize() for t in fig.findobj(mpl.text.Text) if t.get_visible() and t.get_text().strip()]


__all__ = ["DIVERGING", "DPI", "HEAT", "MIN_FONT", "PAGE_WIDTH", "RC", "SEQUENTIAL", "colorbar", "fit_width",
           "house_style", "signed_norm", "text_sizes"]

"""ipywidgets explorers that keep working in the static book (no kernel).

Interaction is client-side only: widgets are linked with ``jslink`` and every view is precomputed
(callbacks would show just their first saved output once the kernel is gone).
"""
from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets


def image_method_explorer(panels: Sequence[Sequence[bytes]], methods: Sequence[str], captions: Sequence[str],
                          title: str = "") -> widgets.VBox:
    """Browse ``panels[image][method]`` (PNG bytes): a slider picks the image, buttons pick the method.

    Built as a ``Stack`` of per-image ``Stack``s; the slider is jslinked to the outer stack's
    ``selected_index`` and the method buttons' ``index`` to every inner stack's.
    """
    if not panels or any(len(row) != len(methods) for row in panels):
        raise ValueError(f"panels must be a non-empty [images][{len(methods)} methods] grid of PNG bytes")
    if len(captions) != len(panels):
        raise ValueError(f"{len(captions)} captions for {len(panels)} images")
    picker = widgets.ToggleButtons(options=list(methods), index=0, description="method",
                                   style={"button_width": "auto"})
    slider = widgets.IntSlider(value=0, min=0, max=len(panels) - 1, step=1, description="image",
                               continuous_update=True)
    pages = []
    for row, caption in zip(panels, captions):
        inner = widgets.Stack([widgets.Image(value=png, format="png") for png in row], selected_index=0)
        widgets.jslink((picker, "index"), (inner, "selected_index"))
        pages.append(widgets.VBox([widgets.HTML(f"<b>{caption}</b>"), inner]))
    outer = widgets.Stack(pages, selected_index=0)
    widgets.jslink((slider, "value"), (outer, "selected_index"))
    children = ([widgets.HTML(f"<h4>{title}</h4>")] if title else []) + [picker, slider, outer]
    return widgets.VBox(children, layout=widgets.Layout(border="1px solid #ddd", padding="6px"))

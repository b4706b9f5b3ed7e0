"""Chapter 1's figures: base vs EAT Grad-CAM on the same objects, EAR sentences with each attribute's
grounding map. Chapter: ``nbs/01_eat.ipynb``."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from attnbook.chapters.eat.claims import Evals
from attnbook.viz.plots import map_panel_png, overlay, to_numpy_image
from attnbook.viz.style import PAGE_WIDTH, house_style
from attnbook.viz.widgets import image_method_explorer


@house_style
def figure_maps(evals: Evals, seed: int, split: str, n: int = 4) -> Figure:
    """Rows: objects of ``split``; columns: image, base Grad-CAM, EAT Grad-CAM (class ŷ), then the Grad-CAM of
    each of EAT's top EAR attributes (white outline: the object)."""
    base, eat = evals["base"][seed].examples[split], evals["eat"][seed].examples[split]
    n = min(n, len(eat["images"]))
    k = eat["maps"].shape[1] - 1
    cols = 3 + k
    fig, axes = plt.subplots(n, cols, figsize=(PAGE_WIDTH, PAGE_WIDTH / cols * n * 1.1), squeeze=False)
    titles = ["image", "base: class", "EAT: class"] + [f"EAT: attribute {j + 1}" for j in range(k)]
    for i in range(n):
        image = eat["images"][i]
        panels = [to_numpy_image(image), overlay(image, base["maps"][i, 0]), overlay(image, eat["maps"][i, 0])]
        panels += [overlay(image, eat["maps"][i, 1 + j]) for j in range(k)]
        for j, panel in enumerate(panels):
            axes[i, j].imshow(panel)
            axes[i, j].contour(eat["masks"][i].float().numpy(), levels=[0.5], colors="white", linewidths=0.6)
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(titles[j])
    fig.tight_layout()
    return fig


def sentences_table(evals: Evals, seed: int, class_names: tuple[str, ...]) -> pd.DataFrame:
    """EAR's sentences for the first bias-aligned objects, beside the true class."""
    ear = evals["eat"][seed].examples["ear"]
    return pd.DataFrame({"true class": [class_names[int(c)] for c in ear["labels"]],
                         "EAR explanation": ear["sentences"]})


def explorer(evals: Evals, seed: int, n: int = 4) -> object:
    """Widget: the slider walks through objects, each shown in every test split (bias-aligned, then
    bias-conflicting); the buttons pick the map (base Grad-CAM of the class, EAT's, EAT's top EAR attributes).
    Every view precomputed (static book)."""
    base, eat = evals["base"][seed].examples, evals["eat"][seed].examples
    splits = list(evals["eat"][seed].accuracy)
    k = eat[splits[0]]["maps"].shape[1] - 1
    names = ["base: class", "EAT: class"] + [f"EAT: attribute {j + 1}" for j in range(k)]
    per_split = min(n, *(len(eat[s]["images"]) for s in splits))
    panels, captions = [], []
    for i in range(per_split):
        for split in splits:
            image, mask = eat[split]["images"][i], eat[split]["masks"][i]
            maps = [base[split]["maps"][i, 0], eat[split]["maps"][i, 0], *eat[split]["maps"][i, 1:]]
            panels.append([map_panel_png(image, m, name, mask=mask) for m, name in zip(maps, names)])
            captions.append(f"object {i}, {split.replace('test_', 'bias-')}")
    return image_method_explorer(panels, names, captions, title="Base vs EAT: Grad-CAM of the class and attributes")

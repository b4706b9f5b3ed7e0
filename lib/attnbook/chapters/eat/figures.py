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
    each of EAT's top EAR attributes, named under the panel (white outline: the object, where masks exist)."""
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
            if "masks" in eat:
                axes[i, j].contour(eat["masks"][i].float().numpy(), levels=[0.5], colors="white", linewidths=0.6)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            for side in axes[i, j].spines.values():
                side.set_visible(False)
            if i == 0:
                axes[i, j].set_title(titles[j])
            if j >= 3 and "attributes" in eat:  # the EAR word this map grounds
                axes[i, j].set_xlabel(_word(eat["attributes"][i][j - 3]), fontsize="small")
    fig.tight_layout()
    return fig


def _word(attribute: str) -> str:
    """An attribute name as a two-line label (``head_color::red`` -> ``head color\nred``)."""
    return attribute.replace("_", " ").replace("::", "\n")


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
            image, mask = eat[split]["images"][i], eat[split].get("masks", [None] * (i + 1))[i]
            maps = [base[split]["maps"][i, 0], eat[split]["maps"][i, 0], *eat[split]["maps"][i, 1:]]
            words = eat[split].get("attributes", [[]] * (i + 1))[i]
            labels = names[:2] + [f"{name}: {_word(w).replace(chr(10), ' ')}" for name, w in zip(names[2:], words)]
            panels.append([map_panel_png(image, m, label, mask=mask) for m, label in zip(maps, labels)])
            captions.append(f"object {i}, {split.replace('test_', 'bias-')}"
                            + (f"; EAR: {', '.join(_word(w).replace(chr(10), ' ') for w in words)}" if words else ""))
    return image_method_explorer(panels, names, captions, title="Base vs EAT: Grad-CAM of the class and attributes")


def other_data_table(others: dict) -> pd.DataFrame | None:
    """Sizes of the other data sets a run trained base vs EAT on (``{name: EATTask}``: SUN attributes in the
    paper profile); ``None`` (nothing shown) when there are none."""
    if not others:
        return None
    return pd.DataFrame({name: {"train images": len(task.train), "test images": len(task.splits["test"]),
                                "classes": task.num_classes, "attributes": len(task.info.attribute_names),
                                "positive class-level labels": float(task.class_attributes.mean())}
                         for name, task in others.items()})

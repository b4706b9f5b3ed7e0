"""Chapter 0's pipeline pieces on hand-made inputs (the smoke run in test_notebooks covers the rest)."""
import pytest
import torch

from attnbook.chapters.testbed import config as testbed_config
from attnbook.chapters.testbed import figures, pipeline
from attnbook.config import ConfigError
from attnbook.data import records as R


def _explanations() -> pipeline.Explanations:
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2, :2] = True  # object: top-left quarter
    disc = torch.zeros_like(mask)
    disc[:, 0, 0] = True
    on_object = torch.zeros(2, 4, 4)
    on_object[:, 0, 0] = 1.0  # all attention on the discriminative pixel
    uniform = torch.ones(2, 4, 4)
    truth = {R.IMAGE: torch.rand(2, 3, 4, 4), R.LABEL: torch.tensor([0, 1]), R.MASK: mask, R.DISC_MASK: disc,
             R.PART_MASKS: mask[:, None]}
    maps = {"focused": on_object, "uniform": uniform}
    return pipeline.Explanations(maps={s: maps for s in testbed_config.SPLITS},
                                 truth={s: truth for s in testbed_config.SPLITS},
                                 predicted={s: torch.tensor([0, 0]) for s in testbed_config.SPLITS})


def test_scores_of_known_maps():
    scores = pipeline.score_explanations(_explanations()).set_index(["explainer", "split"])
    focused = scores.loc[("focused", "test_aligned")]
    uniform = scores.loc[("uniform", "test_aligned")]
    assert focused.pointing_object == 1 and focused.pointing_disc_part == 1
    assert focused.mass_object == 1 and focused.mass_disc_part == 1 and focused.sparsity == 16
    assert uniform.far_median == pytest.approx(1.0) and uniform.mass_object == pytest.approx(0.25)
    assert uniform.sparsity == pytest.approx(1.0) and uniform.object_area == pytest.approx(0.25)


def test_explorer_alternates_splits_and_has_one_button_per_explainer():
    from attnbook.data.synthetic import make_benchmark, spec_for

    bench = make_benchmark(spec_for("fine_grained", num_classes=2, train_per_class=1, test_per_class=2, resolution=32))
    widget = figures.explorer(_explanations(), bench, n=4)
    picker, slider, pages = widget.children[-3:]
    assert list(picker.options) == ["focused", "uniform"]
    assert slider.max == 3 and len(pages.children) == 4
    assert "bias-aligned" in pages.children[0].children[0].value
    assert "bias-conflicting" in pages.children[1].children[0].value


def test_overrides_are_validated():
    with pytest.raises(ConfigError, match="unknown parameter 'lr'"):
        testbed_config.CHAPTER.resolve("smoke", 0, lr=0.1)
    assert testbed_config.CHAPTER.resolve("smoke", 1, epochs="2").epochs == 2


def test_light_config_mirrors_the_library_names():
    """The torch-free config mirrors names defined in torch-importing modules; they must agree."""
    from attnbook.data.synthetic import PRESETS
    from attnbook.explain import EXPLAINERS
    from attnbook.models.backbones import BACKBONES

    assert testbed_config.PRESETS == tuple(PRESETS)
    assert testbed_config.BACKBONES == tuple(BACKBONES)
    assert testbed_config.EXPLAINERS == tuple(EXPLAINERS)

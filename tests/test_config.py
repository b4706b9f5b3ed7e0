"""Chapter configs: profile presets, override validation, requirement checks."""
from dataclasses import dataclass

import pytest

from attnbook.chapters import Chapter
from attnbook.config import (
    SEED_MAX,
    ChapterConfig,
    ConfigError,
    RequirementError,
    check_injected,
    check_requirements,
    describe,
    injected_names,
    param,
    resolve,
)


@dataclass(frozen=True)
class Toy(ChapterConfig):
    epochs: int = param(3, minimum=1)
    lr: float = param(0.1)
    method: str = param("bla", choices=("bl", "bla"))
    methods: tuple[str, ...] = param(("bl",), choices=("bl", "bla"))
    amp: bool = param(False)
    limit: int | None = param(None)
    p_drop: float = param(0.2, minimum=0, maximum=1)
    epochs_each: tuple[int, ...] = param((1, 2), minimum=1, maximum=10)


PROFILES = {"smoke": Toy(profile="smoke", epochs=1), "cpu": Toy()}


def test_profile_values_and_none_keeps_default():
    assert resolve(PROFILES, "smoke", {"epochs": None}).epochs == 1
    assert resolve(PROFILES, "cpu").epochs == 3


def test_strings_from_the_command_line_are_coerced():
    cfg = resolve(PROFILES, "cpu", {"epochs": "5", "lr": "0.01", "amp": "true", "methods": "bl,bla", "limit": 4})
    assert (cfg.epochs, cfg.lr, cfg.amp, cfg.methods, cfg.limit) == (5, 0.01, True, ("bl", "bla"), 4)
    cfg = resolve(PROFILES, "cpu", {"epochs": "03", "seed": "01", "limit": "none", "p_drop": "1"})
    assert (cfg.epochs, cfg.seed, cfg.limit, cfg.p_drop) == (3, 1, None, 1.0)
    assert resolve(PROFILES, "cpu", {"seed": SEED_MAX}).seed == SEED_MAX


@pytest.mark.parametrize("overrides, message", [
    ({"epoch": 3}, "unknown parameter 'epoch'; valid parameters:"),
    ({"epochs": "three"}, "expected an integer"),
    ({"epochs": 0}, "below the minimum 1"),
    ({"method": "gradcam"}, "'gradcam' is not one of ['bl', 'bla']"),
    ({"methods": "bl,x"}, "'x' is not one of"),
    ({"amp": "maybe"}, "expected true/false"),
    ({"p_drop": 5}, "'p_drop': 5.0 is above the maximum 1"),
    ({"p_drop": "-0.1"}, "is below the minimum 0"),
    ({"p_drop": "nan"}, "expected a finite number"),
    ({"lr": "inf"}, "expected a finite number"),
    ({"epochs_each": "1,11"}, "'epochs_each': 11 is above the maximum 10"),
    ({"seed": SEED_MAX + 1}, "above the maximum 9223372036854775807"),
    ({"seed": "18446744073709551616"}, "above the maximum"),
    ({"epochs": "1.0"}, "expected an integer"),
])
def test_bad_overrides_name_the_problem(overrides, message):
    with pytest.raises(ConfigError) as err:
        resolve(PROFILES, "cpu", overrides)
    assert message in str(err.value)


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid profiles: smoke, cpu"):
        resolve(PROFILES, "paper")


def test_allowed_restricts_overrides():
    with pytest.raises(ConfigError, match="valid parameters: epochs"):
        resolve(PROFILES, "cpu", {"lr": 1.0}, allowed=("epochs",))


def test_gpu_requirement_stops_on_cpu_machines(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RequirementError, match="needs a CUDA GPU"):
        check_requirements(Toy(needs_gpu=True))
    check_requirements(Toy())


def test_describe_lists_every_field():
    names = [row["parameter"] for row in describe(Toy())]
    assert names[:3] == ["profile", "seed", "device"] and "methods" in names


def test_missing_dataset_stops_with_the_prepare_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    with pytest.raises(RequirementError, match="attnbook data prepare cub"):
        check_requirements(Toy(datasets=("cub",)))


# --- names papermill injected: a fake IPython namespace -------------------------------------------------

PARAMETERS_CELL = 'profile = "cpu"\nseed = 0\nrun_dir = ""\nepochs = None\n'
INJECTED_CELL = '# Parameters\nprofile = "smoke"\nepoch = 3\n'
TOY_CHAPTER = Chapter(notebook="98_toy", title="Toy", paper="none", profiles=PROFILES, parameters=("epochs",))


def _namespace(*cells: str) -> dict:
    """What a kernel's globals() holds after the parameters cell, papermill's cell and the imports."""
    import json

    history = ["", PARAMETERS_CELL, *cells, "import json\nfrom attnbook.config import PROFILES\nLABELS = {'a': 1}\n"]
    return {"In": history, "Out": {}, "_ih": history, "get_ipython": print, "exit": None, "json": json,
            "PROFILES": PROFILES, "LABELS": {"a": 1}, "profile": "smoke", "seed": 0, "run_dir": "", "epochs": None,
            "epoch": 3, "__name__": "__main__", "__builtins__": {}}


def test_names_papermill_injected_are_read_from_the_input_history():
    assert injected_names(_namespace(INJECTED_CELL)) == ["profile", "epoch"]
    assert injected_names(_namespace()) == [] and injected_names({}) == []


def test_configure_refuses_an_injected_name_that_is_not_a_parameter():
    with pytest.raises(ConfigError) as err:
        TOY_CHAPTER.configure("smoke", 0, namespace=_namespace(INJECTED_CELL), epochs=None)
    assert str(err.value) == ("unknown parameter 'epoch' passed to 98_toy.ipynb (papermill -p); "
                              "valid parameters: profile, seed, run_dir, epochs")


def test_configure_accepts_valid_injections_imports_and_plain_python():
    good = '# Parameters\nprofile = "smoke"\nseed = 1\nepochs = 3\nrun_dir = "/tmp/x"\n'
    assert TOY_CHAPTER.configure("smoke", 1, namespace=_namespace(good), epochs=3).epochs == 3
    assert TOY_CHAPTER.configure("smoke", 0, namespace={"epoch": 3}).epochs == 1  # no IPython history: no check
    assert TOY_CHAPTER.configure("smoke", 0).epochs == 1  # outside a kernel


def test_check_injected_reads_every_injected_cell():
    with pytest.raises(ConfigError, match="'lr'"):
        check_injected(_namespace('# Parameters\nseed = 2\n', '# Parameters\nlr = 0.1\n'),
                       TOY_CHAPTER.notebook_parameters)


def test_testbed_probabilities_are_bounded():
    from attnbook.chapters.testbed.config import CHAPTER

    with pytest.raises(ConfigError, match="'p_bias': 5.0 is above the maximum 1"):
        CHAPTER.resolve("smoke", 0, p_bias="5")
    assert CHAPTER.resolve("smoke", 0, p_bias="1").p_bias == 1.0

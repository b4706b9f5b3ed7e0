"""Chapter configs: profile presets, override validation, requirement checks."""
from dataclasses import dataclass

import pytest

from attnbook.config import (ChapterConfig, ConfigError, RequirementError, check_requirements, describe, param,
                             resolve)


@dataclass(frozen=True)
class Toy(ChapterConfig):
    epochs: int = param(3, minimum=1)
    lr: float = param(0.1)
    method: str = param("bla", choices=("bl", "bla"))
    methods: tuple[str, ...] = param(("bl",), choices=("bl", "bla"))
    amp: bool = param(False)
    limit: int | None = param(None)


PROFILES = {"smoke": Toy(profile="smoke", epochs=1), "cpu": Toy()}


def test_profile_values_and_none_keeps_default():
    assert resolve(PROFILES, "smoke", {"epochs": None}).epochs == 1
    assert resolve(PROFILES, "cpu").epochs == 3


def test_strings_from_the_command_line_are_coerced():
    cfg = resolve(PROFILES, "cpu", {"epochs": "5", "lr": "0.01", "amp": "true", "methods": "bl,bla", "limit": 4})
    assert (cfg.epochs, cfg.lr, cfg.amp, cfg.methods, cfg.limit) == (5, 0.01, True, ("bl", "bla"), 4)


@pytest.mark.parametrize("overrides, message", [
    ({"epoch": 3}, "unknown parameter 'epoch'; valid parameters:"),
    ({"epochs": "three"}, "expected an integer"),
    ({"epochs": 0}, "below the minimum 1"),
    ({"method": "gradcam"}, "'gradcam' is not one of ['bl', 'bla']"),
    ({"methods": "bl,x"}, "'x' is not one of"),
    ({"amp": "maybe"}, "expected true/false"),
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

"""Chapter configurations and profiles: one frozen dataclass per chapter, presets per profile.

A notebook's papermill ``parameters`` cell holds only ``profile``, ``seed``, ``run_dir`` and a few
overrides; :func:`resolve` turns them into the chapter's config, checking names, types and choices
before anything runs, and :func:`check_requirements` stops at once when a profile needs a GPU or a
dataset that is not there.
"""
from __future__ import annotations

import ast
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

PROFILES = ("smoke", "cpu", "gpu", "paper")
PROFILE_HELP = {
    "smoke": "seconds-long run on tiny synthetic data (CI, tests)",
    "cpu": "default: real comparative results on the synthetic benchmark, on 2 CPU cores",
    "gpu": "the synthetic benchmark at realistic resolution on one GPU",
    "paper": "the paper's own protocol on its real dataset (GPU + dataset under data/)",
}
# Names every notebook's parameters cell has, besides the chapter's own overrides.
COMMON_PARAMETERS = ("profile", "seed", "run_dir")


C = TypeVar("C", bound="ChapterConfig")


class ConfigError(ValueError):
    """A parameter name or value that a chapter does not accept."""


class RequirementError(RuntimeError):
    """A profile needs something this machine lacks (a GPU, a dataset)."""


SEED_MAX = 2**63 - 1  # torch.manual_seed's upper bound for a signed 64-bit seed


def param(default: Any, *, choices: tuple | None = None, help: str = "", minimum: float | None = None,
          maximum: float | None = None) -> Any:
    """A config field with documentation, optional allowed values and inclusive bounds (a probability:
    ``minimum=0, maximum=1``); bounds apply to each element of a tuple."""
    return field(default=default, metadata={"choices": choices, "help": help, "minimum": minimum,
                                            "maximum": maximum})


@dataclass(frozen=True)
class ChapterConfig:
    """Base of every chapter's config: what all profiles share."""

    profile: str = param("cpu", choices=PROFILES, help="scale preset")
    seed: int = param(0, help="master seed of the run", minimum=0, maximum=SEED_MAX)
    device: str = param("auto", choices=("auto", "cpu", "cuda"), help="where to train")
    needs_gpu: bool = param(False, help="the profile refuses to run without CUDA")
    datasets: tuple[str, ...] = param((), help="real datasets the profile reads (see `attnbook data status`)")
    devices: int = param(1, minimum=0, help="processes one training run uses: 1, N (DistributedDataParallel) "
                                            "or 0 = every visible GPU")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert ``value`` to ``annotation`` where that is unambiguous; raise ConfigError otherwise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        for option in options:
            try:
                return _coerce(name, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"parameter {name!r}: {value!r} is not a valid {annotation}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"parameter {name!r}: expected a list, got {value!r}")
        inner = typing.get_args(annotation)[0]
        return tuple(_coerce(name, v, inner) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"parameter {name!r}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, str):
            value = value.strip()
        integral = isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isascii()
                                              and value.lstrip("-").isdigit())
        if isinstance(value, bool) or not integral:
            raise ConfigError(f"parameter {name!r}: expected an integer, got {value!r}")
        return int(value)
    if annotation is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"parameter {name!r}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"parameter {name!r}: expected a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"parameter {name!r}: expected a string, got {value!r}")
        return value
    return value


def _validate_field(f: dataclasses.Field, value: Any) -> None:
    choices = f.metadata.get("choices")
    if choices is not None:
        values = value if isinstance(value, tuple) and not isinstance(f.default, str) else (value,)
        bad = [v for v in values if v not in choices]
        if bad:
            raise ConfigError(f"parameter {f.name!r}: {bad[0]!r} is not one of {list(choices)}")
    minimum, maximum = f.metadata.get("minimum"), f.metadata.get("maximum")
    for item in value if isinstance(value, tuple) else (value,):
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if minimum is not None and item < minimum:
            raise ConfigError(f"parameter {f.name!r}: {item!r} is below the minimum {minimum}")
        if maximum is not None and item > maximum:
            raise ConfigError(f"parameter {f.name!r}: {item!r} is above the maximum {maximum}")


def resolve(profiles: Mapping[str, ChapterConfig], profile: str, overrides: Mapping[str, Any] | None = None,
            allowed: tuple[str, ...] | None = None) -> ChapterConfig:
    """The chapter config of ``profile`` with ``overrides`` applied and validated.

    ``None`` values in ``overrides`` mean "keep the profile's value" (the parameters cell's defaults).
    ``allowed`` restricts which fields may be overridden (a notebook exposes only a few).
    """
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(profiles)}")
    base = profiles[profile]
    fields = {f.name: f for f in dataclasses.fields(base)}
    hints = _field_types(type(base))
    valid = tuple(allowed) if allowed is not None else tuple(fields)
    changes: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        if name not in valid or name not in fields:
            raise ConfigError(f"unknown parameter {name!r}; valid parameters: {', '.join(sorted(valid))}")
        if value is None:
            continue
        value = _coerce(name, value, hints[name])
        _validate_field(fields[name], value)
        changes[name] = value
    try:
        return dataclasses.replace(base, **changes)
    except (TypeError, ValueError) as err:  # __post_init__ checks of the chapter
        raise ConfigError(str(err)) from err


# Fields that choose a profile's code path (which data, which branches): :func:`shrink` never changes them.
CODE_PATH_FIELDS = ("profile", "datasets", "data", "pretrained", "arch", "train_from", "ablation_start", "stride_one",
                    "method", "amp", "small_input")


def shrink(config: C, **sizes: Any) -> C:
    """Test-only: ``config`` on the CPU at tiny ``sizes`` (image side, epochs, seeds, counts), keeping the
    profile's code path — its datasets, real-data loaders, ``pretrained``, ``train_from``, strides — so a
    test can run a ``gpu`` or ``paper`` profile end to end without a GPU. Refuses :data:`CODE_PATH_FIELDS`."""
    path = sorted(set(sizes) & set(CODE_PATH_FIELDS))
    if path:
        raise ConfigError(f"shrink changes sizes only, not the code path: {', '.join(path)}")
    try:
        return dataclasses.replace(config, needs_gpu=False, device="cpu", **sizes)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err


def describe(config: ChapterConfig) -> list[dict[str, Any]]:
    """Rows (name, value, help) documenting a config — for notebooks and ``attnbook list``."""
    return [{"parameter": f.name, "value": getattr(config, f.name), "help": f.metadata.get("help", "")}
            for f in dataclasses.fields(config)]


def check_requirements(config: ChapterConfig) -> None:
    """Stop before any work when the profile needs a GPU or a dataset that is missing."""
    import torch

    if (config.needs_gpu or config.device == "cuda") and not torch.cuda.is_available():
        raise RequirementError(
            f"profile {config.profile!r} needs a CUDA GPU and none is visible. "
            "Run it on a GPU machine, or choose --profile cpu (or smoke)."
        )
    if config.datasets:
        from attnbook.data.catalog import require_dataset
        from attnbook.data.real.paths import DatasetMissingError

        for name in config.datasets:
            try:
                require_dataset(name)
            except DatasetMissingError as err:
                raise RequirementError(str(err)) from err


def device_for(config: ChapterConfig) -> str:
    """The torch device string a config asks for ("auto" picks CUDA when present; see
    :func:`attnbook.devices.resolve_device`, the one device resolver)."""
    from attnbook.devices import resolve_device

    return str(resolve_device(config.device))


# --- names papermill injected ------------------------------------------------------------------------

INJECTED_MARKER = "# Parameters"  # first line of the cell papermill injects (tag ``injected-parameters``)


def injected_names(namespace: Mapping[str, Any]) -> list[str]:
    """Names assigned by the cells papermill injected into this kernel, read from IPython's input
    history ``In`` in ``namespace`` (empty outside IPython or when nothing was injected)."""
    history = namespace.get("In")
    if not isinstance(history, (list, tuple)):
        return []
    names: list[str] = []
    for source in history:
        if not isinstance(source, str) or not source.lstrip().startswith(INJECTED_MARKER):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in names:
                names.append(node.id)
    return names


def check_injected(namespace: Mapping[str, Any], valid: Iterable[str], notebook: str = "this notebook") -> None:
    """Refuse parameters papermill injected that the notebook does not declare (papermill only warns:
    ``-p epoch 3`` would run the default ``epochs`` under a typo). Raises :class:`ConfigError`."""
    valid = tuple(valid)
    unknown = [name for name in injected_names(namespace) if name not in valid]
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r} passed to {notebook} (papermill -p); "
                          f"valid parameters: {', '.join(valid)}")


def kernel_namespace() -> Mapping[str, Any] | None:
    """The user namespace of the IPython kernel this code runs in, or ``None`` outside one."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it; elsewhere, don't pay for the import
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "user_ns", None) if shell is not None else None

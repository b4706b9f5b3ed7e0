"""What a synthetic benchmark is: its knobs (:class:`BenchmarkSpec`, validated on construction), the
presets the chapters use, and the attribute vocabulary.

Generation lives in :mod:`attnbook.data.synthetic` (its docstring describes the benchmark).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace

from attnbook.data import records as R
from attnbook.data.render import COLORS, MAX_HABITATS, PART_LAYOUT, PATTERNS, SHAPES

DEFAULT_PARTS = ("head", "beak", "body", "wing", "tail")
PARTS_BY_SALIENCE = ("body", "head", "wing", "tail", "beak", "crest", "leg")  # for ``num_parts``
GROUPS = ("color", "pattern", "shape")
GROUP_VALUES: dict[str, tuple[str, ...]] = {"color": tuple(COLORS), "pattern": PATTERNS, "shape": SHAPES}
SPLITS = ("train", "test_aligned", "test_conflicting")
MULTILABEL_FIELDS = (R.IMAGE, R.LABEL, R.MASK, R.PART_MASKS, R.BIAS_ALIGNED, R.INDEX)
RESOLUTION_RANGE = (32, 448)
GENERATOR_VERSION = 1  # part of the cache key: bump whenever generated images change

MAX_OBJECTS = 4  # one per quadrant


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")


def _check_float(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _check_names(name: str, values: tuple[str, ...], valid: tuple[str, ...]) -> None:
    unknown = [v for v in values if v not in valid]
    if not values or unknown:
        raise ValueError(f"{name} {list(values)} has unknown or no names {unknown}; "
                         f"choose from {list(valid)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} {list(values)} repeats a name")


def check_split(split: str) -> None:
    """Raise a ``ValueError`` naming the valid splits unless ``split`` is one."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")


def parts_for(num_parts: int) -> tuple[str, ...]:
    """The ``num_parts`` most salient parts (body, head, wing, …) in catalogue order.

    ``parts_for(5) == DEFAULT_PARTS``."""
    _check_int("num_parts", num_parts, 1, len(PARTS_BY_SALIENCE))
    chosen = set(PARTS_BY_SALIENCE[:num_parts])
    return tuple(p for p in PART_LAYOUT if p in chosen)


@dataclass(frozen=True)
class BenchmarkSpec:
    """Every knob of the benchmark; validated on construction. See the module docstring."""

    num_classes: int = 10
    train_per_class: int = 50
    test_per_class: int = 20
    resolution: int = 64
    parts: tuple[str, ...] = DEFAULT_PARTS
    p_bias: float = 0.9
    seed: int = 0
    multilabel: bool = False
    max_objects: int = 3  # multi-label only: 1..max_objects birds per image
    num_backgrounds: int | None = None  # None: one habitat per class (at most 64, then cycled)
    confusable_pairs: bool = True
    disc_groups: tuple[str, ...] = GROUPS  # groups a pair may differ in
    noise: float = 0.02  # amplitude of uniform pixel noise

    def __post_init__(self) -> None:
        for name in ("parts", "disc_groups"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} must be a sequence of names, e.g. ({value!r},), not a string")
            object.__setattr__(self, name, tuple(value))
        _check_int("num_classes", self.num_classes, 2)
        _check_int("train_per_class", self.train_per_class, 1)
        _check_int("test_per_class", self.test_per_class, 1)
        _check_int("resolution", self.resolution, *RESOLUTION_RANGE)
        _check_int("seed", self.seed, 0)
        _check_int("max_objects", self.max_objects, 1, MAX_OBJECTS)
        if self.num_backgrounds is not None:
            _check_int("num_backgrounds", self.num_backgrounds, 2, MAX_HABITATS)
        _check_names("parts", self.parts, tuple(PART_LAYOUT))
        _check_names("disc_groups", self.disc_groups, GROUPS)
        _check_float("p_bias", self.p_bias, 0.0, 1.0)
        _check_float("noise", self.noise, 0.0, 0.2)
        if self.multilabel and self.max_objects > self.num_classes:
            raise ValueError(f"max_objects={self.max_objects} > num_classes={self.num_classes}: objects "
                             "in one image have distinct classes; lower max_objects")

    @property
    def num_habitats(self) -> int:
        """The number of habitats: ``num_backgrounds``, else one per class (at most ``MAX_HABITATS``)."""
        return self.num_backgrounds or min(self.num_classes, MAX_HABITATS)

    def split_size(self, split: str) -> int:
        """The number of images in ``split``: classes × images per class."""
        check_split(split)
        per_class = self.train_per_class if split == "train" else self.test_per_class
        return self.num_classes * per_class

    def key(self) -> str:
        """Hash of the spec and generator version (names cache files)."""
        text = json.dumps({"version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


PRESETS: dict[str, BenchmarkSpec] = {
    # cats vs dogs analog (BLA dataset A): two clearly different classes
    "two_class": BenchmarkSpec(num_classes=2, train_per_class=400, test_per_class=100,
                               confusable_pairs=False),
    # Stanford Dogs analog (BLA dataset B): many classes, no designed confusers
    "many_class": BenchmarkSpec(num_classes=30, train_per_class=40, test_per_class=15,
                                confusable_pairs=False),
    # CUB analog: attribute matrix, confusable pairs, discriminative parts
    "fine_grained": BenchmarkSpec(num_classes=16, train_per_class=60, test_per_class=20),
    # several birds per image (multi-label experiments)
    "multi_label": BenchmarkSpec(num_classes=10, train_per_class=60, test_per_class=20, multilabel=True),
}


def spec_for(preset: str, **overrides: object) -> BenchmarkSpec:
    """A preset with ``overrides`` applied (any spec field, or ``num_parts=n`` for :func:`parts_for`)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if "num_parts" in overrides:
        if "parts" in overrides:
            raise ValueError("give either parts or num_parts, not both")
        overrides["parts"] = parts_for(overrides.pop("num_parts"))  # type: ignore[arg-type]
    valid = {f.name for f in fields(BenchmarkSpec)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown BenchmarkSpec field(s) {unknown}; valid: {sorted(valid)} and num_parts")
    return replace(PRESETS[preset], **overrides)

"""The built-in ground-truth benchmark: part-based birds on habitat textures, generated on the fly.

Real datasets cannot be downloaded here, and most of the five papers' claims are about *where* a
model looks, so every chapter measures them on this benchmark (design §3), e.g. FAR on ``mask``
(EAT), attention on ``disc_mask`` against the ``confuser`` (Sharpen Focus), landmark error from
``landmarks`` normalised by ``bbox`` (Region Grouping), overlap of hard explanations with ``mask``
(BLA), ranked maps against ``part_masks`` (BR-NPA).

* **Objects.** A bird made of named parts (default head, beak, body, wing, tail; catalogue in
  ``render.PART_LAYOUT``) at a random position, scale, rotation (±17°) and horizontal flip.
* **Classes** (analog of CUB's 200×312 class-attribute matrix). Each part has three attribute
  groups, colour (8), pattern (solid / stripes / dots) and shape (round / square / diamond), one-hot
  → attributes named ``"{part}_{group}::{value}"``. With ``confusable_pairs`` classes ``2k`` and
  ``2k+1`` differ in exactly one group of one part (the *discriminative part*; the pair members are
  each other's *confuser*); classes of different pairs differ in ≥ 3 groups (fewer with < 3 parts).
  With an odd class count the last class has no partner: confuser −1, no disc part, empty
  ``disc_mask``. Without ``confusable_pairs`` every class has confuser −1.
* **Habitats (background bias, EAT's premise).** K textures (tint + oriented grating), class ``c``
  lives in habitat ``c mod K``. In ``train`` an image shows its class's habitat with probability
  ``p_bias``, otherwise a random *other* habitat; ``test_aligned`` always shows its own,
  ``test_conflicting`` never. The two test splits hold the *same* objects (same stream of random
  draws) and differ only in their backgrounds.
* **Ground truth** per image: every key of ``records.FIELDS``. Part masks are the *visible* part of
  each part (disjoint, union = ``mask``). ``landmarks`` are the parts' centres (the body's is a
  breast point, as the wing covers its centre); ``landmark_visible`` says whether the landmark's
  pixel lies in the part's visible mask: False when it is out of frame, covered by another part
  (not by design, but possible for the body's at 32 px) or the part is thinner than a pixel.
* **Multi-label variant** (``multilabel=True``): 1–``max_objects`` birds of distinct classes in
  distinct image quadrants; yields ``image``, ``label`` (multi-hot float ``[C]``), ``mask`` (union),
  ``part_masks`` (per-part union over objects), ``bias_aligned`` (background is the habitat of one of
  the present classes) and ``index``; no landmarks, box, attributes, disc mask or confuser. A split
  has ``num_classes × per_class`` images.
* **Coordinates** follow ``attnbook.data.transforms``: pixel ``i`` spans ``[i, i+1)``.
* **Determinism.** Image ``i`` of a split depends only on (spec, split, i): random draws come from a
  generator seeded per (seed, split, chunk of 128 indices), and rendering uses only exactly-rounded
  arithmetic on pixels, so results are bit-identical whatever range or batch size is generated.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from attnbook.data import records as R
from attnbook.data.render import (
    PART_LAYOUT,
    Grid,
    HabitatTable,
    Look,
    Pose,
    color_table,
    draw_object,
    habitat_table,
    paint_texture,
)
from attnbook.data.spec import (  # noqa: F401 (PRESETS, spec_for, parts_for: the public API lives here too)
    DEFAULT_PARTS,
    GENERATOR_VERSION,
    GROUP_VALUES,
    GROUPS,
    MAX_OBJECTS,
    MULTILABEL_FIELDS,
    PRESETS,
    SPLITS,
    BenchmarkSpec,
    check_split,
    parts_for,
    spec_for,
)
from attnbook.files import atomic_torch_save

_STREAM = {"train": "train", "test_aligned": "test", "test_conflicting": "test"}
_CHUNK = 128  # indices per random-number stream
_RENDER_PIXELS = 1 << 17  # pixels per render batch (keeps the working set in cache)
_MAX_TRIES = 1000  # rejection-sampling attempts per class pair


# ------------------------------------------------------------------------------------------------
# Class design: the class × attribute matrix with confusable pairs


@dataclass(frozen=True)
class ClassTable:
    """Per class and part, the value index of each attribute group (into ``GROUP_VALUES``)."""

    values: Tensor  # [C, P, G] long
    confusers: Tensor  # [C] long, -1 if none
    disc_part: Tensor  # [C] long, -1 if none
    disc_group: Tensor  # [C] long (index into GROUPS), -1 if none

    def attributes(self) -> Tensor:
        """The classes' one-hot attributes, part-major. ``-> [C, A]``, A = P · Σ_g |values of g|."""
        one_hot = [F.one_hot(self.values[:, :, g], len(GROUP_VALUES[name])) for g, name in enumerate(GROUPS)]
        return torch.cat(one_hot, dim=2).flatten(1).float()


def attribute_names(parts: tuple[str, ...]) -> tuple[str, ...]:
    """``"{part}_{group}::{value}"`` in the column order of :meth:`ClassTable.attributes`."""
    return tuple(f"{part}_{group}::{value}" for part in parts for group in GROUPS
                 for value in GROUP_VALUES[group])


def class_table(spec: BenchmarkSpec) -> ClassTable:
    """Draw the classes by rejection sampling, a pair at a time (deterministic in ``spec.seed``).

    Pair members differ in one (part, group) slot; the discriminative part cycles over the parts in a
    random order. Any two classes of different pairs differ in ≥ ``min(3, ⌈3P/3⌉)`` slots.
    """
    gen = _generator(spec.seed, "classes", 0)
    sizes = torch.tensor([len(GROUP_VALUES[g]) for g in GROUPS])
    num_parts = len(spec.parts)
    min_distance = min(3, math.ceil(num_parts * len(GROUPS) / 3))
    eligible = [GROUPS.index(g) for g in spec.disc_groups]
    part_cycle = torch.randperm(num_parts, generator=gen).tolist()
    values: list[Tensor] = []
    disc: list[tuple[int, int]] = []
    for pair in range(math.ceil(spec.num_classes / 2)):
        size = min(2, spec.num_classes - 2 * pair)
        paired = spec.confusable_pairs and size == 2
        for _ in range(_MAX_TRIES):
            members = [_random_values(sizes, num_parts, gen)]
            if paired:
                part = part_cycle[pair % num_parts]
                group = eligible[int(torch.randint(len(eligible), (), generator=gen))]
                members.append(_change_slot(members[0], part, group, int(sizes[group]), gen))
            elif size == 2:
                members.append(_random_values(sizes, num_parts, gen))
            if _far_enough(members, values, min_distance, mutual=not paired):
                break
        else:
            raise ValueError(f"could not draw {spec.num_classes} well-separated classes from "
                             f"{num_parts} part(s); use more parts or fewer classes")
        values += members
        disc += [(part, group)] * 2 if paired else [(-1, -1)] * size
    table = torch.stack(values)
    assert len(torch.unique(table.flatten(1), dim=0)) == spec.num_classes, "classes must be distinct"
    index = torch.arange(spec.num_classes)
    has_pair = torch.tensor([d[0] >= 0 for d in disc])
    return ClassTable(values=table, confusers=torch.where(has_pair, index ^ 1, -1),
                      disc_part=torch.tensor([d[0] for d in disc]),
                      disc_group=torch.tensor([d[1] for d in disc]))


def _random_values(sizes: Tensor, num_parts: int, gen: torch.Generator) -> Tensor:  # [P, G]
    return (torch.rand(num_parts, len(sizes), generator=gen) * sizes).long()


def _change_slot(values: Tensor, part: int, group: int, size: int, gen: torch.Generator) -> Tensor:
    changed = values.clone()
    step = 1 + int(torch.randint(size - 1, (), generator=gen))
    changed[part, group] = (values[part, group] + step) % size
    return changed


def _far_enough(members: list[Tensor], accepted: list[Tensor], min_distance: int, mutual: bool) -> bool:
    others = torch.stack(accepted) if accepted else torch.empty(0, *members[0].shape, dtype=torch.long)
    if any(((others != m).sum(dim=(1, 2)) < min_distance).any() for m in members):
        return False
    return not (mutual and len(members) == 2 and (members[0] != members[1]).sum() < min_distance)


@dataclass(frozen=True)
class _Design:
    """Everything per spec that is not per image."""

    table: ClassTable
    attributes: Tensor  # [C, A]
    habitats: HabitatTable
    class_habitat: Tensor  # [C]
    rgb: Tensor  # [n_colors, 3]
    ink: Tensor  # [n_colors, 3]

    def look(self, classes: Tensor, brightness: Tensor, part_classes: Tensor | None = None) -> Look:
        """Appearance of ``classes`` [B] under ``brightness`` [B, P]; ``part_classes`` [B, P] (interventions)
        draws part k of image b as class ``part_classes[b, k]`` draws it."""
        if part_classes is None:
            values = self.table.values[classes]  # [B, P, G]
        else:
            values = self.table.values[part_classes, torch.arange(part_classes.shape[1])]  # [B, P, G]
        color = (self.rgb[values[..., 0]] * brightness[..., None]).clamp_(0, 1)
        return Look(color=color, ink=self.ink[values[..., 0]], pattern=values[..., 1], shape=values[..., 2])


@lru_cache(maxsize=8)
def _design(spec: BenchmarkSpec) -> _Design:
    table = class_table(spec)
    rgb, ink = color_table()
    return _Design(table=table, attributes=table.attributes(), habitats=habitat_table(spec.num_habitats),
                   class_habitat=torch.arange(spec.num_classes) % spec.num_habitats, rgb=rgb, ink=ink)


# ------------------------------------------------------------------------------------------------
# Per-image random draws, by (seed, stream, chunk)


def _generator(seed: int, stream: str, chunk: int) -> torch.Generator:
    digest = hashlib.blake2b(f"{GENERATOR_VERSION}:{seed}:{stream}:{chunk}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _sample_chunk(spec: BenchmarkSpec, design: _Design, split: str, chunk: int) -> dict[str, Tensor]:
    """All random choices for indices ``[chunk·128, (chunk+1)·128)``; shapes ``[n]``, ``[n, S]``."""
    n, slots = _CHUNK, spec.max_objects if spec.multilabel else 1
    gen = _generator(spec.seed, _STREAM[split], chunk)
    index = torch.arange(chunk * n, (chunk + 1) * n)
    u_pose = torch.rand(n, slots, 5, generator=gen)
    u_light = torch.rand(n, slots, len(spec.parts), generator=gen)
    u_bias = torch.rand(n, 2, generator=gen)
    u_background = torch.rand(n, 3, generator=gen)
    noise_seed = torch.randint(0, 2**62, (n,), generator=gen)
    if spec.multilabel:
        count = 1 + (torch.rand(n, generator=gen) * slots).long()
        classes = torch.rand(n, spec.num_classes, generator=gen).argsort(dim=1)[:, :slots]
        cells = torch.rand(n, MAX_OBJECTS, generator=gen).argsort(dim=1)[:, :slots]
        present = torch.arange(slots) < count[:, None]
        habitat, aligned = _multilabel_habitat(spec, design, split, classes, present, count, u_bias, gen)
    else:
        classes, cells = (index % spec.num_classes)[:, None], torch.zeros(n, 1, dtype=torch.long)
        present = torch.ones(n, 1, dtype=torch.bool)
        habitat, aligned = _single_habitat(spec, design, split, classes[:, 0], u_bias)
    return {
        "index": index, "classes": classes, "present": present,
        **_poses(spec, u_pose, cells),
        "brightness": 0.88 + 0.24 * u_light,
        "habitat": habitat, "bias_aligned": aligned,
        **background_params(design, habitat, u_background[:, 0], spec.resolution),
        "bg_jitter": u_background[:, 0], "bg_phase": u_background[:, 1:],
        "noise_seed": noise_seed,
    }


def background_params(design: _Design, habitat: Tensor, jitter: Tensor, resolution: int) -> dict[str, Tensor]:
    """The grating of ``habitat`` [n] turned by ``jitter`` [n] in [0, 1) (±0.15 rad). Call it on whole
    128-index chunks: ``cos``/``sin`` then see the same vector lengths as the generator (same bits)."""
    angle = design.habitats.angle[habitat] + (2 * jitter - 1) * 0.15
    return {"bg_cos": torch.cos(angle), "bg_sin": torch.sin(angle),
            "bg_period": design.habitats.period[habitat] * resolution}


def _poses(spec: BenchmarkSpec, u: Tensor, cells: Tensor) -> dict[str, Tensor]:
    """Scale, centre, rotation and flip per object slot; multi-label objects get one quadrant each."""
    res = float(spec.resolution)
    cell = res / 2 if spec.multilabel else res
    jitter = 0.08 if spec.multilabel else 0.18  # centre offset, fraction of the cell
    x0, y0 = (cells % 2) * cell, (cells // 2) * cell
    angle = (2 * u[..., 3] - 1) * 0.3
    return {
        "scale": cell * (0.34 + 0.16 * u[..., 0]),  # px per object unit
        "cx": x0 + cell * (0.5 + jitter * (2 * u[..., 1] - 1)),
        "cy": y0 + cell * (0.5 + jitter * (2 * u[..., 2] - 1)),
        "cos": torch.cos(angle), "sin": torch.sin(angle),
        "flip": torch.where(u[..., 4] < 0.5, -1.0, 1.0),
    }


def _bias_probability(spec: BenchmarkSpec, split: str) -> float:
    return {"train": spec.p_bias, "test_aligned": 1.0, "test_conflicting": 0.0}[split]


def _single_habitat(spec: BenchmarkSpec, design: _Design, split: str, label: Tensor,
                    u: Tensor) -> tuple[Tensor, Tensor]:
    """Own habitat with probability p (``u < p``), else a uniformly drawn *other* habitat."""
    k = spec.num_habitats
    own = design.class_habitat[label]
    other = (own + 1 + (u[:, 1] * (k - 1)).long()) % k
    aligned = u[:, 0] < _bias_probability(spec, split)
    return torch.where(aligned, own, other), aligned


def _multilabel_habitat(spec: BenchmarkSpec, design: _Design, split: str, classes: Tensor, present: Tensor,
                        count: Tensor, u: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Aligned: the habitat of a random present object. Otherwise: a random habitat of no present
    object (if every habitat belongs to a present object the image stays aligned)."""
    n, k = classes.shape[0], spec.num_habitats
    own = design.class_habitat[classes]  # [n, S]
    slot = (u[:, 1] * count).long()
    aligned_choice = own.gather(1, slot[:, None])[:, 0]
    taken = torch.zeros(n, k, dtype=torch.bool)
    for s in range(classes.shape[1]):
        taken[torch.arange(n), own[:, s]] |= present[:, s]
    rank = torch.rand(n, k, generator=gen).masked_fill(taken, 2.0)
    free_choice, has_free = rank.argmin(dim=1), rank.min(dim=1).values < 2.0
    aligned = (u[:, 0] < _bias_probability(spec, split)) | ~has_free
    return torch.where(aligned, aligned_choice, free_choice), aligned


def _scene(spec: BenchmarkSpec, design: _Design, split: str, start: int, stop: int) -> dict[str, Tensor]:
    first, last = start // _CHUNK, (stop - 1) // _CHUNK
    chunks = [_sample_chunk(spec, design, split, c) for c in range(first, last + 1)]
    offset = first * _CHUNK
    return {key: torch.cat([c[key] for c in chunks])[start - offset:stop - offset] for key in chunks[0]}


# ------------------------------------------------------------------------------------------------
# Rendering a batch of scenes into sample tensors


def _render(spec: BenchmarkSpec, design: _Design, scene: dict[str, Tensor]) -> dict[str, Tensor]:
    grid = Grid.of(spec.resolution)
    habitat = scene["habitat"]
    canvas = paint_texture(grid, design.habitats.tint[habitat], scene["bg_cos"], scene["bg_sin"],
                           scene["bg_period"], scene["bg_phase"])  # [B, 3, H, W]
    part_masks = mask = None
    keep, donor = scene.get("keep"), scene.get("donor")  # [B, S, P]: only in attnbook.data.interventions
    for s in range(scene["classes"].shape[1]):
        pose = Pose(**{k: scene[k][:, s] for k in ("cx", "cy", "scale", "cos", "sin", "flip")},
                    present=scene["present"][:, s])
        look = design.look(scene["classes"][:, s], scene["brightness"][:, s], None if donor is None else donor[:, s])
        drawn, foreground = draw_object(canvas, grid, pose, look, spec.parts,  # [B, P, H, W], [B, H, W]
                                        None if keep is None else keep[:, s])
        if part_masks is None:
            part_masks, mask = drawn, foreground
        else:  # later objects cover earlier ones
            part_masks, mask = (part_masks & ~foreground[:, None]) | drawn, mask | foreground
    _add_noise(canvas, scene["noise_seed"], spec.noise)
    common = {R.IMAGE: canvas, R.MASK: mask, R.PART_MASKS: part_masks,
              R.BIAS_ALIGNED: scene["bias_aligned"], R.INDEX: scene["index"]}
    if spec.multilabel:
        label = torch.zeros(len(habitat), spec.num_classes).scatter_(1, scene["classes"],
                                                                     scene["present"].float())
        return {**common, R.LABEL: label}
    return {**common, **_object_truth(spec, design, pose, scene["classes"][:, 0], part_masks, mask)}


def _object_truth(spec: BenchmarkSpec, design: _Design, pose: Pose, label: Tensor, part_masks: Tensor,
                  mask: Tensor) -> dict[str, Tensor]:
    """Single-label ground truth: class-level fields, landmarks, visibility, box, disc mask."""
    landmarks = torch.stack([pose.to_pixels(PART_LAYOUT[p].landmark) for p in spec.parts], dim=1)  # [B, P, 2]
    disc = design.table.disc_part[label]
    batch = torch.arange(len(label))
    disc_mask = part_masks[batch, disc.clamp(min=0)] & (disc >= 0)[:, None, None]
    return {R.LABEL: label, R.ATTRIBUTES: design.attributes[label], R.LANDMARKS: landmarks,
            R.LANDMARK_VISIBLE: _landmark_visible(landmarks, part_masks), R.BBOX: _bbox(mask),
            R.DISC_MASK: disc_mask, R.CONFUSER: design.table.confusers[label]}


def _landmark_visible(landmarks: Tensor, part_masks: Tensor) -> Tensor:  # [B, P, 2], [B, P, H, W] -> [B, P]
    size = part_masks.shape[-1]
    pixel = landmarks.floor().long()
    in_frame = ((pixel >= 0) & (pixel < size)).all(dim=2)
    x, y = pixel[..., 0].clamp(0, size - 1), pixel[..., 1].clamp(0, size - 1)
    b, p = torch.meshgrid(torch.arange(pixel.shape[0]), torch.arange(pixel.shape[1]), indexing="ij")
    return in_frame & part_masks[b, p, y, x]


def _bbox(mask: Tensor) -> Tensor:  # [B, H, W] -> [B, 4] (x0, y0, x1, y1), x1/y1 exclusive
    def span(occupied: Tensor) -> tuple[Tensor, Tensor]:  # [B, L] -> first, last + 1
        length = occupied.shape[1]
        first = occupied.float().argmax(dim=1)
        return first, length - occupied.flip(1).float().argmax(dim=1)
    x0, x1 = span(mask.any(dim=1))
    y0, y1 = span(mask.any(dim=2))
    box = torch.stack([x0, y0, x1, y1], dim=1).float()
    return box * mask.flatten(1).any(dim=1)[:, None]  # empty mask -> zeros


def _add_noise(canvas: Tensor, seeds: Tensor, amplitude: float) -> None:
    """Uniform noise in ±amplitude from a per-image generator, then clip to [0, 1]."""
    if amplitude > 0:
        noise = torch.empty_like(canvas)
        for i, seed in enumerate(seeds.tolist()):
            torch.rand(canvas.shape[1:], generator=torch.Generator().manual_seed(seed), out=noise[i])
        canvas.add_(noise.sub_(0.5).mul_(2 * amplitude))
    canvas.clamp_(0, 1)


# ------------------------------------------------------------------------------------------------
# Splits, the benchmark, the cache


class SyntheticSplit(Dataset):
    """One split as stacked tensors; ``split[i]`` is a sample dict (``records`` vocabulary)."""

    def __init__(self, name: str, tensors: dict[str, Tensor], habitats: Tensor) -> None:
        self.name = name
        self.tensors = tensors  # key -> [N, ...]
        self.habitats = habitats  # [N] long: background texture index of each image

    def __len__(self) -> int:
        return len(self.tensors[R.INDEX])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        """Views into the stored tensors: transform them out of place."""
        return {key: value[i] for key, value in self.tensors.items()}


def generate_split(spec: BenchmarkSpec, split: str, start: int = 0, stop: int | None = None,
                   batch_size: int | None = None) -> SyntheticSplit:
    """Images ``[start, stop)`` of ``split`` (default: all), rendered ``batch_size`` at a time
    (default: ~2^17 pixels per batch). The result does not depend on ``batch_size`` or the range."""
    size = spec.split_size(split)
    stop = size if stop is None else stop
    if not 0 <= start < stop <= size:
        raise ValueError(f"need 0 <= start < stop <= {size} for split {split!r}, got [{start}, {stop})")
    batch_size = batch_size or max(1, _RENDER_PIXELS // spec.resolution**2)
    design = _design(spec)
    scene = _scene(spec, design, split, start, stop)
    out: dict[str, Tensor] = {}
    for lo in range(0, stop - start, batch_size):
        batch = _render(spec, design, {k: v[lo:lo + batch_size] for k, v in scene.items()})
        if not out:
            out = {k: v.new_empty((stop - start, *v.shape[1:])) for k, v in batch.items()}
        for key, value in batch.items():
            out[key][lo:lo + len(value)] = value
    return SyntheticSplit(split, out, scene["habitat"])


@dataclass(frozen=True, eq=False)
class Benchmark:
    """The generated benchmark: three splits plus the class design they were drawn from."""

    spec: BenchmarkSpec
    info: R.DatasetInfo
    class_attributes: Tensor  # [C, A] float
    confusers: Tensor  # [C] long, -1 if none
    disc_part: Tensor  # [C] long (index into info.part_names), -1 if none
    class_habitat: Tensor  # [C] long, index into backgrounds
    backgrounds: tuple[str, ...]
    train: SyntheticSplit
    test_aligned: SyntheticSplit
    test_conflicting: SyntheticSplit

    def split(self, name: str) -> SyntheticSplit:
        """The split called ``name`` (one of ``SPLITS``)."""
        check_split(name)
        return getattr(self, name)

    def describe_class(self, c: int) -> str:
        """E.g. ``"species_03: head red/stripes/round; beak …"``."""
        names = self.info.attribute_names
        on = [names[a] for a in self.class_attributes[c].nonzero()[:, 0].tolist()]
        by_part = {p: "/".join(n.split("::")[1] for n in on if n.startswith(f"{p}_"))
                   for p in self.info.part_names}
        return f"{self.info.class_names[c]}: " + "; ".join(f"{p} {v}" for p, v in by_part.items())


def make_benchmark(spec: BenchmarkSpec, cache_dir: str | Path | None = None) -> Benchmark:
    """Generate (or load from ``cache_dir/synthetic-<spec hash>.pt``) all splits of ``spec``."""
    if not isinstance(spec, BenchmarkSpec):
        raise TypeError(f"expected a BenchmarkSpec (see spec_for / PRESETS), got {type(spec).__name__}")
    splits = _load_cache(spec, Path(cache_dir)) if cache_dir is not None else None
    if splits is None:
        splits = {name: generate_split(spec, name) for name in SPLITS}
        if cache_dir is not None:
            _save_cache(spec, Path(cache_dir), splits)
    design = _design(spec)
    info = R.DatasetInfo(
        name="synthetic-birds", num_classes=spec.num_classes,
        class_names=tuple(f"species_{c:02d}" for c in range(spec.num_classes)),
        fields=MULTILABEL_FIELDS if spec.multilabel else R.FIELDS, multilabel=spec.multilabel,
        attribute_names=attribute_names(spec.parts), part_names=spec.parts,
        extra={"spec": spec, "backgrounds": design.habitats.names},
    )
    return Benchmark(spec=spec, info=info, class_attributes=design.attributes.clone(),
                     confusers=design.table.confusers.clone(), disc_part=design.table.disc_part.clone(),
                     class_habitat=design.class_habitat.clone(), backgrounds=design.habitats.names,
                     **splits)


def cache_path(spec: BenchmarkSpec, cache_dir: str | Path) -> Path:
    """The cache file of ``spec`` in ``cache_dir`` (named by :meth:`BenchmarkSpec.key`)."""
    return Path(cache_dir) / f"synthetic-{spec.key()}.pt"


def _save_cache(spec: BenchmarkSpec, cache_dir: Path, splits: dict[str, SyntheticSplit]) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    payload = {"key": spec.key(),
               "splits": {n: {"tensors": s.tensors, "habitats": s.habitats} for n, s in splits.items()}}
    atomic_torch_save(cache_path(spec, cache_dir), payload)


def _load_cache(spec: BenchmarkSpec, cache_dir: Path) -> dict[str, SyntheticSplit] | None:
    path = cache_path(spec, cache_dir)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, weights_only=True)
    except Exception as error:  # a truncated or foreign file: regenerate and overwrite
        warnings.warn(f"ignoring unreadable benchmark cache {path}: {error}", stacklevel=3)
        return None
    if payload.get("key") != spec.key():
        return None
    return {n: SyntheticSplit(n, s["tensors"], s["habitats"]) for n, s in payload["splits"].items()}

"""The synthetic ground-truth benchmark: determinism, ground-truth consistency, class design, bias."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestCentroid
from torch.utils.data import default_collate

from attnbook.data import records as R
from attnbook.data import synthetic as S
from attnbook.data.render import habitat_table
from attnbook.data.synthetic import (
    DEFAULT_PARTS,
    MULTILABEL_FIELDS,
    PRESETS,
    SPLITS,
    BenchmarkSpec,
    class_table,
    generate_split,
    make_benchmark,
    parts_for,
    spec_for,
)

TINY = BenchmarkSpec(num_classes=4, train_per_class=3, test_per_class=2, resolution=32, seed=3)


@pytest.fixture(scope="module")
def bench() -> S.Benchmark:
    """Odd class count (the last class has no confuser), a resolution that is not a power of 2."""
    spec = BenchmarkSpec(num_classes=7, train_per_class=8, test_per_class=4, resolution=48, seed=1)
    return make_benchmark(spec)


def _all_splits(bench: S.Benchmark) -> list[dict[str, torch.Tensor]]:
    return [bench.split(name).tensors for name in SPLITS]


def _group_ids(attribute_names: tuple[str, ...]) -> tuple[list[str], torch.Tensor]:
    """Attribute groups ("head_color", …) from the names alone, and each column's group index."""
    groups = list(dict.fromkeys(n.split("::")[0] for n in attribute_names))
    return groups, torch.tensor([groups.index(n.split("::")[0]) for n in attribute_names])


def _differing_groups(a: torch.Tensor, b: torch.Tensor, column_group: torch.Tensor) -> set[int]:
    return set(column_group[a != b].tolist())


# ---------------------------------------------------------------------------------------------
# determinism


def test_same_spec_and_seed_give_bit_identical_tensors() -> None:
    first = make_benchmark(TINY)
    S._design.cache_clear()
    second = make_benchmark(TINY)
    for a, b in zip(_all_splits(first), _all_splits(second)):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(first.class_attributes, second.class_attributes)
    other_seed = make_benchmark(dataclasses.replace(TINY, seed=4))
    assert not torch.equal(first.train.tensors[R.IMAGE], other_seed.train.tensors[R.IMAGE])


def test_results_do_not_depend_on_batch_size_or_range() -> None:
    spec = BenchmarkSpec(num_classes=2, train_per_class=75, test_per_class=1, resolution=33, seed=5)
    reference = generate_split(spec, "train", batch_size=150).tensors
    small_batches = generate_split(spec, "train", batch_size=7).tensors
    window = generate_split(spec, "train", start=120, stop=140, batch_size=3).tensors  # crosses a chunk
    torch.set_num_threads(2)
    try:
        two_threads = generate_split(spec, "train").tensors
    finally:
        torch.set_num_threads(1)
    for key, value in reference.items():
        assert torch.equal(value, two_threads[key]), key
        assert torch.equal(value, small_batches[key]), key
        assert torch.equal(value[120:140], window[key]), key


# ---------------------------------------------------------------------------------------------
# sample format


def test_every_key_has_the_documented_shape_and_dtype(bench: S.Benchmark) -> None:
    spec, info = bench.spec, bench.info
    res, parts, classes = spec.resolution, len(spec.parts), spec.num_classes
    expected = {
        R.IMAGE: (torch.float32, (3, res, res)), R.LABEL: (torch.int64, ()),
        R.ATTRIBUTES: (torch.float32, (len(info.attribute_names),)), R.MASK: (torch.bool, (res, res)),
        R.PART_MASKS: (torch.bool, (parts, res, res)), R.LANDMARKS: (torch.float32, (parts, 2)),
        R.LANDMARK_VISIBLE: (torch.bool, (parts,)), R.BBOX: (torch.float32, (4,)),
        R.DISC_MASK: (torch.bool, (res, res)), R.CONFUSER: (torch.int64, ()),
        R.BIAS_ALIGNED: (torch.bool, ()), R.INDEX: (torch.int64, ()),
    }
    assert set(info.fields) == set(expected) == set(R.FIELDS)
    assert info.part_names == DEFAULT_PARTS and info.num_classes == classes == len(bench.confusers)
    assert bench.class_attributes.shape == (classes, len(info.attribute_names))
    assert len(info.attribute_names) == parts * (8 + 3 + 3)  # colours, patterns, shapes
    for name in SPLITS:
        split = bench.split(name)
        assert len(split) == classes * (spec.train_per_class if name == "train" else spec.test_per_class)
        sample = split[len(split) - 1]
        assert sample.keys() == set(expected)
        for key, (dtype, shape) in expected.items():
            assert sample[key].dtype == dtype and tuple(sample[key].shape) == shape, key
        assert sample[R.INDEX] == len(split) - 1
        image = split.tensors[R.IMAGE]
        assert 0 <= image.min() and image.max() <= 1
    assert bench.describe_class(0).startswith("species_00: head ")
    batch = default_collate([bench.train[0], bench.train[1]])
    assert batch[R.PART_MASKS].shape == (2, parts, res, res)
    assert bench.train.tensors[R.LABEL].bincount().tolist() == [spec.train_per_class] * classes


# ---------------------------------------------------------------------------------------------
# ground truth consistency


def test_part_masks_partition_the_foreground_and_box_is_tight(bench: S.Benchmark) -> None:
    for t in _all_splits(bench):
        parts, mask = t[R.PART_MASKS], t[R.MASK]
        assert (parts.sum(dim=1) <= 1).all()  # visible part masks are disjoint
        assert torch.equal(parts.any(dim=1), mask)  # … and their union is the foreground
        assert mask.flatten(1).any(dim=1).all()
        for i in range(len(mask)):
            ys, xs = mask[i].nonzero(as_tuple=True)
            tight = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            assert torch.equal(t[R.BBOX][i], tight)


def test_visible_landmarks_lie_in_their_part_and_out_of_frame_ones_do_not(bench: S.Benchmark) -> None:
    res = bench.spec.resolution
    for t in _all_splits(bench):
        xy, visible, parts = t[R.LANDMARKS], t[R.LANDMARK_VISIBLE], t[R.PART_MASKS]
        out_of_frame = ((xy < 0) | (xy >= res)).any(dim=2)
        assert not (visible & out_of_frame).any()
        b, p = visible.nonzero(as_tuple=True)
        x, y = xy[b, p, 0].long(), xy[b, p, 1].long()
        assert parts[b, p, y, x].all()
        assert visible.float().mean() > 0.85


def test_landmark_visibility_on_a_hand_made_example() -> None:
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)  # [B, P, H, W]
    masks[0, 0, 1, 2] = True  # part 0 covers the pixel x = 2, y = 1
    masks[0, 1, 3, 3] = True  # part 1 covers the corner pixel
    inside_and_just_out = torch.tensor([[[2.7, 1.2], [4.0, 3.5]]])  # x = 4 is past the last column
    assert S._landmark_visible(inside_and_just_out, masks).tolist() == [[True, False]]
    beside_and_left_of_frame = torch.tensor([[[1.9, 1.2], [-0.1, 3.5]]])
    assert S._landmark_visible(beside_and_left_of_frame, masks).tolist() == [[False, False]]


def test_landmark_is_the_centroid_of_an_unoccluded_symmetric_part(bench: S.Benchmark) -> None:
    """The wing is drawn last (never covered) and point-symmetric: its mask's centroid is its centre."""
    t = bench.train.tensors
    wing = bench.info.part_names.index("wing")
    masks = t[R.PART_MASKS][:, wing]  # [N, H, W]
    checked = 0
    for i in range(len(masks)):
        border = torch.cat([masks[i, 0], masks[i, -1], masks[i, :, 0], masks[i, :, -1]])
        if border.any():
            continue
        ys, xs = masks[i].nonzero(as_tuple=True)
        centroid = torch.stack([xs.float().mean(), ys.float().mean()]) + 0.5
        assert torch.dist(centroid, t[R.LANDMARKS][i, wing]) < 0.5
        checked += 1
    assert checked > len(masks) // 2


def test_disc_mask_confuser_and_attributes_follow_the_label(bench: S.Benchmark) -> None:
    for t in _all_splits(bench):
        label = t[R.LABEL]
        disc = bench.disc_part[label]
        assert torch.equal(t[R.CONFUSER], bench.confusers[label])
        assert torch.equal(t[R.ATTRIBUTES], bench.class_attributes[label])
        has = disc >= 0
        assert torch.equal(t[R.DISC_MASK][has], t[R.PART_MASKS][has.nonzero()[:, 0], disc[has]])
        assert not t[R.DISC_MASK][~has].any()
    assert (~has).any() and has.any()  # class 6 of 7 has no pair


# ---------------------------------------------------------------------------------------------
# class design


@pytest.mark.parametrize("num_classes, parts",
                         [(7, DEFAULT_PARTS), (40, DEFAULT_PARTS), (12, ("body", "head"))])
def test_confusable_pairs_differ_in_one_group_of_the_disc_part(num_classes: int, parts: tuple) -> None:
    spec = BenchmarkSpec(num_classes=num_classes, parts=parts, seed=2)
    table, names = class_table(spec), S.attribute_names(parts)
    attrs = table.attributes()
    groups, column_group = _group_ids(names)
    assert attrs.sum(dim=1).eq(len(groups)).all()  # one value per (part, group)
    assert len(torch.unique(attrs, dim=0)) == num_classes
    for c in range(num_classes):
        partner = int(table.confusers[c])
        if partner < 0:
            assert c == num_classes - 1 and num_classes % 2 == 1 and table.disc_part[c] == -1
            continue
        assert table.confusers[partner] == c and table.disc_part[partner] == table.disc_part[c]
        (group,) = _differing_groups(attrs[c], attrs[partner], column_group)
        assert groups[group].startswith(parts[int(table.disc_part[c])] + "_")
        others = [o for o in range(num_classes) if o not in (c, partner)]
        assert all(len(_differing_groups(attrs[c], attrs[o], column_group)) >= min(3, len(parts))
                   for o in others)


def test_unpaired_classes_have_no_confuser() -> None:
    table = class_table(spec_for("two_class"))
    assert table.confusers.tolist() == [-1, -1] and table.disc_part.tolist() == [-1, -1]
    attrs = table.attributes()
    _, column_group = _group_ids(S.attribute_names(DEFAULT_PARTS))
    assert len(_differing_groups(attrs[0], attrs[1], column_group)) >= 3


def test_discriminative_colour_shows_in_the_part_pixels() -> None:
    spec = BenchmarkSpec(num_classes=4, train_per_class=1, test_per_class=8, resolution=64,
                         disc_groups=("color",), seed=7)
    bench = make_benchmark(spec)
    t = bench.test_aligned.tensors

    def mean_colour(c: int, part: int) -> torch.Tensor:
        pixels = t[R.IMAGE].permute(0, 2, 3, 1)[(t[R.LABEL] == c)[:, None, None] & t[R.PART_MASKS][:, part]]
        return pixels.mean(dim=0)

    for a in (0, 2):
        b, disc = int(bench.confusers[a]), int(bench.disc_part[a])
        same = next(p for p in range(len(spec.parts)) if p != disc)  # identical in both classes
        gap_disc = (mean_colour(a, disc) - mean_colour(b, disc)).abs().sum()
        gap_same = (mean_colour(a, same) - mean_colour(b, same)).abs().sum()
        assert gap_disc > 0.2 and gap_disc > 3 * gap_same


# ---------------------------------------------------------------------------------------------
# background bias


def test_bias_rate_in_train_and_exact_in_test_splits() -> None:
    spec = BenchmarkSpec(num_classes=4, train_per_class=500, test_per_class=25, resolution=32, p_bias=0.7)
    bench = make_benchmark(spec)
    aligned = bench.train.tensors[R.BIAS_ALIGNED].float().mean()
    assert abs(aligned - 0.7) < 0.04  # binomial sd ≈ 0.01
    for split in (bench.train, bench.test_aligned, bench.test_conflicting):
        own = bench.class_habitat[split.tensors[R.LABEL]]
        assert torch.equal(split.habitats == own, split.tensors[R.BIAS_ALIGNED])
    assert bench.test_aligned.tensors[R.BIAS_ALIGNED].all()
    assert not bench.test_conflicting.tensors[R.BIAS_ALIGNED].any()
    # the two test splits hold the same objects on different backgrounds
    aligned_t, conflicting_t = bench.test_aligned.tensors, bench.test_conflicting.tensors
    assert torch.equal(aligned_t[R.PART_MASKS], conflicting_t[R.PART_MASKS])
    background = ~aligned_t[R.MASK][:, None].expand_as(aligned_t[R.IMAGE])
    assert (aligned_t[R.IMAGE][background] - conflicting_t[R.IMAGE][background]).abs().mean() > 0.1


@pytest.mark.parametrize("count", [2, 7, 16, 64])
def test_habitat_textures_are_all_different(count: int) -> None:
    table = habitat_table(count)
    rows = torch.cat([table.tint, table.angle[:, None], table.period[:, None]], dim=1)
    assert len(torch.unique(rows, dim=0)) == count == len(set(table.names))
    with pytest.raises(ValueError, match="habitats"):
        habitat_table(65)


def test_habitats_are_separable_from_background_colour_alone(bench: S.Benchmark) -> None:
    """The shortcut exists: the mean background colour identifies the habitat (nearest centroid)."""
    def features(t: dict[str, torch.Tensor]) -> np.ndarray:
        background = (~t[R.MASK])[:, None].float()
        return ((t[R.IMAGE] * background).sum(dim=(2, 3)) / background.sum(dim=(2, 3))).numpy()
    fit = NearestCentroid().fit(features(bench.train.tensors), bench.train.habitats.numpy())
    predicted = fit.predict(features(bench.test_conflicting.tensors))
    assert (predicted == bench.test_conflicting.habitats.numpy()).mean() > 0.95


# ---------------------------------------------------------------------------------------------
# multi-label variant


def test_multilabel_variant() -> None:
    spec = BenchmarkSpec(num_classes=5, train_per_class=30, test_per_class=4, resolution=48,
                         multilabel=True, max_objects=3)
    bench = make_benchmark(spec)
    assert bench.info.multilabel and bench.info.fields == MULTILABEL_FIELDS
    for name in SPLITS:
        t = bench.split(name).tensors
        assert set(t) == set(MULTILABEL_FIELDS)
        label = t[R.LABEL]
        assert label.dtype == torch.float32 and label.shape == (spec.split_size(name), 5)
        assert ((label == 0) | (label == 1)).all()
        counts = label.sum(dim=1)
        assert ((counts >= 1) & (counts <= 3)).all()
        assert t[R.MASK].flatten(1).any(dim=1).all()
        assert torch.equal(t[R.PART_MASKS].any(dim=1), t[R.MASK])
        habitat_present = label.bool()[torch.arange(len(label)), bench.split(name).habitats]
        assert torch.equal(habitat_present, t[R.BIAS_ALIGNED])  # one habitat per class (K = C)
    assert set(bench.train.tensors[R.LABEL].sum(dim=1).long().tolist()) == {1, 2, 3}
    assert not bench.test_conflicting.tensors[R.BIAS_ALIGNED].any()
    assert bench.test_aligned.tensors[R.BIAS_ALIGNED].all()


# ---------------------------------------------------------------------------------------------
# specs, presets, cache


@pytest.mark.parametrize("overrides, error, fragment", [
    ({"resolution": 31}, ValueError, "resolution"),
    ({"resolution": 449}, ValueError, "resolution"),
    ({"resolution": 64.0}, TypeError, "resolution"),
    ({"num_classes": 1}, ValueError, "num_classes"),
    ({"p_bias": 1.5}, ValueError, "p_bias"),
    ({"p_bias": -0.1}, ValueError, "p_bias"),
    ({"parts": ("head", "horn")}, ValueError, "horn"),
    ({"parts": ()}, ValueError, "parts"),
    ({"parts": "head"}, TypeError, "parts"),
    ({"parts": ("head", "head")}, ValueError, "repeats"),
    ({"num_backgrounds": 1}, ValueError, "num_backgrounds"),
    ({"disc_groups": ("size",)}, ValueError, "size"),
    ({"max_objects": 5}, ValueError, "max_objects"),
    ({"multilabel": True, "num_classes": 2, "max_objects": 3}, ValueError, "max_objects"),
    ({"train_per_class": 0}, ValueError, "train_per_class"),
])
def test_bad_specs_raise_clear_errors(overrides: dict, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        BenchmarkSpec(**overrides)


def test_presets_and_overrides() -> None:
    assert set(PRESETS) >= {"two_class", "many_class", "fine_grained"}
    assert 20 <= PRESETS["many_class"].num_classes <= 40 and PRESETS["two_class"].num_classes == 2
    spec = spec_for("fine_grained", resolution=96, num_parts=3)
    assert spec.resolution == 96 and spec.parts == ("head", "body", "wing")
    assert parts_for(5) == DEFAULT_PARTS and len(parts_for(7)) == 7
    with pytest.raises(ValueError, match="unknown preset"):
        spec_for("imagenet")
    with pytest.raises(ValueError, match="resoluton"):
        spec_for("two_class", resoluton=64)
    with pytest.raises(ValueError, match="split"):
        generate_split(TINY, "validation")
    with pytest.raises(ValueError, match="start < stop"):
        generate_split(TINY, "train", start=5, stop=100)


def test_all_catalogue_parts_render() -> None:
    spec = BenchmarkSpec(num_classes=3, train_per_class=2, test_per_class=1, resolution=64,
                         parts=parts_for(7))
    t = generate_split(spec, "train").tensors
    assert t[R.PART_MASKS].shape[1] == 7
    assert t[R.PART_MASKS].flatten(2).any(dim=2).float().mean() > 0.9  # each part shows up


def test_cache_round_trip_is_atomic_and_skips_generation(tmp_path, monkeypatch) -> None:
    first = make_benchmark(TINY, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [S.cache_path(TINY, tmp_path).name]

    def fail(*args, **kwargs):
        raise AssertionError("generated although cached")
    monkeypatch.setattr(S, "generate_split", fail)
    second = make_benchmark(TINY, cache_dir=tmp_path)
    for a, b in zip(_all_splits(first), _all_splits(second)):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(first.train.habitats, second.train.habitats)
    monkeypatch.undo()
    S.cache_path(TINY, tmp_path).write_bytes(b"not a torch file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        third = make_benchmark(TINY, cache_dir=tmp_path)
    assert any("unreadable" in str(w.message) for w in caught)
    assert torch.equal(third.train.tensors[R.IMAGE], first.train.tensors[R.IMAGE])

"""In-domain interventions: bit-identity with the generator, locality of part removal, what shows
through, donors, habitat swaps, the minimal sufficient part sets, and a causal check with a trained
linear oracle."""
from __future__ import annotations

import hashlib
from itertools import combinations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from attnbook.data.interventions import (
    keep_from_bits,
    minimal_sufficient_part_sets,
    part_distance,
    rerender,
    twin_habitats,
)
from attnbook.data.synthetic import BenchmarkSpec, class_table, generate_split, spec_for

SPEC = spec_for("fine_grained", resolution=32, test_per_class=10)


def _digest(split) -> str:
    h = hashlib.sha256()
    for key in sorted(split.tensors):
        h.update(key.encode())
        h.update(split.tensors[key].contiguous().numpy().tobytes())
    h.update(split.habitats.numpy().tobytes())
    return h.hexdigest()[:32]


# Digests of generate_split computed with the generator BEFORE interventions touched render.py and
# synthetic.py (commit 0cc8a8a): the edits must leave every existing image, mask and field bit-identical.
BEFORE = [
    ("fine_grained", {"resolution": 32}, "test_aligned", 0, 40, "559408cf6de98b20d09b79e9b9f7b3ed"),
    ("fine_grained", {}, "test_conflicting", 100, 140, "c0bfe7242217badb6f7ae28586bb1016"),
    ("multi_label", {"resolution": 48}, "train", 0, 24, "4028346fa3492b339c73e9f03ae44bad"),
    ("many_class", {"resolution": 40, "num_parts": 7}, "test_aligned", 120, 150, "1408c27bf15b17b5e3f47ae24b8869e8"),
    ("two_class", {"resolution": 64}, "train", 0, 16, "b0315daf37cef76da8c7aa63a13cdb42"),
]


@pytest.mark.parametrize("preset, overrides, split, start, stop, digest", BEFORE)
def test_generator_output_unchanged_by_the_intervention_hooks(preset, overrides, split, start, stop, digest):
    assert _digest(generate_split(spec_for(preset, **overrides), split, start, stop)) == digest


@pytest.mark.parametrize("spec", [SPEC, spec_for("multi_label", resolution=32, test_per_class=20)])
def test_no_intervention_reproduces_the_split_bit_for_bit(spec):
    ref = generate_split(spec, "test_aligned").tensors
    idx = torch.tensor([130, 3, 127, 128, 3, 0, 150])  # unsorted, repeated, across 128-index chunks
    n, p = len(idx), len(spec.parts)
    for kwargs in ({}, {"remove": torch.zeros(n, p, dtype=torch.bool), "donor": torch.full((n, p), -1),
                        "habitat": torch.full((n,), -1)}):
        out = rerender(spec, "test_aligned", idx, batch_size=3, **kwargs)
        assert set(out) == set(ref)
        for key, value in out.items():
            assert torch.equal(value, ref[key][idx]), key


def test_habitat_swap_to_the_twin_reproduces_the_conflicting_split():
    idx = torch.arange(0, 160, 7)
    twin = twin_habitats(SPEC, "test_aligned", idx)
    conflicting = generate_split(SPEC, "test_conflicting").tensors
    out = rerender(SPEC, "test_aligned", idx, habitat=twin)
    for key, value in out.items():
        assert torch.equal(value, conflicting[key][idx]), key
    back = rerender(SPEC, "test_conflicting", idx, habitat=twin_habitats(SPEC, "test_conflicting", idx))
    assert torch.equal(back["image"], generate_split(SPEC, "test_aligned").tensors["image"][idx])


def _dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    return F.max_pool2d(mask.float()[:, None], 2 * px + 1, stride=1, padding=px)[:, 0] > 0


def _erode(mask: torch.Tensor, px: int) -> torch.Tensor:
    return ~_dilate(~mask, px)


@pytest.mark.parametrize("part", range(5))
def test_removing_a_part_is_local_and_uncovers_what_is_behind(part):
    spec, n = spec_for("fine_grained", resolution=64), 24
    idx = torch.arange(n)
    p = len(spec.parts)
    only = torch.ones(n, p, dtype=torch.bool)
    only[:, part] = False  # remove every part but `part`
    remove = torch.zeros(n, p, dtype=torch.bool)
    remove[:, part] = True
    orig = rerender(spec, "test_aligned", idx)
    cut = rerender(spec, "test_aligned", idx, remove=remove)
    bare = rerender(spec, "test_aligned", idx, remove=torch.ones(n, p, dtype=torch.bool))
    footprint = rerender(spec, "test_aligned", idx, remove=only)["mask"]  # the whole part, covered or not
    assert footprint.any(dim=(1, 2)).all()
    reach = _dilate(footprint, 2)[:, None].expand_as(orig["image"])  # soft border ≤ 1.5 px
    assert torch.equal(cut["image"][~reach], orig["image"][~reach])  # bit-identical elsewhere
    assert not cut["part_masks"][:, part].any()
    others = [k for k in range(p) if k != part]
    grown = cut["part_masks"][:, others] & ~orig["part_masks"][:, others]
    assert not (orig["part_masks"][:, others] & ~cut["part_masks"][:, others]).any()  # masks only grow ...
    assert not (grown & ~orig["part_masks"][:, part, None]).any()  # ... into what `part` covered
    # what `part` covered now shows the habitat (exactly) or the part behind it (as drawn alone)
    hidden = orig["part_masks"][:, part]
    to_background = _erode(hidden & ~cut["mask"], 2)[:, None].expand_as(orig["image"])
    assert torch.equal(cut["image"][to_background], bare["image"][to_background])
    for j in others:
        solo = torch.ones(n, p, dtype=torch.bool)
        solo[:, j] = False
        alone = rerender(spec, "test_aligned", idx, remove=solo)["image"]
        uncovered = _erode(hidden & cut["part_masks"][:, j], 2)[:, None].expand_as(alone)
        torch.testing.assert_close(cut["image"][uncovered], alone[uncovered], atol=1e-5, rtol=0)
    # the hidden part really was uncovered somewhere (else the test above checks nothing)
    if part in (spec.parts.index("wing"), spec.parts.index("head")):
        assert (hidden & cut["mask"]).any()


def test_donor_confuser_changes_only_the_disc_part():
    table = class_table(SPEC)
    idx = torch.arange(0, 64)
    labels = idx % SPEC.num_classes
    confuser = table.confusers[labels]
    donor_all = confuser[:, None].expand(-1, len(SPEC.parts)).clone()
    orig = rerender(SPEC, "test_aligned", idx)
    # pair members share every part but the discriminative one: donating them changes nothing
    disc = table.disc_part[labels]
    rows = torch.arange(len(idx))
    donor_rest = donor_all.clone()
    donor_rest[rows, disc] = -1
    same = rerender(SPEC, "test_aligned", idx, donor=donor_rest)
    assert torch.equal(same["image"], orig["image"])
    swapped = rerender(SPEC, "test_aligned", idx, donor=donor_all)
    changed = (swapped["image"] != orig["image"]).any(dim=1)
    assert changed.any(dim=(1, 2)).all()  # every image changed ...
    assert not (changed & ~_dilate(orig["disc_mask"] | swapped["disc_mask"], 2)).any()  # ... on its disc part


def _brute_force_sets(values: torch.Tensor, c: int) -> set[tuple[int, ...]]:
    """Independent derivation: S is sufficient iff no other class's attribute rows agree with c on all of S."""
    num_classes, num_parts = values.shape[:2]

    def sufficient(subset: tuple[int, ...]) -> bool:
        return all(any(values[o, k].tolist() != values[c, k].tolist() for k in subset)
                   for o in range(num_classes) if o != c)

    subsets = [s for r in range(1, num_parts + 1) for s in combinations(range(num_parts), r)]
    return {s for s in subsets if sufficient(s) and not any(sufficient(tuple(x for x in s if x != k)) for k in s
                                                            if len(s) > 1)}


@pytest.mark.parametrize("spec", [SPEC, spec_for("many_class", num_classes=12, num_parts=3),
                                  BenchmarkSpec(num_classes=9, seed=2)])
def test_minimal_sufficient_sets_match_a_brute_force_derivation(spec):
    values = class_table(spec).values
    sets = minimal_sufficient_part_sets(spec)
    for c in range(spec.num_classes):
        assert set(sets[c]) == _brute_force_sets(values, c)
        assert sets[c], f"class {c} has no sufficient set"


def test_sufficient_sets_contain_the_disc_part_and_identify_the_class():
    table = class_table(SPEC)
    distance = part_distance(SPEC)
    for c, class_sets in enumerate(minimal_sufficient_part_sets(SPEC)):
        for s in class_sets:
            assert int(table.disc_part[c]) in s  # the confuser differs only there
            shown = torch.zeros(len(SPEC.parts), dtype=torch.bool)
            shown[list(s)] = True
            agree = ~(distance[c][:, shown].any(dim=1))  # classes drawing S as c does
            assert agree.nonzero()[:, 0].tolist() == [c]


def test_keep_from_bits():
    assert keep_from_bits(torch.tensor([0, 5, 31]), 5).tolist() == [
        [False] * 5, [True, False, True, False, False], [True] * 5]


# ------------------------------------------------------------------------------------------------
# A causal check with a trained linear oracle (can fail: if removal or donation touched the wrong
# part, or left the part in place, the oracle's evidence would not move as predicted)

ORACLE_SPEC = spec_for("fine_grained", resolution=48, disc_groups=("color",), num_classes=4, train_per_class=40)


def _colour_histogram(images: torch.Tensor, masks: torch.Tensor, bins: int = 4) -> np.ndarray:
    """Object-only colour histogram: interior pixels only (the 1-px anti-aliased rim mixes in the habitat,
    which differs between the pair's classes), so the oracle cannot use the background."""
    masks = _erode(masks, 1)
    q = (images.clamp(0, 1 - 1e-6) * bins).long()  # [N, 3, H, W]
    code = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = torch.stack([torch.bincount(code[i][masks[i]], minlength=bins**3) for i in range(len(code))]).float()
    return (hist / masks.flatten(1).sum(1, keepdim=True).clamp(min=1)).numpy()


def test_disc_part_interventions_move_a_linear_oracle_as_predicted():
    table = class_table(ORACLE_SPEC)
    pair = (2, 3)  # their discriminative part is the wing (large enough to be seen at 48 px)
    assert int(table.confusers[2]) == 3 and ORACLE_SPEC.parts[int(table.disc_part[2])] == "wing"
    disc = int(table.disc_part[2])
    train = generate_split(ORACLE_SPEC, "train").tensors
    keep = (train["label"] == pair[0]) | (train["label"] == pair[1])
    oracle = LogisticRegression(C=10.0, max_iter=2000).fit(
        _colour_histogram(train["image"][keep], train["mask"][keep]), train["label"][keep].numpy())
    test = generate_split(ORACLE_SPEC, "test_aligned").tensors
    idx = ((test["label"] == pair[0]) | (test["label"] == pair[1])).nonzero()[:, 0]
    y = (test["label"][idx] == pair[1]).long().numpy()
    n, p = len(idx), len(ORACLE_SPEC.parts)

    def evidence(**kw: torch.Tensor) -> np.ndarray:  # log-odds of pair[1] over pair[0]
        out = rerender(ORACLE_SPEC, "test_aligned", idx, **kw)
        return oracle.decision_function(_colour_histogram(out["image"], out["mask"]))

    original = evidence()
    assert roc_auc_score(y, original) > 0.95
    donor = torch.full((n, p), -1)
    donor[:, disc] = torch.from_numpy(np.where(y == 1, pair[0], pair[1]))  # drawn as the confuser draws it
    flipped = evidence(donor=donor)
    assert ((flipped > 0) != (original > 0)).mean() > 0.8  # the oracle now sees the other class
    remove = torch.zeros(n, p, dtype=torch.bool)
    remove[:, disc] = True
    assert roc_auc_score(y, evidence(remove=remove)) < 0.8  # nothing left to tell the pair apart
    other = next(k for k in range(p) if k != disc and ORACLE_SPEC.parts[k] != "body")
    remove_other = torch.zeros(n, p, dtype=torch.bool)
    remove_other[:, other] = True
    assert roc_auc_score(y, evidence(remove=remove_other)) > 0.9  # a shared part carries no class evidence


@pytest.mark.parametrize("num_classes", [4, 10, 16])
def test_hybrid_design_splits_the_differing_parts_between_the_two_classes(num_classes):
    from attnbook.data.interventions import hybrid_design

    spec = spec_for("fine_grained", resolution=32, num_classes=num_classes)
    design = hybrid_design(spec)
    differ = part_distance(spec)
    table = class_table(spec)
    for c in range(num_classes):
        c2 = int(design.partner[c])
        assert c2 >= 0 and c2 != c and c2 != int(table.confusers[c])
        own, donated = design.own[c], design.donated[c]
        assert own.any() and donated.any() and not (own & donated).any()
        assert torch.equal(own | donated, differ[c, c2])  # every differing part, in exactly one set
        assert own[table.disc_part[c]] and donated[table.disc_part[c2]]  # each keeps its identifying part


def test_hybrids_draw_the_donated_parts_as_the_partner_and_keep_the_rest():
    from attnbook.data.interventions import hybrid_design

    spec = spec_for("fine_grained", resolution=64, test_per_class=2)
    design = hybrid_design(spec)
    idx = torch.arange(0, 24)
    labels = generate_split(spec, "test_aligned", 0, 24).tensors["label"]
    hybrid = rerender(spec, "test_aligned", idx, donor=design.donors(labels))
    orig = rerender(spec, "test_aligned", idx)
    partner = rerender(spec, "test_aligned", idx, donor=design.partner[labels][:, None].expand(-1, len(spec.parts)))
    checked = {True: 0, False: 0}  # pixels compared on donated / own parts
    mismatched: dict[int, int] = {}
    for n in range(len(idx)):
        own, donated = design.own[labels[n]], design.donated[labels[n]]
        for k in range(len(spec.parts)):
            region = hybrid["part_masks"][n, k]
            if not region.any():
                continue
            source = partner if donated[k] else orig  # the part as the partner / the own class draws it
            if own[k] or donated[k]:
                others = (hybrid["part_masks"][n].any(0) & ~region) | (source["part_masks"][n].any(0) & ~region)
                inner = _erode(region[None], 1)[0] & ~_dilate(others[None], 2)[0]  # away from borders
                if not inner.any():
                    continue
                diff = (hybrid["image"][n][:, inner] - source["image"][n][:, inner]).abs().max().item()
                if donated[k]:
                    assert diff < 1e-5, (n, k, diff)
                elif diff >= 1e-5:  # own parts: a few bodies differ slightly (known, reported; still the class's)
                    mismatched[k] = mismatched.get(k, 0) + 1
                checked[bool(donated[k])] += int(inner.sum())
    assert checked[True] > 100 and checked[False] > 100
    assert set(mismatched) <= {spec.parts.index("body")} and sum(mismatched.values()) <= len(idx) // 6
    assert not torch.equal(hybrid["image"], orig["image"]) and not torch.equal(hybrid["image"], partner["image"])
    assert torch.equal(hybrid["label"], orig["label"])  # the label stays the image's own class

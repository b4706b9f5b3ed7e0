"""FunnyBirds' protocol: the batched implementation against a literal per-image, per-threshold
re-implementation of the paper's rules (written here with Python sets), on a counterfactual model
whose logits are a known function of the kept parts; plus hand-sized importances."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from attnbook.data.interventions import minimal_sufficient_part_sets, shared_parts
from attnbook.data.synthetic import spec_for
from attnbook.evaluate.funnybirds import (
    THRESHOLDS,
    PartImportance,
    default_dilation,
    funnybirds_scores,
    part_importances,
    sufficient_set_table,
    ts_classes,
)
from attnbook.evaluate.variants import bits_of

SPEC = spec_for("fine_grained", resolution=32, seed=1)  # 16 classes; 5 of them have a TS pair


class LinearCounterfactuals:
    """Stands in for VariantLogits: logits = base[n] + Σ_{kept k} W[n, k] (+ a habitat effect)."""

    def __init__(self, n: int, k: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.spec, self.num_parts = SPEC, len(SPEC.parts)
        self.full = (1 << self.num_parts) - 1
        self.base = torch.randn(n, k, generator=gen)
        self.weight = torch.randn(n, self.num_parts, k, generator=gen) * 2
        self.habitat_effect = torch.randn(n, SPEC.num_habitats, k, generator=gen) * 0.5

    def parts(self, rows: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        rows, kept = rows.flatten(), kept.flatten()
        mask = ((kept[:, None] >> torch.arange(self.num_parts)) & 1).float()  # [M, P]
        return self.base[rows] + torch.einsum("mp,mpk->mk", mask, self.weight[rows])

    def habitats(self, rows: torch.Tensor, habitat: torch.Tensor) -> torch.Tensor:
        rows, habitat = rows.flatten(), habitat.flatten()
        return self.parts(rows, torch.full_like(rows, self.full)) + self.habitat_effect[rows, habitat]

    def single_deletions(self) -> torch.Tensor:
        n = self.base.shape[0]
        rows = torch.arange(n).repeat_interleave(self.num_parts)
        kept = (self.full ^ (1 << torch.arange(self.num_parts))).repeat(n)
        return self.parts(rows, kept).view(n, self.num_parts, -1)


def _reference(cf: LinearCounterfactuals, labels, logits, imp: PartImportance, swaps, ts_pairs) -> dict:
    """The paper's rules, one image and one threshold at a time."""
    parts = list(range(cf.num_parts))
    msets = minimal_sufficient_part_sets(SPEC)
    shared = shared_parts(SPEC)

    cache: dict[tuple[int, frozenset], torch.Tensor] = {}

    def logit(n: int, removed: set[int]) -> torch.Tensor:
        key = (n, frozenset(removed))
        if key not in cache:
            kept = sum(1 << k for k in parts if k not in removed)
            cache[key] = cf.parts(torch.tensor([n]), torch.tensor([kept]))[0]
        return cache[key]

    bg_scores = {(n, v): cf.habitats(torch.tensor([n]), swaps[n, v:v + 1])[0]
                 for n in range(len(labels)) for v in range(swaps.shape[1])}

    curves = {k: [] for k in ("csdc", "pc", "dc", "d")}
    for t in THRESHOLDS.tolist():
        csdc, pc, dc, js = [], [], [], []
        for n in range(len(labels)):
            y, p = int(labels[n]), int(logits[n].argmax())
            important_pred = {k for k in parts if imp.parts[n, 1, k].item() > imp.total[n, 1].item() * t}
            pc.append(float(int(logit(n, set(parts) - important_pred).argmax()) == p))
            dc.append(float(int(logit(n, important_pred).argmax()) != p))
            important = {k for k in parts if imp.parts[n, 0, k].item() > imp.total[n, 0].item() * t}
            if p == y:
                csdc.append(max(len(set(s) & important) / len(s) for s in msets[y]))
            orig = logits[n, y].item()
            scores = {k: logit(n, {k})[y].item() for k in parts}
            scores["bg"] = [bg_scores[n, v][y].item() for v in range(swaps.shape[1])]
            irrelevant = {k for k in parts if abs(orig - scores[k]) < abs(0.05 * orig) or scores[k] > orig}
            if all(abs(orig - s) < abs(0.05 * orig) or s > orig for s in scores["bg"]):
                irrelevant.add("bg")
            if imp.background[n, 0].item() > imp.total[n, 0].item() * t:
                important.add("bg")
            if irrelevant:
                js.append(len(important & irrelevant) / len(irrelevant))
        curves["csdc"].append(np.mean(csdc))
        curves["pc"].append(np.mean(pc))
        curves["dc"].append(np.mean(dc))
        curves["d"].append(1 - np.mean(js))
    objective = [(a + b + c) / 3 + d for a, b, c, d in zip(curves["csdc"], curves["pc"], curves["dc"], curves["d"])]
    best = int(np.argmax(objective))  # numpy: first maximiser
    sd = []
    for n in range(len(labels)):
        y = int(labels[n])
        drops = [logits[n, y].item() - logit(n, {k})[y].item() for k in parts]
        rho = spearmanr(drops, imp.parts[n, 0].tolist()).statistic
        if not math.isnan(rho):
            sd.append(0.5 * rho + 0.5)
    relevant, total = 0, 0
    for n in range(len(labels)):
        y, orig = int(labels[n]), logits[n, int(labels[n])].item()
        for v in range(swaps.shape[1]):
            s = bg_scores[n, v][y].item()
            total += 1
            relevant += abs(orig - s) >= abs(0.05 * orig) and orig > s
    ts = []
    for n in range(len(labels)):
        y, (c1, c2) = int(labels[n]), ts_pairs[n].tolist()
        if c1 < 0:
            continue
        o1 = {k for k in parts if shared[y, c1, k]}
        o2 = {k for k in parts if shared[y, c2, k]}
        l1, l2, l0 = logit(n, o1), logit(n, o2), logits[n]
        if not ((l1[c1] - l0[c1]) < (l2[c1] - l0[c1]) and (l2[c2] - l0[c2]) < (l1[c2] - l0[c2])):
            continue
        i1, i2 = imp.parts[n, 2].tolist(), imp.parts[n, 3].tolist()
        ts.append(float(sum(i1[k] for k in o1) > sum(i2[k] for k in o1)))
        ts.append(float(sum(i1[k] for k in o2) < sum(i2[k] for k in o2)))
    return {"best": best, "csdc": curves["csdc"][best], "pc": curves["pc"][best], "dc": curves["dc"][best],
            "d": curves["d"][best], "sd": np.mean(sd), "bi": 1 - relevant / total,
            "ts": np.mean(ts) if ts else float("nan"), "ts_count": len(ts) // 2}


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_protocol_equals_the_per_image_rules(seed):
    n, k = 64, SPEC.num_classes
    gen = torch.Generator().manual_seed(100 + seed)
    cf = LinearCounterfactuals(n, k, seed)
    labels = torch.arange(n) % k
    logits = cf.parts(torch.arange(n), torch.full((n,), cf.full))
    logits[: n // 2, :] -= 3.0 * torch.nn.functional.one_hot(logits[: n // 2].argmax(1), k)  # mix right/wrong
    logits[torch.arange(n // 2), labels[: n // 2]] += 20.0
    # make the unchanged variant agree with these logits (as VariantLogits does: the original image)
    cf.base = cf.base + (logits - cf.parts(torch.arange(n), torch.full((n,), cf.full)))
    raw = torch.rand(n, 4, cf.num_parts, generator=gen) ** 3  # skewed importances
    imp = PartImportance(parts=raw, background=torch.rand(n, 4, generator=gen) * 0.3,
                         total=raw.sum(2) + torch.rand(n, 4, generator=gen) * 0.5)
    swaps = torch.randint(0, SPEC.num_habitats, (n, 2), generator=gen)
    pairs = ts_classes(SPEC)[labels]
    ours = funnybirds_scores(cf, labels, logits, imp, sufficient_set_table(SPEC), pairs, swaps)
    ref = _reference(cf, labels, logits, imp, swaps, pairs)
    assert ours.threshold == pytest.approx(THRESHOLDS[ref["best"]].item())
    for key in ("csdc", "pc", "dc", "d", "sd", "bi"):
        assert ours.scores[key] == pytest.approx(ref[key], abs=1e-6 if key == "sd" else 1e-9), key  # ρ: float32
    assert ours.counts["ts_valid"] == ref["ts_count"] > 0
    assert ours.scores["ts"] == pytest.approx(ref["ts"])
    s = ours.scores
    assert s["completeness"] == pytest.approx(((s["csdc"] + s["pc"] + s["dc"]) / 3 + s["d"]) / 2)
    assert 0 < s["pc"] < 1 or 0 < s["dc"] < 1  # the test exercises both outcomes


def test_threshold_grid_is_funnybirds():
    np.testing.assert_allclose(THRESHOLDS.numpy(), np.linspace(0.01, 0.50, num=80))


def test_part_importances_by_hand():
    maps = torch.zeros(1, 2, 5, 5)
    maps[0, 0, 2, 2] = 2.0  # on part 0
    maps[0, 0, 0, 0] = 1.0  # background
    maps[0, 1] = 1.0  # uniform
    parts = torch.zeros(1, 2, 5, 5, dtype=torch.bool)
    parts[0, 0, 2, 2] = True
    parts[0, 1, 2, 3] = True
    mask = parts.any(1)
    imp = part_importances(maps, parts, mask)
    assert imp.parts.tolist() == [[[2.0, 0.0], [1.0, 1.0]]]
    assert imp.background.tolist() == [[1.0, 23.0]] and imp.total.tolist() == [[3.0, 25.0]]
    dilated = part_importances(maps, parts, mask, dilation=3)  # 3×3 max-pool: part 1 reaches (2, 2)
    assert dilated.parts.tolist() == [[[2.0, 2.0], [9.0, 9.0]]]
    assert [default_dilation(r) for r in (32, 64, 112, 224, 256)] == [1, 1, 3, 5, 5]


def test_ts_classes_share_disjoint_parts():
    shared = shared_parts(SPEC)
    pairs = ts_classes(SPEC)
    assert (pairs[:, 0] >= 0).any()
    for c, (a, b) in enumerate(pairs.tolist()):
        if a < 0:
            continue
        assert a != c and b != c and a < b
        assert shared[c, a].any() and shared[c, b].any() and not (shared[c, a] & shared[c, b]).any()
    strict = ts_classes(SPEC, ts_shared=2)
    for c, (a, b) in enumerate(strict.tolist()):
        if a >= 0:
            assert shared[c, a].sum() == 2 and shared[c, b].sum() == 2


def test_bits_and_sufficient_table():
    assert bits_of(torch.tensor([[True, False, True], [False, False, False]])).tolist() == [5, 0]
    table = sufficient_set_table(SPEC)
    sets = minimal_sufficient_part_sets(SPEC)
    for c in range(SPEC.num_classes):
        rows = {tuple(r.nonzero()[:, 0].tolist()) for r in table[c] if r.any()}
        assert rows == set(sets[c])


def test_target_sensitivity_rule_by_hand():
    from attnbook.evaluate.funnybirds import TargetSensitivityInputs, target_sensitivity

    o1 = torch.tensor([[True, False, False], [True, False, False], [True, False, False]])
    o2 = torch.tensor([[False, True, True], [False, True, True], [False, True, True]])
    base = torch.zeros(3, 2)
    # image 0 and 1: removing O1 hurts class 0 more, removing O2 hurts class 1 more (assumption holds);
    # image 2: it does not (skipped)
    without_o1 = torch.tensor([[-2.0, -0.5], [-2.0, -0.5], [-0.1, -0.5]])
    without_o2 = torch.tensor([[-0.5, -2.0], [-0.5, -2.0], [-0.5, -0.1]])
    imp1 = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.0, 1.0], [3.0, 0.0, 0.0]])  # maps of class 0
    imp2 = torch.tensor([[1.0, 2.0, 2.0], [1.0, 1.0, 1.0], [0.0, 3.0, 0.0]])  # maps of class 1
    ts = TargetSensitivityInputs(c1=torch.zeros(3, dtype=torch.long), c2=torch.ones(3, dtype=torch.long), o1=o1,
                                 o2=o2, pair=torch.tensor([True, True, True]), base=base, without_o1=without_o1,
                                 without_o2=without_o2, imp1=imp1, imp2=imp2)
    score, valid = target_sensitivity(ts)
    assert valid.tolist() == [True, True, False]
    assert score[:2].tolist() == [1.0, 0.0]  # image 1: the same map for both classes wins no comparison


def test_oracle_importances_are_the_single_deletion_drops_and_rank_perfectly():
    from attnbook.evaluate.funnybirds import oracle_importances

    n, k = 16, SPEC.num_classes
    cf = LinearCounterfactuals(n, k, seed=3)
    labels = torch.arange(n) % k
    logits = cf.parts(torch.arange(n), torch.full((n,), cf.full))
    swaps = torch.randint(0, SPEC.num_habitats, (n, 1), generator=torch.Generator().manual_seed(0))
    targets = torch.stack([labels, logits.argmax(1)], dim=1)
    imp = oracle_importances(cf, targets, swaps)
    # linear counterfactuals: removing part p lowers class c by W[n, p, c]
    expected = cf.weight.gather(2, labels[:, None, None].expand(-1, cf.num_parts, 1))[..., 0].clamp(min=0)
    torch.testing.assert_close(imp.parts[:, 0], expected)
    bg = (logits[:, None] - cf.habitats(torch.arange(n)[:, None], swaps).view(n, 1, -1)).clamp(min=0).mean(1)
    torch.testing.assert_close(imp.background[:, 0], bg.gather(1, labels[:, None])[:, 0])
    result = funnybirds_scores(cf, labels, logits, imp, sufficient_set_table(SPEC), None, swaps)
    assert math.isnan(result.scores["ts"]) and result.counts["ts_pairs"] == 0  # no TS input: undefined
    # SD: positive drops are ranked exactly; only clipped negative drops (ties at 0) can cost correlation
    positive = (cf.weight.gather(2, labels[:, None, None].expand(-1, cf.num_parts, 1))[..., 0] > 0).all(1)
    if positive.any():
        assert torch.allclose(result.per_image["sd"][positive], torch.ones(int(positive.sum()), dtype=torch.float64))


def test_empty_explanation_completeness_and_important_part_count():
    n, k = 32, SPEC.num_classes
    cf = LinearCounterfactuals(n, k, seed=4)
    logits = cf.parts(torch.arange(n), torch.full((n,), cf.full))
    labels = logits.argmax(1)  # every image correct: CSDC is defined (0 for this map)
    zero = PartImportance(parts=torch.zeros(n, 2, cf.num_parts), background=torch.zeros(n, 2),
                          total=torch.ones(n, 2))  # marks nothing important at any threshold
    result = funnybirds_scores(cf, labels, logits, zero, sufficient_set_table(SPEC), None, torch.empty(n, 0))
    pc_empty = (cf.parts(torch.arange(n), torch.zeros(n, dtype=torch.long)).argmax(1) == logits.argmax(1)).double()
    assert result.scores["completeness_empty"] == pytest.approx(((pc_empty.mean().item()) / 3 + 1) / 2)
    assert result.scores["completeness"] == pytest.approx(result.scores["completeness_empty"])  # it IS that map
    assert result.scores["important_parts"] == 0.0

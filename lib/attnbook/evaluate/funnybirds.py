"""FunnyBirds' explanation protocol (Hesse, Schaub-Meyer, Roth, ICCV 2023, §4), re-implemented batched
on the in-domain interventions of the synthetic benchmark.

An explanation map becomes *part importances* (attributed mass per part, §4: the map summed over the
part's mask dilated by a 5×5 max-pool at 256 px — :func:`default_dilation` scales the kernel with the
resolution) and then a set of *important* parts: ``importance > t · (total attribution of the map)``
for a threshold ``t``. The quantities (all in [0, 1]):

* **CSDC** — over correctly classified images, max over the class's minimal sufficient part sets S
  (:func:`attnbook.data.interventions.minimal_sufficient_part_sets`) of ``|S ∩ important| / |S|``;
  explains the true class.
* **PC** — keep only the important parts: is the prediction unchanged? **DC** — remove the important
  parts: does it change? Both explain the *predicted* class and use every image.
* **D** (distractibility) — elements are the parts and the background; an element is *irrelevant*
  when removing it changes the true-class logit by less than 5 % of |logit| or raises it;
  ``J = |important ∩ irrelevant| / |irrelevant|`` per image (images without irrelevant elements
  skipped); ``D = 1 − mean J``.
* **BI** (background independence, a model property) — each background intervention is *relevant*
  when it lowers the true-class logit by ≥ 5 % of |logit|; ``BI = 1 − relevant / all``, pooled.
* **SD** — Spearman ρ per image between each part's true-class logit drop when removed alone and its
  importance, mapped ``0.5 ρ + 0.5``; images with an undefined ρ (constant importances) skipped.
* **TS** — two classes c1, c2 sharing disjoint part sets O1, O2 with the true class; images where
  removing O1 does not hurt c1 more than removing O2 (and vice versa for c2) are skipped; then
  ``imp_c1(O1) > imp_c2(O1)`` and ``imp_c1(O2) < imp_c2(O2)`` each score 1; TS is the mean.
  **Hybrid TS** (our adaptation, the default of :func:`attnbook.evaluate.evaluate`): where no such triple of
  classes exists (the fine-grained analog at 10 classes), the image itself is made to carry parts of two
  classes — :func:`attnbook.data.interventions.hybrid_design`: the true class c1 = c keeps its version of the
  parts O1, its partner c2 donates its version of O2 — and the same rule (assumption check, then the two
  comparisons) is applied to the hybrid, with the maps of c1 and c2 computed on the hybrid
  (:class:`TargetSensitivityInputs`) and their part importances taken as shares of each map's total mass
  (scale-free: "the map of c puts more of its mass on c's parts than the map of c2 does").
* The threshold is the FIRST maximiser of ``(CSDC + PC + DC)/3 + D`` over ``linspace(0.01, 0.50, 80)``;
  Completeness ``= ((CSDC + PC + DC)/3 + D)/2``, Correctness = SD, Contrastivity = TS; their mean is
  FunnyBirds' headline.

Convention choices (where the paper or framework leave room, or our testbed differs):
1. The *background* is one element (FunnyBirds has several background objects): removing it means
   swapping the habitat (default: the image's habitat in the other test split, an in-domain
   change; no grey fill). D counts it irrelevant only if every swap is irrelevant; BI pools swaps.
   Its importance is the map's mass outside the (undilated) object mask.
2. Every part of ``spec.parts`` can be removed, the body included (FunnyBirds never removes the body).
3. TS: FunnyBirds takes the first pair of classes at part distance 3 (two shared parts each) with
   disjoint overlaps; random classes of our design rarely share two parts, so ``ts_shared=None``
   (default) accepts any non-empty disjoint overlaps (``ts_shared=2``: the paper's rule). A part is
   shared when all three attribute groups agree. Images whose class has no pair are skipped.
4. Minimal sufficient sets exist for every class (the framework returns none for the last class).
5. Maps are non-negative (see :mod:`attnbook.evaluate.explainers`); FunnyBirds sums signed maps.
6. With no correctly classified image CSDC is NaN and counts as 0 in the threshold objective.

Diagnostics beside the protocol's numbers: ``important_parts`` (mean number of parts the true-class explanation
marks important at the chosen threshold) and ``completeness_empty`` — the completeness of the explanation that
marks *nothing* important (CSDC 0, DC 0, D 1, PC = share of images whose prediction survives the removal of every
part): the floor any map reaches by the threshold rule alone. :func:`oracle_importances` gives the causal
ceiling: importances equal to the model's own single-deletion logit drops.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbook.data.interventions import minimal_sufficient_part_sets, shared_parts
from attnbook.data.spec import BenchmarkSpec
from attnbook.evaluate.variants import VariantLogits, bits_of
from attnbook.metrics import spearman

THRESHOLDS = torch.linspace(0.01, 0.50, 80, dtype=torch.float64)  # FunnyBirds' 80 candidates
LOGIT_SHARE = 0.05  # FunnyBirds: "irrelevant" = changes the logit by < 5 % of |logit|

__all__ = ["THRESHOLDS", "FunnyBirdsResult", "PartImportance", "TargetSensitivityInputs", "default_dilation",
           "funnybirds_scores", "oracle_importances", "part_importances", "sufficient_set_table", "target_sensitivity",
           "ts_classes"]


def default_dilation(resolution: int) -> int:
    """FunnyBirds' 5×5 dilation at 256 px, scaled to ``resolution`` (odd, ≥ 1: 1 at 64 px, 5 at 224 px)."""
    k = max(1, round(5 * resolution / 256))
    return k if k % 2 else k + 1


@dataclass(frozen=True)
class PartImportance:
    """Attributed mass per part ``[B, T, P]``, on the background ``[B, T]`` and in total ``[B, T]``."""

    parts: Tensor
    background: Tensor
    total: Tensor


def part_importances(maps: Tensor, part_masks: Tensor, mask: Tensor, dilation: int = 1) -> PartImportance:
    """Part importances of maps ``[B, T, H, W]`` on ``part_masks`` ``[B, P, H, W]`` dilated by a
    ``dilation`` × ``dilation`` max-pool (FunnyBirds §4; dilated parts may overlap); background = mass
    outside ``mask`` ``[B, H, W]``; total = mass of the whole map."""
    regions = part_masks.float()
    if dilation > 1:
        regions = F.max_pool2d(regions, dilation, stride=1, padding=dilation // 2)
    maps = maps.float()
    return PartImportance(parts=torch.einsum("bthw,bphw->btp", maps, regions),
                          background=(maps * (~mask.bool())[:, None].float()).sum(dim=(2, 3)),
                          total=maps.sum(dim=(2, 3)))


def sufficient_set_table(spec: BenchmarkSpec) -> Tensor:
    """Minimal sufficient part sets as ``[C, S, P]`` bool (padding rows all False)."""
    sets = minimal_sufficient_part_sets(spec)
    table = torch.zeros(spec.num_classes, max(len(s) for s in sets), len(spec.parts), dtype=torch.bool)
    for c, class_sets in enumerate(sets):
        for s, members in enumerate(class_sets):
            table[c, s, list(members)] = True
    return table


def ts_classes(spec: BenchmarkSpec, ts_shared: int | None = None) -> Tensor:
    """Per class the two TS classes ``[C, 2]`` (−1, −1 if none): the first pair, in class order, of classes
    sharing ``ts_shared`` parts (None: ≥ 1) with it whose shared part sets are disjoint."""
    shared = shared_parts(spec)  # [C, C, P]
    out = torch.full((spec.num_classes, 2), -1, dtype=torch.long)
    for c in range(spec.num_classes):
        count = shared[c].sum(dim=1)
        ok = (count == ts_shared) if ts_shared is not None else (count >= 1)
        ok[c] = False
        cands = ok.nonzero()[:, 0].tolist()
        pair = next(((a, b) for i, a in enumerate(cands) for b in cands[i + 1:]
                     if not (shared[c, a] & shared[c, b]).any()), None)
        if pair is not None:
            out[c] = torch.tensor(pair)
    return out


@dataclass
class FunnyBirdsResult:
    """Scores at the chosen threshold, curves over all thresholds and per-image values."""

    scores: dict[str, float]
    threshold: float
    curves: dict[str, Tensor]  # name -> [80]
    per_image: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetSensitivityInputs:
    """What TS needs per image: the classes ``c1``, ``c2`` [N] and their parts ``o1``, ``o2`` [N, P] (bool,
    disjoint), ``pair`` [N] (False: no pair, skipped), the model's logits [N, K] on the explained image
    (``base``) and on it with O1 (``without_o1``) or O2 (``without_o2``) removed, and the part importances
    [N, P] of the maps of c1 (``imp1``) and c2 (``imp2``) on that image."""

    c1: Tensor
    c2: Tensor
    o1: Tensor
    o2: Tensor
    pair: Tensor
    base: Tensor
    without_o1: Tensor
    without_o2: Tensor
    imp1: Tensor
    imp2: Tensor


def target_sensitivity(ts: TargetSensitivityInputs) -> tuple[Tensor, Tensor]:
    """FunnyBirds' TS rule (§4.3 and its framework's ``target_sensitivity_protocol``) per image: the mean of
    ``[imp_c1(O1) > imp_c2(O1)]`` and ``[imp_c1(O2) < imp_c2(O2)]`` ``[N]``, and whether the image counts
    (a pair exists and removing O1 lowers c1 more than removing O2, and removing O2 lowers c2 more) ``[N]``."""
    rows = torch.arange(ts.c1.shape[0])
    c1, c2 = ts.c1.clamp(min=0), ts.c2.clamp(min=0)
    o1, o2 = ts.o1 & ts.pair[:, None], ts.o2 & ts.pair[:, None]
    drop_c1_rm1 = ts.without_o1[rows, c1] - ts.base[rows, c1]
    drop_c1_rm2 = ts.without_o2[rows, c1] - ts.base[rows, c1]
    drop_c2_rm1 = ts.without_o1[rows, c2] - ts.base[rows, c2]
    drop_c2_rm2 = ts.without_o2[rows, c2] - ts.base[rows, c2]
    valid = ts.pair & (drop_c1_rm1 < drop_c1_rm2) & (drop_c2_rm2 < drop_c2_rm1)
    imp1, imp2 = ts.imp1.double(), ts.imp2.double()
    on_o1 = ((imp1 * o1).sum(1) > (imp2 * o1).sum(1)).double()
    on_o2 = ((imp1 * o2).sum(1) < (imp2 * o2).sum(1)).double()
    return (on_o1 + on_o2) / 2, valid


def oracle_importances(variants: VariantLogits, targets: Tensor, swaps: Tensor) -> PartImportance:
    """The causal ceiling: importance of part k for class ``targets[:, t]`` = the model's logit drop when k alone
    is removed (clipped at 0), of the background = the mean drop over the habitat swaps ``swaps`` [N, V]
    (clipped); total = their sum. [N, T, P] — what a map would attribute if it knew the model's answers."""
    n = targets.shape[0]
    rows = torch.arange(n)
    original = variants.parts(rows, torch.full_like(rows, variants.full))  # [N, K]
    deleted = variants.single_deletions()  # [N, P, K]
    drops = (original[:, None, :] - deleted).clamp(min=0)  # [N, P, K]
    parts = drops.gather(2, targets[:, None, :].expand(-1, drops.shape[1], -1)).transpose(1, 2)  # [N, T, P]
    if swaps.numel():
        swapped = variants.habitats(rows[:, None].expand_as(swaps), swaps).view(*swaps.shape, -1)  # [N, V, K]
        bg = (original[:, None, :] - swapped).clamp(min=0).mean(dim=1).gather(1, targets)  # [N, T]
    else:
        bg = torch.zeros(targets.shape, dtype=parts.dtype)
    return PartImportance(parts=parts, background=bg, total=parts.sum(dim=2) + bg)


def _important(imp: Tensor, total: Tensor, thresholds: Tensor) -> Tensor:  # [N, E], [N] -> [N, L, E]
    return imp.double()[:, None, :] > thresholds[None, :, None] * total.double()[:, None, None]


def _irrelevant(original: Tensor, changed: Tensor) -> Tensor:
    """FunnyBirds: ``|orig − changed| < 5 % |orig|`` or the change raises the logit."""
    return ((original - changed).abs() < (LOGIT_SHARE * original).abs()) | (changed > original)


def funnybirds_scores(variants: VariantLogits, labels: Tensor, logits: Tensor, imp: PartImportance,
                      sufficient_sets: Tensor, ts_pairs: Tensor | None, swaps: Tensor,
                      thresholds: Tensor = THRESHOLDS,
                      ts: TargetSensitivityInputs | None = None) -> FunnyBirdsResult:
    """All FunnyBirds quantities (module docstring) for N images.

    ``imp`` holds importances for targets ``[true, predicted, …]``; ``sufficient_sets`` ``[C, S, P]``
    (:func:`sufficient_set_table`); ``swaps`` ``[N, V]`` habitats for the background interventions. TS: from
    ``ts`` if given (e.g. the hybrid images), else FunnyBirds' own rule on the unchanged images with ``ts_pairs``
    ``[N, 2]`` (−1: none) and ``imp`` for targets ``[true, predicted, ts1, ts2]``; neither: NaN.
    """
    n = labels.shape[0]
    rows = torch.arange(n)
    pred = logits.argmax(dim=1)
    correct = pred == labels
    full = variants.full
    orig_true = logits[rows, labels]

    # PC / DC: explain the prediction; keep / remove the important parts.
    important_pred = _important(imp.parts[:, 1], imp.total[:, 1], thresholds)  # [N, L, P]
    kept = bits_of(important_pred)  # [N, L]
    grid_rows = rows[:, None].expand_as(kept)
    pred_keep = variants.parts(grid_rows, kept).argmax(dim=1).view_as(kept)
    pred_drop = variants.parts(grid_rows, full ^ kept).argmax(dim=1).view_as(kept)
    pc = (pred_keep == pred[:, None]).double()  # [N, L]
    dc = (pred_drop != pred[:, None]).double()

    # CSDC: explain the true class, correctly classified images only.
    important_true = _important(imp.parts[:, 0], imp.total[:, 0], thresholds)  # [N, L, P]
    sets = sufficient_sets[labels]  # [N, S, P]
    size = sets.sum(dim=2)  # [N, S]
    hit = (important_true[:, :, None, :] & sets[:, None]).sum(dim=3)  # [N, L, S]
    csdc_img = (hit.double() / size.clamp(min=1)[:, None]).masked_fill((size == 0)[:, None], 0).amax(dim=2)  # [N, L]

    # D: irrelevant parts (single deletion) and background (every swap irrelevant).
    deleted = variants.single_deletions()  # [N, P, K]
    del_true = deleted[rows, :, labels]  # [N, P]
    if swaps.numel():
        swapped = variants.habitats(rows[:, None].expand_as(swaps), swaps).view(*swaps.shape, -1)  # [N, V, K]
        swapped_true = swapped.gather(2, labels[:, None, None].expand(n, swaps.shape[1], 1))[..., 0]  # [N, V]
    else:
        swapped_true = torch.empty(n, 0)
    irrelevant = _irrelevant(orig_true[:, None], del_true)  # [N, P]
    elements = imp.parts[:, 0]
    if swaps.numel():  # the background is one more element
        irrelevant = torch.cat([irrelevant, _irrelevant(orig_true[:, None], swapped_true).all(1, keepdim=True)], 1)
        elements = torch.cat([elements, imp.background[:, 0, None]], dim=1)
    important_bg = _important(elements, imp.total[:, 0], thresholds)  # [N, L, P(+1)]
    n_irr = irrelevant.sum(dim=1)
    has_irr = n_irr > 0
    j = (important_bg & irrelevant[:, None]).sum(dim=2).double() / n_irr.clamp(min=1)[:, None]  # [N, L]

    curves = {
        "csdc": csdc_img[correct].mean(dim=0) if correct.any() else torch.full_like(thresholds, float("nan")),
        "pc": pc.mean(dim=0), "dc": dc.mean(dim=0),
        "d": 1 - j[has_irr].mean(dim=0) if has_irr.any() else torch.ones_like(thresholds),
    }
    objective = (curves["csdc"].nan_to_num(0) + curves["pc"] + curves["dc"]) / 3 + curves["d"]
    best = int(torch.argmax(objective))  # first maximiser
    curves["objective"] = objective

    # BI: pooled over (image, swap).
    relevant_bg = ~_irrelevant(orig_true[:, None], swapped_true)
    bi = 1 - relevant_bg.double().mean().item() if swaps.numel() else float("nan")

    # SD: Spearman of single-deletion drops vs part importances (true class).
    drop = orig_true[:, None] - del_true  # [N, P]
    rho = spearman(drop.double(), imp.parts[:, 0].double())  # NaN if either is constant
    sd_img = 0.5 * rho + 0.5

    if ts is None and ts_pairs is not None:
        ts = _shared_part_inputs(variants, labels, logits, imp, ts_pairs)
    n_pairs = int(ts.pair.sum()) if ts is not None else 0
    if ts is not None:
        ts_img, ts_valid = target_sensitivity(ts)
    else:
        ts_img, ts_valid = torch.full((n,), float("nan"), dtype=torch.float64), torch.zeros(n, dtype=torch.bool)

    # Diagnostics: how many parts the chosen threshold marks, and the completeness of marking none.
    n_important = float(important_true[:, best].sum(dim=1).double().mean())
    pc_empty = float((variants.parts(rows, torch.zeros_like(rows)).argmax(dim=1) == pred).double().mean())

    csdc, pc_s, dc_s, d = (float(curves[k][best]) for k in ("csdc", "pc", "dc", "d"))
    sd = float(torch.nanmean(sd_img)) if (~sd_img.isnan()).any() else float("nan")
    ts_score = float(ts_img[ts_valid].mean()) if ts_valid.any() else float("nan")
    completeness = ((csdc + pc_s + dc_s) / 3 + d) / 2
    scores = {"accuracy": float(correct.double().mean()), "csdc": csdc, "pc": pc_s, "dc": dc_s, "d": d,
              "bi": bi, "sd": sd, "ts": ts_score, "completeness": completeness, "correctness": sd,
              "contrastivity": ts_score, "mean_xai": (completeness + sd + ts_score) / 3, "important_parts": n_important,
              "completeness_empty": ((0 + pc_empty + 0) / 3 + 1) / 2,
              "ts_valid": float(ts_valid.double().mean()) if n else float("nan")}
    per_image = {"sd": sd_img, "ts": ts_img.masked_fill(~ts_valid, float("nan")), "csdc": csdc_img[:, best],
                 "pc": pc[:, best], "dc": dc[:, best], "j": j[:, best].masked_fill(~has_irr, float("nan")),
                 "drop": drop, "irrelevant": irrelevant}
    counts = {"images": n, "correct": int(correct.sum()), "with_irrelevant": int(has_irr.sum()),
              "sd_defined": int((~sd_img.isnan()).sum()), "ts_pairs": n_pairs,
              "ts_valid": int(ts_valid.sum()), "background_swaps": int(swaps.numel())}
    return FunnyBirdsResult(scores, float(thresholds[best]), curves, per_image, counts)


def _shared_part_inputs(variants: VariantLogits, labels: Tensor, logits: Tensor, imp: PartImportance,
                        ts_pairs: Tensor) -> TargetSensitivityInputs:
    """FunnyBirds' own TS setting: the unchanged image of class y, classes c1, c2 sharing the disjoint parts
    O1, O2 with y, importances of the maps of c1 and c2 (targets 2 and 3 of ``imp``)."""
    rows = torch.arange(labels.shape[0])
    shared = shared_parts(variants.spec)
    has = ts_pairs[:, 0] >= 0
    c1, c2 = ts_pairs[:, 0].clamp(min=0), ts_pairs[:, 1].clamp(min=0)
    o1, o2 = shared[labels, c1] & has[:, None], shared[labels, c2] & has[:, None]  # [N, P]
    return TargetSensitivityInputs(
        c1=c1, c2=c2, o1=o1, o2=o2, pair=has, base=logits,
        without_o1=variants.parts(rows, variants.full ^ bits_of(o1)),
        without_o2=variants.parts(rows, variants.full ^ bits_of(o2)),
        imp1=imp.parts[:, 2], imp2=imp.parts[:, 3])

"""Chapter 5's numbers and claims ledger: the metrics the text quotes (recorded and glued under one name by
``recorder.numbers``) and one ledger row per BR-NPA claim, its status computed by a test.

Chapter: ``nbs/05_brnpa.ipynb``. Paper: BR-NPA (Gomez et al.) Tables 1–6, §4.4 / Figs. 4 and 5, Figs. 8 and 9
(papers.md §5). Rows go through :func:`attnbook.ledger.record_claim` (α = 0.05), by the book's rules:

* a claim about **training** (accuracy, sparsity, gradient variance of trained models) is tested over seeds,
  the unit of replication: one value per seed (mean over its test images), paired t test on the per-seed
  differences (:func:`attnbook.stats.paired`, exact sign test when every seed differs by the same amount);
  with fewer than two seeds the row is inconclusive;
* sparsity (max / mean, bounded by the h·w cells of a map) is compared across map sizes only at equal cell
  count — the finer map resampled by area onto the coarser grid — and a resolution effect of an attention
  model only against the plain CNN's (GAP) change, the control; at one size on the normalised scale
  (max / mean − 1) / (h·w − 1);
* the importance hierarchy (§4.4) is a claim about one trained model's maps: Wilcoxon signed-rank over that
  model's test images (the seed is named in the row), with a hierarchical bootstrap CI across seeds in the note;
* Fig. 9's cost is a rule on single, deterministic-by-assumption measurements: "ratio > 1 on each backbone".
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from attnbook import stats
from attnbook.chapters.brnpa.config import (
    ABLATIONS,
    DISC,
    KIND_NAMES,
    KINDS,
    NOT_RUN,
    OBJECT,
    PAPER_TABLE1,
    PAPER_TABLE4,
    PAPER_TABLE5,
    PAPER_TABLE6,
    RESOLUTIONS,
    SYNTHETIC,
    BRNPAConfig,
)
from attnbook.chapters.brnpa.evaluation import Evaluation, per_seed, per_seed_on_grid, pooled, subset_hits
from attnbook.chapters.brnpa.pipeline import ImageTask
from attnbook.chapters.brnpa.studies import ResolutionStudy
from attnbook.config import device_for
from attnbook.ledger import record_claim, record_not_run
from attnbook.runs import RunRecorder

# --- summary numbers --------------------------------------------------------------------------------


def resolution_metrics(study: ResolutionStudy) -> dict[str, float]:
    """Accuracy, mean sparsity and mean normalised sparsity of every kind × resolution over all seeds' test
    images, and the high-resolution sparsity on the low-resolution grid (Table 6)."""
    out = {}
    for kind in KINDS:
        grid = study.of(kind, "low")[0].map_size
        value = float(np.nanmean(per_seed_on_grid(study.of(kind, "high"), grid)))
        if math.isfinite(value):
            out[f"sparsity_grid/{kind}_high"] = value
        for resolution in RESOLUTIONS:
            out[f"accuracy/{kind}_{resolution}"] = float(study.pooled(kind, resolution, "hits").float().mean())
            for name, attribute in (("sparsity", "sparsity"), ("sparsity_norm", "sparsity_normalised")):
                value = float(torch.nanmean(study.pooled(kind, resolution, attribute)))
                if math.isfinite(value):  # undefined when every map is zero (a B-CNN with dead ReLUs)
                    out[f"{name}/{kind}_{resolution}"] = value
    return out


def grad_variance_pairs(grad_table: pd.DataFrame, column: str = "variance") -> pd.DataFrame:
    """BR-NPA's and B-CNN's ``column`` side by side per (seed, conv), rows where both are finite (Fig. 8)."""
    wide = grad_table.pivot_table(index=["seed", "layer"], columns="kind", values=column, dropna=False)
    return wide[["brnpa", "bcnn"]].replace([np.inf, -np.inf], np.nan).dropna()


def grad_log_variance_by_seed(grad_table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 8 per seed (the unit of replication): the mean over the last three convs of log variance of
    ‖∂L/∂W‖, BR-NPA and B-CNN side by side (convs where both variances are finite and > 0)."""
    pairs = grad_variance_pairs(grad_table)
    pairs = pairs[(pairs > 0).all(axis=1)]
    return np.log(pairs).groupby(level="seed").mean()


def grad_metrics(grad_table: pd.DataFrame) -> dict[str, float]:
    """Geometric mean over (seed, conv) of B-CNN's gradient-norm variance (and CV) over BR-NPA's (Fig. 8)."""
    out = {}
    for column, name in (("variance", "grad_var_ratio"), ("cv", "grad_cv_ratio")):
        pairs = grad_variance_pairs(grad_table, column)
        if len(pairs):
            out[f"fig8/{name}_bcnn_over_brnpa"] = float(np.exp(np.log(pairs["bcnn"] / pairs["brnpa"]).mean()))
    return out


def ablation_metrics(ablations: Mapping[str, Sequence[Evaluation]]) -> dict[str, float]:
    """Accuracy and repeated-anchor rate of every ablation (Table 4/7, code vs paper); Table 5 subset
    accuracies (mean over seeds)."""
    out = {}
    for name in ABLATIONS:
        out[f"table4/{name}"] = float(pooled(ablations[name], "hits").float().mean())
        out[f"repeats/{name}"] = float(pooled(ablations[name], "repeats").float().mean())
    for subset, hits in subset_hits(ablations["active_refine"]).items():
        out[f"table5/{'_'.join(map(str, subset))}"] = stats.mean_se([float(h.float().mean()) for h in hits])[0]
    return out


def hierarchy_metrics(study: ResolutionStudy) -> dict[str, float]:
    """Share of BR-NPA's (high resolution) map k on the discriminative part and on the object (§4.4)."""
    out: dict[str, float] = {}
    if any(e.mass is None for e in study.evaluations.values()):
        return out
    mass = study.pooled("brnpa", "high", "mass")
    for k in range(mass.shape[1]):
        out[f"hierarchy/disc_mass_map{k + 1}"] = float(torch.nanmean(mass[:, k, 1]))
        out[f"hierarchy/object_mass_map{k + 1}"] = float(torch.nanmean(mass[:, k, 0]))
    return out


def area_metrics(areas: Mapping[str, float]) -> dict[str, float]:
    """The chance levels of the hierarchy: the image share of the discriminative part and of the object
    (empty for a dataset without part masks)."""
    names = {DISC: "hierarchy/disc_area", OBJECT: "hierarchy/object_area"}
    return {name: float(areas[region]) for region, name in names.items() if region in areas}


def efficiency_metrics(ratios: pd.DataFrame) -> dict[str, float]:
    """B-CNN's time and memory over BR-NPA's per backbone (finite values only; Fig. 9). ``ratios`` is
    :func:`attnbook.profiling.cost_ratios` of the measurements."""
    out = {}
    for _, row in ratios[ratios["head"] == "bcnn"].iterrows():
        for column, key in (("time ratio", "time_ratio"), ("memory ratio", "memory_ratio")):
            if math.isfinite(row[column]):
                out[f"efficiency/{key}_bcnn_over_brnpa_{row['backbone']}"] = float(row[column])
    return out


# --- the claims ledger ------------------------------------------------------------------------------

PAPER = "BR-NPA"


def seed_evidence(a: Sequence[float], b: Sequence[float]) -> stats.Evidence:
    """b vs a over seeds (one value per seed, paired by seed): paired t test (when every seed differs by the
    same amount, :func:`attnbook.stats.paired` falls back to the exact sign test, p ≥ 2 / 2ⁿ)."""
    return stats.paired(a, b, unit="seeds")


def _seed_claim(recorder: RunRecorder, *, id: str, claim: str, paper_value: str, a: Sequence[float],
                b: Sequence[float], setting: str, note: str, ours: str | None = None, expect: str = "increase",
                seeds_parameter: str = "n_seeds", digits: int = 3) -> None:
    """A claim about training, tested over seeds: ``a`` and ``b`` hold one value per seed (NaN: undefined for
    that seed, dropped with its pair), in the paper's unit. ``ours`` defaults to 'mean b vs mean a' with
    ``digits`` decimals; ``seeds_parameter`` names the config field that sets these seeds (for the note of a
    row with fewer than two)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if ours is None and keep.any():
        ours = f"{b.mean():.{digits}f} vs {a.mean():.{digits}f}"
    if a.size >= 2:
        record_claim(recorder, id=id, paper=PAPER, claim=claim, paper_value=paper_value, ours=ours, setting=setting,
                     expect=expect, evidence=seed_evidence(a, b), note=note)
        return
    recorder.claim(id=id, paper=PAPER, claim=claim, paper_value=paper_value, ours=ours, setting=setting,
                   status="inconclusive", expect=expect, n=int(a.size), unit="seeds",
                   effect=float(b[0] - a[0]) if a.size else None,
                   note=f"{note}; a claim about training is tested over seeds and {a.size} seed(s) gave a value: "
                        f"a test needs at least 2 (raise {seeds_parameter})")


def run_setting(config: BRNPAConfig, dataset: str, study: ResolutionStudy) -> str:
    """The ledger's *setting* of the resolution study: data, backbone, image and map sizes, seeds, device."""
    low = next(e.map_size for (k, r, _), e in study.evaluations.items() if r == "low")
    high = next(e.map_size for (k, r, _), e in study.evaluations.items() if r == "high")
    source = "ImageNet weights" if config.pretrained else "stage A from scratch"
    analog = "synthetic analog, " if dataset == SYNTHETIC else ""
    seeds = len({s for (_, _, s) in study.evaluations})
    return (f"{analog}{dataset}, {config.arch} ({source}), {config.resolution} px, maps "
            f"{low[0]}×{low[1]} → {high[0]}×{high[1]} (distilled), trained from {config.train_from}, "
            f"{seeds} seed(s), {device_for(config)}, {config.profile} profile")


def paper_numbers() -> dict[str, float]:
    """The paper's numbers the prose sets ours beside (Tables 1, 4, 5, 6), under ``paper/…`` glue names."""
    out = {f"paper/t1/{name}/{kind}": v for name, pair in PAPER_TABLE1.items() for kind, v in zip(("bcnn", "brnpa"),
                                                                                              pair)}
    out.update({f"paper/t4/{name}": v for name, v in PAPER_TABLE4.items()})
    out.update({f"paper/t5/{name}": v for name, v in PAPER_TABLE5.items()})
    for kind, values in PAPER_TABLE6.items():
        for what, pair in values.items():
            out.update({f"paper/t6/{kind}/{what}_{res}": v for res, v in zip(("low", "high"), pair)})
    return out


def ablation_setting(config: BRNPAConfig, dataset: str, ablations: Mapping[str, Sequence[Evaluation]]) -> str:
    """The ledger's *setting* of the ablations (Tables 4/5): high resolution without distillation (§4.3)."""
    evals = ablations["active_refine"]
    h, w = evals[0].map_size
    source = "ImageNet weights" if config.pretrained else "stage A from scratch"
    analog = "synthetic analog, " if dataset == SYNTHETIC else ""
    return (f"{analog}{dataset}, {config.arch} ({source}), {config.resolution} px, maps {h}×{w}, high res. "
            f"without distillation, trained from {config.ablation_start}, {len(evals)} seed(s), "
            f"{device_for(config)}, {config.profile} profile")


def _table1_claims(recorder: RunRecorder, config: BRNPAConfig, studies: Mapping[str, ResolutionStudy],
                   setting: str) -> None:
    """Table 1: the synthetic analog and each of the paper's datasets (run or "not run"); Tables 2, 3 and
    the segmentation supplement are not run."""
    def accuracy(study: ResolutionStudy, kind: str) -> np.ndarray:  # in %, as Table 1
        return 100 * per_seed(study.of(kind, "high"), "hits")

    for name, study in studies.items():
        if name not in PAPER_TABLE1:
            _seed_claim(recorder, id="brnpa-t1-analog", claim=f"Table 1 analog: BR-NPA is more accurate than B-CNN "
                        f"({config.arch}, both high resolution, distilled)", paper_value="85.5 vs 84.6 (CUB)",
                        a=accuracy(study, "bcnn"), b=accuracy(study, "brnpa"), setting=run_setting(config, name, study),
                        note="test accuracy (%) BR-NPA vs B-CNN per seed", digits=1)
    for name, (bcnn, brnpa) in PAPER_TABLE1.items():
        claim = f"Table 1 ({name}): BR-NPA {brnpa} vs B-CNN {bcnn} accuracy"
        if name in studies:
            _seed_claim(recorder, id=f"brnpa-t1-{name}", claim=claim, paper_value=f"{brnpa} vs {bcnn}",
                        a=accuracy(studies[name], "bcnn"), b=accuracy(studies[name], "brnpa"),
                        setting=run_setting(config, name, studies[name]),
                        note="test accuracy (%) BR-NPA vs B-CNN per seed", digits=1)
        else:
            record_not_run(recorder, id=f"brnpa-t1-{name}", paper=PAPER, claim=claim, paper_value=f"{brnpa} vs {bcnn}",
                           why=f"needs the {name} dataset under data/ and a GPU: run the paper profile",
                           setting=setting)
    for id, (claim, value, reason) in NOT_RUN.items():
        record_not_run(recorder, id=id, paper=PAPER, claim=claim, paper_value=value, why=reason, setting=setting)


def _ablation_claims(recorder: RunRecorder, ablations: Mapping[str, Sequence[Evaluation]], setting: str) -> None:
    """Table 4/7 (active selection, refinement) and Table 5 (accuracy falls with the rank), over the ablation
    seeds (same seed = same data order and initial head for every variant: paired)."""
    acc = {name: per_seed(evals, "hits") for name, evals in ablations.items()}
    _seed_claim(recorder, id="brnpa-t4-active", claim="Table 4/7: active selection beats random selection (with "
                "refinement)", paper_value=f"{PAPER_TABLE4['active_refine']} vs {PAPER_TABLE4['random_refine']}",
                a=acc["random_refine"], b=acc["active_refine"],
                setting=setting, note="test accuracy active vs random per seed",
                seeds_parameter="ablation_seeds")
    _seed_claim(recorder, id="brnpa-t4-refine", claim="Table 4/7: refinement beats raw active vectors",
                paper_value=f"{PAPER_TABLE4['active_refine']} vs {PAPER_TABLE4['active_norefine']}",
                a=acc["active_norefine"], b=acc["active_refine"], setting=setting,
                note="test accuracy refine vs none per seed", seeds_parameter="ablation_seeds")
    subset = {s: 100 * np.array([float(h.float().mean()) for h in hits])  # in %, as Table 5
              for s, hits in subset_hits(ablations["active_refine"]).items()}
    for id, better, worse in (("brnpa-t5-rank12", (1,), (2,)), ("brnpa-t5-rank23", (2,), (3,)),
                              ("brnpa-t5-pairs", (1, 2), (2, 3))):
        value = " vs ".join(str(PAPER_TABLE5["_".join(map(str, s))]) for s in (better, worse))
        _seed_claim(recorder, id=id, claim=f"Table 5: vectors {set(better)} classify better than {set(worse)} "
                    "(accuracy falls with the rank)", paper_value=value, a=subset[worse], b=subset[better],
                    setting=setting, note="test accuracy (%) of the detached subset classifiers per seed",
                    seeds_parameter="ablation_seeds", digits=1)


def _sparsity_claims(recorder: RunRecorder, study: ResolutionStudy, setting: str) -> None:
    """Table 6 / Fig. 4 sparsity. Across resolutions at equal cell count — the high-resolution map resampled by
    area onto the low-resolution grid, so that both sides have the same bound h·w — and, for the attention
    models, against the plain CNN's (GAP) change, the control; at one resolution on the normalised scale."""
    grids = {k: study.of(k, "low")[0].map_size for k in KINDS}
    equal = {(k, r): per_seed_on_grid(study.of(k, r), grids[k]) for k in KINDS for r in RESOLUTIONS}
    raw = {(k, r): per_seed(study.of(k, r), "sparsity") for k in KINDS for r in RESOLUTIONS}
    norm = {k: per_seed(study.of(k, "high"), "sparsity_normalised") for k in KINDS}
    fine, coarse = study.of("brnpa", "high")[0].map_size, grids["brnpa"]
    at_equal_cells = (f"compared at equal cell count (the {fine[0]}×{fine[1]} map resampled by area onto the "
                      f"{coarse[0]}×{coarse[1]} grid)")

    def change(kind: str) -> np.ndarray:
        return equal[kind, "high"] - equal[kind, "low"]

    def shown(kind: str, values: Mapping[tuple[str, str], np.ndarray]) -> str:
        low, high = (float(np.nanmean(values[kind, r])) if np.isfinite(values[kind, r]).any() else math.nan
                     for r in RESOLUTIONS)
        return f"{KIND_NAMES[kind]} {low:.2f} → {high:.2f}"

    for kind in ("bcnn", "brnpa"):
        value = "{} → {} (max/mean, 14×14 → 56×56)".format(*PAPER_TABLE6[kind]["sparsity"])
        _seed_claim(recorder, id=f"brnpa-t6-sparsity-{kind}", claim=f"Table 6: distilled high resolution makes "
                    f"{KIND_NAMES[kind]}'s norm-weighted attention sparser, {at_equal_cells}, by more than it "
                    "changes the plain CNN's (GAP)", paper_value=value, a=change("gap"), b=change(kind),
                    ours=f"equal cells {shown(kind, equal)} vs {shown('gap', equal)}; max/mean on own grid "
                         f"{shown(kind, raw)} vs {shown('gap', raw)}",
                    setting=setting, note="per seed: change high − low of max/mean at equal cell count, "
                    f"{KIND_NAMES[kind]}'s minus the CNN's (difference in differences); max/mean on each model's own "
                    "grid is not compared across sizes: it is bounded by the number of cells h·w")
    _seed_claim(recorder, id="brnpa-fig4-cnn-sparsity", claim="Fig. 4: distilled high resolution makes the plain "
                f"CNN's (GAP) activation map (the feature norms) sparser, {at_equal_cells}",
                paper_value="qualitative (Fig. 4)", a=equal["gap", "low"], b=equal["gap", "high"],
                ours=f"equal cells {shown('gap', equal)}; max/mean on own grid {shown('gap', raw)}", setting=setting,
                note="per seed: max/mean of the CNN's norm map at equal cell count, high vs low resolution")
    _seed_claim(recorder, id="brnpa-t6-sparsity-vs-cnn", claim="Table 6 / §4.3: at high resolution (distilled) "
                "BR-NPA's norm-weighted maps are sparser than the plain CNN's (GAP: the feature norms alone)",
                paper_value=f"BR-NPA {PAPER_TABLE6['brnpa']['sparsity'][1]} (the CNN's not reported)",
                a=norm["gap"], b=norm["brnpa"],
                ours=f"normalised BR-NPA {np.nanmean(norm['brnpa']):.3f} vs CNN (GAP) {np.nanmean(norm['gap']):.3f}",
                setting=setting, note="per seed: normalised sparsity (max/mean − 1) / (h·w − 1) at high resolution, "
                "BR-NPA vs CNN (same map size)")


def _resolution_claims(recorder: RunRecorder, config: BRNPAConfig, study: ResolutionStudy, setting: str) -> None:
    """Table 6 (sparsity and accuracy of distilled high resolution) and §4.4 / Fig. 5 (map 1 first)."""
    _sparsity_claims(recorder, study, setting)
    def accuracy(kind: str, resolution: str) -> np.ndarray:  # in %, as Table 6
        return 100 * per_seed(study.of(kind, resolution), "hits")

    for kind in ("bcnn", "brnpa"):
        value = "{1} vs {0}".format(*PAPER_TABLE6[kind]["accuracy"])
        _seed_claim(recorder, id=f"brnpa-t6-accuracy-{kind}", claim=f"Table 6: the distilled high-resolution "
                    f"{KIND_NAMES[kind]} is more accurate than its low-resolution teacher", paper_value=value,
                    a=accuracy(kind, "low"), b=accuracy(kind, "high"), setting=setting,
                    note="test accuracy (%) high vs low per seed", digits=1)
    _seed_claim(recorder, id="brnpa-t6-cnn", claim="Table 6: BR-NPA (high res., distilled) is more accurate than "
                "the plain CNN (GAP, low res.)",
                paper_value=f"{PAPER_TABLE6['brnpa']['accuracy'][1]} vs {PAPER_TABLE6['gap']['accuracy'][0]}",
                a=accuracy("gap", "low"),
                b=accuracy("brnpa", "high"), setting=setting, note="test accuracy (%) per seed", digits=1)
    if hierarchy_metrics(study):
        _hierarchy_claims(recorder, config, study, setting)


def _hierarchy_claims(recorder: RunRecorder, config: BRNPAConfig, study: ResolutionStudy, setting: str) -> None:
    """§4.4 / Fig. 5, a claim about one trained model's ranked maps: in the first seed's BR-NPA (high res.),
    map 1 vs map k on that model's test images (Wilcoxon signed-rank, Hodges–Lehmann effect); the note adds
    the mean difference over all seeds with a hierarchical bootstrap CI (seeds, then images, resampled)."""
    def disc(e: Evaluation, k: int) -> np.ndarray:  # share of map k on the discriminative part, per image
        return e.mass[:, k - 1, 1].numpy().astype(float)

    evals = study.of("brnpa", "high")
    first = study.evaluations["brnpa", "high", config.seed]
    for other in (2, 3):
        a, b = disc(first, other), disc(first, 1)
        keep = np.isfinite(a) & np.isfinite(b)
        diffs = [d[np.isfinite(d)] for d in (disc(e, 1) - disc(e, other) for e in evals)]
        low, high = (stats.hierarchical_bootstrap_ci(diffs, seed=config.seed) if all(d.size for d in diffs)
                     else (math.nan, math.nan))
        across = (f"over all {len(evals)} seed(s): mean difference {np.mean(np.concatenate(diffs)):+.3g}, 95 % "
                  f"hierarchical bootstrap CI [{low:+.3g}, {high:+.3g}] (seeds, then images, resampled)")
        claim = (f"§4.4 / Fig. 5: in one trained BR-NPA (seed {config.seed}, high res., distilled) map 1 puts a larger "
                 f"share of its norm-weighted mass on the discriminative part than map {other} (ranked importance)")
        note = (f"share of map k × ‖f‖ on the discriminative part, map 1 vs map {other}, paired by test image of the "
                f"seed-{config.seed} model (images are the unit within one model); {across}")
        if keep.sum() < 2:
            recorder.claim(id=f"brnpa-hierarchy-1v{other}", paper=PAPER, claim=claim,
                           paper_value="qualitative (Fig. 5)", ours=None, setting=setting, status="inconclusive",
                           expect="increase", n=int(keep.sum()),
                           unit="test images", note=f"{note}; defined on fewer than 2 images")
            continue
        record_claim(recorder, id=f"brnpa-hierarchy-1v{other}", paper=PAPER, claim=claim,
                     paper_value="qualitative (Fig. 5)", ours=f"{b[keep].mean():.3f} vs {a[keep].mean():.3f}",
                     setting=setting, expect="increase", note=note,
                     evidence=stats.paired(a[keep], b[keep], method="wilcoxon",
                                           unit=f"test images (seed {config.seed})"))


def ratio_rule(ratios: Mapping[str, float]) -> stats.Evidence | None:
    """Fig. 9's decision rule on cost ratios (B-CNN over BR-NPA) per backbone, each a single measurement taken
    as exact (no sampling model): the claim holds if the ratio is > 1 on every backbone measured and fails if
    < 1 on every one (p = 0 then, as for data without variance); otherwise p = 1. Effect = the smallest ratio
    − 1 (the weakest backbone); no CI. None without a finite ratio."""
    finite = {k: float(v) for k, v in ratios.items() if math.isfinite(v)}
    if not finite:
        return None
    r = np.array(list(finite.values()))
    decided = bool((r > 1).all() or (r < 1).all())
    return stats.Evidence(test=f"measured ratio > 1 on each of {', '.join(finite)}", design="one-sample",
                          n=len(r), effect=float(r.min() - 1), effect_kind="smallest ratio − 1",
                          ci=(math.nan, math.nan), p_value=0.0 if decided else 1.0, unit="backbones")


def _cost_claims(recorder: RunRecorder, config: BRNPAConfig, grad_table: pd.DataFrame, ratios: pd.DataFrame,
                 setting: str) -> None:
    """Fig. 8 (gradient-norm variance, over seeds) and Fig. 9 / App. B.4 (time and memory, a rule)."""
    by_seed = grad_log_variance_by_seed(grad_table)
    claim = "Fig. 8: smaller gradient-norm variance of the last three convs with BR-NPA than with B-CNN (low res.)"
    ratio = float(np.exp((by_seed["bcnn"] - by_seed["brnpa"]).mean())) if len(by_seed) else math.nan
    _seed_claim(recorder, id="brnpa-fig8", claim=claim, paper_value="qualitative (Fig. 8)", a=by_seed["brnpa"],
                b=by_seed["bcnn"], ours=f"B-CNN/BR-NPA variance × {ratio:.3g} (geometric mean over seeds)",
                setting=setting + ", low resolution", note="per seed: mean over the last three convs of log variance "
                "of ‖∂L/∂W‖ over training steps, B-CNN vs BR-NPA")
    bcnn = ratios[ratios["head"] == "bcnn"]
    archs = ", ".join(bcnn["backbone"]) or "no backbone"
    features = ", ".join(f"{a} {f}" for a, f in zip(bcnn["backbone"], bcnn["features"]))
    threads = " (CPU time of one thread)" if device_for(config) == "cpu" else ""
    where = (f"{archs}, {config.efficiency_size} px, batch {config.efficiency_batch}, features {features}, "
             f"{device_for(config)}{threads}, random data, {config.profile} profile")
    single = (f"single measurements: median of {config.efficiency_steps} timed step(s) after "
              f"{config.efficiency_warmup} warm-up step(s); memory one peak per "
              f"{'fresh process' if config.efficiency_isolated else 'process (peaks may mix)'}; no sampling error "
              "estimated")
    for key, column, what in (("time", "time ratio", "a BR-NPA training step is faster than B-CNN's"),
                              ("memory", "memory ratio", "a BR-NPA training step needs less extra peak memory than "
                                                         "B-CNN's")):
        values = dict(zip(bcnn["backbone"], bcnn[column]))
        claim = (f"Fig. 9 / B.4: {what} on {archs} at {config.efficiency_size} px, batch {config.efficiency_batch}, "
                 f"on {device_for(config)}")
        evidence = ratio_rule(values)
        ours = ", ".join(f"{a} {v:.2f}" for a, v in values.items())
        note = f"B-CNN/BR-NPA {column} per backbone (> 1: BR-NPA cheaper); {single}"
        if evidence is not None and evidence.p_value >= 0.05:  # mixed: the rule decides nothing
            recorder.claim(id=f"brnpa-fig9-{key}", paper=PAPER, claim=claim, paper_value="448 px, batch 10: faster, "
                           "larger batches", ours=ours, setting=where, status="inconclusive", expect="increase",
                           test=evidence.test, n=evidence.n, unit=evidence.unit, effect=evidence.effect,
                           note=f"{note}; the ratio is > 1 on some backbones and ≤ 1 on others")
            continue
        if evidence is None:
            record_not_run(recorder, id=f"brnpa-fig9-{key}", paper=PAPER, claim=claim, paper_value="448 px, batch "
                           "10: faster, larger batches", why=f"no finite {column}: {note}", setting=where)
            continue
        record_claim(recorder, id=f"brnpa-fig9-{key}", paper=PAPER, claim=claim,
                     paper_value="448 px, batch 10: faster, larger batches", ours=ours, setting=where,
                     expect="increase", evidence=evidence,
                     note=f"{note}; a rule, not a statistical test: p = 0 stands for 'on the same side of 1 on every "
                          "backbone'")


def record_claims(recorder: RunRecorder, config: BRNPAConfig, task: ImageTask,
                  studies: Mapping[str, ResolutionStudy], ablations: Mapping[str, Sequence[Evaluation]],
                  grad_table: pd.DataFrame, ratios: pd.DataFrame) -> None:
    """One ledger row per BR-NPA claim of papers.md §5 (and §4.4 / Fig. 4), statuses computed by the rules of
    :mod:`attnbook.ledger` (see this module's docstring)."""
    study = studies[task.name]
    setting = run_setting(config, task.name, study)
    _table1_claims(recorder, config, studies, setting)
    _ablation_claims(recorder, ablations, ablation_setting(config, task.name, ablations))
    _resolution_claims(recorder, config, study, setting)
    _cost_claims(recorder, config, grad_table, ratios, setting)

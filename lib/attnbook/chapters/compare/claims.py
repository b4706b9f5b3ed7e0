"""Chapter 6's tables, ranking and ledger: method × metric with CIs over seeds, a ranking by FunnyBirds' mean
score with paired t tests over seeds against the leader, and each paper's comparative claim about other methods
checked on this table (analogs on the testbed, decided by the ledger's rules).

Chapter: ``nbs/06_compare.ipynb``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from attnbook import stats
from attnbook.chapters.compare.config import FUNNYBIRDS_REFERENCE, NOT_RUN, PAPER, CompareConfig
from attnbook.chapters.compare.evaluation import FUNNYBIRDS, LOCALISATION, MethodResult
from attnbook.ledger import record_claim, record_not_run
from attnbook.runs import RunRecorder

Results = dict[int, dict[str, MethodResult]]  # seed -> method -> result
TABLE_METRICS = ("accuracy",) + LOCALISATION + FUNNYBIRDS + ("landmark", "images_per_second")
SANITY = ("sanity_top", "sanity_full", "label_spearman", "label_ssim")
DIGITS = {"images_per_second": 0, "landmark": 1, "far": 2}  # decimals of a metric's cells (default 3)
HEADERS = {  # short column headers of the page tables
    "pointing_object": "pointing (object)", "pointing_disc": "pointing (disc)", "mass_object": "mass (object)",
    "mass_disc": "mass (disc)", "rank_object": "rank (object)", "landmark": "landmark %", "twin_spearman": "twin ρ",
    "twin_ssim": "twin SSIM", "mean_xai": "mean score", "important_parts": "parts marked", "sanity_top": "top ρ",
    "sanity_full": "all layers ρ", "label_spearman": "labels ρ", "label_ssim": "labels SSIM",
    "images_per_second": "images/s"}
# The method × metric table in page-width pieces (methods as rows, at most 5 metrics each).
TABLE_GROUPS = {
    "localisation on truth": ("accuracy", "pointing_object", "pointing_disc", "mass_object", "mass_disc"),
    "localisation (cont.) and landmarks": ("rank_object", "far", "landmark", "twin_spearman", "twin_ssim"),
    "FunnyBirds: completeness": ("csdc", "pc", "dc", "d", "completeness"),
    "FunnyBirds: the other dimensions": ("bi", "sd", "ts", "mean_xai", "important_parts"),
    "sanity checks and cost": SANITY + ("images_per_second",),
}


def per_seed(results: Results) -> pd.DataFrame:
    """One row per seed × method: the engine's summary on the bias-aligned split, localisation on the
    bias-conflicting twins (``…_conflicting``), twin similarity and the randomisation check."""
    rows = []
    for seed, by_method in results.items():
        for method, r in by_method.items():
            aligned, conflicting = r.summary["test_aligned"], r.summary["test_conflicting"]
            row = {"seed": seed, "method": method, "family": r.family}
            row.update({k: aligned.get(k, math.nan) for k in TABLE_METRICS})
            row.update({f"{k}_conflicting": conflicting.get(k, math.nan) for k in ("accuracy",) + LOCALISATION})
            row.update({f"twin_{k}": r.twin_similarity.get(k, math.nan) for k in ("spearman", "ssim")})
            row.update({k: r.sanity.get(k, math.nan) for k in SANITY})
            rows.append(row)
    return pd.DataFrame(rows)


def _ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and Student t 95 % CI over seeds (NaN-skipping; a single seed has no CI)."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan, math.nan
    from scipy import stats as sps

    half = float(sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def main_table(table: pd.DataFrame, metrics: tuple[str, ...] = TABLE_METRICS, drop_empty: bool = False,
               digits: int = 3) -> pd.DataFrame:
    """Method × metric: ``mean ± half-width`` of the Student t 95 % CI over seeds (strings; the CI is symmetric,
    so this is ``[mean − h, mean + h]``), methods in the table's order; ``drop_empty``: leave out methods with no
    value in ``metrics``; plus one row per method not run (:data:`~.config.NOT_RUN`) with the reason."""
    out = {}
    for method, group in table.groupby("method", sort=False):
        cells = {}
        for m in metrics:
            mean, low, high = _ci(group[m].to_numpy(dtype=float)) if m in group else (math.nan,) * 3
            d = DIGITS.get(m, digits)
            cells[m] = "—" if not np.isfinite(mean) else f"{mean:.{d}f}" if not np.isfinite(low) else \
                f"{mean:.{d}f} ± {(high - low) / 2:.{d}f}"
        if not drop_empty or any(v != "—" for v in cells.values()):
            out[method] = cells
    frame = pd.DataFrame(out).T
    for method, why in NOT_RUN.items():
        frame.loc[method] = ["not run yet: " + why] + ["—"] * (len(metrics) - 1)
    return frame


def main_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """:func:`main_table` in the page-width pieces of :data:`TABLE_GROUPS` (methods without a value in a piece
    left out of it), columns under the short headers of :data:`HEADERS`."""
    return {title: main_table(table, metrics, drop_empty=True).rename(columns=HEADERS)
            for title, metrics in TABLE_GROUPS.items()}


def reference_table(table: pd.DataFrame) -> pd.DataFrame:
    """FunnyBirds' published ResNet-50 + Input×Gradient row beside our seed means (same quantities)."""
    means = table.groupby("method", sort=False)[list(FUNNYBIRDS_REFERENCE)].mean()
    reference = pd.DataFrame([FUNNYBIRDS_REFERENCE], index=["FunnyBirds: ResNet-50 + Input×Gradient (published)"])
    return pd.concat([reference, means])


def ranking(table: pd.DataFrame, metric: str = "mean_xai") -> pd.DataFrame:
    """Methods by their seed mean of ``metric`` (default FunnyBirds' mean of completeness, correctness and
    contrastivity; methods without it left out); each compared with the leader, paired t over seeds."""
    means = table.groupby("method")[metric].mean().dropna().sort_values(ascending=False)
    leader = means.index[0]
    lead = table[table.method == leader].sort_values("seed")[metric].to_numpy(dtype=float)
    rows = []
    for rank, (method, mean) in enumerate(means.items(), 1):
        values = table[table.method == method].sort_values("seed")[metric].to_numpy(dtype=float)
        row = {"rank": rank, "method": method, metric: mean}
        if method != leader and len(values) >= 2 and np.isfinite(values).all() and np.isfinite(lead).all():
            ev = stats.paired(lead, values, unit="seeds")
            row.update(vs_leader=ev.effect, ci_low=ev.ci[0], ci_high=ev.ci[1], p=ev.p_value)
        rows.append(row)
    return pd.DataFrame(rows).set_index("rank")


def conflicting_shift(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: mass on the object and pointing on the bias-aligned images vs their bias-conflicting twins,
    and how similar each method's map is across the twins (Spearman, SSIM)."""
    cols = ["mass_object", "mass_object_conflicting", "pointing_object", "pointing_object_conflicting",
            "twin_spearman", "twin_ssim"]
    frame = table.groupby("method", sort=False)[cols].mean().dropna(how="all")
    frame.insert(2, "mass_object_change", frame["mass_object_conflicting"] - frame["mass_object"])
    frame.columns = pd.MultiIndex.from_tuples([  # two header rows: the table reads at page width
        ("mass on object", "aligned"), ("mass on object", "conflicting"), ("mass on object", "change"),
        ("pointing game", "aligned"), ("pointing game", "conflicting"), ("twin similarity", "Spearman"),
        ("twin similarity", "SSIM")])
    return frame


def record_numbers(recorder: RunRecorder, table: pd.DataFrame) -> None:
    """Glue the seed means the prose quotes (``<metric>/<method>``) and the published reference row."""
    recorder.table("per_seed", table)
    means = table.groupby("method").mean(numeric_only=True)
    recorder.number("accuracy/gap/test_aligned", means.loc["gradcam", "accuracy"])
    recorder.number("accuracy/gap/test_conflicting", means.loc["gradcam", "accuracy_conflicting"])
    for method in means.index:
        for metric in ("mass_object", "pointing_object", "completeness", "completeness_empty", "important_parts",
                       "sd", "ts", "ts_valid", "mean_xai", "sanity_full", "label_spearman", "twin_spearman",
                       "landmark", "images_per_second"):
            value = means.loc[method, metric]
            if np.isfinite(value):
                recorder.number(f"{metric}/{method}", value)
    recorder.numbers({k: v for k, v in FUNNYBIRDS_REFERENCE.items()}, prefix="funnybirds/")
    for metric, label in (("ts", "TS"), ("mean_xai", "mean score"), ("landmark", "landmark error"),
                          ("label_spearman", "Spearman after label randomisation")):
        recorder.text(f"list/{metric}", ", ".join(f"{m} {v:.3f}" for m, v in means[metric].dropna()
                                                   .sort_values(ascending=metric == "landmark").items()) or
                      f"no finite {label} in this run")
    recorder.number("run/n_seeds", table.seed.nunique())


def _seed_values(table: pd.DataFrame, method: str, metric: str) -> np.ndarray:
    return table[table.method == method].sort_values("seed")[metric].to_numpy(dtype=float)


def _pair(table: pd.DataFrame, a: str, b: str, metric: str) -> tuple[stats.Evidence | None, str]:
    """Paired t over seeds of ``b`` − ``a`` on ``metric`` (None if either is missing or not finite)."""
    if not {a, b} <= set(table.method):
        return None, "—"
    x, y = _seed_values(table, a, metric), _seed_values(table, b, metric)
    if len(x) < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None, f"{np.nanmean(x):.3f} → {np.nanmean(y):.3f}"
    return stats.paired(x, y, unit="seeds"), f"{x.mean():.3f} → {y.mean():.3f}"


def record_claims(recorder: RunRecorder, table: pd.DataFrame, config: CompareConfig) -> None:
    """Each paper's comparative claim about other methods, on this table (paired t over seeds)."""
    setting = (f"synthetic fine_grained analog, {config.num_classes} classes, {config.resolution} px, "
               f"p_bias={config.p_bias}; small CNN (width {config.width}); heads on its frozen trunk; "
               f"{table.seed.nunique()} seeds × {config.n_explain} images")
    rows = [  # id, paper, claim, paper value, a, b, metric, expect, note
        ("compare-bla-t-over-gradcam", "BLA", "BLA-T's explanations beat (Grad-)CAM's (user study) — analog: "
         "FunnyBirds' completeness", PAPER["bla_user_study"], "gradcam", "bla_t", "completeness", "increase",
         "effect = BLA-T − Grad-CAM on the plain CNN; a user study is not a metric, the analog is ours"),
        ("compare-bla-t-over-gradcam-mass", "BLA", "BLA-T's maps sit more on the object than Grad-CAM's",
         PAPER["bla_user_study"], "gradcam", "bla_t", "mass_object", "increase", "effect = BLA-T − Grad-CAM"),
        ("compare-bla-t-over-l2x", "BLA", "BLA-T's explanations beat L2X-F's — analog: FunnyBirds' completeness",
         PAPER["bla_user_study"], "l2x_f", "bla_t", "completeness", "increase", "effect = BLA-T − L2X-F"),
        ("compare-rg-table6-guided", "Region Grouping", "Table 6: Guided Grad-CAM points at the object more often "
         "than Grad-CAM", PAPER["rg_table6"], "gradcam", "guided_gradcam", "pointing_object", "increase",
         "pointing game on the object mask (the paper: error on CUB parts); effect = Guided Grad-CAM − Grad-CAM"),
        ("compare-rg-table6-ours", "Region Grouping", "Table 6: Region Grouping's attribution points at the object "
         "more often than Guided Grad-CAM", PAPER["rg_table6"], "guided_gradcam", "region_grouping",
         "pointing_object", "increase", "pointing game on the object mask; effect = Region Grouping − Guided Grad-CAM"),
        ("compare-brnpa-table1", "BR-NPA", "Table 1: BR-NPA is more accurate than B-CNN", PAPER["brnpa_table1"],
         "bcnn", "brnpa", "accuracy", "increase", "bias-aligned test accuracy; effect = BR-NPA − B-CNN"),
        ("compare-rg-landmark-over-activation", "Region Grouping", "Tables 2/4: Region Grouping's parts localise "
         "landmarks better than the backbone's own feature channels (landmark error from the part centroids)",
         PAPER["rg_table2"], "activation", "region_grouping", "landmark", "decrease",
         "effect = Region Grouping − the plain CNN's top-5 activation channels (% of the box; lower is better)"),
        ("compare-eat-far-over-gradcam", "EAT", "EAT's class map (Grad-CAM through the attribute heads) puts "
         "more mass on the object than the plain CNN's Grad-CAM", "FAR base → EAT 3.44 → 5.39 (ResNet18, CUB)",
         "gradcam", "eat", "mass_object", "increase", "effect = EAT − plain CNN Grad-CAM, same frozen trunk"),
    ]
    for rid, paper, claim, value, a, b, metric, expect, note in rows:
        evidence, ours = _pair(table, a, b, metric)
        if evidence is None and not {a, b} <= set(table.method):
            record_not_run(recorder, id=rid, paper=paper, claim=claim, paper_value=value,
                           why=f"{a} or {b} not scored by this profile", setting=setting)
            continue
        record_claim(recorder, id=rid, paper=paper, claim=claim, paper_value=value, ours=ours, setting=setting,
                     expect=expect, evidence=evidence, note=note)
    record_not_run(recorder, id="compare-brnpa-sparser-than-bcnn", paper="BR-NPA",
                   claim="Table 6: BR-NPA's attention is sparser than B-CNN's at high resolution (56×56)",
                   paper_value=PAPER["brnpa_table6"], setting=setting,
                   why="this chapter's trunk gives 6×6 maps (no high-resolution distilled models); sparsity "
                       "(max/mean of the norm-weighted mean map) is not computed by the engine yet")
    evidence, ours = _pair(table, "gradcam", "sharpen_focus", "ts")
    if evidence is None and not {"gradcam", "sharpen_focus"} <= set(table.method):
        record_not_run(recorder, id="compare-sf-over-gradcam", paper="Sharpen Focus",
                       claim="Sharpen Focus's attention separates the classes better than Grad-CAM",
                       paper_value="Table 1: + Grad-CAM attention 74.02 → + A_px 76.24 (CIFAR-100)",
                       why="sharpen_focus or gradcam not scored by this profile", setting=setting)
    else:
        record_claim(recorder, id="compare-sf-over-gradcam", paper="Sharpen Focus",
                     claim="Sharpen Focus's attention (A_ch) separates the classes better than Grad-CAM — analog: "
                           "FunnyBirds' target sensitivity on hybrid birds",
                     paper_value="Table 1: + Grad-CAM attention 74.02 → + A_px 76.24 (CIFAR-100)", ours=ours,
                     setting=setting, expect="increase", evidence=evidence,
                     note="effect = Sharpen Focus head − plain CNN Grad-CAM; the head is trained with cross-entropy "
                          "on the frozen shared trunk (its attention losses need the inner layer and the trunk's "
                          "gradient), so this tests its attention, not its training")

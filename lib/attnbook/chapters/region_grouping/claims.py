"""Chapter 3's numbers and claims ledger: every Region Grouping number of papers.md (Tables 1–7; their data sets
are not run here, each row says why) and the testbed analogs, decided by the ledger's rules over training seeds.

Chapter: ``nbs/03_region_grouping.ipynb``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attnbook import stats
from attnbook.chapters.region_grouping.config import (
    ACCURACY_MARGIN,
    BASELINES,
    LANDMARK_MARGIN,
    PAPER_NUMBERS,
    PAPER_VALUES,
    POSTHOC,
    RegionGroupingConfig,
)
from attnbook.chapters.region_grouping.evaluation import Evaluation
from attnbook.ledger import record_claim, record_not_run
from attnbook.runs import RunRecorder

PAPER = "Region Grouping"
Evals = dict[str, dict[int, Evaluation]]  # kind -> seed -> evaluation


def per_seed(evals: Evals) -> pd.DataFrame:
    """One row per training seed: accuracy (``acc_``, ``accc_`` bias-conflicting) per model; landmark error
    (``lm_``), pointing error on object masks (``pe_``; real data: boxes), boxes (``pb_``) and the discriminative
    part (``pd_``), part matching (``match_``) per method; a random peak's pointing error per target (``chance_``).
    Ablations trained on fewer seeds leave their columns empty (NaN) on the other seeds."""
    rows: dict[int, dict] = {}
    for kind, by_seed in evals.items():
        for seed, ev in by_seed.items():
            row = rows.setdefault(seed, {"seed": seed})
            row[f"acc_{kind}"] = ev.accuracy["test_aligned"]
            if "test_conflicting" in ev.accuracy:
                row[f"accc_{kind}"] = ev.accuracy["test_conflicting"]
            for prefix, values in (("lm", ev.landmark), ("pe", ev.pointing), ("pb", ev.pointing_box),
                                   ("pd", ev.pointing_part), ("match", ev.matching), ("chance", ev.chance)):
                row.update({f"{prefix}_{name}": v for name, v in values.items()})
    return pd.DataFrame(list(rows.values())).sort_values("seed").reset_index(drop=True)


def record_numbers(recorder: RunRecorder, table: pd.DataFrame) -> None:
    """Glue the seed means the prose quotes, and the paper's numbers it sets them against."""
    recorder.table("per_seed", table)
    means = table.mean(numeric_only=True)
    for column, value in means.items():
        prefix, _, name = str(column).partition("_")
        key = {"acc": "accuracy", "accc": "accuracy_conflicting", "lm": "landmark", "pe": "pointing_error",
               "pb": "pointing_error_box", "pd": "pointing_error_part", "match": "overlap",
               "chance": "pointing_chance"}.get(prefix)
        if key == "overlap":
            recorder.number(f"overlap/{name}/matching", value)
        elif key:
            recorder.number(f"{key}/{name}", value)
    recorder.numbers(PAPER_VALUES, prefix="paper/")
    recorder.numbers({"accuracy": ACCURACY_MARGIN, "landmark": LANDMARK_MARGIN}, prefix="margin/")
    recorder.number("run/n_seeds", len(table))
    ablated = [c for c in table.columns if c.startswith("acc_") and table[c].notna().sum() < len(table)]
    recorder.number("run/ablation_seeds", int(table[ablated[0]].notna().sum()) if ablated else len(table))


def _setting(config: RegionGroupingConfig, n: int) -> str:
    return (f"synthetic fine_grained analog, {config.num_classes} classes, {config.resolution} px, small CNN from "
            f"scratch (width {config.width}), grouping on layer3, K={config.num_parts}, Beta({config.alpha:g}, "
            f"{config.beta:g}), L_W weight {config.prior_weight:g}, {config.epochs} epochs, {n} training seeds, "
            f"{config.profile} profile")


def _paired(recorder: RunRecorder, table: pd.DataFrame, *, id: str, claim: str, paper_value: str, a: str, b: str,
            expect: str, setting: str, note: str, margin: float | None = None, digits: int = 2) -> None:
    """A row comparing column ``b`` with column ``a`` over seeds (paired t; effect = b − a); skipped columns
    (a model this run did not train) give a "not run" row."""
    if a not in table or b not in table:
        record_not_run(recorder, id=id, paper=PAPER, claim=claim, paper_value=paper_value,
                       why=f"this run did not train the model behind {a if a not in table else b} (parameter models)",
                       setting=setting)
        return
    keep = table[[a, b]].dropna()
    x, y = keep[a].to_numpy(float), keep[b].to_numpy(float)
    record_claim(recorder, id=id, paper=PAPER, claim=claim, paper_value=paper_value,
                 ours=f"{y.mean():.{digits}f} vs {x.mean():.{digits}f}", setting=setting, expect=expect,
                 evidence=stats.paired(x, y, margin=margin, unit="seeds"), note=note)


def record_claims(recorder: RunRecorder, table: pd.DataFrame, config: RegionGroupingConfig,
                  data: object = None) -> None:
    """Every Region Grouping number of papers.md — measured on the run's real data set (paper profile; ``data``
    its :class:`~attnbook.chapters.region_grouping.real.RealTask`, whose ``missing`` parts become "not run"), else
    not run with the reason — and, on the testbed, the analog rows, paired over training seeds."""
    if config.dataset != "synthetic":
        record_real(recorder, table, config, getattr(data, "missing", None))
        return
    for id, (claim, value, dataset) in PAPER_NUMBERS.items():
        record_not_run(recorder, id=id, paper=PAPER, claim=claim, paper_value=value,
                       why=f"needs {dataset} under data/raw and a GPU: the paper profile "
                           f"(attnbook run nbs/03_region_grouping.ipynb --profile paper -p dataset={dataset}); "
                           "this run is the testbed analog (below)")
    setting = _setting(config, len(table))
    lm = "landmark error (% of the box), CUB protocol on the testbed's 5 landmarks, fitted on training images"
    for base, label, value in (("kmeans", "K-means of the plain backbone's layer3 features (DFF-style)",
                                "8.4 vs 31.3 (DFF, CelebA)"),
                               ("activation", "the plain backbone's K most active layer3 channels",
                                "no such row in the paper"),
                               ("uniform", "no parts at all (the regression from the image centre: a floor)",
                                "no such row in the paper")):
        _paired(recorder, table, id=f"rg-t2-analog-{base}", claim=f"Tables 2/4 analog: Region Grouping's parts "
                f"localise landmarks better than {label}", paper_value=value, a=f"lm_{base}", b="lm_full",
                expect="decrease", setting=setting, note=f"{lm}; effect = ours − baseline")
    _paired(recorder, table, id="rg-t7-analog-prior-landmark", claim="Table 7 analog: the occurrence prior is what "
            "makes parts localise (landmark error, full vs without the prior)", paper_value="8.40 vs 12.33 (CelebA)",
            a="lm_no_prior", b="lm_full", expect="decrease", setting=setting, note=f"{lm}; effect = full − w/o prior")
    _paired(recorder, table, id="rg-t7-analog-prior-accuracy", claim="Table 7 analog: the prior costs no accuracy "
            f"(full vs without the prior, within ±{ACCURACY_MARGIN:g})", paper_value="91.5 vs 91.3 (CelebA)",
            a="acc_no_prior", b="acc_full", expect="equivalent", setting=setting, margin=ACCURACY_MARGIN, digits=3,
            note="accuracy on the bias-aligned test split; effect = full − w/o prior")
    _paired(recorder, table, id="rg-t7-analog-attention-landmark", claim="Table 7 analog: without attention parts "
            "localise slightly better (landmark error, w/o attention vs full)", paper_value="7.55 vs 8.40 (CelebA)",
            a="lm_full", b="lm_no_attention", expect="decrease", setting=setting,
            note=f"{lm}; effect = w/o attention − full")
    _paired(recorder, table, id="rg-t7-analog-attention-accuracy", claim="Table 7 analog: attention costs or adds no "
            f"accuracy (w/o attention vs full, within ±{ACCURACY_MARGIN:g})", paper_value="91.5 vs 91.5 (CelebA)",
            a="acc_full", b="acc_no_attention", expect="equivalent", setting=setting, margin=ACCURACY_MARGIN,
            digits=3, note="accuracy on the bias-aligned test split; effect = w/o attention − full")
    _paired(recorder, table, id="rg-t13-analog-accuracy", claim="Tables 1/3 analog: Region Grouping is as accurate "
            f"as the plain backbone (within ±{ACCURACY_MARGIN:g})", paper_value="91.5 vs 91.5 (CelebA); 87.3 vs 87.7 "
            "(CUB)", a="acc_plain", b="acc_full", expect="equivalent", setting=setting, margin=ACCURACY_MARGIN,
            digits=3, note="accuracy on the bias-aligned test split; effect = ours − plain")
    chance = float(table["chance_disc"].mean()) if "chance_disc" in table else float("nan")
    for name, value in zip(POSTHOC, ("7.6 vs 11.8", "7.6 vs 11.8", "7.6 vs 8.2")):
        _paired(recorder, table, id=f"rg-t6-analog-{name}", claim="Table 6 analog: Region Grouping's attribution "
                f"Q^T a points at the discriminative part more often than {name} of the plain backbone "
                "(pointing-game error on the part that tells a class from its confusable twin)",
                paper_value=f"{value} % (iNat2017, boxes)", a=f"pd_{name}", b="pd_full", expect="decrease",
                setting=setting, digits=3, note=f"first {config.n_point} test images, each method explaining the "
                f"predicted class; post-hoc maps at layer4; a random peak's error {chance:.3f} (the object mask is "
                "at a ceiling for the post-hoc maps, hence the smaller target); effect = ours − post-hoc")
    for base in ("no_prior", "kmeans"):
        _paired(recorder, table, id=f"rg-parts-match-{base}", claim="Beyond the paper: learned parts match the true "
                f"parts one to one better than {'without the prior' if base == 'no_prior' else 'K-means parts'} "
                "(mean soft Dice of the Hungarian matching of the K × P overlap matrix)", paper_value="qualitative "
                "(Figs. 3, 5)", a=f"match_{base}", b="match_full", expect="increase", setting=setting, digits=3,
                note="test split; effect = full − " + base)
    record_ablations(recorder, table, setting, lm)




# Choice ablations (beyond the paper): id stem → (model, label, the paper's / code's position).
ABLATION_ROWS = {
    "rg-prior-shape": ("inat_prior", "with iNat2017's prior Beta(2e-3, 1e-3) instead of Beta(1, 1e-3)",
                       "beyond the paper: the paper blames the U-shaped prior for iNat failures"),
    "rg-choice-layer4": ("layer4", "grouping layer4's output (the paper's text) instead of layer3's (the code)",
                         "choice ablated: the paper's text vs the authors' code"),
    "rg-choice-lr20": ("lr20", "with the new modules at 20x the trunk's learning rate (the code) instead of one",
                       "choice ablated: the authors' code (20x) vs one learning rate"),
}


def record_ablations(recorder: RunRecorder, table: pd.DataFrame, setting: str, lm: str) -> None:
    """The choice ablations, each paired with the full model on the seeds it was trained on: the landmark error
    and the accuracy equivalent within their margins ("no difference" only through the equivalence test)."""
    for stem, (kind, label, position) in ABLATION_ROWS.items():
        _paired(recorder, table, id=stem, claim=f"{position.split(':')[0].capitalize()}: parts localise as well "
                f"{label} (landmark error within ±{LANDMARK_MARGIN:g})", paper_value=position, a="lm_full",
                b=f"lm_{kind}", expect="equivalent", setting=setting, margin=LANDMARK_MARGIN,
                note=f"{lm}; effect = {kind} − full")
        _paired(recorder, table, id=f"{stem}-accuracy", claim=f"{position.split(':')[0].capitalize()}: accuracy is "
                f"the same {label} (within ±{ACCURACY_MARGIN:g})", paper_value=position, a="acc_full",
                b=f"acc_{kind}", expect="equivalent", setting=setting, margin=ACCURACY_MARGIN, digits=3,
                note=f"accuracy on the bias-aligned test split; effect = {kind} − full")


# The paper's rows a real data set measures: id → (column a, column b, expect, margin); the effect is b − a.
_LM_RG_VS_DFF = ("lm_kmeans", "lm_full", "decrease", None)  # DFF's stand-in: K-means of the plain layer3
REAL_ROWS: dict[str, tuple[str, str, str, float | None]] = {
    "rg-t2-dff": _LM_RG_VS_DFF, "rg-t2-ours": _LM_RG_VS_DFF,
    "rg-t3-resnet": ("acc_plain", "acc_full", "equivalent", ACCURACY_MARGIN),
    "rg-t3-ours": ("acc_plain", "acc_full", "equivalent", ACCURACY_MARGIN),
    **{f"rg-t4-{m}-{c}": (f"lm_kmeans_c{c}", f"lm_full_c{c}", "decrease", None) for m in ("dff", "ours")
       for c in (1, 2, 3)},
    "rg-t4-all": _LM_RG_VS_DFF,
    "rg-t5-resnet-own": ("acc_plain", "acc_full", "increase", None),
    "rg-t5-ours": ("acc_plain", "acc_full", "increase", None),
    "rg-t6-cam": ("pe_cam", "pe_full", "decrease", None), "rg-t6-guided": ("pe_guided_gradcam", "pe_full", "decrease",
                                                                            None),
    "rg-t6-ours": ("pe_gradcam", "pe_full", "decrease", None),
    "rg-t7-noatt": ("lm_full", "lm_no_attention", "decrease", None),
    "rg-t7-noreg": ("lm_no_prior", "lm_full", "decrease", None),
    "rg-t7-full": ("acc_no_prior", "acc_full", "equivalent", ACCURACY_MARGIN),
}
REAL_NOT_RUN = {"rg-t2-scops": "SCOPS is not implemented in this book", "rg-t4-scops": "SCOPS is not implemented "
                "in this book", "rg-t5-resnet-paper": "a number quoted from [68], not a run of the authors",
                "rg-t5-ours-fc": "the fully convolutional test (full image, shorter side 320) is not implemented"}


def record_real(recorder: RunRecorder, table: pd.DataFrame, config: RegionGroupingConfig,
                missing: dict[str, str] | None = None) -> None:
    """The paper's rows on a real data set (paper profile): each comparison over training seeds (K-means of the
    plain ResNet's layer3 stands in for DFF), rows of other data sets or of methods not implemented "not run"."""
    setting = (f"{config.dataset}, {config.arch} {'ImageNet-pretrained' if config.pretrained else 'from scratch'}, "
               f"grouping on layer3, K={config.num_parts}, Beta({config.alpha:g}, {config.beta:g}), L_W weight "
               f"{config.prior_weight:g}, new modules at {config.new_lr_scale:g}x lr, {config.epochs} epochs, last "
               f"epoch scored (no test-set checkpoint selection), {len(table)} training seeds")
    missing = missing or {}
    for id, (claim, value, dataset) in PAPER_NUMBERS.items():
        why = next((text for stem, text in {**REAL_NOT_RUN, **missing}.items() if id.startswith(stem)), None)
        if dataset != config.dataset:
            why = f"this run measures {config.dataset}; run the paper profile with -p dataset={dataset}"
        if why is not None or id not in REAL_ROWS:
            record_not_run(recorder, id=id, paper=PAPER, claim=claim, paper_value=value, setting=setting,
                           why=why or "no comparison defined for this row")
            continue
        a, b, expect, margin = REAL_ROWS[id]
        _paired(recorder, table, id=id, claim=claim, paper_value=value, a=a, b=b, expect=expect, setting=setting,
                margin=margin, digits=3, note=f"effect = {b} − {a} over training seeds")

def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard error over seeds of every column (one row per measured quantity)."""
    out = []
    for column in table.columns.drop("seed"):
        values = table[column].dropna().to_numpy(float)
        mean, se = stats.mean_se(values) if len(values) > 1 else (float(np.mean(values)), float("nan"))
        out.append({"quantity": column, "mean": mean, "se": se, "n": len(values)})
    return pd.DataFrame(out).set_index("quantity")


__all__ = ["BASELINES", "Evals", "per_seed", "record_claims", "record_numbers", "summary"]

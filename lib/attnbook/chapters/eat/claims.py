"""Chapter 1's numbers and claims ledger: every EAT number of the paper (Tables II–IV; their data sets are
not run here) and the testbed analogs, decided by the ledger's rules over training seeds.

Chapter: ``nbs/01_eat.ipynb``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from attnbook import stats
from attnbook.chapters.eat.config import (
    ABLATIONS,
    BACKBONES,
    MEASURED_BACKBONE,
    MODELS,
    PAPER_BACKBONES,
    SUN_CLASS_THRESHOLD,
    TABLE_DATA,
    TABLE_II,
    TABLE_III,
    TABLE_IV,
    EATConfig,
    measured_backbone,
    published,
)
from attnbook.chapters.eat.evaluation import EXPLAINERS, Evaluation, far_summaries
from attnbook.ledger import record_claim, record_not_run
from attnbook.runs import RunRecorder

Evals = dict[str, dict[int, Evaluation]]  # kind -> seed -> evaluation
Measured = dict[str, tuple[pd.DataFrame, float]]  # another data set's name -> (per-seed table, majority floor)

__all__ = ["BACKBONES", "TABLE_II", "TABLE_III", "TABLE_IV", "MEASURED_BACKBONE"]  # re-exported from config


def why_not_run(data: str, config: EATConfig, backbone: str) -> str:
    """Why the cell (``data``, ``backbone``) of the paper's tables is not measured by this run."""
    if data == "Aircraft-17":
        return "Aircraft-17 is not public"
    if data not in {TABLE_DATA.get(d) for d in config.datasets}:
        name = {"CUB": "CUB-200-2011", "SUN": "SUN attributes"}[data]
        return (f"{name} is read by the paper profile only (needs the data set and a GPU)"
                + ("; this profile runs the testbed analog below" if data == "CUB" else ""))
    if backbone in PAPER_BACKBONES.values():
        return (f"this run measures {measured_backbone(config)}; the paper profile measures each of "
                f"{', '.join(PAPER_BACKBONES.values())} in its own run (-p arch=…)")
    return {"PNASNet5": "PNASNet-5 is not in torchvision (no offline ImageNet weights here)",
            "DFL": "DFL-CNN (a dedicated fine-grained network) is not implemented here"}[backbone]


def split_suffix(split: str, first: bool) -> str:
    """The suffix of a split's glue names: none for the first test split, ``_conflicting`` for the testbed's
    bias-conflicting one."""
    return "" if first else "_" + split.removeprefix("test_")


def splits_of(table: pd.DataFrame) -> list[str]:
    """The test splits a per-seed table has, in order."""
    return [c.removeprefix("acc_") for c in table.columns if c.startswith("acc_")]


def per_seed(evals: Evals) -> pd.DataFrame:
    """One row per model × seed: accuracies, attribute accuracy, FAR three ways per split, EAR hit rates."""
    rows = []
    for kind, by_seed in evals.items():
        for seed, ev in by_seed.items():
            row = {"model": kind, "seed": seed, **{f"acc_{s}": v for s, v in ev.accuracy.items()},
                   "attr_acc": ev.attribute_accuracy}
            for split in ev.accuracy:
                row.update({f"far_{k}_{split}": v for k, v in far_summaries(ev, split).items()})
                if split in ev.disc_mass:  # NaN where no image of the split has a defined share
                    values = ev.disc_mass[split][~torch.isnan(ev.disc_mass[split])]
                    row[f"disc_mass_{split}"] = float(values.mean()) if len(values) else float("nan")
            for name, hits in ev.hits.items():
                row.update({f"{name}_{k}_hit": float(v.float().mean()) for k, v in hits.items()})
            if ev.wrong_shared is not None:  # share of wrong predictions whose top-k names a shared attribute
                none = float("nan")
                row["wrong_shared_ear"] = float(ev.wrong_shared.float().mean()) if len(ev.wrong_shared) else none
                row["wrong_shared_random"] = (float(ev.wrong_shared_random.float().mean())
                                              if len(ev.wrong_shared_random) else none)
            rows.append(row)
    return pd.DataFrame(rows)


def record_numbers(recorder: RunRecorder, table: pd.DataFrame, evals: Evals, majority: float,
                   config: EATConfig) -> None:
    """Glue the seed means the prose quotes."""
    recorder.table("per_seed", table)
    by = table.groupby("model").mean(numeric_only=True)
    splits = splits_of(table)
    for kind in MODELS:
        for i, split in enumerate(splits):
            recorder.number(f"accuracy/{kind}/{split}", by.loc[kind, f"acc_{split}"])
            for how in ("median", "mean", "ratio_of_means", "block3"):
                value = by.loc[kind, f"far_{how}_{split}"]
                if np.isfinite(value):  # per-image FAR is undefined on all-zero maps (untrained tiny models)
                    recorder.number(f"far/{kind}/{how}{split_suffix(split, i == 0)}", value)
        if f"disc_mass_{splits[0]}" in by and np.isfinite(by.loc[kind, f"disc_mass_{splits[0]}"]):
            recorder.number(f"disc_mass/{kind}", by.loc[kind, f"disc_mass_{splits[0]}"])
    recorder.number("attributes/eat/accuracy", by.loc["eat", "attr_acc"])
    recorder.number("attributes/majority", majority)
    record_published(recorder, config)
    for i, split in enumerate(splits):
        key = split_suffix(split, i == 0)
        for layer, column in (("", "ratio_of_means"), ("_block3", "block3")):
            ratio, (low, high) = far_ratio(table, f"far_{column}_{split}")
            recorder.numbers({f"far/eat_over_base{layer}{key}": ratio, f"far/eat_over_base{layer}{key}_low": low,
                              f"far/eat_over_base{layer}{key}_high": high})
    for name in EXPLAINERS:
        for k in [k for k in ("true", "disc") if f"{name}_{k}_hit" in by]:
            recorder.number(f"ear/{name}/{k}_hit" if name != "ear" else f"ear/eat/{k}_hit",
                            by.loc["eat", f"{name}_{k}_hit"])
    wrong = [ev.wrong_shared for ev in evals["eat"].values() if ev.wrong_shared is not None]
    n_wrong = sum(len(w) for w in wrong)
    n_shared = sum(int(w.sum()) for w in wrong)
    recorder.text("ear/wrong_shared", f"{n_shared} of {n_wrong}" if n_wrong else "none (no wrong predictions)")
    n_random = sum(int(ev.wrong_shared_random.sum()) for ev in evals["eat"].values() if ev.wrong_shared is not None)
    recorder.text("ear/wrong_shared_random", f"{n_random} of {n_wrong}" if n_wrong else "none")
    recorder.numbers({"run/n_seeds": len(evals["eat"]), "run/p_bias": config.p_bias})


def record_published(recorder: RunRecorder, config: EATConfig) -> None:
    """Glue the paper's numbers the prose quotes (config's Tables II–IV) for the backbone this run measures
    (ResNet18 on the testbed): accuracy base and EAT and mean attribute accuracy on CUB and SUN (%); and ResNet18's
    FAR base and EAT on CUB with the ratio EAT / base (the "+60 %")."""
    backbone = measured_backbone(config) or MEASURED_BACKBONE
    recorder.text("paper/backbone", backbone)
    for data in ("CUB", "SUN"):
        base, eat = published(TABLE_II, data, backbone)
        recorder.numbers({f"paper/{data.lower()}/accuracy/base": base, f"paper/{data.lower()}/accuracy/eat": eat,
                          f"paper/{data.lower()}/attributes/eat": published(TABLE_III, data, backbone)[0]})
    low, high = published(TABLE_IV, "CUB")
    recorder.numbers({"paper/cub/far/base": low, "paper/cub/far/eat": high, "paper/far_ratio_resnet18": high / low})


def far_ratio(table: pd.DataFrame, column: str) -> tuple[float, tuple[float, float]]:
    """EAT / base of a FAR column as a ratio with its 95 % CI: the paired t interval of the per-seed log ratio,
    exponentiated (the geometric mean ratio over seeds; the paper's "+60 %" is a ratio of two FARs). A FAR of 0
    (a map with nothing on the object: untrained smoke models) is floored at 1e-6 so the log is defined."""
    base = table[table.model == "base"].sort_values("seed")[column].to_numpy()
    eat = table[table.model == "eat"].sort_values("seed")[column].to_numpy()
    ev = stats.paired(np.log(np.maximum(base, 1e-6)), np.log(np.maximum(eat, 1e-6)), unit="seeds")
    return float(np.exp(ev.effect)), (float(np.exp(ev.ci[0])), float(np.exp(ev.ci[1])))


ABLATION_METRICS = {"acc_test_aligned": "accuracy, bias-aligned", "acc_test_conflicting": "accuracy, bias-conflicting",
                    "far_ratio_of_means_test_aligned": "FAR (ratio of means), bias-aligned",
                    "far_ratio_of_means_test_conflicting": "FAR (ratio of means), bias-conflicting"}


def ablation_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each ablation minus the default EAT on the seeds the ablation trained on, paired: mean difference, 95 % CI
    and paired t p-value per metric (:data:`ABLATION_METRICS`). Empty when the run trained no ablation."""
    eat = table[table.model == "eat"].set_index("seed")
    rows = []
    for kind in [k for k in ABLATIONS if k in set(table.model)]:
        other = table[table.model == kind].set_index("seed")
        paired_eat = eat.loc[other.index]  # the ablations train on the first seeds only
        for column, label in ABLATION_METRICS.items():
            ev = stats.paired(paired_eat[column].to_numpy(), other[column].to_numpy(), unit="seeds")
            rows.append({"variant": kind, "metric": label, "EAT": paired_eat[column].mean(),
                         "variant mean": other[column].mean(), "difference": ev.effect, "CI low": ev.ci[0],
                         "CI high": ev.ci[1], "p": ev.p_value,
                         "seeds": ev.n})
    return pd.DataFrame(rows)


def record_ablations(recorder: RunRecorder, ablations: pd.DataFrame) -> None:
    """Glue what the prose quotes of the ablation table and keep the table in the results."""
    if ablations.empty:
        return
    recorder.table("ablations", ablations)
    recorder.number("ablation/seeds", int(ablations.seeds.min()))
    for row in ablations.itertuples():
        key = {"accuracy, bias-aligned": "acc_aligned", "accuracy, bias-conflicting": "acc_conflicting",
               "FAR (ratio of means), bias-aligned": "far_aligned",
               "FAR (ratio of means), bias-conflicting": "far_conflicting"}[row.metric]
        recorder.numbers({f"ablation/{row.variant}/{key}": row.difference, f"ablation/{row.variant}/{key}_p": row.p})


def record_claims(recorder: RunRecorder, table: pd.DataFrame, config: EATConfig, majority: float,
                  others: Measured | None = None) -> None:
    """Every EAT number of papers.md and this run's rows, paired over seeds: on the testbed the analog rows; in
    the paper profile the rows of Tables II–IV on CUB (``table``) and of Tables II–III on the other data sets
    for the run's backbone (:func:`~.config.measured_backbone`) measured (``others``: SUN attributes), the other
    backbones not run, with the reason. SUN has no object masks: its FAR row is always "not run"."""
    real = bool(config.datasets)
    measured = {TABLE_DATA[d] for d in config.datasets[:1]} | {TABLE_DATA[d] for d in (others or {})}
    backbone_measured = measured_backbone(config)
    for name, table_values, what in (("table2", TABLE_II, "accuracy base → EAT (%)"),
                                     ("table3", TABLE_III, "EAT mean attribute accuracy (%)"),
                                     ("table4", TABLE_IV, "FAR base → EAT, Grad-CAM, CUB masks")):
        for data, values in table_values.items():
            for backbone, value in zip(BACKBONES, values):
                if data in measured and backbone == backbone_measured:
                    continue  # measured below
                record_not_run(recorder, id=f"eat-{name}-{data.lower()}-{backbone.lower()}", paper="EAT",
                               claim=f"{name.replace('table', 'Table ')}: {what}, {data}, {backbone}",
                               paper_value=value, why=why_not_run(data, config, backbone))
    record_not_run(recorder, id="eat-table4-sun", paper="EAT",
                   claim="Table IV on SUN attributes: EAT raises FAR of Grad-CAM", paper_value="not reported",
                   why="SUN attributes has no object masks (FAR = PI(AT, M) / PI(AT, 1−M) needs them); the paper "
                       "reports FAR on CUB only")
    _record_measured(recorder, table, config, majority, TABLE_DATA[config.datasets[0]] if real else None)
    for name, (other, floor) in (others or {}).items():
        _record_measured(recorder, other, config, floor, TABLE_DATA[name])


def _setting(config: EATConfig, data: str | None, n_seeds: int) -> str:
    trunk = (f"ImageNet {config.arch}" if config.pretrained else f"{config.arch} from scratch") if data else \
        f"small CNN (width {config.width}) from scratch"
    synthetic = (f"synthetic fine_grained analog, {config.num_classes} classes, {config.resolution} px, "
                 f"p_bias={config.p_bias}")
    where = {"CUB": f"CUB-200-2011 ({config.resolution} px)",
             "SUN": f"SUN attributes ({config.resolution} px, class attributes = mean vote ≥ {SUN_CLASS_THRESHOLD}, "
                    "seeded 80/20 per-class split)"}.get(data or "", synthetic)
    return (f"{where}, {trunk}, λ={config.lam}, η={config.eta}, g_i={config.integrator}, {config.epochs} epochs, "
            f"{n_seeds} training seeds, {config.profile} profile")


def _record_measured(recorder: RunRecorder, table: pd.DataFrame, config: EATConfig, majority: float,
                     data: str | None) -> None:
    """Tables II–IV rows of one data set (``data``: "CUB" / "SUN", the ResNet18 cells) or of the testbed analog
    (``None``); FAR only where the table has it (object masks)."""
    base = table[table.model == "base"].sort_values("seed")
    eat = table[table.model == "eat"].sort_values("seed")
    setting = _setting(config, data, len(eat))
    backbone = measured_backbone(config) or MEASURED_BACKBONE
    splits = splits_of(table)
    label = {"test_aligned": "bias-aligned test images", "test_conflicting": "bias-conflicting test images",
             "test": "the test split"}

    def row_id(table_name: str, split: str = "") -> str:
        return (f"eat-{table_name}-{data.lower()}-{backbone.lower()}" if data else
                f"eat-{table_name}-analog" + (f"-{split}" if split else ""))

    def what(table_name: str) -> str:
        return (f"{table_name.replace('table', 'Table ')} ({data}, {backbone})" if data else
                f"{table_name.replace('table', 'Table ')} analog")

    r18 = BACKBONES.index(backbone)  # the measured column (ResNet18 unless -p arch=…)
    for split in splits:
        a, b = base[f"acc_{split}"].to_numpy(), eat[f"acc_{split}"].to_numpy()
        record_claim(recorder, id=row_id("table2", split), paper="EAT",
                     claim=f"{what('table2')}: EAT is more accurate than the base model on {label[split]}"
                           + ("" if data else " (habitat bias in training)"),
                     paper_value=TABLE_II[data][r18] if data else "+0.3 … +2.7 points (CUB)",
                     ours=f"{a.mean():.3f} → {b.mean():.3f}", setting=setting, expect="increase",
                     evidence=stats.paired(a, b, unit="seeds"),
                     note="per-seed accuracy on the whole split; effect = EAT − base")
    attr = eat.attr_acc.to_numpy()
    record_claim(recorder, id=row_id("table3"), paper="EAT",
                 claim=f"{what('table3')}: EAT's attribute heads beat predicting each attribute's majority value "
                       f"(mean attribute accuracy, {label[splits[0]]})",
                 paper_value=f"{TABLE_III[data][r18]} %" if data else "89.21 … 92.69 % (CUB)",
                 ours=f"{attr.mean():.3f} vs {majority:.3f}", setting=setting, expect="increase",
                 evidence=stats.paired(np.full_like(attr, majority), attr, unit="seeds"),
                 note="the paper gives levels, not a comparison; the majority rule is the floor a level means "
                      "something against; effect = EAT − majority")
    for i, split in enumerate([s for s in splits if f"far_ratio_of_means_{s}" in table]):
        a, b = base[f"far_ratio_of_means_{split}"].to_numpy(), eat[f"far_ratio_of_means_{split}"].to_numpy()
        first = i == 0
        record_claim(recorder, id=row_id("table4") if first else "eat-far-conflicting", paper="EAT",
                     claim=(f"{what('table4')}: EAT raises FAR of Grad-CAM (last conv layer, predicted class) on "
                            f"object masks, {label[split]} (FAR averaged as the ratio of mean object / mean "
                            "background attention, maps max-normalised)") if first else
                           ("Beyond Table IV: EAT raises FAR of Grad-CAM on bias-conflicting test images (the same "
                            "objects on another class's habitat — where attention on the background is what the bias "
                            "rewards)"),
                     paper_value=(f"≈ +60 % ({TABLE_IV['CUB'][r18].replace('→', ' → ')}, {backbone}, CUB)"
                                  if first else "qualitative (§V-B, Fig. 5: base attention leaks to the background)"),
                     ours=f"{a.mean():.2f} → {b.mean():.2f}", setting=setting, expect="increase",
                     evidence=stats.paired(a, b, unit="seeds"),
                     note=f"{config.n_explain} test objects per seed; effect = EAT − base")
    if data and data != "CUB":
        return  # EAR's truth (the testbed's attributes, confusers) exists once, on the first data set
    column = f"disc_mass_{splits[0]}"
    pairs = (pd.DataFrame({"base": base.set_index("seed")[column], "eat": eat.set_index("seed")[column]}).dropna()
             if column in table else pd.DataFrame())  # NaN where no scored image has a defined share (tiny runs)
    if not data and len(pairs) >= 2:
        a, b = pairs.base.to_numpy(), pairs.eat.to_numpy()
        record_claim(recorder, id="eat-disc-mass", paper="EAT (beyond the paper)",
                     claim="Beyond Table IV: EAT's Grad-CAM of the predicted class puts a larger share of its mass on "
                           "the part that separates the class from its confusable twin than the base model's "
                           f"({label[splits[0]]})",
                     paper_value="qualitative (§V-B, Fig. 5: attention moves to the discriminative parts)",
                     ours=f"{a.mean():.3f} → {b.mean():.3f}", setting=setting, expect="increase",
                     evidence=stats.paired(a, b, unit="seeds"),
                     note=f"mean share over {config.n_explain} objects per seed (maps max-normalised), "
                          f"{len(pairs)} seeds with a defined share; effect = EAT − base")
    for k, named in (("true", "an attribute the predicted class has"),
                     ("disc", "the predicted class's value of the attribute that separates it from its confuser")):
        if f"ear_{k}_hit" not in eat:
            continue
        for other, words in (("random", f"{config.top_k} random attributes"),
                             ("confidence", f"the {config.top_k} most confident attribute heads")):
            if f"{other}_{k}_hit" not in eat:
                continue
            a, b = eat[f"{other}_{k}_hit"].to_numpy(), eat[f"ear_{k}_hit"].to_numpy()
            record_claim(recorder, id=f"eat-ear-{k}" + ("" if other == "random" else "-vs-confidence"), paper="EAT",
                         claim=f"EAR's top-{config.top_k} attributes name {named} more often than {words} (the "
                               "paper's qualitative claim that EAR explains the decision, made a number)",
                         paper_value="qualitative (Fig. 6)", ours=f"{b.mean():.3f} vs {a.mean():.3f}",
                         setting=setting, expect="increase", evidence=stats.paired(a, b, unit="seeds"),
                         note=f"per-seed hit rate on {config.n_explain} of {label[splits[0]]}; effect = EAR − {other}")
    if "wrong_shared_ear" in eat:
        both = eat[["wrong_shared_random", "wrong_shared_ear"]].dropna()  # seeds with at least one wrong prediction
        if len(both) >= 2:
            a, b = both.wrong_shared_random.to_numpy(), both.wrong_shared_ear.to_numpy()
            record_claim(recorder, id="eat-ear-wrong-shared", paper="EAT",
                         claim=f"For wrong predictions, EAR's top-{config.top_k} names an attribute the true and the "
                               f"predicted class share more often than {config.top_k} random attributes do (the "
                               "paper's account of wrong predictions, made a number)",
                         paper_value="qualitative (§VI-C, Fig. 7)", ours=f"{b.mean():.3f} vs {a.mean():.3f}",
                         setting=setting, expect="increase", evidence=stats.paired(a, b, unit="seeds"),
                         note=f"per-seed share of the wrong predictions among {config.n_explain} of "
                              f"{label[splits[0]]}; only the {len(both)} seeds with a wrong prediction; "
                              "effect = EAR − random")
        else:
            record_not_run(recorder, id="eat-ear-wrong-shared", paper="EAT",
                           claim=f"For wrong predictions, EAR's top-{config.top_k} names an attribute the true and "
                                 "the predicted class share more often than random attributes do",
                           paper_value="qualitative (§VI-C, Fig. 7)",
                           why=f"fewer than 2 seeds made a wrong prediction on the scored {label[splits[0]]}",
                           setting=setting)


def record_other_data(recorder: RunRecorder, config: EATConfig, positive_rates: dict[str, float],
                      measured: Measured) -> None:
    """Glue what the prose quotes of the other data sets' base vs EAT runs (``measured``: ``sun_attributes`` ->
    ``sun/…``): both models' accuracy, EAT's mean attribute accuracy and the majority floor (seed means), the share
    of positive class-level attribute labels (``positive_rates``); and ``sun/summary``, a sentence that says what
    was measured or why nothing was (every profile records it: the prose quotes it)."""
    for name, (table, majority) in measured.items():
        key = TABLE_DATA[name].lower()
        recorder.table(f"per_seed_{key}", table)
        by = table.groupby("model").mean(numeric_only=True)
        split = splits_of(table)[0]
        values = {"accuracy/base": by.loc["base", f"acc_{split}"], "accuracy/eat": by.loc["eat", f"acc_{split}"],
                  "attributes/eat": by.loc["eat", "attr_acc"], "attributes/majority": majority,
                  "positive_rate": positive_rates[name], "n_seeds": int((table.model == "eat").sum())}
        recorder.numbers(values, prefix=f"{key}/")
        recorder.text(f"{key}/summary", (
            f"Over {values['n_seeds']} training seeds the base model reaches {values['accuracy/base']:.1%} on the "
            f"test split and EAT {values['accuracy/eat']:.1%}; EAT's attribute heads are right on "
            f"{values['attributes/eat']:.1%} of the (image, attribute) pairs, against "
            f"{values['attributes/majority']:.1%} for each attribute's majority value "
            f"({values['positive_rate']:.1%} of the class-level labels are 1)."))
    if "sun_attributes" not in measured:
        recorder.text("sun/summary", "This profile does not read SUN attributes (the paper profile does: it needs the "
                                     "data set and a GPU), so its Table II/III rows in the ledger say \"not run\".")


MILD_METRICS = {"acc_test_aligned": ("accuracy, bias-aligned", "increase"),
                "acc_test_conflicting": ("accuracy, bias-conflicting", "increase"),
                "bias_gap": ("bias gap (aligned − conflicting accuracy)", "decrease"),
                "far_ratio_of_means_test_aligned": ("FAR (ratio of means), bias-aligned", "increase"),
                "far_ratio_of_means_test_conflicting": ("FAR (ratio of means), bias-conflicting", "increase")}


def mild_table(table: pd.DataFrame) -> pd.DataFrame:
    """Base vs EAT at the milder bias, paired over seeds: per metric (:data:`MILD_METRICS`) both means, EAT − base
    with its 95 % CI and the paired t p-value. Empty when the run trained no milder-bias seeds."""
    if table.empty:
        return pd.DataFrame()
    table = table.assign(bias_gap=table.acc_test_aligned - table.acc_test_conflicting)
    base = table[table.model == "base"].set_index("seed").sort_index()
    eat = table[table.model == "eat"].set_index("seed").loc[base.index]
    rows = []
    for column, (label, _) in MILD_METRICS.items():
        ev = stats.paired(base[column].to_numpy(), eat[column].to_numpy(), unit="seeds")
        rows.append({"metric": label, "column": column, "base": base[column].mean(), "EAT": eat[column].mean(),
                     "EAT − base": ev.effect, "CI low": ev.ci[0], "CI high": ev.ci[1], "p": ev.p_value,
                     "seeds": ev.n})
    return pd.DataFrame(rows)


def record_mild(recorder: RunRecorder, table: pd.DataFrame, config: EATConfig, num_classes: int) -> pd.DataFrame:
    """The milder-bias setting (beyond the paper): glue its numbers and add one ledger row per metric of
    :data:`MILD_METRICS` (EAT vs base, paired over seeds); "not run" rows where the run has no such setting
    (real data, ``mild_seeds=0``). Returns the summary table (:func:`mild_table`)."""
    summary = mild_table(table)
    recorder.numbers({"mild/p_bias": config.p_bias_mild, "mild/chance": 1 / num_classes})
    if summary.empty:
        why = ("the milder bias is a testbed setting; this profile reads real data" if config.datasets else
               "this run trains no milder-bias seeds (mild_seeds=0)")
        for column, (label, expect) in MILD_METRICS.items():
            record_not_run(recorder, id=f"eat-mild-{column.replace('_', '-')}", paper="EAT (beyond the paper)",
                           claim=f"Milder habitat bias: EAT changes {label} ({expect})", paper_value="—", why=why)
        return summary
    recorder.table("mild_bias", summary.drop(columns="column"))
    n_seeds = int(summary.seeds.min())
    recorder.number("mild/n_seeds", n_seeds)
    setting = (f"synthetic fine_grained analog, {config.num_classes} classes, {config.resolution} px, "
               f"p_bias={config.p_bias_mild} (milder), small CNN (width {config.width}) from scratch, λ={config.lam}, "
               f"η={config.eta}, g_i={config.integrator}, {config.epochs} epochs, {n_seeds} training seeds (the "
               f"first of the main run's), {config.profile} profile")
    with_gap = table.assign(bias_gap=table.acc_test_aligned - table.acc_test_conflicting)
    for row in summary.to_dict("records"):
        column = row["column"]
        label, expect = MILD_METRICS[column]
        recorder.numbers({f"mild/{column}/base": row["base"], f"mild/{column}/eat": row["EAT"],
                          f"mild/{column}/diff": row["EAT − base"], f"mild/{column}/low": row["CI low"],
                          f"mild/{column}/high": row["CI high"], f"mild/{column}/p": row["p"]})
        base = with_gap[with_gap.model == "base"].sort_values("seed")[column].to_numpy()
        eat = with_gap[with_gap.model == "eat"].sort_values("seed")[column].to_numpy()
        verb = "lowers" if expect == "decrease" else "raises"
        record_claim(recorder, id=f"eat-mild-{column.replace('_', '-')}", paper="EAT (beyond the paper)",
                     claim=f"Beyond the paper — milder habitat bias (p_bias={config.p_bias_mild}, where the base model "
                           f"is above chance on bias-conflicting images): EAT {verb} the {label}",
                     paper_value="qualitative (§V-B, Fig. 5: attributes pull attention off the biased background)",
                     ours=f"{row['base']:.3f} → {row['EAT']:.3f}", setting=setting, expect=expect,
                     evidence=stats.paired(base, eat, unit="seeds"),
                     note="paired over training seeds; effect = EAT − base")
    return summary

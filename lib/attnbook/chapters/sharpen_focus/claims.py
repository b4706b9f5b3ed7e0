"""Chapter 2's numbers and claims ledger: every Sharpen Focus number of papers.md (Tables 1–6) — measured where
this run measures it, not run (with the reason) otherwise — and the testbed analogs, decided by the ledger's rules
over training seeds (accuracies in the paper's unit, %).

Chapter: ``nbs/02_sharpen_focus.ipynb``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from attnbook import stats
from attnbook.chapters.sharpen_focus.config import (
    ABLATIONS,
    ATTENTION_LABELS,
    ATTENTIONS,
    BASELINE_CIFAR,
    LABELS,
    LAYERS,
    MODELS,
    NOT_RUN_WHY,
    PAPER_CIFAR,
    PAPER_GAIN,
    PAPER_ROWS,
    PORTS_CIFAR,
    TRAINED,
    SharpenFocusConfig,
)
from attnbook.chapters.sharpen_focus.evaluation import Evaluation
from attnbook.ledger import record_claim, record_not_run
from attnbook.runs import RunRecorder

PAPER = "Sharpen Focus"
Evals = dict[str, dict[int, Evaluation]]  # kind -> seed -> evaluation
PORT_RESULT = f"ports: {PORTS_CIFAR[0]} → {PORTS_CIFAR[1]} (CIFAR-100, no gain)"
REFERENCE_ATTENTION = "channelwise"  # the attention every model's maps are compared with in the prose


def paper_numbers() -> dict[str, float]:
    """The paper's and the ports' CIFAR-100 numbers the prose sets ours beside, under ``paper/…`` glue names."""
    out = {f"paper/gain/{kind}": gain for kind, gain in PAPER_GAIN.items()}
    out.update({"paper/best_gain": max(PAPER_GAIN.values()), "paper/ports_baseline": PORTS_CIFAR[0],
                "paper/ports_trained": PORTS_CIFAR[1]})
    return out


def per_seed(evals: Evals) -> pd.DataFrame:
    """One row per model × seed: accuracy; per attention and layer the separability and the disc-part share;
    per attention the consistency."""
    rows = []
    for kind, by_seed in evals.items():
        for seed, ev in by_seed.items():
            row = {"model": kind, "seed": seed, "accuracy": ev.accuracy}
            for a in ATTENTIONS:
                for layer in LAYERS:
                    row[f"sep_{a}_{layer}"] = ev.separability[a][layer]
                    row[f"disc_{a}_{layer}"] = ev.disc_mass[a][layer]
                row[f"cons_{a}"] = ev.consistency[a]
            rows.append(row)
    return pd.DataFrame(rows)


def accuracy_table(table: pd.DataFrame, config: SharpenFocusConfig) -> pd.DataFrame:
    """Table 1/2 beside ours: per model the mean accuracy (%) ± s.e. over seeds, the mean paired gain over the
    baseline, and the paper's CIFAR-100 accuracy and gain (ResNet-110)."""
    base = table[table.model == "baseline"].sort_values("seed").accuracy.to_numpy()
    rows = []
    for kind in MODELS:
        acc = table[table.model == kind].sort_values("seed").accuracy.to_numpy()
        rows.append({"model": LABELS[kind], "ours: accuracy (%)": stats.format_mean_se(100 * acc, 1),
                     "ours: gain (points)": f"{100 * (acc - base).mean():+.2f}" if kind != "baseline" else "—",
                     "paper: accuracy (%)": PAPER_CIFAR.get(kind, BASELINE_CIFAR),
                     "paper: gain (points)": f"{PAPER_GAIN[kind]:+.2f}" if kind != "baseline" else "—"})
    return pd.DataFrame(rows).set_index("model")


def maps_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of separability (sIoU target vs confuser, lower = more separable), disc-part share and
    consistency, per model × attention × layer."""
    rows = []
    for kind in MODELS:
        part = table[table.model == kind]
        for a in ATTENTIONS:
            for layer in LAYERS:
                rows.append({"model": LABELS[kind], "attention": ATTENTION_LABELS[a], "layer": layer,
                             "sIoU(target, confuser)": part[f"sep_{a}_{layer}"].mean(),
                             "share on disc. part": part[f"disc_{a}_{layer}"].mean(),
                             "consistency (inner in last mask)": part[f"cons_{a}"].mean() if layer == "inner"
                             else math.nan})
    return pd.DataFrame(rows)


def record_numbers(recorder: RunRecorder, table: pd.DataFrame) -> None:
    """Glue the seed means the prose quotes (maps: the reference attention, A_ch)."""
    recorder.table("per_seed", table)
    by = table.groupby("model").mean(numeric_only=True)
    base = table[table.model == "baseline"].sort_values("seed").accuracy.to_numpy()
    for kind in MODELS:
        recorder.number(f"accuracy/{kind}", by.loc[kind, "accuracy"])
        recorder.number(f"accuracy_sd/{kind}", float(table[table.model == kind].accuracy.std(ddof=1)))
        recorder.number(f"accuracy_min/{kind}", float(table[table.model == kind].accuracy.min()))
        if kind != "baseline":
            acc = table[table.model == kind].sort_values("seed").accuracy.to_numpy()
            recorder.number(f"gain/{kind}", float((acc - base).mean()))
    a = REFERENCE_ATTENTION
    for kind in ("baseline", "channelwise", "pixelwise"):
        for layer in LAYERS:
            recorder.number(f"separability/{kind}/{layer}", by.loc[kind, f"sep_{a}_{layer}"])
            value = by.loc[kind, f"disc_{a}_{layer}"]
            if np.isfinite(value):
                recorder.number(f"disc_mass/{kind}/{layer}", value)
    for attention in ATTENTIONS:
        recorder.number(f"consistency/baseline/{attention}", by.loc["baseline", f"cons_{attention}"])
    for layer in LAYERS:
        recorder.number(f"separability_gradcam/baseline/{layer}", by.loc["baseline", f"sep_gradcam_{layer}"])
    recorder.number("run/n_seeds", int(table.seed.nunique()))


def ablation_frame(ablations: dict[str, dict[int, float]], reference: dict[int, float],
                   baseline: dict[int, float]) -> pd.DataFrame:
    """One row per variant × seed: accuracy; ``paper`` (the reference attention, paper's reading) and ``baseline``
    come from the main models of the same seeds."""
    rows = [{"variant": "baseline", "seed": s, "accuracy": v} for s, v in baseline.items()]
    rows += [{"variant": "paper", "seed": s, "accuracy": v} for s, v in reference.items()]
    rows += [{"variant": name, "seed": s, "accuracy": v} for name, by in ablations.items() for s, v in by.items()]
    return pd.DataFrame(rows)


def ablation_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean accuracy (%) and the paired difference to the paper's reading with its 95 % CI."""
    paper = frame[frame.variant == "paper"].sort_values("seed").accuracy.to_numpy()
    rows = []
    for variant in frame.variant.unique():
        acc = frame[frame.variant == variant].sort_values("seed").accuracy.to_numpy()
        row = {"variant": variant if variant in ("baseline", "paper") else ABLATIONS[variant][0],
               "accuracy (%)": stats.format_mean_se(100 * acc, 1)}
        if variant != "paper":
            ev = stats.paired(100 * paper, 100 * acc)
            row.update({"vs paper reading (points)": f"{ev.effect:+.2f}",
                        "95 % CI": f"[{ev.ci[0]:+.2f}, {ev.ci[1]:+.2f}]", "p": f"{ev.p_value:.2g}"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def record_ablation(recorder: RunRecorder, frame: pd.DataFrame) -> None:
    """Glue each variant's mean accuracy and its mean paired difference to the paper's reading."""
    recorder.table("ablation", frame)
    paper = frame[frame.variant == "paper"].sort_values("seed").accuracy.to_numpy()
    for variant in frame.variant.unique():
        if variant in ("paper", "baseline"):
            continue
        acc = frame[frame.variant == variant].sort_values("seed").accuracy.to_numpy()
        recorder.number(f"ablation/{variant}/accuracy", float(acc.mean()))
        recorder.number(f"ablation/{variant}/vs_paper", float((acc - paper).mean()))


def multilabel_frame(scores: dict[str, dict[int, dict[str, float]]]) -> pd.DataFrame:
    """One row per multi-label model × seed: AP and AUC."""
    return pd.DataFrame([{"model": kind, "seed": s, **v} for kind, by in scores.items() for s, v in by.items()])


def record_multilabel(recorder: RunRecorder, frame: pd.DataFrame) -> None:
    """Glue mean AP and AUC per model."""
    recorder.table("multilabel", frame)
    by = frame.groupby("model").mean(numeric_only=True)
    for kind in by.index:
        recorder.number(f"multilabel/{kind}/ap", by.loc[kind, "ap"])
        recorder.number(f"multilabel/{kind}/auc", by.loc[kind, "auc"])


def record_costs(recorder: RunRecorder, rows: list[dict]) -> pd.DataFrame:
    """Glue the chapter model's step times and ratios (and ResNet-18's ratios); the table of all."""
    frame = pd.DataFrame(rows)
    recorder.table("cost", frame)
    first = rows[0]
    recorder.numbers({"ms_plain": first["ms_plain"], "ms_separate": first["ms_separate"],
                      "ms_batched": first["ms_batched"], "ratio_separate": first["ratio_separate"],
                      "ratio_batched": first["ratio_batched"]}, prefix="cost/")
    if len(rows) > 1:
        recorder.numbers({"resnet18_ratio_separate": rows[1]["ratio_separate"],
                          "resnet18_ratio_batched": rows[1]["ratio_batched"]}, prefix="cost/")
    return frame


# --- the ledger ---------------------------------------------------------------------------------------------

def _pct(values: np.ndarray) -> np.ndarray:
    return 100 * np.asarray(values, dtype=float)


def _column(table: pd.DataFrame, kind: str, column: str, key: str = "model") -> np.ndarray:
    return table[table[key] == kind].sort_values("seed")[column].to_numpy()


def setting(config: SharpenFocusConfig, n: int) -> str:
    """The ledger's description of this run's training setting."""
    if config.data == "cifar100":
        return (f"CIFAR-100, CIFAR ResNet-{config.depth}, {config.optimizer.upper()} lr {config.lr}, "
                f"{config.epochs} epochs, augment={config.augment}, {n} training seeds, {config.profile} profile")
    return (f"synthetic many-class analog with confusable pairs, {config.num_classes} classes, {config.resolution} px, "
            f"{config.train_per_class} training images per class, CIFAR ResNet-{config.depth} (width {config.width}) "
            f"from scratch, {config.optimizer} lr {config.lr}, {config.epochs} epochs, {n} training seeds, "
            f"{config.profile} profile")


def record_paper_rows(recorder: RunRecorder, table: pd.DataFrame, config: SharpenFocusConfig) -> None:
    """Tables 1–2 (CIFAR-100): measured on the paper profile, else not run with the reason."""
    cifar = config.data == "cifar100"
    why_cifar = ("CIFAR-100 is not used by this profile (the synthetic analog below stands in); the paper profile "
                 "trains ResNet-110 on it: attnbook run nbs/02_sharpen_focus.ipynb --profile paper (needs a GPU and "
                 "CIFAR-100: attnbook data prepare cifar100)")
    base = _pct(_column(table, "baseline", "accuracy"))
    if cifar:
        record_claim(recorder, id="sf-table2-baseline", paper=PAPER,
                     claim="Table 2: ResNet-110 reaches 72.78 % on CIFAR-100 (the baseline the gains are over)",
                     paper_value=BASELINE_CIFAR, ours=f"{base.mean():.2f}", setting=setting(config, len(base)),
                     expect="equivalent", evidence=stats.paired(np.full_like(base, BASELINE_CIFAR), base, margin=1.0,
                                                                unit="seeds"),
                     note="equivalent within ±1 point; effect = ours − 72.78")
    else:
        record_not_run(recorder, id="sf-table2-baseline", paper=PAPER,
                       claim="Table 2: ResNet-110 reaches 72.78 % on CIFAR-100", paper_value=BASELINE_CIFAR,
                       why=why_cifar)
    for kind in TRAINED:
        claim = (f"Tables 1–2: + {ATTENTION_LABELS[kind]} attention losses raise CIFAR-100 accuracy of ResNet-110 "
                 f"from {BASELINE_CIFAR} to {PAPER_CIFAR[kind]}")
        if cifar:
            acc = _pct(_column(table, kind, "accuracy"))
            record_claim(recorder, id=f"sf-table1-{kind}", paper=PAPER, claim=claim,
                         paper_value=f"{BASELINE_CIFAR} → {PAPER_CIFAR[kind]} ({PAPER_GAIN[kind]:+.2f})",
                         ours=f"{base.mean():.2f} → {acc.mean():.2f}", setting=setting(config, len(acc)),
                         expect="increase", evidence=stats.paired(base, acc, unit="seeds"),
                         note="effect = trained − baseline, points")
        else:
            record_not_run(recorder, id=f"sf-table1-{kind}", paper=PAPER, claim=claim,
                           paper_value=f"{BASELINE_CIFAR} → {PAPER_CIFAR[kind]} ({PAPER_GAIN[kind]:+.2f})",
                           why=why_cifar)


def _study_scores(result: Any, kind: str, metric: str) -> np.ndarray:
    scale = 1 if metric == "auc" else 100  # accuracy and AP in %, as the paper
    return scale * np.array([result.scores[kind][s][metric] for s in sorted(result.scores[kind])])


def study_setting(result: Any) -> str:
    """The ledger's description of a study as run (its protocol after the run's overrides)."""
    p = result.study
    return (f"{p.dataset}{f' N={p.n_train}' if p.n_train else ''}, {p.arch} "
            f"({'ImageNet-initialised' if p.pretrained else 'from scratch'}), {p.resolution} px, SGD lr {p.lr} "
            f"wd {p.weight_decay}, {p.scheduler} schedule, {p.epochs} epochs, batch {p.batch_size}, "
            f"{len(result.scores['baseline'])} training seeds, {result.n_train} training / {result.n_test} test images")


def record_study_rows(recorder: RunRecorder, config: SharpenFocusConfig, studies: Mapping[str, Any] | None = None
                      ) -> None:
    """Table 2's pre-activation ResNet-164 and Tables 3–6: each row measured by its study (paired over the study's
    seeds: trained − baseline) or not run with the reason — what is missing, or that this profile runs no study."""
    studies = studies or {}
    for claim_id, claim, value, name, kind, metric in PAPER_ROWS:
        result = studies.get(name) if name else None
        if result is None or not result.ran:
            why = NOT_RUN_WHY.get(claim_id) or (
                result.why if result is not None else
                f"the {name} study is not among this run's studies ({config.profile} profile); the paper profile "
                "runs it: attnbook run nbs/02_sharpen_focus.ipynb --profile paper (a GPU, the data, ImageNet weights)")
            record_not_run(recorder, id=claim_id, paper=PAPER, claim=claim, paper_value=value, why=why)
            continue
        base, ours = _study_scores(result, "baseline", metric), _study_scores(result, kind, metric)
        record_claim(recorder, id=claim_id, paper=PAPER, claim=claim, paper_value=value,
                     ours=f"{base.mean():.3g} → {ours.mean():.3g}", setting=study_setting(result), expect="increase",
                     evidence=stats.paired(base, ours, unit="seeds"),
                     note=f"effect = + {ATTENTION_LABELS[kind]} − baseline ({'points' if metric != 'auc' else 'AUC'})")


def study_table(studies: Mapping[str, Any]) -> pd.DataFrame:
    """Per study and model: the mean score over seeds (accuracy / AP in %, AUC), or why the study did not run."""
    rows = []
    for name, result in studies.items():
        if not result.ran:
            rows.append({"study": name, "model": "—", "score": "not run", "seeds": 0, "note": result.why[:160]})
            continue
        for kind, by_seed in result.scores.items():
            for metric in next(iter(by_seed.values())):
                values = _study_scores(result, kind, metric)
                rows.append({"study": name, "model": LABELS[kind], "score": f"{metric} {values.mean():.3g}",
                             "seeds": len(values), "note": ""})
    return pd.DataFrame(rows, columns=["study", "model", "score", "seeds", "note"])


def record_claims(recorder: RunRecorder, table: pd.DataFrame, config: SharpenFocusConfig,
                  studies: Mapping[str, Any] | None = None) -> None:
    """The paper's rows (:func:`record_paper_rows`), then the analog's: Table 1's ordering, and what the losses are
    said to do to the maps (separability, the discriminative part, inner vs last, consistency), paired over seeds."""
    record_paper_rows(recorder, table, config)
    record_study_rows(recorder, config, studies)
    if config.data == "cifar100":
        analog, n = "CIFAR-100", len(_column(table, "baseline", "accuracy"))
    else:
        analog, n = "analog", len(_column(table, "baseline", "accuracy"))
    where = setting(config, n)
    base = _pct(_column(table, "baseline", "accuracy"))
    if config.data != "cifar100":
        for kind in TRAINED:
            acc = _pct(_column(table, kind, "accuracy"))
            record_claim(recorder, id=f"sf-table1-analog-{kind}", paper=PAPER,
                         claim=f"Table 1 analog: training with the losses on {ATTENTION_LABELS[kind]} attention raises "
                               "test accuracy over the baseline (confusable pairs)",
                         paper_value=f"{PAPER_GAIN[kind]:+.2f} points (CIFAR-100)",
                         ours=f"{base.mean():.1f} → {acc.mean():.1f}", setting=where, expect="increase",
                         evidence=stats.paired(base, acc, unit="seeds"), note="effect = trained − baseline, points")
    gradcam = _pct(_column(table, "gradcam", "accuracy"))
    for kind in ("channelwise", "pixelwise"):
        acc = _pct(_column(table, kind, "accuracy"))
        record_claim(recorder, id=f"sf-table1-{analog.lower().replace('-', '')}-{kind}-over-gradcam", paper=PAPER,
                     claim=f"Table 1 ({analog}): the losses on {ATTENTION_LABELS[kind]} beat the same losses on "
                           "Grad-CAM attention (Grad-CAM = A_ch without the ReLU on the gradients)",
                     paper_value=f"{PAPER_CIFAR['gradcam']} → {PAPER_CIFAR[kind]}",
                     ours=f"{gradcam.mean():.1f} → {acc.mean():.1f}",
                     setting=where, expect="increase", evidence=stats.paired(gradcam, acc, unit="seeds"),
                     note="effect = A − Grad-CAM model, points")
    a = REFERENCE_ATTENTION
    truth = config.data != "cifar100"
    for layer in LAYERS:
        b, t = _column(table, "baseline", f"sep_{a}_{layer}"), _column(table, "channelwise", f"sep_{a}_{layer}")
        record_claim(recorder, id=f"sf-separability-{layer}", paper=PAPER,
                     claim=f"The losses make the target's and the confuser's A_ch maps more separable at the {layer} "
                           "layer (lower sIoU, Mask = 1)",
                     paper_value="qualitative (Fig. 1, 8)", ours=f"{b.mean():.3f} → {t.mean():.3f}", setting=where,
                     expect="decrease", evidence=stats.paired(b, t, unit="seeds"),
                     note=f"baseline → + A_ch model; {'designed partner class' if truth else 'most confusing class'} "
                          "as the confuser; effect = trained − baseline")
        if truth:
            b, t = _column(table, "baseline", f"disc_{a}_{layer}"), _column(table, "channelwise", f"disc_{a}_{layer}")
            record_claim(recorder, id=f"sf-disc-part-{layer}", paper=PAPER,
                         claim=f"Separable attention falls on what tells the pair apart: the target's A_ch map at the "
                               f"{layer} layer puts more mass on the discriminative part",
                         paper_value="qualitative (Fig. 8: 'discriminative attention')",
                         ours=f"{b.mean():.3f} → {t.mean():.3f}", setting=where, expect="increase",
                         evidence=stats.paired(b, t, unit="seeds"),
                         note="baseline → + A_ch model; share of the upsampled map inside disc_mask")
    last, inner = _column(table, "baseline", "sep_gradcam_last"), _column(table, "baseline", "sep_gradcam_inner")
    record_claim(recorder, id="sf-inner-more-separable", paper=PAPER,
                 claim="Inner-layer (Grad-CAM) maps of the target and the confuser are more separable than last-layer "
                       "maps (baseline model)",
                 paper_value="qualitative (Fig. 3)", ours=f"{last.mean():.3f} (last) vs {inner.mean():.3f} (inner)",
                 setting=where, expect="decrease", evidence=stats.paired(last, inner, unit="seeds"),
                 note="sIoU at each layer's own resolution; effect = inner − last")
    px = _column(table, "baseline", "cons_pixelwise")
    for other in ("channelwise", "gradcam"):
        o = _column(table, "baseline", f"cons_{other}")
        record_claim(recorder, id=f"sf-pixelwise-consistent-vs-{other}", paper=PAPER,
                     claim=f"Pixel-wise maps are more consistent across layers than {ATTENTION_LABELS[other]} "
                           "(share of the inner map inside the last layer's mask, baseline model)",
                     paper_value="qualitative (Fig. 5)", ours=f"{o.mean():.3f} vs {px.mean():.3f}", setting=where,
                     expect="increase", evidence=stats.paired(o, px, unit="seeds"),
                     note=f"effect = A_px − {ATTENTION_LABELS[other]}")


def record_ablation_claims(recorder: RunRecorder, frame: pd.DataFrame | None, config: SharpenFocusConfig,
                           why: str = "") -> None:
    """Each port choice vs the paper's reading on the same seeds (does it cost accuracy?); the whole port vs the
    baseline (no gain, as the ports report). Without a frame: not run, ``why``."""
    if frame is None:
        record_not_run(recorder, id="sf-ablation-ports", paper=PAPER,
                       claim="Ablation: the unofficial ports' choices (logits seed, per-batch normalisation, detached "
                             "gradients) cost the gain the paper reports",
                       paper_value=PORT_RESULT, why=why or "no ablation variants in this run (ablations=())")
        return
    paper = _pct(_column(frame, "paper", "accuracy", "variant"))
    where = setting(config, len(paper)) + f"; ablations on {ATTENTION_LABELS[config.reference]}"
    for variant in frame.variant.unique():
        if variant in ("paper", "baseline"):
            continue
        acc = _pct(_column(frame, variant, "accuracy", "variant"))
        record_claim(recorder, id=f"sf-ablation-{variant}", paper=PAPER,
                     claim=f"Ablation: the ports' {ABLATIONS[variant][0]} lowers accuracy against the paper's reading "
                           "(the explanation offered for the ports' missing gain)",
                     paper_value=PORT_RESULT, ours=f"{paper.mean():.1f} → {acc.mean():.1f}", setting=where,
                     expect="decrease", evidence=stats.paired(paper, acc, unit="seeds"),
                     note="effect = variant − paper's reading, points")
    if "port" in set(frame.variant):
        base, port = _pct(_column(frame, "baseline", "accuracy", "variant")), _pct(_column(frame, "port", "accuracy",
                                                                                          "variant"))
        record_claim(recorder, id="sf-port-no-gain", paper=PAPER,
                     claim="With all the ports' choices the losses gain nothing over the baseline (as the ports "
                           "report)",
                     paper_value=PORT_RESULT, ours=f"{base.mean():.1f} → {port.mean():.1f}", setting=where,
                     expect="equivalent", evidence=stats.paired(base, port, margin=1.0, unit="seeds"),
                     note="equivalence within ±1 point; effect = port − baseline")


def record_multilabel_claims(recorder: RunRecorder, frame: pd.DataFrame | None, config: SharpenFocusConfig,
                             why: str = "") -> None:
    """Table 6 analog: AP and AUC of + A_ch / + A_px over the baseline on the multi-label testbed (paired over
    seeds); without a frame: not run, ``why``."""
    if frame is None:
        for metric, value in (("ap", "77.44 → 83.22 / 83.17"), ("auc", "0.976 → 0.980 / 0.981")):
            record_not_run(recorder, id=f"sf-table6-analog-{metric}", paper=PAPER,
                           claim=f"Table 6 analog: the losses raise multi-label {metric.upper()} over the baseline",
                           paper_value=value, why=why or "ml_seeds=0")
        return
    where = (f"synthetic multi-label analog (1–{config.ml_max_objects} birds, one per quadrant), {config.ml_classes} "
             f"classes{' in confusable pairs' if config.ml_pairs else ''}, {config.ml_train_per_class} training "
             f"images per class, {config.ml_resolution} px, CIFAR ResNet-{config.depth} (width {config.width}), "
             f"{config.optimizer} lr {config.lr}, {config.ml_epochs} epochs, target map: "
             f"{config.multilabel_target}, {frame.seed.nunique()} seeds, {config.profile} profile")
    for metric, paper_value in (("ap", {"channelwise": "77.44 → 83.17", "pixelwise": "77.44 → 83.22"}),
                                ("auc", {"channelwise": "0.976 → 0.981", "pixelwise": "0.976 → 0.980"})):
        scale = 100 if metric == "ap" else 1
        base = scale * _column(frame, "baseline", metric)
        for kind in [k for k in ("channelwise", "pixelwise") if k in set(frame.model)]:
            ours = scale * _column(frame, kind, metric)
            record_claim(recorder, id=f"sf-table6-analog-{metric}-{kind}", paper=PAPER,
                         claim=f"Table 6 analog: the losses on {ATTENTION_LABELS[kind]} raise multi-label "
                               f"{metric.upper()} over the baseline",
                         paper_value=paper_value[kind], ours=f"{base.mean():.3g} → {ours.mean():.3g}", setting=where,
                         expect="increase", evidence=stats.paired(base, ours, unit="seeds"),
                         note=f"macro mean over classes{' (%)' if metric == 'ap' else ''}; effect = trained − baseline")


# --- sentences for the prose (sections that a profile may not run) -------------------------------------------

def disc_sentence(table: pd.DataFrame) -> str:
    """The disc-part shares of the baseline and the + A_ch model (A_ch maps), or why there are none."""
    by = table.groupby("model").mean(numeric_only=True)
    a = REFERENCE_ATTENTION
    if not np.isfinite(by.loc["baseline", f"disc_{a}_last"]):
        return "not measured: this data set has no part annotations"
    return (f"{by.loc['baseline', f'disc_{a}_inner']:.1%} (inner) and "
            f"{by.loc['baseline', f'disc_{a}_last']:.1%} (last) for the baseline, "
            f"{by.loc['channelwise', f'disc_{a}_inner']:.1%} and "
            f"{by.loc['channelwise', f'disc_{a}_last']:.1%} after training with the losses on A_ch")


def ablation_sentence(frame: pd.DataFrame | None, why: str = "") -> str:
    """Each variant's mean paired difference to the paper's reading, or why the ablation did not run."""
    if frame is None:
        return f"not run in this profile ({why or 'ablations=()'})"
    paper = frame[frame.variant == "paper"].sort_values("seed").accuracy.to_numpy()
    parts = []
    for variant in frame.variant.unique():
        if variant in ("paper", "baseline"):
            continue
        acc = frame[frame.variant == variant].sort_values("seed").accuracy.to_numpy()
        ev = stats.paired(100 * paper, 100 * acc)
        parts.append(f"{ABLATIONS[variant][0]}: {ev.effect:+.2f} points [{ev.ci[0]:+.2f}, {ev.ci[1]:+.2f}]")
    return "; ".join(parts)


def multilabel_sentence(frame: pd.DataFrame | None, why: str = "") -> str:
    """Mean AP and AUC per multi-label model, or why the section did not run."""
    if frame is None:
        return f"not run in this profile ({why or 'ml_seeds=0'})"
    by = frame.groupby("model").mean(numeric_only=True)
    return "; ".join(f"{LABELS[k]}: AP {100 * by.loc[k, 'ap']:.1f} %, AUC {by.loc[k, 'auc']:.3f}"
                     for k in ("baseline", "channelwise", "pixelwise") if k in by.index)


def studies_sentence(studies: Mapping[str, Any]) -> str:
    """Which studies ran and which did not (with what is missing), or that the profile runs none."""
    if not studies:
        return "none in this profile (the paper profile runs them: studies=…)"
    return "; ".join(f"{name}: {'trained and scored' if r.ran else 'not run — ' + r.why.split('.')[0]}"
                     for name, r in studies.items())


def resnet18_sentence(rows: list[dict]) -> str:
    """ResNet-18's step-time ratios, or that it was not measured."""
    if len(rows) < 2:
        return "not measured in this profile (cost_resnet18=False)"
    return (f"{rows[1]['ratio_separate']:.2f}× (two gradient calls) and {rows[1]['ratio_batched']:.2f}× (one batched "
            f"call) for torchvision's ResNet-18 with the losses at layer3 + layer4")


def pivot(maps: pd.DataFrame, value: str) -> pd.DataFrame:
    """One column of :func:`maps_table` as attention × layer rows and one column per model (in Table 1's order);
    rows where it is undefined are left out (consistency: the inner layer only; disc part: synthetic data only)."""
    frame = maps.dropna(subset=[value])
    if frame.empty:
        return pd.DataFrame()
    frame = frame.pivot_table(index=["attention", "layer"], columns="model", values=value)
    return frame[[LABELS[k] for k in MODELS if LABELS[k] in frame.columns]]

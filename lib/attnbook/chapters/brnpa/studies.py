"""Chapter 5's experiments: Tables 1/6 with Fig. 8 (three heads at two resolutions), Tables 4/5 with the
authors' code against the paper (ablations), and Fig. 9 (cost). Paper: BR-NPA (Gomez et al.) §3.1, §4.1,
§4.3, App. B.4.

Chapter: ``nbs/05_brnpa.ipynb``. The tables and figures of these studies are in
:mod:`attnbook.chapters.brnpa.figures`, their numbers and verdicts in :mod:`attnbook.chapters.brnpa.claims`.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
import torch

from attnbook.chapters.brnpa.config import ABLATIONS, KINDS, TEACHER_LOGITS, BRNPAConfig, ablation_seeds, seeds
from attnbook.chapters.brnpa.evaluation import Evaluation, evaluate_attention
from attnbook.chapters.brnpa.pipeline import (
    Distillation,
    ImageTask,
    Inputs,
    WithColumns,
    build_model,
    load_task,
    prepare_inputs,
    pretrain,
    subset_objective,
    train_model,
)
from attnbook.config import device_for
from attnbook.models.staged import StagedModel
from attnbook.profiling import StepCost, step_cost, step_cost_isolated
from attnbook.seeding import seed_everything
from attnbook.train import cross_entropy, predict

# --- Table 1 / Table 6 (+ Fig. 8): three heads at two resolutions ------------------------------------


@dataclass
class ResolutionStudy:
    """Stage-B models of every kind at low and high (distilled) resolution, per seed."""

    evaluations: dict[tuple[str, str, int], Evaluation]  # (kind, resolution, seed)
    grad_norms: dict[tuple[str, int], dict[str, list[float]]]  # (kind, seed) → conv → per-step norms (low res)
    models: dict[tuple[str, str], StagedModel]  # (kind, resolution) of the first seed, for figures
    seconds: float = 0.0

    def pooled(self, kind: str, resolution: str, attribute: str) -> torch.Tensor:
        """An :class:`Evaluation` attribute concatenated over seeds (for descriptive means over all images;
        tests over seeds use :meth:`of`)."""
        return torch.cat([getattr(e, attribute) for (k, r, _), e in self.evaluations.items()
                          if (k, r) == (kind, resolution)])

    def of(self, kind: str, resolution: str) -> list[Evaluation]:
        """The evaluations of one kind at one resolution, one per seed."""
        return [e for (k, r, _), e in self.evaluations.items() if (k, r) == (kind, resolution)]


def resolution_study(config: BRNPAConfig, state: Mapping[str, torch.Tensor], inputs: Inputs,
                     task: ImageTask) -> ResolutionStudy:
    """For each seed and kind: a low-resolution model (cross-entropy, gradient norms recorded) and a
    high-resolution student distilled from it (§3.1, Eq. 1). Paper: BR-NPA Tables 1 and 6, Fig. 8."""
    start = time.perf_counter()
    study = ResolutionStudy({}, {}, {})
    distill = Distillation(config.alpha, config.temperature)
    for seed in seeds(config):
        for kind in KINDS:
            build = partial(build_model, config, state, kind, task.num_classes, start=inputs.start, seed=seed)
            low = build(high_res=False)
            study.grad_norms[kind, seed] = train_model(config, low, inputs.train, seed, config.epochs)
            teacher = predict(low, inputs.train)  # [N, K], in dataset order
            high = build(high_res=True)
            train_model(config, high, WithColumns(inputs.train, {TEACHER_LOGITS: teacher}), seed, config.epochs,
                        objective=distill)
            for resolution, model in (("low", low), ("high", high)):
                study.evaluations[kind, resolution, seed] = evaluate_attention(model, inputs.test,
                                                                               task.info.part_names)
                if seed == config.seed:
                    study.models[kind, resolution] = model.eval()
    study.seconds = time.perf_counter() - start
    return study


def other_dataset_studies(config: BRNPAConfig) -> dict[str, ResolutionStudy]:
    """Table 1 on the config's datasets after the first (paper: FGVC-Aircraft, Stanford Cars): stage A,
    inputs and the resolution study for each; empty on the synthetic benchmark."""
    studies = {}
    for name in config.datasets[1:]:
        task = load_task(config, name)
        state = pretrain(config, task).backbone.state_dict()
        inputs = prepare_inputs(config, state, task, config.train_from)
        studies[name] = resolution_study(config, state, inputs, task)
    return studies


# --- Tables 4 and 5, and the authors' code vs the paper ----------------------------------------------

def variant_key(config: BRNPAConfig, options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The Algorithm 1 settings a variant runs with. Variants with equal keys train the same main
    classifier (Table 5's extra classifiers are detached and created after it), so one model serves both."""
    full = {"activation": config.activation, "suppression": config.suppression, "selection": "active",
            "refine": True, **options}
    return tuple(sorted((k, v) for k, v in full.items() if k != "aux_subsets"))


def ablation_study(config: BRNPAConfig, state: Mapping[str, torch.Tensor], task: ImageTask,
                   inputs: Inputs | None = None) -> dict[str, list[Evaluation]]:
    """BR-NPA variants of :data:`~attnbook.chapters.brnpa.config.ABLATIONS` at high resolution without
    distillation (as §4.3), one per seed of :func:`~attnbook.chapters.brnpa.config.ablation_seeds`; trained
    from ``config.ablation_start`` (cpu: heads on frozen high-resolution maps). Paper: Tables 4/7 and 5."""
    if inputs is None:
        inputs = prepare_inputs(config, state, task, config.ablation_start, high_res=True)
    results: dict[str, list[Evaluation]] = defaultdict(list)
    for seed in ablation_seeds(config):
        done: dict[tuple, Evaluation] = {}
        for name, (_, options) in ABLATIONS.items():
            key = variant_key(config, options)
            if key not in done:
                model = build_model(config, state, "brnpa", task.num_classes, start=inputs.start, high_res=True,
                                    seed=seed, **options)
                objective = subset_objective if options.get("aux_subsets") else cross_entropy
                train_model(config, model, inputs.train, seed, config.ablation_epochs, objective=objective)
                seed_everything(seed)  # random selection draws at evaluation too
                done[key] = evaluate_attention(model, inputs.test, task.info.part_names)
            results[name].append(done[key])
    return dict(results)


# --- efficiency (Fig. 9, App. B.4) ------------------------------------------------------------------

def efficiency(config: BRNPAConfig) -> pd.DataFrame:
    """Latency and memory of every configured backbone × head (long format; :mod:`attnbook.profiling`),
    each in its own process unless ``config.efficiency_isolated`` is off (then memory peaks mix: compare
    latencies only). On the CPU with one thread (see :func:`attnbook.profiling.step_cost`)."""
    threads = 1 if device_for(config) == "cpu" else 0
    measure = step_cost_isolated if config.efficiency_isolated else step_cost
    rows = []
    for arch in config.efficiency_archs:
        for head in config.efficiency_heads:
            spec = StepCost(arch, head, device_for(config), config.efficiency_size, config.efficiency_batch,
                            config.efficiency_steps, config.efficiency_warmup, threads=threads)
            rows.append({"backbone": arch, "head": head, **measure(spec)})
    return pd.DataFrame(rows)

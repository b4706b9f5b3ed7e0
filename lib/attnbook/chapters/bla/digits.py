"""Chapter 4 (BLA), §4.1: the small CNN on 3 vs 8, with and without a BLA-T module.

Paper: BLA §4.1 — the L2X authors' CNN on MNIST's threes and eights (Adam 1e-3, batch 32, one sigmoid
unit and the cross-entropy loss), baseline vs BLA-T over independent runs, Mann-Whitney U. Offline data:
scikit-learn's handwritten digits (:mod:`attnbook.data.digits`, an analog); ``data="real"`` reads MNIST.
Also the code-vs-paper ablation γ = 1/n (the text) vs 0.98/n (the code), and where BLA-T's hard
explanation δ lies on the digit's ink (not in the paper).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from attnbook import metrics, stats
from attnbook.chapters.bla.config import (
    ACC_MARGIN,
    DIGITS_PAIR,
    TEXT_GAMMA,
    BLAConfig,
    digits_models,
    epochs_for,
    seeds,
)
from attnbook.config import device_for
from attnbook.data import records as R
from attnbook.data.digits import Digits
from attnbook.methods.pooling import HARD
from attnbook.methods.registry import make_head
from attnbook.models.small_cnn import SmallCNN
from attnbook.seeding import seed_everything
from attnbook.train import FeatureDataset, StepOutput, TrainConfig, evaluate, fit, model_input, predict


def _records(data: Dataset, batch_size: int = 512) -> dict[str, Tensor]:
    """Stack a dataset of records into ``{key: [N, …]}`` (``image`` and ``label`` only)."""
    columns: dict[str, list[Tensor]] = {R.IMAGE: [], R.LABEL: []}
    for batch in DataLoader(data, batch_size=batch_size):
        for key in columns:
            columns[key].append(batch[key])
    return {key: torch.cat(values) for key, values in columns.items()}


def digits_data(config: BLAConfig) -> tuple[FeatureDataset, FeatureDataset]:
    """(train, test) ``{"image": [n, 1, 28, 28], "label"}`` for 3 (0) vs 8 (1): scikit-learn's digits
    (an analog: 250 / 107 images) or, with ``data="real"``, MNIST (11,982 / 1,984; BLA §4.1)."""
    if config.data == "real":
        from attnbook.data.catalog import load_dataset  # only the paper profile reads real data

        splits = [_records(load_dataset("mnist", split=s, digits=DIGITS_PAIR)) for s in ("train", "test")]
        return tuple(FeatureDataset({R.IMAGE: t[R.IMAGE][:, :1], R.LABEL: t[R.LABEL]}) for t in splits)
    return tuple(FeatureDataset(Digits(split, digits=DIGITS_PAIR).grey()) for split in ("train", "test"))


def sigmoid_bce(model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
    """BLA §4.1: one sigmoid output unit and the cross-entropy loss — BCE on the logit ``[B, 1]``."""
    logits = model(model_input(batch))  # [B, 1]
    return StepOutput(F.binary_cross_entropy_with_logits(logits[:, 0], batch[R.LABEL].float()), logits)


def digits_model(name: str, config: BLAConfig, side: int) -> SmallCNN:
    """The paper's CNN (``"bl"``) or the CNN with a BLA-T module (θ, γ = 0.98/n; ``"bla_t_text"``: γ = 1/n).

    BLA §4.1 and Eq. 2. The BLA-T head is built before the CNN's trunk (the order the initial weights
    are drawn in, so every run starts from the same weights as before)."""
    channels = SmallCNN.feature_channels
    heads: dict[str, Callable[[], nn.Module | None]] = {
        "bl": lambda: None,  # SmallCNN's own GAP head, drawn after the trunk
        "bla_t": lambda: make_head("bla_t", channels, 1, theta=config.theta),
        TEXT_GAMMA: lambda: make_head("bla_t", channels, 1, theta=config.theta, gamma=1.0 / side**2),
    }
    if name not in heads:
        raise ValueError(f"unknown 3-vs-8 model {name!r}; choose one of {list(heads)}")
    return SmallCNN(in_channels=1, num_outputs=1, head=heads[name]())


@dataclass
class DigitsResults:
    """Per (seed, model): hard-explanation test accuracy, loss, whether it collapsed to one class."""

    scores: pd.DataFrame
    models: dict[str, SmallCNN]  # the first seed's models (for the figure)
    n_train: int = 0
    n_test: int = 0


def run_digits(config: BLAConfig, train: FeatureDataset, test: FeatureDataset) -> DigitsResults:
    """Train every 3-vs-8 model for every seed end to end (Adam 1e-3, batch 32; BLA §4.1)."""
    device = device_for(config)
    side = train.tensors[R.IMAGE].shape[-1] // 4  # two 2×2 pools: 28 → 7
    rows, first = [], {}
    for seed in seeds(config):
        for name in digits_models(config):
            seed_everything(seed)
            model = digits_model(name, config, side)
            fit(model, train, TrainConfig(epochs=epochs_for(config, config.digits_epochs), seed=seed,
                                          device=device, progress=False), objective=sigmoid_bce)
            result = evaluate(model, test, sigmoid_bce)
            predicted = predict(model, test)[:, 0] > 0
            rows.append({"seed": seed, "model": name, "acc": result["acc"], "loss": result["loss"],
                         "collapsed": bool(predicted.all() or not predicted.any())})
            first.setdefault(name, model.eval())
    return DigitsResults(pd.DataFrame(rows), first, len(train), len(test))


def digits_test(scores: pd.DataFrame, a: str = "bl", b: str = "bla_t",
                margin: float | None = ACC_MARGIN) -> stats.Evidence | None:
    """Accuracy of ``b`` vs ``a`` over independent runs (one per seed and model): the paper's Mann-Whitney U
    (BLA §4.1; effect: the Hodges–Lehmann shift b − a) with a TOST within ±``margin``; None without two runs
    of each."""
    acc = {name: group["acc"].to_numpy() for name, group in scores.groupby("model")}
    if a not in acc or b not in acc or min(len(acc[a]), len(acc[b])) < 2:
        return None
    return stats.unpaired(acc[a], acc[b], margin=margin, method="mannwhitney", unit="runs")


def collapsed_runs(scores: pd.DataFrame, model: str) -> int:
    """How many 3-vs-8 runs of ``model`` predicted a single class for every test digit."""
    return int(scores[scores.model == model]["collapsed"].sum())


def digits_report(digits: DigitsResults) -> dict[str, float]:
    """The numbers §4.1's text quotes: mean accuracy per model (``<model>/acc``), the Mann-Whitney p of
    BLA-T vs the baseline (``p``), its TOST p within ±ACC_MARGIN (``p_equivalence``; both NaN if not computed)
    and the runs with the text's γ that collapsed (``bla_t_text/collapsed``, a count)."""
    means = digits.scores.groupby("model")["acc"].mean()
    report: dict[str, float] = {f"{name}/acc": acc for name, acc in means.items()}
    result = digits_test(digits.scores)
    report["p"] = float("nan") if result is None else result.p_value
    report["p_equivalence"] = float("nan") if result is None else result.p_equivalence
    report[f"{TEXT_GAMMA}/collapsed"] = collapsed_runs(digits.scores, TEXT_GAMMA)
    return report


def hard_explanation(model: SmallCNN, images: Tensor) -> Tensor | None:
    """δ ``bool [N, h, w]`` of the CNN's head on ``images`` through the attention interface
    (:mod:`attnbook.methods.base`); None when the head has no hard selection (the baseline's GAP)."""
    with torch.no_grad():
        out = model.head.attend(model.features(images))
    return out.map(HARD).bool() if HARD in out.map_names else None


def digits_truth(digits: DigitsResults, test: FeatureDataset, ink: float = 0.25) -> dict[str, float]:
    """The first seed's BLA-T CNN on the test digits: mean size of δ, share of δ's area on the digit's ink
    (pixels > ``ink``), and that share for a random cell (chance). Empty without a BLA-T model."""
    model = digits.models.get("bla_t")
    if model is None:
        return {}
    x = test.tensors[R.IMAGE].to(next(model.parameters()).device)  # [N, 1, 28, 28]
    hard = hard_explanation(model, x).cpu()  # [N, 7, 7]
    cells = metrics.cell_fractions(x[:, 0].cpu() > ink, hard.shape[-1])
    return {"size": float(hard.float().sum(dim=(1, 2)).mean()),
            "on_ink": float(metrics.mass_in_region(hard.float(), cells).mean()), "ink_chance": float(cells.mean())}

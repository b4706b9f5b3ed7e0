"""Statistics the chapters use to turn measurements into verdicts (the papers' own tests where named).

Every verdict is computed: :func:`verdict` maps an effect's direction and a p-value onto the claims
ledger's statuses, so no status is typed by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class TestResult:
    """An effect (b − a, or a statistic's natural effect), its p-value and the test's name."""

    effect: float
    p_value: float
    test: str

    def __str__(self) -> str:
        return f"{self.test}: effect {self.effect:+.4g}, p = {self.p_value:.3g}"


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (ddof=1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    se = float(arr.std(ddof=1) / np.sqrt(arr.size)) if arr.size > 1 else 0.0
    return float(arr.mean()), se


def format_mean_se(values: Sequence[float], digits: int = 4) -> str:
    mean, se = mean_se(values)
    return f"{mean:.{digits}f} ± {se:.{digits - 1}f}"


def wilcoxon(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Paired Wilcoxon signed-rank test of b vs a (BLA §4.2 compares each variant with BL this way)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"wilcoxon needs two paired samples of equal length ≥ 2, got {a.size} and {b.size}")
    if np.allclose(a, b):
        return TestResult(0.0, 1.0, "Wilcoxon signed-rank")
    return TestResult(float(np.median(b - a)), float(_st.wilcoxon(b, a).pvalue), "Wilcoxon signed-rank")


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Mann-Whitney U test of b vs a (BLA §4.1, MNIST baseline vs BLA)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 1 or b.size < 1:
        raise ValueError("mann_whitney needs two non-empty samples")
    return TestResult(float(np.mean(b) - np.mean(a)), float(_st.mannwhitneyu(b, a, alternative="two-sided").pvalue),
                      "Mann-Whitney U")


def paired_binary(a: Sequence[bool], b: Sequence[bool]) -> TestResult:
    """Exact McNemar test of paired hits (e.g. two explainers' pointing-game hits on the same images)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError("paired_binary needs paired samples of equal length")
    only_b, only_a = int(np.sum(b & ~a)), int(np.sum(a & ~b))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(_st.binomtest(only_b, n, 0.5).pvalue)
    return TestResult(float(b.mean() - a.mean()) if a.size else 0.0, p, "exact McNemar")


def two_proportions(hits_a: Sequence[bool], hits_b: Sequence[bool]) -> TestResult:
    """Fisher's exact test of two independent proportions (e.g. accuracy on two test splits); effect b − a."""
    a, b = np.asarray(hits_a, bool), np.asarray(hits_b, bool)
    table = [[int(a.sum()), int((~a).sum())], [int(b.sum()), int((~b).sum())]]
    return TestResult(float(b.mean() - a.mean()), float(_st.fisher_exact(table).pvalue), "Fisher exact")


def verdict(result: TestResult, expected_sign: int, alpha: float = 0.05) -> str:
    """Ledger status for a claim that the effect has ``expected_sign`` (+1 / −1), or none (0 = "no difference").

    A significant effect in the claimed direction → reproduced; significant the other way → not
    reproduced; not significant → inconclusive. For a claim of *no difference* (sign 0): not
    significant → reproduced, significant → not reproduced.
    """
    significant = result.p_value < alpha
    if expected_sign == 0:
        return "not reproduced" if significant else "reproduced"
    if not significant:
        return "inconclusive"
    return "reproduced" if np.sign(result.effect) == np.sign(expected_sign) else "not reproduced"

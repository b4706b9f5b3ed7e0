"""Statistics the chapters use to turn measurements into verdicts (the papers' own tests where named).

Every verdict is computed, so no status is typed by hand. :func:`paired`, :func:`unpaired`,
:func:`paired_proportions` and :func:`seed_level` give :class:`Evidence` (effect, 95 % CI, difference p and,
given a margin, a TOST equivalence p); :func:`decide` maps it and a claim ("increase", "decrease",
"equivalent") onto the ledger's statuses. Equivalence is only shown by an equivalence test; a non-significant
result is "inconclusive" with the n that would be needed.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _st


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (ddof=1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    se = float(arr.std(ddof=1) / np.sqrt(arr.size)) if arr.size > 1 else 0.0
    return float(arr.mean()), se


def format_mean_se(values: Sequence[float], digits: int = 4) -> str:
    """"mean ± s.e." with ``digits`` decimals for the mean and one fewer for the standard error."""
    mean, se = mean_se(values)
    return f"{mean:.{digits}f} ± {se:.{digits - 1}f}"


STATUSES = ("reproduced", "not reproduced", "inconclusive", "not run")
CLAIMS = ("increase", "decrease", "equivalent")
LEVEL = 0.95  # confidence level of every CI below


@dataclass(frozen=True)
class Evidence:
    """What a comparison of b with a showed: ``effect`` is b − a (``effect_kind`` says by which statistic).

    ``n`` counts units of replication (pairs, seeds, items; both groups together when unpaired) and
    ``unit`` names them. ``p_value`` is the two-sided test of no difference; ``p_equivalence`` the TOST
    p-value for |b − a| < ``margin`` (None without a margin). ``se`` is the standard error of the mean
    difference (used for power calculations) and ``all_tied`` says every unit ties (no information).
    """

    test: str
    design: str  # "paired" | "unpaired" | "one-sample"
    n: int
    effect: float
    effect_kind: str
    ci: tuple[float, float]
    p_value: float
    p_equivalence: float | None = None
    margin: float | None = None
    unit: str = ""
    se: float = math.nan
    all_tied: bool = False

    def __str__(self) -> str:
        over = f" over {self.n} {self.unit}" if self.unit else f", n = {self.n}"
        text = (f"{self.test}{over}: {self.effect:+.3g} [{self.ci[0]:.3g}, {self.ci[1]:.3g}], "
                f"p = {self.p_value:.2g}")
        if self.margin is not None and self.p_equivalence is not None:
            text += f"; equivalence within ±{self.margin:.3g}: TOST p = {self.p_equivalence:.2g}"
        return text


def _samples(a: ArrayLike, b: ArrayLike, paired: bool, margin: float | None) -> tuple[np.ndarray, np.ndarray]:
    _check_margin(margin)
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if paired and a.shape != b.shape:
        raise ValueError(f"a paired test needs samples of equal length, got {a.size} and {b.size}")
    if min(a.size, b.size) < 2:
        raise ValueError(f"need at least 2 values per sample, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("samples must be finite (no NaN or inf)")
    return a, b


def _check_margin(margin: float | None) -> None:
    if margin is not None and not margin > 0:
        raise ValueError(f"an equivalence margin must be > 0, got {margin}")


def _tol(*arrays: np.ndarray) -> float:
    """Differences below this are float noise (e.g. 0.3 − 0.1 − 0.2) and count as ties."""
    return 1e-12 * max(1.0, *(float(np.abs(x).max()) for x in arrays))


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence scipy's "catastrophic cancellation" warning: one constant sample has variance exactly 0."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        yield


def _constant(c: float, margin: float | None, arrangements: float = 2.0) -> tuple[float, float | None]:
    """p and TOST p when every unit differs by exactly ``c`` (zero variance, where a t test's p is 0 or NaN).

    Exact instead: the sign test (paired, ``arrangements`` = 2ⁿ) or the permutation test of complete
    separation (unpaired, ``arrangements`` = C(n_a + n_b, n_a)): two-sided p = 2 / arrangements, one-sided
    1 / arrangements — so two seeds that differ alike give p = 0.5, never a decisive 0.
    """
    one_sided = 1.0 / arrangements
    p = min(1.0, 2 * one_sided) if c != 0 else 1.0
    return p, (None if margin is None else (one_sided if abs(c) < margin else 1.0))


def _order_ci(estimates: np.ndarray, cdf: np.ndarray | None, mean: float, var: float) -> tuple[float, float]:
    """Distribution-free CI from sorted pairwise estimates (Hodges & Lehmann 1963; Hollander & Wolfe 1999 §3.3,
    §4.3): the k-th smallest and k-th largest, with k − 1 the lower critical value of the rank statistic, from
    its exact no-ties null ``cdf`` or, when None, its normal approximation (``mean``, ``var``). Too few units
    for any such CI at 95 % → (−inf, inf)."""
    half = (1 - LEVEL) / 2
    k = (int(np.sum(cdf <= half + 1e-12)) if cdf is not None
         else math.floor(mean + 0.5 - _st.norm.ppf(1 - half) * math.sqrt(var)))
    return (float(estimates[k - 1]), float(estimates[-k])) if k >= 1 else (-math.inf, math.inf)


def _signed_rank_cdf(n: int) -> np.ndarray:
    """Exact null cdf of the Wilcoxon signed-rank statistic T+ (no ties), T+ = 0 … n(n+1)/2."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r]
    return np.cumsum(counts) / 2.0**n


def _mann_whitney_cdf(m: int, n: int) -> np.ndarray:
    """Exact null cdf of the Mann-Whitney U (no ties), U = 0 … mn, by Mann & Whitney's (1947) recurrence."""
    size = m * n + 1
    prev = [np.eye(1, size).ravel()] * (n + 1)
    for i in range(1, m + 1):
        cur = [prev[0]]
        for j in range(1, n + 1):
            shifted = np.zeros(size)
            shifted[i:] = cur[j - 1][:-i]  # the largest value is a b: it beats all i a's
            cur.append(j / (i + j) * shifted + i / (i + j) * prev[j])
        prev = cur
    return np.cumsum(prev[n])


def _wilcoxon_p(x: np.ndarray, alternative: str = "two-sided") -> float:
    """scipy's Wilcoxon signed-rank p (zeros dropped, Wilcoxon 1945); 1 when every value is zero."""
    return float(_st.wilcoxon(x, alternative=alternative).pvalue) if x.any() else 1.0


def hodges_lehmann(d: ArrayLike) -> float:
    """One-sample Hodges–Lehmann (1963) estimator: the median of the Walsh averages (d_i + d_j) / 2, i ≤ j."""
    d = np.asarray(d, float).ravel()
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2))


def paired(a: ArrayLike, b: ArrayLike, *, margin: float | None = None, method: str = "t",
           unit: str = "") -> Evidence:
    """b vs a over paired units (e.g. per-seed values), on the differences d = b − a.

    ``method="t"``: effect = mean of d with its Student t CI, p from the paired t test
    (``scipy.stats.ttest_rel``); equivalence by Schuirmann's (1987) TOST, the larger p of the one-sided
    t tests of d > −margin and d < +margin. ``method="wilcoxon"``: effect = Hodges–Lehmann estimate (median of
    the Walsh averages, so 7 ties and 6 rises give a rise, where the plain median is 0), CI = the exact
    Wilcoxon signed-rank CI from the Walsh averages (no-ties distribution; normal approximation above
    100 units), p from the signed-rank test (``scipy.stats.wilcoxon``: zeros dropped); TOST with the one-sided
    signed-rank tests of d + margin > 0 and d − margin < 0. Every difference equal to c ≠ 0 (no variance: a
    t test has none to work with): the exact sign test decides (:func:`_constant`), named so in ``test``.
    """
    a, b = _samples(a, b, True, margin)
    d, tol = b - a, _tol(a, b)
    d[np.abs(d) <= tol] = 0.0
    n, tied = d.size, not d.any()
    se = float(d.std(ddof=1) / math.sqrt(n))
    if method == "t":
        effect = float(d.mean())
        name = "paired t"
        if np.ptp(d) <= tol:
            (p, p_eq), ci = _constant(effect, margin, 2.0**n), (effect, effect)
            name = "exact sign test (no variance)" if effect else name
        else:
            with _quiet():
                res = _st.ttest_1samp(d, 0.0)
                p, ci = float(res.pvalue), tuple(map(float, res.confidence_interval(LEVEL)))
                p_eq = None if margin is None else max(
                    float(_st.ttest_1samp(d, -margin, alternative="greater").pvalue),
                    float(_st.ttest_1samp(d, margin, alternative="less").pvalue))
        return Evidence(name, "paired", n, effect, "mean difference", ci, p, p_eq, margin, unit, se, tied)
    if method == "wilcoxon":
        i, j = np.triu_indices(n)
        walsh = np.sort((d[i] + d[j]) / 2)
        ci = _order_ci(walsh, _signed_rank_cdf(n) if n <= 100 else None, walsh.size / 2,
                       n * (n + 1) * (2 * n + 1) / 24)
        if tied:
            p, p_eq = _constant(0.0, margin)
        else:
            p = _wilcoxon_p(d)
            p_eq = None if margin is None else max(_wilcoxon_p(d + margin, "greater"), _wilcoxon_p(d - margin, "less"))
        return Evidence("Wilcoxon signed-rank", "paired", n, float(np.median(walsh)), "Hodges–Lehmann", ci, p, p_eq,
                        margin, unit, se, tied)
    raise ValueError(f"method must be 't' or 'wilcoxon', got {method!r}")


def unpaired(a: ArrayLike, b: ArrayLike, *, margin: float | None = None, method: str = "t",
             unit: str = "") -> Evidence:
    """b vs a for independent samples (n counts both).

    ``method="t"``: Welch's (1947) t test (``scipy.stats.ttest_ind(equal_var=False)``): effect = difference of
    means with the Welch CI; TOST with the one-sided Welch tests of b − a > −margin and < +margin.
    ``method="mannwhitney"``: effect = the two-sample Hodges–Lehmann (1963) shift, the median of all b_j − a_i,
    with the exact Mann-Whitney CI (no-ties distribution; normal approximation above 2,500 pairs), p from
    ``scipy.stats.mannwhitneyu`` (two-sided); TOST with the one-sided tests of b + margin > a and b − margin < a.
    Both samples constant: handled as in :func:`paired` (no NaN).
    """
    a, b = _samples(a, b, False, margin)
    na, nb = a.size, b.size
    se = float(math.sqrt(a.var(ddof=1) / na + b.var(ddof=1) / nb))
    tol = _tol(a, b)
    c = float(b.mean() - a.mean()) if abs(b.mean() - a.mean()) > tol else 0.0
    constant = bool(np.ptp(a) <= tol and np.ptp(b) <= tol)
    tied = constant and c == 0
    if method == "t":
        if constant:
            (p, p_eq), ci, effect = _constant(c, margin, math.comb(na + nb, na)), (c, c), c
        else:
            with _quiet():
                effect, res = float(b.mean() - a.mean()), _st.ttest_ind(b, a, equal_var=False)
                p, ci = float(res.pvalue), tuple(map(float, res.confidence_interval(LEVEL)))
                p_eq = None if margin is None else max(
                    float(_st.ttest_ind(b + margin, a, equal_var=False, alternative="greater").pvalue),
                    float(_st.ttest_ind(b - margin, a, equal_var=False, alternative="less").pvalue))
        return Evidence("Welch t", "unpaired", na + nb, effect, "difference of means", ci, p, p_eq, margin, unit,
                        se, tied)
    if method == "mannwhitney":
        shifts = np.sort(np.subtract.outer(b, a).ravel())
        ci = _order_ci(shifts, _mann_whitney_cdf(na, nb) if na * nb <= 2500 else None, na * nb / 2,
                       na * nb * (na + nb + 1) / 12)
        if tied:
            p, p_eq = _constant(0.0, margin)
        else:
            p = float(_st.mannwhitneyu(b, a, alternative="two-sided").pvalue)
            p_eq = None if margin is None else max(
                float(_st.mannwhitneyu(b + margin, a, alternative="greater").pvalue),
                float(_st.mannwhitneyu(b - margin, a, alternative="less").pvalue))
        return Evidence("Mann-Whitney U", "unpaired", na + nb, float(np.median(shifts)), "Hodges–Lehmann shift", ci,
                        p, p_eq, margin, unit, se, tied)
    raise ValueError(f"method must be 't' or 'mannwhitney', got {method!r}")


def paired_proportions(hits_a: ArrayLike, hits_b: ArrayLike, *, margin: float | None = None,
                       unit: str = "items") -> Evidence:
    """Paired binary outcomes on the same items (e.g. two explainers' pointing-game hits).

    p: exact McNemar (1947) test, a binomial test of the discordant pairs (``scipy.stats.binomtest``). Effect:
    mean(b) − mean(a) with the Wald CI on the paired differences, se = sd(d, ddof=0) / √n (clipped to [−1, 1];
    optimistic with few discordant pairs). TOST: the two one-sided z tests with that se.
    """
    _check_margin(margin)
    a, b = np.asarray(hits_a, bool).ravel(), np.asarray(hits_b, bool).ravel()
    if a.shape != b.shape or a.size < 1:
        raise ValueError(f"paired proportions need paired, non-empty samples, got {a.size} and {b.size}")
    only_b, only_a = int(np.sum(b & ~a)), int(np.sum(a & ~b))
    d = b.astype(float) - a.astype(float)
    n, effect, se = d.size, float(d.mean()), float(d.std() / math.sqrt(d.size))
    p = float(_st.binomtest(only_b, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    z = float(_st.norm.ppf(0.5 + LEVEL / 2))
    ci = (max(-1.0, effect - z * se), min(1.0, effect + z * se))
    p_eq = (_constant(effect, margin)[1] if margin is None or se == 0
            else max(float(_st.norm.sf((effect + margin) / se)), float(_st.norm.cdf((effect - margin) / se))))
    return Evidence("exact McNemar", "paired", n, effect, "difference of proportions", ci, p, p_eq, margin, unit,
                    se, only_a + only_b == 0)


def seed_level(a_by_seed: Sequence[ArrayLike], b_by_seed: Sequence[ArrayLike], *, margin: float | None = None,
               method: str = "t") -> Evidence:
    """:func:`paired` over seeds: each seed's per-image values are averaged first, since the seed (one training
    run) is the unit of replication, not the image."""
    if len(a_by_seed) != len(b_by_seed):
        raise ValueError(f"seed_level needs the same seeds on both sides, got {len(a_by_seed)} and {len(b_by_seed)}")
    means = [[float(np.mean(v)) if np.size(v) else math.nan for v in side] for side in (a_by_seed, b_by_seed)]
    return paired(means[0], means[1], margin=margin, method=method, unit="seeds")


def hierarchical_bootstrap_ci(values_by_seed: Sequence[ArrayLike], *, n_boot: int = 2000, seed: int = 0,
                              statistic: Callable[[np.ndarray], float] = np.mean,
                              level: float = LEVEL) -> tuple[float, float]:
    """Percentile CI of ``statistic`` over all images by a two-stage (hierarchical) bootstrap: resample seeds
    with replacement, then images within each chosen seed (Davison & Hinkley 1997 §3.8; Saravanan et al.
    2020). Unlike resampling pooled images it keeps the between-seed spread in the interval."""
    groups = [np.asarray(v, float).ravel() for v in values_by_seed]
    if not groups or any(g.size == 0 for g in groups):
        raise ValueError("hierarchical_bootstrap_ci needs at least one seed, each with at least one value")
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for k in range(n_boot):
        chosen = (groups[s] for s in rng.integers(len(groups), size=len(groups)))
        draws[k] = statistic(np.concatenate([g[rng.integers(g.size, size=g.size)] for g in chosen]))
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


# ------------------------------------------------------------------------------------------------
# Sample sizes and verdicts
# ------------------------------------------------------------------------------------------------
def _smallest_n(power_at: Callable[[int], float], power: float, start: int) -> float:
    """Smallest integer n ≥ start with power_at(n) ≥ power (power rising with n); inf past 10⁹."""
    lo, hi = start - 1, start
    while power_at(hi) < power:
        if hi > 10**9:
            return math.inf
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= power else (mid, hi)
    return float(hi)


def required_n(effect_sd_ratio: float, *, alpha: float = 0.05, power: float = 0.8, groups: int = 1) -> float:
    """Units for a two-sided test at level α to detect a standardised effect d with the given power.

    Normal approximation n = ((z₁₋α/₂ + z_power) / d)² (Cohen 1988) for one sample or pairs (d = mean
    difference / SD of the differences); ``groups=2``: two equal independent groups, d = difference / SD within
    groups (Cohen's d), n = both groups together = 4((z₁₋α/₂ + z_power) / d)². Small n use Student t quantiles
    (power ≈ F_t(δ√n/s − t₁₋α/₂), df = n − groups), so a t test not significant at n never asks for ≤ n.
    inf when d = 0.
    """
    if effect_sd_ratio == 0:
        return math.inf
    ncp = abs(effect_sd_ratio) / groups

    def power_at(m: int) -> float:
        df = m - groups
        return float(_st.t.cdf(ncp * math.sqrt(m) - _st.t.ppf(1 - alpha / 2, df), df))
    return _smallest_n(power_at, power, groups + 1)


def required_n_equivalence(effect_sd_ratio: float, margin_sd_ratio: float, *, alpha: float = 0.05,
                           power: float = 0.8, groups: int = 1) -> float:
    """Units for a TOST (Schuirmann 1987) at level α to show |effect| < margin with the given power when the
    true effect is ``effect_sd_ratio`` SDs (both arguments in SDs; ``groups`` as in :func:`required_n`).

    Normal approximation (Chow, Shao & Wang 2008 §3.2): power ≈ Φ((Δ − δ)√n/s − z₁₋α) + Φ((Δ + δ)√n/s − z₁₋α)
    − 1, with Student t in place of Φ and z at small n. inf when |effect| ≥ margin (no n can show it).
    """
    delta, margin = abs(effect_sd_ratio) / groups, margin_sd_ratio / groups
    if delta >= margin:
        return math.inf

    def power_at(m: int) -> float:
        df, root = m - groups, math.sqrt(m)
        crit = _st.t.ppf(1 - alpha, df)
        return float(_st.t.cdf((margin - delta) * root - crit, df) + _st.t.cdf((margin + delta) * root - crit, df) - 1)
    return _smallest_n(power_at, power, groups + 1)


@dataclass(frozen=True)
class Verdict:
    """A claims-ledger status ("reproduced", "not reproduced", "inconclusive", "not run"), why, and the evidence."""

    status: str
    reason: str
    evidence: Evidence | None = None

    def __str__(self) -> str:
        return f"{self.status}: {self.reason}"


def _rank_floor(ev: Evidence, alpha: float) -> int:
    """Fewest units with which an exact rank test can reach p < α at all (equal groups when unpaired)."""
    if ev.test in ("Wilcoxon signed-rank", "exact McNemar"):  # McNemar: discordant pairs, so items ≥ that
        return math.floor(math.log2(2 / alpha)) + 1  # 2 / 2ⁿ < α
    if ev.test == "Mann-Whitney U":
        return 2 * next(m for m in range(1, 100) if 2 / math.comb(2 * m, m) < alpha)
    return 2


def _needed(ev: Evidence, equivalence: bool, alpha: float, power: float) -> str:
    groups = 2 if ev.design == "unpaired" else 1
    sd = ev.se * math.sqrt(ev.n)  # SD per unit, so that se = sd / √n
    if not sd > 0:
        m = float(ev.n + 1)
    elif equivalence:
        m = required_n_equivalence(ev.effect / sd * groups, ev.margin / sd * groups, alpha=alpha, power=power,
                                   groups=groups)
    else:
        m = required_n(ev.effect / sd * groups, alpha=alpha, power=power, groups=groups)
    m = max(m, _rank_floor(ev, alpha))
    if m == math.inf:
        return "> 10⁹"
    return f"≈ {m:.0f}" if m > ev.n else f"> {ev.n}"


def decide(evidence: Evidence | None, claim: str, *, alpha: float = 0.05, power: float = 0.8) -> Verdict:
    """Ledger verdict on a claim about b vs a: "increase" (b > a), "decrease" (b < a) or "equivalent"
    (|b − a| < evidence.margin).

    Directional: p < α with the effect (mean difference or Hodges–Lehmann, never a plain median) in the claimed
    direction → reproduced; the other way → not reproduced; otherwise inconclusive, with the n needed for
    ``power`` at the observed standardised effect (:func:`required_n`). Equivalent: TOST p < α → reproduced;
    else a significant difference → not reproduced; else inconclusive with the n a TOST would need
    (:func:`required_n_equivalence`). A non-significant difference test alone never reproduces equivalence.
    Every unit tied (a ceiling or floor) → inconclusive; no evidence → "not run".
    """
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, got {claim!r}")
    if evidence is None:
        return Verdict("not run", "no measurement", None)
    ev = evidence
    n, found = ev.n, f"{ev.effect:+.3g}, p = {ev.p_value:.2g}"
    if ev.all_tied:
        return Verdict("inconclusive", f"every unit ties (ceiling/floor): no evidence either way (n = {n})", ev)
    if claim == "equivalent":
        if ev.margin is None or ev.p_equivalence is None:
            raise ValueError("an equivalence claim needs evidence computed with a margin")
        if ev.p_equivalence < alpha:
            return Verdict("reproduced", f"equivalent within ±{ev.margin:.3g}: TOST p = {ev.p_equivalence:.2g}", ev)
        if ev.p_value < alpha:
            return Verdict("not reproduced", f"a difference was detected: {found}", ev)
        if abs(ev.effect) >= ev.margin:
            return Verdict("inconclusive", f"neither equivalence within ±{ev.margin:.3g} nor a difference shown: "
                           f"the observed {found} lies outside the margin (n = {n})", ev)
        return Verdict("inconclusive", f"underpowered: n = {n}, equivalence within ±{ev.margin:.3g} would need "
                       f"{_needed(ev, True, alpha, power)} (observed {found})", ev)
    sign = 1 if claim == "increase" else -1
    if ev.p_value < alpha and ev.effect * sign > 0:
        return Verdict("reproduced", f"{claim}: {found}", ev)
    if ev.p_value < alpha and ev.effect * sign < 0:
        return Verdict("not reproduced", f"a significant change the other way: {found}", ev)
    if ev.effect == 0:
        return Verdict("inconclusive", f"no effect observed (n = {n}, p = {ev.p_value:.2g})", ev)
    return Verdict("inconclusive", f"underpowered: n = {n}, would need {_needed(ev, False, alpha, power)} "
                   f"for {power:.0%} power at the observed {found}", ev)

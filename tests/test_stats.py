"""Statistics against scipy and hand-computed answers."""
import math
import re
import warnings

import numpy as np
import pytest
from scipy import stats as st

from attnbook import stats


def test_mean_se_by_hand():
    assert stats.mean_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0 / np.sqrt(3)))
    assert stats.mean_se([5.0]) == (5.0, 0.0)
    assert stats.format_mean_se([1.0, 2.0, 3.0], 2) == "2.00 ± 0.6"


def test_wilcoxon_and_mann_whitney_p_values_are_scipys():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(0.8, size=12)
    assert stats.paired(a, b, method="wilcoxon").p_value == pytest.approx(st.wilcoxon(b, a).pvalue)
    assert stats.unpaired(a, b, method="mannwhitney").p_value == pytest.approx(st.mannwhitneyu(b, a).pvalue)
    assert stats.paired(a, a, method="wilcoxon").p_value == 1.0


def test_paired_proportions_count_only_discordant_pairs():
    a = np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)
    b = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)
    result = stats.paired_proportions(a, b)
    assert result.effect == pytest.approx(4 / 8)
    assert result.p_value == pytest.approx(st.binomtest(4, 4, 0.5).pvalue)  # 4 discordant, all favour b


# ------------------------------------------------------------------------------------------------
# Evidence and decide: equivalence needs TOST, non-significance is inconclusive
# ------------------------------------------------------------------------------------------------
def _tost_t(d, margin):
    """Schuirmann's TOST by hand from two one-sided scipy t tests."""
    return max(st.ttest_1samp(d, -margin, alternative="greater").pvalue,
               st.ttest_1samp(d, margin, alternative="less").pvalue)


def _needed(reason):
    return int(re.search(r"would need ≈ (\d+)", reason).group(1))


def test_evidence_str():
    ev = stats.Evidence("paired t", "paired", 10, 0.021, "mean difference", (0.004, 0.038), 0.02, unit="seeds")
    assert str(ev) == "paired t over 10 seeds: +0.021 [0.004, 0.038], p = 0.02"
    assert "TOST p = 0.001" in str(stats.Evidence("x", "paired", 3, 0.0, "m", (0, 0), 1.0, 0.001, 0.5))


def test_equivalent_reproduced_with_tost_matching_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(0.8, 0.1, size=10)
    d = rng.normal(0.0, 0.05, size=10)
    ev = stats.paired(a, a + d, margin=1.0)
    assert ev.p_equivalence == pytest.approx(_tost_t(d, 1.0))
    assert ev.p_value == pytest.approx(st.ttest_rel(a + d, a).pvalue)
    assert ev.ci == pytest.approx(tuple(st.ttest_rel(a + d, a).confidence_interval()))
    verdict = stats.decide(ev, "equivalent")
    assert verdict.status == "reproduced" and "±1" in verdict.reason and verdict.evidence is ev
    ev = stats.paired(a, a + d, margin=1.0, method="wilcoxon")
    assert ev.p_equivalence == pytest.approx(max(st.wilcoxon(d + 1, alternative="greater").pvalue,
                                                 st.wilcoxon(d - 1, alternative="less").pvalue))
    assert stats.decide(ev, "equivalent").status == "reproduced"
    b = a + 0.01 + rng.normal(0, 0.05, size=10)
    ev = stats.unpaired(a, b, margin=0.5)
    welch = [st.ttest_ind(b + s * 0.5, a, equal_var=False, alternative=alt).pvalue for s, alt in ((1, "greater"),
                                                                                                  (-1, "less"))]
    assert ev.p_equivalence == pytest.approx(max(welch))
    assert stats.decide(ev, "equivalent").status == "reproduced"


@pytest.mark.parametrize("test", [lambda a, b: stats.paired(a, b, margin=0.1),
                                  lambda a, b: stats.paired(a, b, margin=0.1, method="wilcoxon"),
                                  lambda a, b: stats.unpaired(a, b, margin=0.1),
                                  lambda a, b: stats.unpaired(a, b, margin=0.1, method="mannwhitney")])
def test_clear_shift(test):
    rng = np.random.default_rng(2)
    a = rng.normal(0.5, 0.05, size=10)
    ev = test(a, a + 0.3 + rng.normal(0, 0.02, size=10))
    assert ev.effect == pytest.approx(0.3, abs=0.03) and ev.ci[0] < ev.effect < ev.ci[1] and ev.ci[0] > 0
    assert stats.decide(ev, "increase").status == "reproduced"
    assert stats.decide(ev, "decrease").status == "not reproduced"
    verdict = stats.decide(ev, "equivalent")
    assert verdict.status == "not reproduced" and "difference was detected" in verdict.reason


def test_unpaired_matches_scipy():
    a, b = np.array([0.61, 0.72, 0.55, 0.68, 0.70]), np.array([0.74, 0.69, 0.81, 0.77, 0.90, 0.85])
    welch = st.ttest_ind(b, a, equal_var=False)
    ev = stats.unpaired(a, b)
    assert (ev.effect, ev.p_value, *ev.ci) == pytest.approx((b.mean() - a.mean(), welch.pvalue,
                                                             *welch.confidence_interval()))
    ev = stats.unpaired(a, b, method="mannwhitney")
    assert ev.p_value == pytest.approx(st.mannwhitneyu(b, a).pvalue) and ev.n == 11
    # the exact CI inverts the exact test: shifts just inside are not rejected, just outside are
    for end, inside in ((ev.ci[0], +1e-9), (ev.ci[1], -1e-9)):
        assert st.mannwhitneyu(b - end - inside, a, method="exact").pvalue > 0.05
        assert st.mannwhitneyu(b - end + inside, a, method="exact").pvalue <= 0.05


def test_underpowered_is_inconclusive_with_needed_n():
    a, b = np.array([0.50, 0.62, 0.41]), np.array([0.58, 0.55, 0.52])
    for method in ("t", "wilcoxon"):
        ev = stats.paired(a, b, margin=0.1, method=method)
        assert ev.p_value > 0.05 and ev.p_equivalence > 0.05
        for claim in ("increase", "decrease"):
            verdict = stats.decide(ev, claim)
            assert verdict.status == "inconclusive" and "underpowered: n = 3" in verdict.reason
            assert _needed(verdict.reason) > 3
        verdict = stats.decide(ev, "equivalent")
        assert verdict.status == "inconclusive" and _needed(verdict.reason) > 3 and "±0.1" in verdict.reason
    # the needed n is the one-sample power calculation at the observed standardised effect
    d = b - a
    assert _needed(stats.decide(stats.paired(a, b), "increase").reason) == stats.required_n(d.mean() / d.std(ddof=1))


def test_required_n_known_values():
    assert stats.required_n(0.5) == 34  # paired t, d = 0.5, α = 0.05, 80 %: G*Power says 34
    assert stats.required_n(0.5, groups=2) == 128  # 64 per group
    assert stats.required_n(0.0) == math.inf
    assert stats.required_n_equivalence(0.0, 0.5) == pytest.approx(36, abs=2)  # ((1.645 + 1.282) / 0.5)² ≈ 34
    assert stats.required_n_equivalence(0.6, 0.5) == math.inf
    assert stats.required_n_equivalence(0.1, 0.5) > stats.required_n_equivalence(0.0, 0.5)


def test_ties_use_the_robust_effect():
    a, b = [0.0] * 13, [0.0] * 7 + [0.01] * 6  # 13 seeds: 7 ties, 6 consistent rises
    assert np.median(np.subtract(b, a)) == 0  # a plain median would call this "no change"
    ev = stats.paired(a, b, method="wilcoxon")
    assert ev.effect == pytest.approx(0.005)  # Walsh averages: 28 × 0, 42 × 0.005, 21 × 0.01
    assert ev.p_value == pytest.approx(2 / 2**6)  # scipy's exact permutation test: the 6 non-zero signs all +
    assert stats.decide(ev, "increase").status == "reproduced"
    assert stats.decide(stats.paired(a, b), "increase").status == "reproduced"


@pytest.mark.parametrize("make", [lambda a, b: stats.paired(a, b, margin=0.1),
                                  lambda a, b: stats.paired(a, b, margin=0.1, method="wilcoxon"),
                                  lambda a, b: stats.unpaired(a, b, margin=0.1),
                                  lambda a, b: stats.unpaired(a, b, margin=0.1, method="mannwhitney"),
                                  lambda a, b: stats.paired_proportions(np.ones(8, bool), np.ones(8, bool),
                                                                        margin=0.1)])
def test_every_unit_ties_is_inconclusive(make):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = make([1.0] * 8, [1.0] * 8)  # both at 100 %: a ceiling
    assert ev.all_tied and ev.effect == 0 and not np.isnan(ev.p_value)
    for claim in stats.CLAIMS:
        verdict = stats.decide(ev, claim)
        assert verdict.status == "inconclusive" and "every unit ties" in verdict.reason


def test_constant_differences_are_not_nan_and_not_decisive_at_small_n():
    """Zero variance: the exact sign / separation test, never p = 0 (two seeds that agree give p = 0.5)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = stats.paired([0.5] * 5, [0.52] * 5, margin=0.05)
        assert (ev.effect, ev.p_value, ev.p_equivalence, *ev.ci) == pytest.approx((0.02, 2 / 2**5, 1 / 2**5, 0.02,
                                                                                    0.02))
        assert stats.paired([0.5] * 5, [0.6] * 5, margin=0.05).p_equivalence == 1.0
        two = stats.paired([0.5, 0.5], [0.6, 0.6])
        assert two.p_value == 0.5 and stats.decide(two, "increase").status == "inconclusive"
        ev = stats.paired([0.5] * 5, [0.52] * 5, method="wilcoxon")
        assert ev.p_value == pytest.approx(2 / 2**5) and stats.decide(ev, "increase").status == "inconclusive"
        assert stats.unpaired([1.0, 1.0], [2.0, 2.0]).p_value == pytest.approx(2 / 6)  # C(4, 2) = 6


def test_paired_beats_welch_on_correlated_pairs():
    base = np.array([0.2, 0.9, 0.4, 0.7, 0.1, 0.6, 0.3, 0.8])  # large spread between units
    a = base + np.array([0.01, -0.01, 0.02, 0.0, -0.02, 0.01, 0.0, -0.01])
    b = base + 0.05 + np.array([0.0, 0.01, -0.01, 0.02, 0.01, -0.02, 0.01, 0.0])
    assert stats.paired(a, b).p_value < 0.001 and stats.paired(a, b, method="wilcoxon").p_value < 0.05
    assert stats.unpaired(a, b).p_value > 0.5 and stats.unpaired(a, b, method="mannwhitney").p_value > 0.5
    assert stats.decide(stats.unpaired(a, b), "increase").status == "inconclusive"


def test_hodges_lehmann_by_hand():
    d = [1.0, 2.0, 4.0]
    walsh = [1.0, 1.5, 2.5, 2.0, 3.0, 4.0]  # (1+1)/2, (1+2)/2, (1+4)/2, (2+2)/2, (2+4)/2, (4+4)/2
    assert stats.hodges_lehmann(d) == np.median(walsh) == 2.25
    assert stats.paired([0.0] * 3, d, method="wilcoxon").effect == 2.25  # not the mean 7/3
    assert stats.unpaired([0.0, 1.0], [2.0, 5.0], method="mannwhitney").effect == 3.0  # median of 2, 5, 1, 4


def test_wilcoxon_ci_matches_published_example():
    # Hollander & Wolfe's depression scores (R's ?wilcox.test): V = 40, two-sided p = 2 × 0.01953, HL 0.46
    x = np.array([1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30])
    y = np.array([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29])
    ev = stats.paired(y, x, method="wilcoxon")
    assert (ev.effect, ev.p_value) == pytest.approx((0.46, 0.0390625))
    # the exact CI (6th smallest and largest Walsh average) inverts the exact test
    for end, inside in ((ev.ci[0], +1e-9), (ev.ci[1], -1e-9)):
        assert st.wilcoxon(x - y - end - inside, method="exact").pvalue > 0.05
        assert st.wilcoxon(x - y - end + inside, method="exact").pvalue <= 0.05
    assert stats.paired(y[:5], x[:5], method="wilcoxon").ci == (-math.inf, math.inf)  # n = 5: no 95 % CI exists


def test_paired_proportions():
    a = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0], bool)
    b = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1], bool)  # 5 discordant pairs favour b, 1 favours a
    ev = stats.paired_proportions(a, b, margin=0.2)
    assert ev.p_value == pytest.approx(st.binomtest(5, 6, 0.5).pvalue) == st.binomtest(5, 6, 0.5).pvalue
    d = b.astype(float) - a
    se = d.std() / np.sqrt(d.size)
    assert ev.effect == pytest.approx(4 / 12) and ev.se == pytest.approx(se)
    assert ev.p_equivalence == pytest.approx(max(st.norm.sf((d.mean() + 0.2) / se), st.norm.cdf((d.mean() - 0.2) / se)))
    assert stats.decide(ev, "increase").status == "inconclusive"  # 5 of 6 discordant pairs: p = 0.22
    assert stats.decide(stats.paired_proportions(np.zeros(40, bool), np.arange(40) < 12), "increase").status == \
        "reproduced"


def test_seed_level_and_hierarchical_bootstrap():
    rng = np.random.default_rng(3)
    a_by_seed = [rng.normal(0.70 + s, 0.05, size=40) for s in (0.0, 0.1, -0.1, 0.05, -0.05)]
    b_by_seed = [x + 0.02 + rng.normal(0, 0.05, size=40) for x in a_by_seed]
    ev = stats.seed_level(a_by_seed, b_by_seed, margin=0.1)
    ref = stats.paired([x.mean() for x in a_by_seed], [x.mean() for x in b_by_seed], margin=0.1)
    assert ev.unit == "seeds" and ev.n == 5 and (ev.effect, ev.p_value, ev.p_equivalence) == (
        ref.effect, ref.p_value, ref.p_equivalence)

    true_mean, seed_means = 0.5, rng.normal(0.5, 0.2, size=8)  # seeds differ a lot
    by_seed = [rng.normal(m, 0.05, size=30) for m in seed_means]
    low, high = stats.hierarchical_bootstrap_ci(by_seed, n_boot=500)
    assert low < true_mean < high
    pooled = np.concatenate(by_seed)
    naive = [pooled[rng.integers(pooled.size, size=pooled.size)].mean() for _ in range(500)]
    naive_low, naive_high = np.quantile(naive, [0.025, 0.975])
    assert high - low > 3 * (naive_high - naive_low)
    assert stats.hierarchical_bootstrap_ci(by_seed, n_boot=500) == (low, high)  # seeded


def test_non_significance_never_reproduces_equivalence():
    rng = np.random.default_rng(4)
    reproduced = 0
    for _ in range(60):
        n, margin = int(rng.integers(2, 9)), float(rng.uniform(0.01, 1.0))
        a = rng.normal(0, 1, size=n)
        b = a + rng.normal(rng.normal(0, 0.3), rng.uniform(0.01, 1.0), size=n)
        for ev in (stats.paired(a, b, margin=margin), stats.paired(a, b, margin=margin, method="wilcoxon"),
                   stats.unpaired(a, b, margin=margin), stats.unpaired(a, b, margin=margin, method="mannwhitney")):
            assert not np.isnan([ev.p_value, ev.p_equivalence, ev.effect]).any()
            verdict = stats.decide(ev, "equivalent")
            assert (verdict.status == "reproduced") == (ev.p_equivalence < 0.05)
            reproduced += verdict.status == "reproduced"
            assert verdict.status != "inconclusive" or ev.p_value >= 0.05
    assert reproduced > 0  # the loop does reach the reproduced branch


def test_decide_edges():
    assert stats.decide(None, "increase").status == "not run"
    ev = stats.paired([0.1, 0.2, 0.3], [0.1, 0.25, 0.3])
    with pytest.raises(ValueError, match="margin"):
        stats.decide(ev, "equivalent")
    with pytest.raises(ValueError, match="claim"):
        stats.decide(ev, "better")
    with pytest.raises(ValueError, match="margin"):
        stats.paired([0.1, 0.2], [0.1, 0.2], margin=0)
    with pytest.raises(ValueError, match="method"):
        stats.unpaired([0.1, 0.2], [0.1, 0.2], method="wilcoxon")
    with pytest.raises(ValueError, match="equal length"):
        stats.paired([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same seeds"):
        stats.seed_level([[0.1]], [[0.1], [0.2]])
    zero = stats.Evidence("paired t", "paired", 4, 0.0, "mean difference", (-0.1, 0.1), 0.9, se=0.05)
    assert stats.decide(zero, "increase").reason.startswith("no effect observed")
    outside = stats.Evidence("paired t", "paired", 4, 0.3, "mean difference", (-0.5, 1.1), 0.4, 0.9, 0.1, se=0.3)
    verdict = stats.decide(outside, "equivalent")
    assert verdict.status == "inconclusive" and "outside the margin" in verdict.reason
    verdict = stats.decide(stats.paired_proportions(np.zeros(4, bool), np.ones(4, bool)), "increase")
    assert verdict.status == "inconclusive" and _needed(verdict.reason) == 6  # exact McNemar needs 6 discordant

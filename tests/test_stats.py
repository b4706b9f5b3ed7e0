"""Statistics against scipy and hand-computed answers."""
import numpy as np
import pytest
from scipy import stats as st

from attnbook import stats


def test_mean_se_by_hand():
    assert stats.mean_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0 / np.sqrt(3)))
    assert stats.mean_se([5.0]) == (5.0, 0.0)
    assert stats.format_mean_se([1.0, 2.0, 3.0], 2) == "2.00 ± 0.6"


def test_wilcoxon_and_mann_whitney_match_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(0.8, size=12)
    assert stats.wilcoxon(a, b).p_value == pytest.approx(st.wilcoxon(b, a).pvalue)
    assert stats.mann_whitney(a, b).p_value == pytest.approx(st.mannwhitneyu(b, a).pvalue)
    assert stats.wilcoxon(a, a).p_value == 1.0


def test_paired_binary_counts_only_discordant_pairs():
    a = np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)
    b = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)
    result = stats.paired_binary(a, b)
    assert result.effect == pytest.approx(4 / 8)
    assert result.p_value == pytest.approx(st.binomtest(4, 4, 0.5).pvalue)  # 4 discordant, all favour b


def test_verdicts():
    sig_up, sig_down, flat = (stats.TestResult(e, p, "t") for e, p in ((0.2, 0.01), (-0.2, 0.01), (0.1, 0.4)))
    assert stats.verdict(sig_up, +1) == "reproduced"
    assert stats.verdict(sig_down, +1) == "not reproduced"
    assert stats.verdict(flat, +1) == "inconclusive"
    assert stats.verdict(flat, 0) == "reproduced"
    assert stats.verdict(sig_up, 0) == "not reproduced"


def test_bad_input():
    with pytest.raises(ValueError, match="paired"):
        stats.wilcoxon([1.0], [2.0])

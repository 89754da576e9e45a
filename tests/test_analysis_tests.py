"""Tests and case-bootstrap intervals of bench.analysis against hand computations and scipy (no database)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis import tests as stats


def test_holm_matches_hand_computation_and_keeps_nan():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.005])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, np.nan, 0.06, 0.02])
    assert np.all(stats.holm(np.array([0.5, 0.9])) <= 1.0)
    assert np.isnan(stats.holm(np.array([np.nan]))).all()


def test_wilcoxon_rows_equal_scipy_per_row():
    rng = np.random.default_rng(3)
    d = rng.normal(0.1, 1.0, size=(5, 12))
    d[1, 4] = np.nan  # a missing case: tested on the 11 others
    d[2] = 0.0  # no difference at all
    d[3, :3] = 0.0  # some zero differences (dropped by zero_method='wilcox')
    d[4] = np.nan  # no data
    got = stats.wilcoxon_rows(d)
    for i in (0, 1, 3):
        row = d[i][~np.isnan(d[i])]
        assert got[i] == pytest.approx(sps.wilcoxon(row).pvalue, rel=1e-12)
    assert got[2] == 1.0
    assert np.isnan(got[4])


def test_paired_case_means_average_shared_replicates_only():
    # keys: (case0, rep0), (case0, rep1), (case1, rep0), (case1, rep1)
    keys = np.array([[1.0, 3.0, 5.0, np.nan], [2.0, 4.0, 6.0, 8.0]])
    groups = np.array([0, 0, 1, 1])
    a, b = stats.paired_case_means(keys, groups, 2, np.array([1]), np.array([0]))
    # case 1 of row 0 has only rep0, so row 1 is averaged over rep0 only too (6, not 7)
    np.testing.assert_allclose(a, [[3.0, 6.0]])
    np.testing.assert_allclose(b, [[2.0, 5.0]])


def test_bootstrap_equals_naive_resampling_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 20))
    w = stats.bootstrap_weights(20, n_boot=500, seed=7)
    assert w.shape == (500, 20) and np.all(w.sum(axis=1) == 20)
    lo, hi = stats.bootstrap_means(x, w)
    # the same resamples written as an explicit loop over index draws
    idx = np.random.default_rng(7).integers(0, 20, size=(500, 20))
    naive = np.array([[row[i].mean() for i in idx] for row in x])
    np.testing.assert_allclose(lo, np.percentile(naive, 2.5, axis=1))
    np.testing.assert_allclose(hi, np.percentile(naive, 97.5, axis=1))
    assert np.all(lo < x.mean(axis=1)) and np.all(x.mean(axis=1) < hi)
    # a constant row has a zero-width interval; NaN cases are skipped
    x2 = np.full((1, 20), 0.5)
    x2[0, 3] = np.nan
    lo2, hi2 = stats.bootstrap_means(x2, w)
    assert lo2[0] == pytest.approx(0.5) and hi2[0] == pytest.approx(0.5)


def test_factorial_contrasts_of_a_2x2_design_by_hand():
    toggles = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    y = np.array([[1.0], [3.0], [2.0], [10.0]])  # one case
    cs = stats.factorial_contrasts(toggles, ["a", "b"])
    assert [c.name for c in cs] == ["a", "b", "a x b"]
    w = stats.bootstrap_weights(1, 10, 0)
    est, lo, hi = stats.contrast_estimates(y, cs, w)
    assert est[0] == pytest.approx((3 + 10) / 2 - (1 + 2) / 2)  # main effect of a: 5
    assert est[1] == pytest.approx((2 + 10) / 2 - (1 + 3) / 2)  # main effect of b: 4
    assert est[2] == pytest.approx(((10 - 2) - (3 - 1)) / 2)  # interaction: 3
    np.testing.assert_allclose(lo, est)
    np.testing.assert_allclose(hi, est)


def test_wilcoxon_min_p_is_the_exact_floor():
    assert stats.wilcoxon_min_p(3) == pytest.approx(0.25)
    for n in (3, 5, 6, 8):  # all differences positive: the most extreme outcome
        assert sps.wilcoxon(np.arange(1.0, n + 1)).pvalue == pytest.approx(stats.wilcoxon_min_p(n))
    assert not stats.wilcoxon_can_reach(5) and stats.wilcoxon_can_reach(6)

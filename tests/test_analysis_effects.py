"""Variance components, effect intervals and power on small cases computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.analysis.effects import CASES_ONLY, effect, two_way_bootstrap
from bench.analysis.layout import layouts
from bench.analysis.power import PilotComponents, pilot_components, seeds_for_power
from bench.analysis.variance import pooled_components, variance_components

A = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 8.0]])
B = np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])


def test_variance_components_by_hand():
    # grand 3.5; run means 2, 5; case means 2, 3, 5.5
    # SS_run = 3 * (1.5^2 + 1.5^2) = 13.5 (df 1); SS_case = 2 * (1.5^2 + 0.5^2 + 2^2) = 13 (df 2)
    # residuals +-(0.5, 0.5, -1): SS_res = 3 (df 2) -> MS_res = 1.5
    v = variance_components(A)
    assert (v.ms_run, v.ms_case, v.ms_res) == pytest.approx((13.5, 6.5, 1.5))
    assert v.run == pytest.approx((13.5 - 1.5) / 3)
    assert v.case == pytest.approx((6.5 - 1.5) / 2)
    assert v.residual == pytest.approx(1.5)
    one = variance_components(A[:1])
    assert not one.run_measured and np.isnan(one.run) and one.case == pytest.approx(1.0)


def test_pooled_components_weight_by_degrees_of_freedom():
    p = pooled_components([A, B])
    # B: MS_run = 3 * 0.5 = 1.5, MS_res = 0 -> pooled MS_run = 7.5, MS_res = 0.75
    assert p.ms_run == pytest.approx(7.5) and p.ms_res == pytest.approx(0.75)
    assert p.run == pytest.approx((7.5 - 0.75) / 3) and p.df_run == 2 and p.df_res == 4


def test_two_arm_interval_is_the_stated_formula():
    e = effect("A - B", [A, B], np.array([1.0, -1.0]), n_boot=500)
    assert e.estimate == pytest.approx(2.0)
    # d = (1.5, 1.5, 3): s_d^2 = 0.75 -> 0.25; run A = 4 / 2 = 2; run B = 0.5 / 2 = 0.25
    assert e.case_var == pytest.approx(0.25) and e.run_var == pytest.approx(2.25)
    assert e.se == pytest.approx(np.sqrt(2.5))
    # Satterthwaite over the mean squares: s_run^2 / S = (MS_run - MS_res) / (S C) for each arm, so each
    # arm contributes (MS_run / (S C))^2 / df_run + (MS_res / (S C))^2 / df_res (A: 13.5 and 1.5; B: 1.5 and 0)
    df = 2.5**2 / (0.25**2 / 2 + (13.5 / 6) ** 2 / 1 + (1.5 / 6) ** 2 / 2 + (1.5 / 6) ** 2 / 1)
    assert e.df == pytest.approx(df)
    q = sps.t.ppf(0.975, df)
    assert (e.ci_lo, e.ci_hi) == pytest.approx((2 - q * np.sqrt(2.5), 2 + q * np.sqrt(2.5)))
    assert e.run_measured and e.n_runs == (2, 2) and not e.significant  # wide: df 1.5
    assert e.boot_lo <= 2.0 <= e.boot_hi


def test_one_run_per_configuration_claims_nothing():
    a = np.array([[0.9, 0.91, 0.92, 0.9, 0.93]])
    b = a - 0.3
    e = effect("a - b", [a, b], np.array([1.0, -1.0]), n_boot=200)
    assert e.estimate == pytest.approx(0.3)
    assert not e.run_measured and e.covers == CASES_ONLY and not e.significant and np.isnan(e.p)


def test_bootstrap_without_run_variation_is_the_case_bootstrap():
    a = np.array([[1.0, 2.0, 3.0, 4.0]] * 3)  # identical runs: resampling runs changes nothing
    lo, hi = two_way_bootstrap([a], np.array([1.0]), n_boot=4000, seed=1)
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    lo1, hi1 = two_way_bootstrap([a[:1]], np.array([1.0]), n_boot=4000, seed=1)
    assert (lo, hi) == pytest.approx((lo1, hi1))


def test_layouts_keep_shared_cases_and_runs():
    rows = []
    for conf in (1, 2):
        for seed in (0, 1):
            for case in ("c1", "c2", "c3"):
                if conf == 2 and case == "c3" and seed == 1:
                    continue  # c3 missing in one run -> dropped everywhere
                rows.append({"configuration_id": conf, "fold": 0, "seed": seed, "case_id": case, "region": "ET",
                             "dice": conf + seed / 10 + int(case[1]) / 100})
    lay = layouts(pd.DataFrame(rows), "dice", region="ET")
    assert lay.cases == ["c1", "c2"] and lay.dropped_cases == 1 and lay.runs() == [2, 2]
    np.testing.assert_allclose(lay.matrices[1], [[2.01, 2.02], [2.11, 2.12]])


def test_power_seeds_use_t_quantiles_at_their_degrees_of_freedom():
    pilot = PilotComponents(run=0.01, residual=0.0, interaction=0.0, cases=10, configurations=2, runs=3)
    r = seeds_for_power(pilot, 0.1)

    def enough(s: int) -> bool:  # SE^2 = 2 * 0.01 / S on 2 (S - 1) degrees of freedom (two arms)
        df = 2 * (s - 1)
        return (sps.t.ppf(0.975, df) + sps.t.ppf(0.8, df)) * np.sqrt(0.02 / s) <= 0.1

    assert enough(r.seeds) and not enough(r.seeds - 1) and r.df_at_seeds == pytest.approx(2 * (r.seeds - 1))
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert r.seeds > int(np.ceil(2 * 0.01 / (0.1 / z) ** 2))  # the normal approximation undersizes
    # an interaction floor above delta: no number of seeds is enough, and that is the reason given
    hard = PilotComponents(run=0.01, residual=0.0, interaction=0.05, cases=10, configurations=2, runs=3)
    r2 = seeds_for_power(hard, 0.1)
    t9 = sps.t.ppf(0.975, 9) + sps.t.ppf(0.8, 9)
    assert r2.seeds is None and r2.reason == "floor" and r2.floor == pytest.approx(t9 * np.sqrt(0.005))
    # reachable, but not within the cap: the cap is the reason, not the floor
    r3 = seeds_for_power(pilot, 0.1, max_seeds=5)
    assert r3.seeds is None and r3.reason == "cap" and r3.floor == 0.0


def test_pilot_components_recover_a_known_model():
    rng = np.random.default_rng(0)
    s, c = 40, 60
    case = rng.normal(0, 0.2, c)
    mats = [0.7 + k * 0.02 + rng.normal(0, 0.05, (s, 1)) + case + rng.normal(0, 0.03, (s, c)) for k in range(3)]
    p = pilot_components(mats)
    assert p.run == pytest.approx(0.05**2, rel=0.3) and p.residual == pytest.approx(0.03**2, rel=0.1)
    assert p.interaction < 2e-4

"""Stopping rules on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.analysis.stopping import Estimate, Rules, contrast_estimate, decide, paired_run_estimate


def _table(arms: dict[str, list[list[float]]]) -> pd.DataFrame:
    rows = []
    for label, runs in arms.items():
        for seed, run in enumerate(runs):
            for c, v in enumerate(run):
                rows.append({"label": label, "fold": 0, "seed": seed, "case_id": f"c{c}", "value": v})
    return pd.DataFrame(rows)


def test_contrast_estimate_matches_hand_computed_components() -> None:
    # A: run means 0.60, 0.62 (additive, residual 0): s_run^2 = 0.0002
    # B: run means 0.70, 0.74 (additive): s_run^2 = 0.0008
    # case means A 0.51 0.61 0.71, B 0.62 0.74 0.80 -> d = 0.11 0.13 0.09, mean 0.11, s_d^2 = 0.0004
    # SE^2 = 0.0004/3 + 0.0002/2 + 0.0008/2 = 0.00063333
    table = _table({"A": [[0.50, 0.60, 0.70], [0.52, 0.62, 0.72]],
                    "B": [[0.60, 0.72, 0.78], [0.64, 0.76, 0.82]]})
    est = contrast_estimate(table, {"B": 1.0, "A": -1.0})
    assert est.estimate == pytest.approx(0.11)
    assert est.se == pytest.approx(math.sqrt(0.0004 / 3 + 0.0001 + 0.0004))
    assert est.floor_se == pytest.approx(math.sqrt(0.0004 / 3))
    # Satterthwaite: (sum t)^2 / (t0^2/2 + t1^2/1 + t2^2/1)
    t0, t1, t2 = 0.0004 / 3, 0.0001, 0.0004
    assert est.df == pytest.approx((t0 + t1 + t2) ** 2 / (t0 ** 2 / 2 + t1 ** 2 + t2 ** 2))
    assert est.runs == {"B": 2, "A": 2} and est.cases == 3


def test_contrast_estimate_counts_degrees_of_freedom_as_the_effects_do() -> None:
    # with a residual, the run term's degrees of freedom come from both mean squares (Satterthwaite), as in
    # bench.analysis.effects.effect: the adaptive looks and the report agree on the same data
    from bench.analysis.effects import effect

    rng = np.random.default_rng(3)
    case = rng.normal(0, 0.1, 8)
    ys = {lab: 0.7 + shift + case + rng.normal(0, 0.05, (3, 1)) + rng.normal(0, 0.04, (3, 8))
          for lab, shift in (("A", 0.0), ("B", 0.02))}
    table = _table({lab: y.tolist() for lab, y in ys.items()})
    est = contrast_estimate(table, {"B": 1.0, "A": -1.0})
    ref = effect("B - A", [ys["B"], ys["A"]], np.array([1.0, -1.0]), n_boot=0)
    assert est.run_var["A"] > 0 and est.run_var["B"] > 0
    assert est.se == pytest.approx(ref.se) and est.df == pytest.approx(ref.df)
    # the former count (each run term on S - 1 = 2 degrees of freedom) gave more
    t = [est.floor_se ** 2] + [v / 3 for v in est.run_var.values()]
    assert est.df < sum(t) ** 2 / (t[0] ** 2 / 7 + t[1] ** 2 / 2 + t[2] ** 2 / 2)


def test_residual_is_not_counted_as_run_variance() -> None:
    # one run mean differs only through a case-by-run residual: var(run means) = MS_e / C exactly -> 0
    table = _table({"A": [[0.5, 0.7], [0.7, 0.5]], "B": [[0.6, 0.8], [0.8, 0.6]]})
    est = contrast_estimate(table, {"B": 1.0, "A": -1.0})
    assert est.estimate == pytest.approx(0.1)
    assert est.se == pytest.approx(0.0)  # d = (0.1, 0.1): no case spread, and no run component


def test_one_run_is_never_decided() -> None:
    table = _table({"A": [[0.5, 0.6, 0.7]], "B": [[0.9, 0.9, 0.9]]})
    est = contrast_estimate(table, {"B": 1.0, "A": -1.0})
    assert est.se is None
    d = decide(est, Rules())
    assert d.verdict == "undecided" and "run-to-run variance not measured" in d.reason


def test_level_counts_comparisons_and_looks() -> None:
    est = Estimate("x", 0.025, 0.01, float("inf"), 0.005)
    one = decide(est, Rules(comparisons=1, looks=1))
    assert one.verdict == "helps"  # 0.025 - 1.96 * 0.01 = 0.0054 > 0
    assert one.low == pytest.approx(0.025 - 1.959964 * 0.01, abs=1e-6)
    many = decide(est, Rules(comparisons=2, looks=4))
    assert many.level == pytest.approx(1 - 0.05 / 8)
    z = stats.norm.ppf(1 - 0.05 / 16)  # 2.734
    assert many.low == pytest.approx(0.025 - z * 0.01)
    assert many.verdict == "undecided" and "includes 0" in many.reason


def test_hurts_equivalent_precise_floor() -> None:
    assert decide(Estimate("x", -0.03, 0.01, float("inf"), 0.0), Rules()).verdict == "hurts"
    # [-0.00194, 0.00394] within +/-0.005
    eq = decide(Estimate("x", 0.001, 0.0015, float("inf"), 0.001), Rules(margin=0.005))
    assert eq.verdict == "equivalent"
    # half-width 1.96 * 0.004 = 0.00784 <= 0.01, includes 0, exceeds the margin
    pr = decide(Estimate("x", 0.004, 0.004, float("inf"), 0.001), Rules(halfwidth=0.01, margin=0.005))
    assert pr.verdict == "precise" and pr.halfwidth == pytest.approx(0.0078399, abs=1e-6)
    # run share (1e-4 - 0.0097^2) / 1e-4 = 5.9% <= 10%
    fl = decide(Estimate("x", 0.004, 0.01, float("inf"), 0.0097), Rules(halfwidth=0.01))
    assert fl.verdict == "floor" and "6%" in fl.reason
    un = decide(Estimate("x", 0.004, 0.01, float("inf"), 0.005), Rules(halfwidth=0.01))
    assert un.verdict == "undecided" and "half-width 0.0196 > 0.01" in un.reason


def test_t_quantile_with_few_degrees_of_freedom() -> None:
    d = decide(Estimate("x", 0.05, 0.01, 2.0, 0.0), Rules())
    assert d.high - d.estimate == pytest.approx(4.302653 * 0.01, abs=1e-6)
    assert d.verdict == "helps"


def test_paired_run_estimate() -> None:
    a = {(0, 0): 0.50, (0, 1): 0.60, (1, 0): 0.55}
    b = {(0, 0): 0.53, (0, 1): 0.61, (1, 0): 0.60, (1, 1): 0.9}  # (1, 1) has no partner
    est = paired_run_estimate(a, b)
    # d = 0.03, 0.01, 0.05: mean 0.03, sd 0.02, se 0.02 / sqrt(3)
    assert est.estimate == pytest.approx(0.03)
    assert est.se == pytest.approx(0.02 / math.sqrt(3))
    assert est.df == 2


def test_precise_and_floor_are_judged_at_the_fixed_plans_level() -> None:
    # m = 2 comparisons, K = 4 looks; se 0.004: half-width z(1 - 0.05/4) * 0.004 = 2.2414 * 0.004 = 0.00897
    # at 1 - alpha/m (<= 0.01: precise), 2.7344 * 0.004 = 0.01094 at 1 - alpha/(m K) (would not be)
    rules = Rules(halfwidth=0.01, margin=0.005, comparisons=2, looks=4)
    assert rules.precise_level == pytest.approx(1 - 0.05 / 2) and rules.level == pytest.approx(1 - 0.05 / 8)
    d = decide(Estimate("x", 0.006, 0.004, float("inf"), 0.001), rules)
    z = stats.norm.ppf(1 - 0.05 / 4)
    assert d.verdict == "precise" and d.level == pytest.approx(1 - 0.05 / 2)
    assert d.low == pytest.approx(0.006 - z * 0.004) and d.halfwidth == pytest.approx(0.0089657, abs=1e-6)
    assert "97.50% half-width 0.0090 <= 0.01" in d.reason
    # the same estimate is not precise at a target it misses at 1 - alpha/m: undecided, reported at both levels
    un = decide(Estimate("x", 0.006, 0.004, float("inf"), 0.001), Rules(halfwidth=0.008, comparisons=2, looks=4))
    assert un.verdict == "undecided" and un.level == pytest.approx(1 - 0.05 / 8)
    assert "99.38% interval" in un.reason and "97.50% half-width 0.0090 > 0.008" in un.reason
    # the effect-dependent rules keep 1 - alpha/(m K): 0.012 - 2.7344 * 0.004 = 0.00106 > 0 excludes 0 ...
    assert decide(Estimate("x", 0.012, 0.004, float("inf"), 0.001), rules).verdict == "helps"
    # ... and 0.010 - 0.01094 < 0 does not, although 0.010 - 0.00897 > 0 would at 1 - alpha/m: precise instead
    assert decide(Estimate("x", 0.010, 0.004, float("inf"), 0.001), rules).verdict == "precise"
    # floor (run share 5.9% of SE^2) is reported at 1 - alpha/m too
    fl = decide(Estimate("x", 0.004, 0.01, float("inf"), 0.0097), Rules(halfwidth=0.01, comparisons=2, looks=4))
    assert fl.verdict == "floor" and fl.level == pytest.approx(0.975)
    assert fl.high - fl.estimate == pytest.approx(z * 0.01)


def test_run_components_and_arms_of_one_pass() -> None:
    from bench.analysis.stopping import _arm, arm_matrices

    table = _table({"A": [[0.50, 0.60, 0.70], [0.52, 0.62, 0.72]],
                    "B": [[0.60, 0.72, 0.78], [0.64, 0.76, 0.82]]})
    arms = arm_matrices(table)
    assert set(arms) == {"A", "B"} and all(np.array_equal(arms[k], _arm(table, k)) for k in arms)
    est = contrast_estimate(None, {"B": 1.0, "A": -1.0}, arms=arms)
    assert est == contrast_estimate(table, {"B": 1.0, "A": -1.0})
    assert est.run_var == {"B": pytest.approx(0.0008), "A": pytest.approx(0.0002)}  # as hand-computed above
    assert est.weights == {"B": 1.0, "A": -1.0}


def test_predicted_halfwidth() -> None:
    from bench.analysis.stopping import predicted_halfwidth

    est = Estimate("x", 0.0, 0.0, float("inf"), 0.002, {"A": 2, "B": 2}, 10, {"A": 1e-4, "B": 4e-4},
                   {"B": 1.0, "A": -1.0})
    # 8 runs of B: 0.002^2 + 1e-4 / 2 + 4e-4 / 8 = 1.04e-4
    assert predicted_halfwidth(est, {"B": 8}, 0.95) == pytest.approx(1.959964 * math.sqrt(1.04e-4), rel=1e-6)
    assert predicted_halfwidth(est, {}, 0.95) == pytest.approx(1.959964 * math.sqrt(4e-6 + 5e-5 + 2e-4), rel=1e-6)
    one_run = Estimate("x", 0.0, None, 0.0, 0.002, {"A": 1, "B": 2}, 10, {"B": 4e-4}, {"B": 1.0, "A": -1.0})
    assert predicted_halfwidth(one_run, {"A": 5}, 0.95) is None


def test_one_test_case_is_unknown_not_zero_case_variance() -> None:
    # two runs per arm, one case, a consistent gain: the case term cannot be measured, so nothing is decided
    table = _table({"A": [[0.50], [0.52]], "B": [[0.70], [0.71]]})
    est = contrast_estimate(table, {"B": 1.0, "A": -1.0})
    assert est.se is None and est.cases == 1 and math.isnan(est.floor_se)
    d = decide(est, Rules())
    assert d.verdict == "undecided" and "one test case" in d.reason
    # the effects machinery agrees: no interval, no p
    from bench.analysis.effects import effect

    e = effect("", [np.array([[0.70], [0.71]]), np.array([[0.50], [0.52]])], np.array([1.0, -1.0]), n_boot=0)
    assert math.isnan(e.p) and not e.significant


def test_a_standard_error_estimated_as_zero_decides_nothing() -> None:
    d = decide(Estimate("x", 0.1, 0.0, 3.0, 0.0), Rules())
    assert d.verdict == "undecided" and "estimated as 0" in d.reason


def test_forward_p_of_an_unknown_or_zero_standard_error_is_nan_not_zero() -> None:
    from bench.design.forward import holm, one_sided_p

    assert math.isnan(one_sided_p(Estimate("x", 0.1, 0.0, 3.0, 0.0)))
    assert math.isnan(one_sided_p(Estimate("x", 0.1, None, 0.0, 0.0)))
    assert one_sided_p(Estimate("x", 0.1, 0.05, 10.0, 0.0)) == pytest.approx(stats.t.sf(2.0, 10.0))
    adj = holm([0.01, math.nan, 0.03])
    assert adj[0] == pytest.approx(0.02) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.03)
    # paired runs that all gained exactly the same: SE 0, no claim
    same = paired_run_estimate({(0, 0): 0.5, (0, 1): 0.6}, {(0, 0): 0.6, (0, 1): 0.7})
    assert same.se == pytest.approx(0.0, abs=1e-12) and math.isnan(one_sided_p(same))

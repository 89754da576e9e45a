"""Stopping rules: is a comparison decided at this look, and why (or why not).

A comparison is a contrast between configurations (``{"BL+warmup": 1, "BL": -1}``) of per-case test Dice.
Its standard error counts both variance sources of a replicated benchmark (two-way layout, runs x test cases
within each configuration):

    SE^2 = s_d^2 / C + sum_r w_r^2 s_run,r^2 / S_r

``s_d^2``: variance over the C test cases of the contrast of the case means (case-by-configuration interaction
plus the residual left after averaging the runs); ``s_run,r^2``: the between-run component of configuration r
by the method of moments (variance of the run means minus the residual mean square / C, clipped at 0); S_r:
its number of runs (fold x seed). Degrees of freedom by Satterthwaite over the mean squares each run
component is made of, as in :mod:`bench.analysis.effects`. With one run in an arm the run
component is not measured: the comparison is never decided from case sampling alone.

With m comparisons and K looks, a comparison is decided when

1. its interval at ``1 - alpha / (m K)`` excludes 0 (``helps`` / ``hurts``),
2. that interval lies within ``+/- margin`` (``equivalent``),
3. its interval at ``1 - alpha / m`` is narrower than the target half-width (``precise``), or
4. it has reached the test-set floor: the run components make at most ``floor_share`` of SE^2, so more seeds
   can no longer narrow it (only more test cases can) (``floor``).

Rules 1 and 2 depend on the estimated effect: stopping when an interval happens to exclude 0 (or to fall inside
the margin) at one of K looks is a multiple test, so they take Bonferroni over comparisons *and* looks, which
keeps the error rate whatever the looks decide. Rules 3 and 4 depend only on the variance estimates, which in
the normal model are independent of the estimated effect (Stein's two-stage procedure rests on the same fact):
stopping on them does not bias the estimated effect, so they are judged at the level a fixed plan of m
comparisons uses, ``1 - alpha / m``, and a look pays nothing for them. (They do favour looks whose variance
estimates came out small; ``benchmarks/bench_adaptive.py`` measures the coverage that leaves.)

Otherwise it is undecided, and the reason says which rule failed by how much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
from scipy import stats

from bench.analysis.variance import run_term, variance_components

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Estimate", "Rules", "Decision", "contrast_estimate", "paired_run_estimate", "decide",
           "decide_all", "case_values", "arm_matrices", "predicted_halfwidth"]


#: a standard error at or below this is an estimated zero (round-off of equal differences), not a measurement
SE_ZERO = 1e-12


@dataclass(frozen=True)
class Estimate:
    """A contrast's estimate and standard error. ``se is None`` when a variance could not be measured
    (an arm with one run, or one test case; never taken as zero); ``floor_se`` is the case-sampling part alone (what infinitely many seeds leave);
    ``run_var`` each arm's between-run component (absent for an arm with one run), ``weights`` the contrast."""

    name: str
    estimate: float
    se: float | None
    df: float
    floor_se: float
    runs: dict[str, int] = field(default_factory=dict)
    cases: int = 0
    run_var: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Rules:
    """The decision rules of one look: ``comparisons`` (m) and ``looks`` (K) set the interval levels."""

    halfwidth: float = 0.01
    margin: float = 0.005
    alpha: float = 0.05
    comparisons: int = 1
    looks: int = 1
    floor_share: float = 0.1

    @property
    def level(self) -> float:
        """Level of the effect-dependent rules (excludes 0, within the margin): ``1 - alpha / (m K)``."""
        return 1.0 - self.alpha / (max(1, self.comparisons) * max(1, self.looks))

    @property
    def precise_level(self) -> float:
        """Level of the variance-only rules (half-width, floor): ``1 - alpha / m``, as a fixed plan."""
        return 1.0 - self.alpha / max(1, self.comparisons)


@dataclass(frozen=True)
class Decision:
    """The state of one comparison at a look. ``verdict``: helps, hurts, equivalent, precise, floor or
    undecided; ``reason`` one line a user reads in ``bench status``."""

    name: str
    verdict: str
    reason: str
    estimate: float
    low: float | None
    high: float | None
    level: float

    @property
    def decided(self) -> bool:
        return self.verdict != "undecided"

    @property
    def halfwidth(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "verdict": self.verdict, "decided": self.decided, "reason": self.reason,
                "estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level}


def case_values(metrics: pd.DataFrame, regions: tuple[str, ...] = ("ET", "TC", "WT"),
                value: str = "dice") -> pd.DataFrame:
    """Per-case values averaged over ``regions``: columns label, fold, seed, case_id, value."""
    m = metrics[metrics["region"].isin(regions)]
    out = cast("pd.DataFrame", m.groupby(["label", "fold", "seed", "case_id"], as_index=False)[value].mean())
    return out.rename(columns={value: "value"})


def _arm(table: pd.DataFrame, label: str) -> np.ndarray:
    """The runs x cases matrix of one configuration (runs: fold x seed; cases in sorted order)."""
    sub = table[table["label"] == label]
    if sub.empty:
        return np.empty((0, 0))
    wide = sub.groupby(["fold", "seed", "case_id"])["value"].mean().unstack("case_id")
    return wide.sort_index(axis=1).to_numpy(dtype=float)


def arm_matrices(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every configuration's runs x cases matrix (as :func:`_arm`), from one pass over the table: a look
    that estimates many comparisons sharing a baseline builds each arm once."""
    if table.empty:
        return {}
    wide = table.groupby(["label", "fold", "seed", "case_id"])["value"].mean().unstack("case_id")
    wide = wide.sort_index(axis=1)
    out = {}
    for label, block in wide.groupby(level="label", sort=False):
        out[str(label)] = block.dropna(axis=1, how="all").to_numpy(dtype=float)
    return out


def _run_term(y: np.ndarray, weight: float) -> tuple[float, float, float]:
    """Arm ``y``'s run term of SE^2 (``w^2 s_run^2 / S``), its between-run component ``s_run^2`` (method of
    moments, clipped at 0) and the term's Satterthwaite denominator, as :func:`bench.analysis.effects.effect`
    counts them (:func:`bench.analysis.variance.run_term`)."""
    k = variance_components(y)
    term, den = run_term(k, weight * weight / y.shape[0])
    return term, k.run, den


def contrast_estimate(table: pd.DataFrame | None, weights: dict[str, float], name: str | None = None, *,
                      arms: dict[str, np.ndarray] | None = None) -> Estimate:
    """Estimate ``sum_r w_r mean_r`` from per-case values (:func:`case_values`) with both variance sources.

    ``arms`` (from :func:`arm_matrices`) replaces ``table`` when given. Every arm must have been evaluated on
    the same test cases."""
    if arms is None:
        assert table is not None
        arms = {lab: _arm(table, lab) for lab in weights}
    else:
        arms = {lab: arms.get(lab, np.empty((0, 0))) for lab in weights}
    shapes = {lab: y.shape for lab, y in arms.items()}
    if any(y.size == 0 for y in arms.values()):
        missing = [lab for lab, y in arms.items() if y.size == 0]
        raise ValueError(f"no finished runs for {', '.join(missing)}")
    n_cases = {shape[1] for shape in shapes.values()}
    if len(n_cases) != 1:
        raise ValueError(f"arms were evaluated on different test cases: {shapes}")
    c = n_cases.pop()
    d = sum(w * arms[lab].mean(axis=0) for lab, w in weights.items())
    est = float(np.mean(d))
    # One test case: the case term is unknown, not zero (nothing is decided from it).
    s_d2 = float(np.var(d, ddof=1)) if c > 1 else math.nan
    var = s_d2 / c
    denom = var * var / (c - 1) if c > 1 else 0.0
    measured = c > 1
    run_var: dict[str, float] = {}
    for lab, w in weights.items():
        if arms[lab].shape[0] < 2:
            measured = False
            continue
        term, run_var[lab], den = _run_term(arms[lab], w)
        var += term
        denom += den
    df = var * var / denom if denom > 0 else (float("inf") if measured else math.nan)
    return Estimate(name or _name(weights), est, math.sqrt(var) if measured else None, df,
                    math.sqrt(s_d2 / c), {lab: y.shape[0] for lab, y in arms.items()}, c, run_var, dict(weights))


def predicted_halfwidth(est: Estimate, runs: dict[str, int], level: float) -> float | None:
    """The half-width at ``level`` that ``est`` would have with ``runs`` runs per arm, if its variance
    components stayed as estimated: ``q * sqrt(floor_se^2 + sum_r w_r^2 s_run,r^2 / S_r)`` (the quantile at
    the current degrees of freedom, so the prediction errs on the wide side). None when a run component is
    not measured."""
    if est.se is None or set(est.run_var) != set(est.weights):
        return None
    var = est.floor_se ** 2 + sum(est.weights[lab] ** 2 * v / max(1, runs.get(lab, est.runs[lab]))
                                  for lab, v in est.run_var.items())
    return _quantile(level, est.df) * math.sqrt(var)


def paired_run_estimate(a: dict[tuple[int, int], float], b: dict[tuple[int, int], float],
                        name: str = "") -> Estimate:
    """``mean(b - a)`` over the runs both have, paired by (fold, seed): for per-run values such as validation
    Dice, where there are no test cases and the runs themselves are the sampling unit."""
    keys = sorted(set(a) & set(b))
    d = np.array([b[k] - a[k] for k in keys], dtype=float)
    n = len(d)
    if n == 0:
        raise ValueError("no runs in common")
    est = float(d.mean())
    if n < 2:
        return Estimate(name, est, None, 0.0, 0.0, {"pairs": n}, 0)
    se = float(d.std(ddof=1) / math.sqrt(n))
    return Estimate(name, est, se, float(n - 1), 0.0, {"pairs": n}, 0)


def _name(weights: dict[str, float]) -> str:
    pos = [k for k, w in weights.items() if w > 0]
    neg = [k for k, w in weights.items() if w < 0]
    return f"{' + '.join(pos)} vs {' + '.join(neg)}" if len(pos) + len(neg) == len(weights) else str(weights)


def _quantile(level: float, df: float) -> float:
    p = 1 - (1 - level) / 2
    return float(stats.norm.ppf(p) if not math.isfinite(df) else stats.t.ppf(p, max(df, 1.0)))


def decide(est: Estimate, rules: Rules) -> Decision:
    """Apply the four stopping rules (module docstring) to one estimate. The decision's interval and level are
    those of the rule that decided it (``1 - alpha / m`` for precise and floor, ``1 - alpha / (m K)`` for the
    others and for undecided comparisons)."""
    level = rules.level
    if est.se is None:
        why = ("one test case: case-to-case variance not measured" if est.cases == 1
               else "one run in an arm: run-to-run variance not measured")
        return Decision(est.name, "undecided", why, est.estimate, None, None, level)
    if not est.se > SE_ZERO:
        return Decision(est.name, "undecided", "standard error estimated as 0 (every case and run gave the same "
                        "difference): no spread to judge an interval by", est.estimate, None, None, level)
    q = _quantile(level, est.df)
    h = q * est.se
    lo, hi = est.estimate - h, est.estimate + h
    pct = f"{100 * level:.2f}%"
    p_level = rules.precise_level
    h_p = _quantile(p_level, est.df) * est.se
    lo_p, hi_p = est.estimate - h_p, est.estimate + h_p
    p_pct = f"{100 * p_level:.2f}%"
    if lo > 0 or hi < 0:
        verdict = "helps" if lo > 0 else "hurts"
        return Decision(est.name, verdict, f"{pct} interval [{lo:+.4f}, {hi:+.4f}] excludes 0", est.estimate,
                        lo, hi, level)
    if -rules.margin <= lo and hi <= rules.margin:
        return Decision(est.name, "equivalent", f"{pct} interval [{lo:+.4f}, {hi:+.4f}] lies within "
                        f"+/-{rules.margin:g}", est.estimate, lo, hi, level)
    if h_p <= rules.halfwidth:
        return Decision(est.name, "precise", f"{p_pct} half-width {h_p:.4f} <= {rules.halfwidth:g}",
                        est.estimate, lo_p, hi_p, p_level)
    total = est.se ** 2
    run_share = (total - est.floor_se ** 2) / total if total > 0 else 0.0
    if run_share <= rules.floor_share:
        return Decision(est.name, "floor", f"test-set floor: {p_pct} half-width {h_p:.4f}, of which run variance "
                        f"is {100 * run_share:.0f}% of SE^2 (more seeds cannot narrow it; more test cases can)",
                        est.estimate, lo_p, hi_p, p_level)
    return Decision(est.name, "undecided", f"{pct} interval [{lo:+.4f}, {hi:+.4f}] includes 0 and exceeds "
                    f"+/-{rules.margin:g}; {p_pct} half-width {h_p:.4f} > {rules.halfwidth:g}", est.estimate,
                    lo, hi, level)


def decide_all(estimates: list[Estimate], rules: Rules) -> list[Decision]:
    """Decisions for the comparisons of one look (``rules.comparisons`` should be ``len(estimates)``)."""
    return [decide(e, rules) for e in estimates]

"""Effects (contrasts of configuration means) and intervals that include run-to-run variance.

An effect is ``sum_i w_i * mean(Y_i)`` over configurations ``i`` (a comparison of two configurations has
weights +1/-1; a factorial main effect +-2/N). Each ``Y_i`` is that configuration's ``(S_i runs, C cases)``
matrix for one metric, all on the same test cases. The standard error has a case part and a run part:

    SE^2 = s_d^2 / C + sum_i w_i^2 * s_run,side(i)^2 / S_i

where ``d_c = sum_i w_i * mean_s Y_i[s, c]`` is the per-case contrast (its variance ``s_d^2`` holds the
residual and any configuration x case interaction; the case main effect cancels) and ``s_run,A^2`` is the run
component pooled over the configurations on side A (positive weights) and side B (negative weights). For a
two-arm comparison this is ``s_d^2/C + s_run,A^2/S_A + s_run,B^2/S_B``. Degrees of freedom by Satterthwaite
over the mean squares the estimate is made of: ``s_run^2 = (MS_run - MS_res) / C`` counts both (a run term
whose estimate is mostly residual is less certain than MS_run's own degrees of freedom say); the interval
uses Student's t. That interval (``ci_lo``/``ci_hi``, ``p``, ``significant``) is the default: on heavy-tailed,
zero-inflated per-case Dice (cases that some runs lose entirely) it keeps false claims at or below the nominal
rate where counting MS_run's degrees of freedom alone did not (``benchmarks/simulate.py``, BENCHMARKS.md).

The nonparametric version is a two-way bootstrap that resamples test cases (one draw shared by every
configuration, so the pairing is kept) and, within each configuration, its runs; run and case deviations are
first spread by sqrt(n/(n-1)) so that resampling few runs does not shrink their variance.

With one run per configuration the run variance is not measured: the interval covers test-case sampling only
and :attr:`Effect.significant` is always False (nothing is claimed from case sampling alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.analysis.variance import VarianceComponents, pool, run_term, variance_components

__all__ = ["Effect", "CASES_AND_RUNS", "CASES_ONLY", "effect", "effects", "two_way_bootstrap",
           "bootstrap_config_means"]

CASES_AND_RUNS = "test cases + runs (seed/fold)"
CASES_ONLY = "test cases only; run variance not measured (1 run per configuration)"


@dataclass(frozen=True)
class Effect:
    """One estimated effect with its variance sources and intervals (t-based and two-way bootstrap)."""

    name: str
    estimate: float
    se: float
    df: float
    ci_lo: float
    ci_hi: float
    p: float  # two-sided, from the t statistic (NaN when run variance is not measured)
    boot_lo: float
    boot_hi: float
    case_var: float  # s_d^2 / C
    run_var: float  # sum_i w_i^2 s_run^2 / S_i (NaN when not measured)
    run_measured: bool
    n_cases: int
    n_runs: tuple[int, int]  # runs on side A (positive weights), side B (negative weights)
    level: float = 0.95

    @property
    def covers(self) -> str:
        """Which variance the interval covers, in words (shown next to every interval)."""
        return CASES_AND_RUNS if self.run_measured else CASES_ONLY

    @property
    def significant(self) -> bool:
        """The t-interval excludes 0 and run variance was measured (never from case sampling alone)."""
        return bool(self.run_measured and (self.ci_lo > 0 or self.ci_hi < 0))


def _matrices(layouts: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = [np.atleast_2d(np.asarray(y, dtype=float)) for y in layouts]
    c = out[0].shape[1]
    if any(y.shape[1] != c for y in out):
        raise ValueError("every configuration must be evaluated on the same test cases")
    if any(np.isnan(y).any() for y in out):
        raise ValueError("the layout must be balanced (no NaN): drop incomplete runs or cases first")
    return out


def bootstrap_config_means(layouts: Sequence[np.ndarray], n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``(n_configurations, n_boot)``: each configuration's mean in each two-way bootstrap resample (cases drawn
    once for all configurations, runs within each). Any contrast's resamples are ``weights @ result``."""
    ys = _matrices(layouts)
    rng = np.random.default_rng(seed)
    c = ys[0].shape[1]
    idx = rng.integers(0, c, size=(n_boot, c))
    case_w = np.zeros((n_boot, c))
    np.add.at(case_w, (np.repeat(np.arange(n_boot), c), idx.ravel()), 1.0)
    case_w /= c
    out = np.empty((len(ys), n_boot))
    for i, y in enumerate(ys):
        s = y.shape[0]
        # Resampling n values with replacement shrinks their variance by (n - 1) / n (halved with 2 seeds):
        # rows and columns are spread by sqrt(n / (n - 1)) about the mean first (rescaled bootstrap).
        g = y.mean()
        if s > 1:
            y = y + (np.sqrt(s / (s - 1)) - 1.0) * (y.mean(axis=1, keepdims=True) - g)
        if c > 1:
            y = y + (np.sqrt(c / (c - 1)) - 1.0) * (y.mean(axis=0, keepdims=True) - g)
        per_run = y @ case_w.T  # (S, n_boot): case-resampled mean of each run
        draws = rng.integers(0, s, size=(n_boot, s))
        out[i] = per_run[draws, np.arange(n_boot)[:, None]].mean(axis=1)
    return out


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def two_way_bootstrap(layouts: Sequence[np.ndarray], weights: np.ndarray, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``sum_i w_i mean(Y_i)`` resampling cases (shared) and each configuration's runs."""
    return _percentiles(np.asarray(weights, dtype=float) @ bootstrap_config_means(layouts, n_boot, seed), level)


def effect(name: str, layouts: Sequence[np.ndarray], weights: np.ndarray, *, level: float = 0.95,
           n_boot: int = 2000, seed: int = 0, components: Sequence[VarianceComponents] | None = None,
           boot: np.ndarray | None = None) -> Effect:
    """Estimate one contrast over configurations with its t-interval and two-way bootstrap interval.

    ``layouts[i]`` is configuration i's ``(runs, cases)`` matrix; ``weights[i]`` its contrast weight.
    ``components`` (each layout's :func:`variance_components`) and ``boot`` (:func:`bootstrap_config_means`)
    may be passed when many contrasts share the same layouts.
    """
    from scipy import stats

    ys = _matrices(layouts)
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(ys),):
        raise ValueError(f"{len(ys)} layouts need {len(ys)} weights, got shape {w.shape}")
    c = ys[0].shape[1]
    est = float(sum(wi * y.mean() for wi, y in zip(w, ys)))
    d = sum(wi * y.mean(axis=0) for wi, y in zip(w, ys))
    s_d2 = float(np.var(d, ddof=1)) if c > 1 else np.nan
    case_var = s_d2 / c
    terms = [(case_var, c - 1)]
    run_measured = True
    run_var = 0.0
    dens: list[float] = []  # Satterthwaite denominators of the run terms
    runs = []
    comps = list(components) if components is not None else [variance_components(y) for y in ys]
    for side in (w > 0, w < 0):
        members = [k for k, on in zip(comps, side) if on]
        runs.append(int(sum(k.runs for k in members)))
        comp = pool(members) if members else None
        if comp is None:
            continue
        if not comp.run_measured or np.isnan(comp.run):
            run_measured = False
            continue
        coef = float(sum(wi**2 / y.shape[0] for wi, y, on in zip(w, ys, side) if on))
        term, den = run_term(comp, coef)
        run_var += term
        dens.append(den)
        terms.append((term, comp.df_run))
    se2 = sum(t for t, _ in terms) if run_measured else case_var
    se = float(np.sqrt(se2))
    denom = (terms[0][0] ** 2 / terms[0][1] if c > 1 and terms[0][0] > 0 else 0.0)
    if run_measured:
        denom += sum(dens)
    df = float(se2**2 / denom) if denom > 0 else float(max(c - 1, 1))
    q = float(stats.t.ppf(0.5 + level / 2.0, df))
    lo, hi = est - q * se, est + q * se
    p = float(2 * stats.t.sf(abs(est) / se, df)) if run_measured and se > 0 else np.nan
    if boot is not None:
        b_lo, b_hi = _percentiles(w @ boot, level)
    elif n_boot:
        b_lo, b_hi = two_way_bootstrap(ys, w, n_boot, seed, level)
    else:
        b_lo, b_hi = np.nan, np.nan
    return Effect(name, est, se, df, lo, hi, p, b_lo, b_hi, case_var, run_var if run_measured else np.nan,
                  run_measured, c, (runs[0], runs[1]), level)


def effects(names: Sequence[str], layouts: Sequence[np.ndarray], weights: np.ndarray, *, level: float = 0.95,
            n_boot: int = 2000, seed: int = 0) -> list[Effect]:
    """:func:`effect` for each row of ``weights`` (``(n_effects, n_configurations)``)."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    comps = [variance_components(y) for y in _matrices(layouts)]
    boot = bootstrap_config_means(layouts, n_boot, seed) if n_boot else None
    return [effect(n, layouts, w[i], level=level, n_boot=n_boot, components=comps, boot=boot)
            for i, n in enumerate(names)]

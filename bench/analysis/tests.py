"""Tests and case-sampling intervals: paired Wilcoxon, Holm correction, case bootstrap, factorial contrasts.

Everything here works on plain numpy arrays so it is fast and easy to test:

- a *key matrix* ``K`` has one row per configuration and one column per replicate key (case, fold, seed),
  NaN where a configuration has no value for that key; ``groups`` maps each key column to its case index;
- a *case matrix* ``X`` has one row per configuration and one column per case: the mean of that case over the
  configuration's replicates (folds x seeds).

Pairing rule of the tests: two configurations are compared on the keys (case, fold, seed) that BOTH have;
each case's values are averaged over those replicates first, then the per-case differences go to the
signed-rank test. The bootstrap resamples cases (the unit the paper's table averages over) with one seeded
weight matrix shared by every configuration and metric, so the intervals are comparable and cheap: a
matrix product instead of a loop.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "holm",
    "paired_case_means",
    "wilcoxon_rows",
    "bootstrap_weights",
    "bootstrap_means",
    "Contrast",
    "factorial_contrasts",
    "contrast_estimates",
    "wilcoxon_min_p",
    "wilcoxon_can_reach",
]


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values of one family; NaN entries are left out of the family and stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    vals = p[ok]
    order = np.argsort(vals, kind="mergesort")
    scaled = (m - np.arange(m)) * vals[order]
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    res = np.empty(m)
    res[order] = adjusted
    out[ok] = res
    return out


def wilcoxon_min_p(n: int) -> float:
    """The smallest two-sided p-value a signed-rank test can give with ``n`` non-zero paired differences:
    every difference of one sign, exact null distribution, ``2 / 2**n`` (0.25 for 3 cases)."""
    return min(1.0, 2.0 / 2.0**n) if n > 0 else 1.0


def wilcoxon_can_reach(n: int, alpha: float = 0.05) -> bool:
    """Whether a two-sided signed-rank test on ``n`` cases can reach ``p < alpha`` at all (n >= 6 for 0.05)."""
    return wilcoxon_min_p(n) < alpha


def _group_matrix(groups: np.ndarray, n_cases: int) -> np.ndarray:
    g = np.zeros((len(groups), n_cases))
    g[np.arange(len(groups)), groups] = 1.0
    return g


def paired_case_means(
    keys: np.ndarray, groups: np.ndarray, n_cases: int, rows_a: np.ndarray, rows_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-case means of rows ``rows_a`` and ``rows_b`` of the key matrix, on the keys both rows have.

    Returns two arrays of shape ``(len(rows_a), n_cases)``; a case neither pair member shares is NaN.
    """
    a = keys[np.asarray(rows_a, dtype=int)]
    b = keys[np.asarray(rows_b, dtype=int)]
    both = ~np.isnan(a) & ~np.isnan(b)
    g = _group_matrix(np.asarray(groups, dtype=int), n_cases)
    counts = both.astype(float) @ g
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.where(both, a, 0.0) @ g / counts
        mb = np.where(both, b, 0.0) @ g / counts
    ma[counts == 0] = np.nan
    mb[counts == 0] = np.nan
    return ma, mb


def wilcoxon_rows(diffs: np.ndarray) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-value of each row of paired differences (NaN entries are skipped).

    scipy's defaults (``zero_method='wilcox'``, ``method='auto'``) so the numbers equal a plain
    ``scipy.stats.wilcoxon(a, b)`` call. Rows without any non-zero difference get p = 1; rows with no data
    get NaN. Rows that share the same set of present cases are tested in one vectorised call.
    """
    from scipy import stats

    d = np.atleast_2d(np.asarray(diffs, dtype=float))
    out = np.full(d.shape[0], np.nan)
    present = ~np.isnan(d)
    nonzero = present & (d != 0)
    has_data = present.any(axis=1)
    out[has_data & ~nonzero.any(axis=1)] = 1.0
    todo = np.flatnonzero(nonzero.any(axis=1))
    if len(todo) == 0:
        return out
    # Group rows by their pattern of present cases: one scipy call per pattern (usually exactly one).
    patterns: dict[bytes, list[int]] = {}
    for i in todo:
        patterns.setdefault(present[i].tobytes(), []).append(int(i))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rows in patterns.values():
            cols = present[rows[0]]
            block = d[np.ix_(np.asarray(rows, dtype=np.intp), np.flatnonzero(cols))]
            res = stats.wilcoxon(block, axis=1)
            out[rows] = np.atleast_1d(res.pvalue)
    return out


def bootstrap_weights(n_cases: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_cases)`` matrix: how many times each case is drawn in each case-bootstrap resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_cases, size=(n_boot, n_cases))
    flat = (np.arange(n_boot)[:, None] * n_cases + idx).ravel()
    return np.bincount(flat, minlength=n_boot * n_cases).reshape(n_boot, n_cases).astype(float)


def bootstrap_means(values: np.ndarray, weights: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the NaN-skipping mean of each row of ``values`` (rows x cases)."""
    v = np.atleast_2d(np.asarray(values, dtype=float))
    ok = ~np.isnan(v)
    alpha = (1.0 - level) / 2.0
    q = [100 * alpha, 100 * (1 - alpha)]
    if ok.all():
        means = (v @ weights.T) / weights.sum(axis=1)
        lo, hi = np.percentile(means, q, axis=1)
        return lo, hi
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (np.where(ok, v, 0.0) @ weights.T) / (ok.astype(float) @ weights.T)
    lo = np.full(v.shape[0], np.nan)
    hi = np.full(v.shape[0], np.nan)
    full = ~np.isnan(means).any(axis=1)
    if full.any():
        lo[full], hi[full] = np.percentile(means[full], q, axis=1)
    for i in np.flatnonzero(~full & ok.any(axis=1)):
        lo[i], hi[i] = np.nanpercentile(means[i], q)
    return lo, hi


@dataclass(frozen=True)
class Contrast:
    """A factorial effect: ``name`` is a trick (main effect) or ``"a x b"`` (two-way interaction).

    ``weights`` has one entry per configuration: +1/n_plus on the + side, -1/n_minus on the - side, so
    ``weights @ means`` is ``mean(+ side) - mean(- side)``.
    """

    name: str
    factors: tuple[str, ...]
    weights: np.ndarray


def factorial_contrasts(toggles: np.ndarray, factors: list[str], interactions: bool = True) -> list[Contrast]:
    """Main effects and two-way interactions of a two-level design.

    ``toggles`` is ``(n_configs, n_factors)`` of 0/1. Interaction ``a x b`` uses the classical +-1 coding:
    ``mean(y | x_a x_b = +1) - mean(y | x_a x_b = -1)``, which is
    ``((y++ - y-+) - (y+- - y--)) / 2`` in a balanced 2^k design.
    """
    t = np.asarray(toggles, dtype=float)
    coded = 2.0 * t - 1.0
    out: list[Contrast] = []

    def make(name: str, fs: tuple[str, ...], sign: np.ndarray) -> Contrast | None:
        plus, minus = sign > 0, sign < 0
        if not plus.any() or not minus.any():
            return None
        w = np.where(plus, 1.0 / plus.sum(), -1.0 / minus.sum())
        return Contrast(name, fs, w)

    for j, f in enumerate(factors):
        c = make(f, (f,), coded[:, j])
        if c is not None:
            out.append(c)
    if interactions:
        for (i, a), (j, b) in itertools.combinations(list(enumerate(factors)), 2):
            c = make(f"{a} x {b}", (a, b), coded[:, i] * coded[:, j])
            if c is not None:
                out.append(c)
    return out


def contrast_estimates(
    case_matrix: np.ndarray, contrasts: list[Contrast], weights: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate and case-bootstrap interval of each contrast over a (configs x cases) case matrix.

    Per case, the contrast of the configuration values is taken; cases missing in any configuration are
    left out (NaN). The estimate is the mean of the per-case contrasts, the interval resamples cases.
    """
    if not contrasts:
        empty = np.zeros(0)
        return empty, empty, empty
    c = np.stack([k.weights for k in contrasts])
    x = np.asarray(case_matrix, dtype=float)
    complete = ~np.isnan(x).any(axis=0)
    per_case = np.full((len(contrasts), x.shape[1]), np.nan)
    per_case[:, complete] = c @ x[:, complete]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est = np.nanmean(per_case, axis=1)
    lo, hi = bootstrap_means(per_case, weights, level)
    return est, lo, hi

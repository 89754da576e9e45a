"""Per-row differences with run-to-run variance: what Table 1's marks test.

A report's per-case values come as one ``(configurations, case x replicate keys)`` array per metric;
:func:`run_case_matrices` turns it into each configuration's ``(runs, cases)`` matrix and
:func:`difference_p` tests ``mean(a) - mean(b)`` with the standard error of
:func:`bench.analysis.effects.effect` (test cases + runs), on the cases every run of both evaluated.
"""

from __future__ import annotations

import math

import numpy as np

from bench.analysis.effects import effect

__all__ = ["run_case_matrices", "difference_p"]


def run_case_matrices(k: np.ndarray, case_codes: np.ndarray, rep_codes: np.ndarray, n_cases: int,
                       n_reps: int) -> list[np.ndarray]:
    """Each configuration's ``(runs, cases)`` matrix (NaN where a run did not evaluate a case) from the
    ``(configurations, case x replicate keys)`` values; runs without any value are left out."""
    out = []
    for row in k:
        mat = np.full((n_reps, n_cases), np.nan)
        mat[rep_codes, case_codes] = row
        out.append(mat[~np.isnan(mat).all(axis=1)])
    return out


def difference_p(a: np.ndarray, b: np.ndarray) -> float:
    """p of ``mean(a) - mean(b)`` with test-case and run variance (on the cases every run of both evaluated);
    NaN when a side has one run or fewer than two cases are shared."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        return math.nan
    keep = ~(np.isnan(a).any(axis=0) | np.isnan(b).any(axis=0))
    if keep.sum() < 2:
        return math.nan
    e = effect("", [a[:, keep], b[:, keep]], np.array([1.0, -1.0]), n_boot=0)
    return float(e.p) if e.run_measured else math.nan

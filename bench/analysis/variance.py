"""Variance components of per-case results: residual, run (seed, fold) and case, by the method of moments.

One configuration's results for one metric form a balanced ``(S runs, C cases)`` matrix ``Y``: every run
(a training with its own seed or fold) is evaluated on the same test cases. The model is

    y[s, c] = mu + run[s] + case[c] + e[s, c]

with independent run, case and residual terms. The two-way ANOVA without replication gives the mean squares

    MS_run = C * var(row means),  MS_case = S * var(column means),  MS_res = residual mean square,

and the components ``s_res^2 = MS_res``, ``s_run^2 = (MS_run - MS_res) / C`` and
``s_case^2 = (MS_case - MS_res) / S``, clipped at zero. With one run (S = 1) the run component is not
measured (NaN) and the residual cannot be told from the case component.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["VarianceComponents", "variance_components", "pooled_components", "pool", "run_term"]


@dataclass(frozen=True)
class VarianceComponents:
    """Method-of-moments components of one balanced ``(runs x cases)`` layout (or a pool of several)."""

    runs: int  # runs per configuration (the smallest, for a pool)
    cases: int
    ms_run: float
    ms_case: float
    ms_res: float
    df_run: int
    df_case: int
    df_res: int
    #: between-run variance (seed, fold): NaN when there is one run
    run: float
    #: between-case variance
    case: float
    #: residual (run x case) variance: NaN when there is one run
    residual: float

    @property
    def run_measured(self) -> bool:
        return self.df_run > 0


def _check(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if y.ndim != 2 or y.shape[0] < 1 or y.shape[1] < 1:
        raise ValueError(f"a (runs, cases) matrix is needed, got shape {y.shape}")
    if np.isnan(y).any():
        raise ValueError("the layout must be balanced: every run evaluated on every case (no NaN)")
    return y


def variance_components(y: np.ndarray) -> VarianceComponents:
    """Residual, run and case components of one configuration's ``(S runs, C cases)`` matrix."""
    y = _check(y)
    s, c = y.shape
    g = y.mean()
    rows = y.mean(axis=1)
    cols = y.mean(axis=0)
    ss_run = c * float(((rows - g) ** 2).sum())
    ss_case = s * float(((cols - g) ** 2).sum())
    ss_res = float(((y - rows[:, None] - cols[None, :] + g) ** 2).sum())
    df_run, df_case, df_res = s - 1, c - 1, (s - 1) * (c - 1)
    ms_run = ss_run / df_run if df_run else np.nan
    ms_case = ss_case / df_case if df_case else np.nan
    ms_res = ss_res / df_res if df_res else np.nan
    return _components(s, c, ms_run, ms_case, ms_res, df_run, df_case, df_res)


def _components(s: int, c: int, ms_run: float, ms_case: float, ms_res: float, df_run: int, df_case: int,
                df_res: int) -> VarianceComponents:
    if df_run and df_res:
        run = max(0.0, (ms_run - ms_res) / c)
        case = max(0.0, (ms_case - ms_res) / s) if df_case else np.nan
        res = ms_res
    elif df_run:  # one case: runs measured, residual confounded with them
        run, case, res = ms_run, np.nan, np.nan
    else:  # one run: the case mean square holds case and residual variance together
        run, res = np.nan, np.nan
        case = ms_case if df_case else np.nan
    return VarianceComponents(s, c, float(ms_run), float(ms_case), float(ms_res), df_run, df_case, df_res,
                              float(run), float(case), float(res))


def pooled_components(layouts: Sequence[np.ndarray]) -> VarianceComponents:
    """Components pooled over configurations (each its own ``(S_i, C)`` matrix, same cases): the mean squares
    are pooled by their degrees of freedom, assuming the components are the same in every configuration."""
    return pool([variance_components(y) for y in layouts])


def pool(comps: Sequence[VarianceComponents]) -> VarianceComponents:
    """Pool already computed components (see :func:`pooled_components`)."""
    if not comps:
        raise ValueError("no layout to pool")
    c = comps[0].cases
    if any(k.cases != c for k in comps):
        raise ValueError("pooled layouts must share the same test cases")

    def pool(ms: str, df: str) -> tuple[float, int]:
        d = sum(getattr(k, df) for k in comps)
        if d == 0:
            return np.nan, 0
        return sum(getattr(k, ms) * getattr(k, df) for k in comps if getattr(k, df)) / d, d

    ms_run, df_run = pool("ms_run", "df_run")
    ms_case, df_case = pool("ms_case", "df_case")
    ms_res, df_res = pool("ms_res", "df_res")
    # the run component's divisor uses the harmonic-free balanced form: S only enters the case component
    s = min(k.runs for k in comps)
    return _components(s, c, ms_run, ms_case, ms_res, df_run, df_case, df_res)


def run_term(comp: VarianceComponents, coef: float) -> tuple[float, float]:
    """A run term of a contrast's SE^2, ``coef * s_run^2`` (``coef = sum w_i^2 / S_i`` over the configurations
    that share ``comp``), and its Satterthwaite denominator. The denominator counts the mean squares the
    component is made of, ``(a MS_run)^2 / df_run + (a MS_res)^2 / df_res`` with ``a = coef / C``: a component
    estimated mostly from residual is less certain than MS_run's own degrees of freedom say. (0, 0) when the
    component is 0; with one case (no residual) the run means' variance on ``df_run``."""
    term = coef * comp.run
    if not term > 0:
        return 0.0, 0.0
    if comp.df_res > 0:
        a = coef / comp.cases
        return term, (a * comp.ms_run) ** 2 / comp.df_run + (a * comp.ms_res) ** 2 / comp.df_res
    return term, term * term / comp.df_run

"""How many runs per configuration detect an effect of a given size, from a pilot's variance components.

For a contrast with weights ``w`` over configurations that each get ``S`` runs on ``C`` test cases:

    SE(S)^2 = s_int^2 / C + sum(w^2) * (s_run^2 + s_res^2 / C) / S

``s_int^2`` is the configuration x case interaction (the part of the per-case differences that no number of
runs removes), ``s_run^2`` and ``s_res^2`` the run and residual components. The report's test of that
contrast is Student's t with Satterthwaite degrees of freedom (:mod:`bench.analysis.effects`), so an effect
``delta`` is detected with power ``1 - beta`` at two-sided level ``alpha`` when

    (t_{1-alpha/2, df(S)} + t_{1-beta, df(S)}) * SE(S) <= delta

with ``df(S)`` the Satterthwaite degrees of freedom of ``SE(S)^2``: its case part on ``C - 1``, its run part
on ``k (S - 1)`` (``k`` configurations in the contrast, each with ``S - 1``). The quantiles are recomputed at
every ``S`` tried (with few seeds they are far above the normal ones: a normal approximation undersizes).
As ``S`` grows, SE falls to the floor ``s_int / sqrt(C)`` (on ``C - 1`` degrees of freedom): an effect at or
below it is not detectable with any number of runs, only with more test cases.

:func:`seeds_for_ladder` sizes a forward ladder (selection on validation Dice, confirmation on test cases).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.analysis.variance import pooled_components

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PilotComponents", "PowerResult", "pilot_components", "seeds_for_power", "power_se_df",
           "selection_variance", "seeds_for_ladder", "ladder_floor"]


@dataclass(frozen=True)
class PilotComponents:
    run: float
    residual: float
    interaction: float
    cases: int
    configurations: int
    runs: int


@dataclass(frozen=True)
class PowerResult:
    """``seeds``: the smallest number of runs per configuration with the power asked for; None with
    ``reason`` ``"floor"`` (``delta`` is at or below the floor: no number of runs is enough) or ``"cap"``
    (reachable, but with more than ``max_seeds`` runs)."""

    delta: float
    seeds: int | None
    floor: float  # smallest detectable effect with unlimited runs, at these test cases
    se_at_seeds: float
    cases: int
    sum_w2: float
    df_at_seeds: float = math.nan
    reason: str | None = None
    max_seeds: int = 0


def pilot_components(matrices: list[np.ndarray]) -> PilotComponents:
    """Run, residual and configuration x case components from a pilot's per-configuration ``(runs, cases)``
    matrices (at least two runs each for the run component). The interaction is estimated from each
    configuration's per-case difference to the first one: ``var(d) - s_res^2 (1/S_A + 1/S_B)``."""
    comp = pooled_components(matrices)
    if not comp.run_measured or math.isnan(comp.residual):
        raise ValueError("the pilot has one run per configuration: run variance is not measured")
    base = matrices[0]
    inter = []
    for y in matrices[1:]:
        d = y.mean(axis=0) - base.mean(axis=0)
        inter.append(float(np.var(d, ddof=1)) - comp.residual * (1 / y.shape[0] + 1 / base.shape[0]))
    interaction = max(0.0, float(np.mean(inter))) if inter else 0.0
    return PilotComponents(comp.run, comp.residual, interaction, comp.cases, len(matrices),
                           min(y.shape[0] for y in matrices))


def _t_sum(alpha: float, power: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df))


def power_se_df(pilot: PilotComponents, seeds: int, *, cases: int, sum_w2: float, arms: int) -> tuple[float, float]:
    """``SE(S)`` and its Satterthwaite degrees of freedom for ``seeds`` runs per configuration (module
    docstring); ``arms``: how many configurations the contrast spans."""
    case_part = (pilot.interaction + sum_w2 * pilot.residual / seeds) / cases
    run_part = sum_w2 * pilot.run / seeds
    var = case_part + run_part
    denom = case_part ** 2 / max(cases - 1, 1) + (run_part ** 2 / (arms * (seeds - 1)) if seeds > 1 else math.inf)
    df = var ** 2 / denom if denom > 0 else math.inf
    return math.sqrt(var), (df if math.isfinite(df) else 1e6)


def seeds_for_power(pilot: PilotComponents, delta: float, *, cases: int | None = None, sum_w2: float = 2.0,
                    arms: int = 2, alpha: float = 0.05, power: float = 0.8, max_seeds: int = 1000) -> PowerResult:
    """The smallest number of runs per configuration (at least 2: one run measures no run variance, and the
    report claims nothing from it) that detects ``delta`` with the t test the report uses: t quantiles at the
    Satterthwaite degrees of freedom of each candidate number of runs (module docstring)."""
    if not delta > 0:
        raise ValueError(f"delta = {delta} must be > 0")
    c = cases or pilot.cases
    floor_se = math.sqrt(pilot.interaction / c)
    floor = _t_sum(alpha, power, max(c - 1, 1)) * floor_se if floor_se > 0 else 0.0
    if delta <= floor:
        return PowerResult(delta, None, floor, math.nan, c, sum_w2, reason="floor", max_seeds=max_seeds)
    for s in range(2, max_seeds + 1):
        se, df = power_se_df(pilot, s, cases=c, sum_w2=sum_w2, arms=arms)
        if _t_sum(alpha, power, df) * se <= delta:
            return PowerResult(delta, s, floor, se, c, sum_w2, df, max_seeds=max_seeds)
    return PowerResult(delta, None, floor, math.nan, c, sum_w2, reason="cap", max_seeds=max_seeds)


def selection_variance(cells: pd.DataFrame) -> tuple[float, int] | None:
    """Variance of one paired validation difference (a configuration's run minus the first configuration's
    run of the same fold and seed), pooled over a pilot's configurations, with its degrees of freedom: what
    a forward ladder's selection step compares. ``cells``: columns label, fold, seed, objective, state (as
    :func:`bench.store.queries.cells`), first configuration first. None when fewer than two paired runs of
    two configurations have a validation Dice."""
    done = cells[(cells["state"] == "done") & cells["objective"].notna()]
    labels = list(dict.fromkeys(cells["label"]))
    if len(labels) < 2:
        return None
    base = {(int(f), int(s)): float(o) for f, s, o in done[done["label"] == labels[0]][["fold", "seed", "objective"]]
            .itertuples(index=False)}
    ss, df = 0.0, 0
    for lab in labels[1:]:
        sub = done[done["label"] == lab]
        d = np.array([float(o) - base[(int(f), int(s))] for f, s, o in sub[["fold", "seed", "objective"]]
                      .itertuples(index=False) if (int(f), int(s)) in base])
        if len(d) >= 2:
            ss += float(((d - d.mean()) ** 2).sum())
            df += len(d) - 1
    return (ss / df, df) if df > 0 else None


def ladder_floor(interaction: float, cases: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest effect a forward ladder's confirmation can detect with unlimited seeds (one-sided at
    ``alpha``, ``sqrt(power)`` per stage, the quantiles' limit): at or below it :func:`seeds_for_ladder`'s None
    means more test cases, above it only more seeds than its cap."""
    from scipy import stats

    return float(stats.norm.ppf(1 - alpha) + stats.norm.ppf(math.sqrt(power))) * math.sqrt(interaction / cases)


def seeds_for_ladder(run: float, residual: float, interaction: float, cases: int, candidates: int, delta: float,
                     *, selection_var: float | None = None, folds: int = 1, alpha: float = 0.05,
                     power: float = 0.8, max_seeds: int = 200) -> int | None:
    """Seeds per configuration for a forward ladder to find and confirm a trick of ``+delta`` with ``power``.

    Selection compares paired validation runs (``folds`` x seeds pairs) one-sided at ``alpha / candidates``
    (Holm's first step, the worst case); ``selection_var`` is the variance of one paired validation difference
    (:func:`selection_variance` from a pilot). Without it the test-set components stand in,
    ``2 (run + residual / cases)``, which leaves out the noise of the validation set itself and so sizes
    selection too small. Confirmation: the test-case contrast with variance
    ``interaction / cases + 2 (run + residual / cases) / pairs``, one-sided at ``alpha``. Each stage gets
    ``sqrt(power)`` (they use independent runs, so both succeed with at least ``power``), and each needs
    ``t_{1-a, n-1} + t_{sqrt(power), n-1} <= delta / SE`` with t quantiles at the paired runs' degrees of
    freedom for both the test and the power term (the SE is estimated from those runs). None when
    ``max_seeds`` is not enough."""
    from scipy import stats

    p_stage = math.sqrt(power)
    per_run = 2 * (run + residual / cases)
    sel_var = per_run if selection_var is None else selection_var
    for s in range(2, max_seeds + 1):
        n = s * folds
        t_p = float(stats.t.ppf(p_stage, n - 1))
        sel = float(stats.t.ppf(1 - alpha / candidates, n - 1)) + t_p <= delta / math.sqrt(sel_var / n)
        se_conf = math.sqrt(interaction / cases + per_run / n)
        conf = float(stats.t.ppf(1 - alpha, n - 1)) + t_p <= delta / se_conf
        if sel and conf:
            return s
    return None

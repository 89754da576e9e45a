"""How many runs per configuration detect an effect of a given size, from a pilot's variance components.

For a contrast with weights ``w`` over configurations that each get ``S`` runs on ``C`` test cases:

    SE(S)^2 = s_int^2 / C + sum(w^2) * (s_run^2 + s_res^2 / C) / S

``s_int^2`` is the configuration x case interaction (the part of the per-case differences that no number of
runs removes), ``s_run^2`` and ``s_res^2`` the run and residual components. An effect ``delta`` is detected
with power ``1 - beta`` at two-sided level ``alpha`` when ``(z_{1-alpha/2} + z_{1-beta}) * SE(S) <= delta``.
As ``S`` grows, SE falls to the floor ``s_int / sqrt(C)``: below that only more test cases help.

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

__all__ = ["PilotComponents", "PowerResult", "pilot_components", "seeds_for_power", "selection_variance",
           "seeds_for_ladder"]


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
    delta: float
    seeds: int | None  # None: not reachable with max_seeds (or below the floor)
    floor: float  # smallest detectable effect with unlimited runs, at these test cases
    se_at_seeds: float
    cases: int
    sum_w2: float


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


def seeds_for_power(pilot: PilotComponents, delta: float, *, cases: int | None = None, sum_w2: float = 2.0,
                    alpha: float = 0.05, power: float = 0.8, max_seeds: int = 1000) -> PowerResult:
    """The smallest number of runs per configuration that detects ``delta`` (normal approximation)."""
    from scipy import stats

    if not delta > 0:
        raise ValueError(f"delta = {delta} must be > 0")
    c = cases or pilot.cases
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    per_run = sum_w2 * (pilot.run + pilot.residual / c)
    floor_var = pilot.interaction / c
    floor = z * math.sqrt(floor_var)
    need = (delta / z) ** 2 - floor_var
    if need <= 0:
        return PowerResult(delta, None, floor, math.nan, c, sum_w2)
    s = max(1, math.ceil(per_run / need - 1e-12))
    if s > max_seeds:
        return PowerResult(delta, None, floor, math.nan, c, sum_w2)
    return PowerResult(delta, s, floor, math.sqrt(floor_var + per_run / s), c, sum_w2)


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

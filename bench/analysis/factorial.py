"""Factorial effects of a two-level design (full or fractional) from per-case results, with honest intervals.

Each estimable effect is a +-1 contrast over the configurations (its column is the product of its factors'
+-1 toggles). In a fraction a contrast estimates the sum of its alias class: it is named ``"a + b x c"`` and
flagged ``aliased``. Every effect gets the interval of :func:`bench.analysis.effects.effect` (test cases +
runs when there are several runs per configuration, test cases only otherwise) and a two-way bootstrap;
p-values are Holm-corrected within each metric's table.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.analysis.effects import bootstrap_config_means, effect
from bench.analysis.layout import layouts
from bench.analysis.tests import holm
from bench.analysis.variance import variance_components

__all__ = ["EffectSpec", "effect_specs", "contrast_weights", "factorial_effects"]


@dataclass(frozen=True)
class EffectSpec:
    """What one contrast estimates: ``factors`` of its column, ``name`` (an alias sum joins its members
    with ``" + "``), ``kind`` main or interaction."""

    name: str
    factors: tuple[str, ...]
    kind: str
    aliased: bool = False


def effect_specs(factors: Sequence[str], interactions: bool = True) -> list[EffectSpec]:
    """Main effects and two-factor interactions of a full factorial (nothing aliased)."""
    out = [EffectSpec(f, (f,), "main") for f in factors]
    if interactions:
        out += [EffectSpec(f"{a} x {b}", (a, b), "interaction") for a, b in itertools.combinations(factors, 2)]
    return out


def contrast_weights(toggles: np.ndarray, columns: Sequence[int]) -> np.ndarray | None:
    """+1/n_plus, -1/n_minus weights of the product column of ``columns`` (None when a side is empty)."""
    z = 2 * np.asarray(toggles, dtype=int) - 1
    col = np.prod(z[:, list(columns)], axis=1)
    plus, minus = col > 0, col < 0
    if not plus.any() or not minus.any():
        return None
    return np.where(plus, 1.0 / plus.sum(), -1.0 / minus.sum())


def factorial_effects(metrics: Any, configurations: Sequence[Any], toggles: Sequence[dict[str, int]],
                      factors: Sequence[str], specs: Sequence[EffectSpec],
                      columns: Sequence[tuple[str, str, str]], *, level: float = 0.95, n_boot: int = 2000,
                      seed: int = 0) -> Any:
    """One row per effect x metric column: ``effect, kind, aliased, metric, estimate, se, df, ci_lo, ci_hi,
    p, p_holm, boot_lo, boot_hi, case_var, run_var, run_measured, significant, covers, cases, runs_a,
    runs_b``.

    ``metrics``: a case-metrics DataFrame (``configuration_id, fold, seed, case_id, region`` + values);
    ``configurations`` / ``toggles``: the design's configuration ids and their 0/1 toggles; ``columns``:
    ``(value column, region, display name)`` triples, e.g. ``("dice", "ET", "Dice ET")``.
    """
    import pandas as pd

    t = np.array([[int(tg.get(f, 0)) for f in factors] for tg in toggles], dtype=int)
    index = {f: i for i, f in enumerate(factors)}
    rows: list[dict[str, Any]] = []
    for value, region, label in columns:
        lay = layouts(metrics, value, region=region, keys=list(configurations))
        if any(m.shape[0] == 0 for m in lay.matrices) or not lay.cases:
            continue
        start = len(rows)
        comps = [variance_components(m) for m in lay.matrices]
        boot = bootstrap_config_means(lay.matrices, n_boot, seed) if n_boot else None
        for spec in specs:
            w = contrast_weights(t, [index[f] for f in spec.factors])
            if w is None:
                continue
            e = effect(spec.name, lay.matrices, w, level=level, n_boot=n_boot, components=comps, boot=boot)
            rows.append({
                "effect": spec.name, "kind": spec.kind, "aliased": spec.aliased, "metric": label,
                "estimate": e.estimate, "se": e.se, "df": e.df, "ci_lo": e.ci_lo, "ci_hi": e.ci_hi, "p": e.p,
                "boot_lo": e.boot_lo, "boot_hi": e.boot_hi, "case_var": e.case_var, "run_var": e.run_var,
                "run_measured": e.run_measured, "covers": e.covers, "cases": e.n_cases,
                "runs_a": e.n_runs[0], "runs_b": e.n_runs[1], "dropped_cases": lay.dropped_cases,
            })
        block = rows[start:]
        adj: np.ndarray | list[float] = holm(np.array([r["p"] for r in block], dtype=float)) if block else []
        for r, p in zip(block, adj):
            r["p_holm"] = float(p)
            r["significant"] = bool(r["run_measured"] and not np.isnan(p) and p < 1 - level)
    cols = ["effect", "kind", "aliased", "metric", "estimate", "se", "df", "ci_lo", "ci_hi", "p", "p_holm",
            "boot_lo", "boot_hi", "case_var", "run_var", "run_measured", "significant", "covers", "cases",
            "runs_a", "runs_b", "dropped_cases"]
    return pd.DataFrame(rows, columns=cols)

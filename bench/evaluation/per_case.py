"""What a run stores per test case: one call from the runner's cell evaluation.

:func:`case_rows` scores one predicted case (bench's canonical BraTS 2019 labels, on the source grid) and
returns its rows for the results database: one per region ET, TC, WT with the BraTS 2017-2022 values, the
BraTS 2023 lesion-wise values when a cohort is given, and, on the first row, ``rule_values``: every
``(rules, cohort, region, metric, value)`` of a later year's rules (2024 or 2025) when asked for.
:func:`rule_means` gives their test-case means for the MLflow mirror.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.evaluation.lesionwise import lesion_columns
from bench.evaluation.metrics import evaluate_case
from bench.evaluation.rules import case_values, get_rules

__all__ = ["case_rows", "rule_means", "RULE_VALUES_KEY"]

RULE_VALUES_KEY = "rule_values"


def case_rows(
    case_id: str, labels: np.ndarray, reference: np.ndarray, spacing: Sequence[float], *,
    lesionwise: str | None = None, rules: str | None = None, cohort: str | None = None,
) -> list[dict[str, Any]]:
    """The per-case rows of one case (see the module docstring); ``rules`` "2017"/"2023"/None add nothing
    beyond the columns of ``case_metrics``."""
    lesion = lesion_columns(labels, reference, spacing, lesionwise)  # {} when no cohort
    rows: list[dict[str, Any]] = [
        {"case_id": case_id, "region": region, "dice": float(m.dice), "hd95": float(m.hd95),
         "sensitivity": float(m.sensitivity), "specificity": float(m.specificity), "penalty": bool(m.penalty),
         **lesion.get(region, {})}
        for region, m in evaluate_case(labels, reference, spacing).items()
    ]
    if rules is not None and rules not in ("2017", "2023") and rows:
        r = get_rules(rules)
        c = r.cohort(cohort)
        rows[0][RULE_VALUES_KEY] = [
            (r.year, c, region, metric, value)
            for region, metric, value in case_values(r, c, labels, reference, spacing, case_id)
        ]
    return rows


def rule_means(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``brats<year>_<metric>_<region>`` test-case means of the later-year values in ``rows`` (NaN skipped;
    a mean that is not finite is left out)."""
    acc: dict[str, list[float]] = {}
    for row in rows:
        for year, _cohort, region, metric, value in row.get(RULE_VALUES_KEY, ()):
            if not math.isnan(value):
                acc.setdefault(f"brats{year}_{metric.lower()}_{region.lower()}", []).append(float(value))
    out = {}
    for key, vals in acc.items():
        mean = float(np.mean(vals))
        if math.isfinite(mean):
            out[key] = mean
    return out

"""BraTS 2017-2022 whole-image rules (:mod:`bench.evaluation.metrics`) as a rule set: Dice, medpy's pooled
HD95, sensitivity and specificity per region ET, TC, WT, with the empty-mask rules (both empty: Dice 1, HD95
0; one empty: Dice 0, HD95 373.13). Labels are bench's canonical BraTS 2019 labels {0, 1, 2, 4}."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.data.formats import BRATS2019, REGIONS
from bench.evaluation.metrics import METRIC_NAMES, evaluate_case
from bench.evaluation.rules._base import Row, Rules, pandas_stats

__all__ = ["Brats2017"]


class Brats2017(Rules):
    """Whole-image Dice / HD95 / sensitivity / specificity (the BraTS 2017-2022 online evaluator)."""

    year = "2017"
    title = "BraTS 2017-2022 whole-image"
    layout = "long"
    id_column = "case_id"

    def cohorts(self) -> tuple[str, ...]:
        return ("gli",)

    def labels(self, cohort: str) -> tuple[int, ...]:
        return BRATS2019.labels

    def regions(self, cohort: str) -> tuple[str, ...]:
        return REGIONS

    def columns(self, cohort: str) -> tuple[str, ...]:
        return ("case_id", "region", *METRIC_NAMES, "penalty")

    def describe(self, cohort: str) -> str:
        return ("BraTS 2017-2022 whole-image rules: Dice, HD95 (medpy's pooled 95th percentile, 373.13 mm when "
                "exactly one mask is empty), sensitivity, specificity")

    def score(self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None,
              cohort: str, case_id: str = "") -> list[Row]:
        return [
            {"case_id": case_id, "region": r, "dice": m.dice, "hd95": m.hd95, "sensitivity": m.sensitivity,
             "specificity": m.specificity, "penalty": int(m.penalty)}
            for r, m in evaluate_case(pred, gt, spacing, BRATS2019).items()
        ]

    def values(self, rows: Sequence[Row], cohort: str) -> list[tuple[str, str, float]]:
        return [(str(r["region"]), m, float(r[m])) for r in rows for m in METRIC_NAMES]

    def summary(self, rows: Sequence[Row], cohort: str) -> list[Row]:
        out: list[Row] = []
        for region in REGIONS:
            stats = {m: pandas_stats([float(r[m]) for r in rows if r["region"] == region]) for m in METRIC_NAMES}
            for s in ("mean", "std", "median"):
                out.append({"case_id": s, "region": region, **{m: stats[m][s] for m in METRIC_NAMES}})
        return out

"""BraTS 2023 lesion-wise rules (:mod:`bench.evaluation.lesionwise`, rachitsaluja/BraTS-2023-Metrics) as a
rule set: lesion-wise Dice and HD95 plus the evaluator's legacy values per region ET, TC, WT, for the cohorts
gli, ssa, ped (dilation 3, 50 mm^3), men (1, 50) and met (1, 2). Labels are BraTS 2019 labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.data.formats import BRATS2019, REGIONS
from bench.evaluation.lesionwise import COHORTS, get_cohort, lesionwise_case
from bench.evaluation.rules._base import Row, Rules, pandas_stats

__all__ = ["Brats2023"]

_METRICS = ("lesion_dice", "lesion_hd95", "legacy_dice", "legacy_hd95", "num_tp", "num_fp", "num_fn",
            "sensitivity", "specificity")


class Brats2023(Rules):
    """BraTS 2023 lesion-wise Dice / HD95 (one row per case and region, the 2023 evaluator's names)."""

    year = "2023"
    title = "BraTS 2023 lesion-wise"
    layout = "long"
    id_column = "case"

    def cohorts(self) -> tuple[str, ...]:
        return tuple(COHORTS)

    def labels(self, cohort: str) -> tuple[int, ...]:
        return BRATS2019.labels

    def regions(self, cohort: str) -> tuple[str, ...]:
        return REGIONS

    def columns(self, cohort: str) -> tuple[str, ...]:
        return ("case", "region", *_METRICS)

    def describe(self, cohort: str) -> str:
        return get_cohort(self.cohort(cohort)).describe()

    def score(self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None,
              cohort: str, case_id: str = "") -> list[Row]:
        return [
            {"case": case_id, "region": r, **m.as_dict()}
            for r, m in lesionwise_case(pred, gt, spacing, self.cohort(cohort), BRATS2019).items()
        ]

    def values(self, rows: Sequence[Row], cohort: str) -> list[tuple[str, str, float]]:
        return [(str(r["region"]), m, float(r[m])) for r in rows for m in _METRICS]

    def summary(self, rows: Sequence[Row], cohort: str) -> list[Row]:
        out: list[Row] = []
        for region in REGIONS:
            stats = {m: pandas_stats([float(r[m]) for r in rows if r["region"] == region]) for m in _METRICS}
            for s in ("mean", "std", "median"):
                out.append({"case": s, "region": region, **{m: stats[m][s] for m in _METRICS}})
        return out

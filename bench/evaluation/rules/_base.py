"""The contract every year's BraTS evaluation rules fulfil (one file per definition, registered in
``bench.evaluation.rules``).

A *rule set* scores one case at a time: ``score(pred, gt, spacing, cohort)`` takes two integer label maps in
the rule set's own label convention (``labels(cohort)``), the voxel size in mm along the array axes (nibabel
order, from the reference header) and a cohort (a challenge's dataset / bundled config), and returns the
case's rows with the official column names (``columns(cohort)``). ``layout`` says whether a case gives one row
per region (``"long"``: a ``region`` column, as the 2017-2024 evaluators write) or one row per case
(``"wide"``: the 2025 leaderboard columns). ``values(rows)`` turns rows into ``(region, metric, value)``
triples for the results database and the MLflow means; ``summary(rows, cohort)`` gives the rows the
official tooling appends after the cases.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from bench.errors import SpecError
from bench.evaluation.lesionwise import spacing3

__all__ = ["Rules", "spacing3", "pandas_stats"]

Row = dict[str, Any]


def pandas_stats(values: Sequence[float]) -> dict[str, float]:
    """``mean``, ``std`` and ``median`` the way pandas computes them on a column (NaN skipped, ``std`` with
    ddof=1 and NaN below two values or with an infinite value)."""
    a = np.asarray([v for v in values if not (isinstance(v, float) and math.isnan(v))], dtype=np.float64)
    if a.size == 0:
        return {"mean": math.nan, "std": math.nan, "median": math.nan}
    finite = bool(np.all(np.isfinite(a)))
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(a))
        std = float(np.std(a, ddof=1)) if a.size > 1 and finite else math.nan
        median = float(np.median(a))
    return {"mean": mean, "std": std, "median": median}


class Rules(ABC):
    """One year's evaluation definition (see the module docstring)."""

    year: ClassVar[str]
    title: ClassVar[str]
    layout: ClassVar[str]  # "long" (a row per case and region) or "wide" (a row per case)
    id_column: ClassVar[str] = "case"
    default_cohort: ClassVar[str] = "gli"

    @abstractmethod
    def cohorts(self) -> tuple[str, ...]:
        """The cohort / config names this year accepts."""

    def cohort(self, name: str | None, *, where: str = "--cohort") -> str:
        """The canonical cohort name for ``name`` (case-insensitive; None gives the default)."""
        if name is None:
            return self.default_cohort
        names = {c.lower(): c for c in self.cohorts()}
        key = str(name).strip().lower()
        if key not in names:
            raise SpecError(
                f"{where}: unknown cohort {name!r} for the BraTS {self.year} rules; "
                f"expected one of {', '.join(self.cohorts())}"
            )
        return names[key]

    @abstractmethod
    def labels(self, cohort: str) -> tuple[int, ...]:
        """The label values (0 included) that predictions and references of ``cohort`` may hold."""

    @abstractmethod
    def regions(self, cohort: str) -> tuple[str, ...]:
        """The regions scored, in the official order."""

    @abstractmethod
    def columns(self, cohort: str) -> tuple[str, ...]:
        """The CSV columns of one row, the id column first."""

    @abstractmethod
    def score(self, pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None,
              cohort: str, case_id: str = "") -> list[Row]:
        """The rows of one case (labels in this year's convention, same 3-D shape)."""

    def missing(self, case_id: str, gt: np.ndarray, spacing: Sequence[float] | float | None,
                cohort: str) -> list[Row]:
        """The rows of a reference case without a prediction: scored as an empty prediction."""
        return self.score(np.zeros_like(gt), gt, spacing, cohort, case_id)

    @abstractmethod
    def values(self, rows: Sequence[Row], cohort: str) -> list[tuple[str, str, float]]:
        """``(region, metric, value)`` of the rows of one case, for storage and means."""

    @abstractmethod
    def summary(self, rows: Sequence[Row], cohort: str) -> list[Row]:
        """The rows appended after the cases (as the official tooling writes them)."""

    @abstractmethod
    def describe(self, cohort: str) -> str:
        """One line naming the definition, for captions and summaries."""

    def numbering_is_glioma(self, cohort: str) -> bool:
        """Whether ``cohort`` numbers labels like glioma (1 NETC/NCR, 2 SNFH/ED, 3 or 4 ET), so that BraTS
        2018-2021 and MSD label maps can be converted to it."""
        return True

    def from_brats2019(self, label: np.ndarray) -> np.ndarray:
        """Canonical BraTS 2019 labels {0, 1, 2, 4} in this year's convention (identity by default)."""
        return np.asarray(label)

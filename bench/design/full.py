"""``design = "full"``: every combination of the factors (2^k rows), each with every fold and seed.

Combinations the trick registry refuses stay in the design; the planner keeps them as refused rows whose
cells are stored as skipped, so the grid's shape is visible in the report.
"""

from __future__ import annotations

from typing import Any

from bench.design import register
from bench.design._base import CellRequest, Design, RowRequest
from bench.spec.checks import err
from bench.spec.model import Spec

__all__ = ["FullDesign", "cells_for"]


def cells_for(spec: Any, rows: list[RowRequest], stage: str = "main") -> list[CellRequest]:
    """Every row with every fold and seed of the spec (rows outer, then fold, then seed)."""
    return [CellRequest(r, fold, seed, stage) for r in rows for fold in spec.folds for seed in spec.seeds]


@register
class FullDesign(Design):
    name = "full"
    two_level = "full factorial"
    complete_grid = True
    baseline_row = True

    @classmethod
    def check(cls, spec: Spec) -> None:
        super().check(spec)
        if len(spec.factors) > 10:
            raise err(spec.source, f"factors: {len(spec.factors)} factors make {2 ** len(spec.factors)} rows; "
                                   "at most 10 accepted")

    def rows(self) -> list[RowRequest]:
        spec = self.spec
        out = []
        for i in range(2 ** len(spec.factors)):
            on = [f for j, f in enumerate(spec.factors) if i >> j & 1]
            out.append(RowRequest(spec.row_label(on), tuple(spec.fixed) + tuple(on), dict(spec.params)))
        return out

    def initial(self) -> list[CellRequest]:
        return cells_for(self.spec, self.rows())

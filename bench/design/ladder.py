"""``design = "ladder"``: cumulative rows in factor order, like the paper's Table 1 (BL, BL+a, BL+a+b, ...)."""

from __future__ import annotations

from typing import Any

from bench.design import register
from bench.design._base import CellRequest, Design, RowRequest
from bench.design.full import cells_for
from bench.spec.model import Spec

__all__ = ["LadderDesign"]


@register
class LadderDesign(Design):
    name = "ladder"
    stepwise = True
    baseline_row = True

    @classmethod
    def rows_to_check(cls, spec: Spec) -> list[tuple[str, list[str], dict[str, dict[str, Any]]]]:
        out = []
        names = list(spec.fixed)
        for t in spec.factors:
            names.append(t)
            out.append((f"ladder row {spec.row_label(names[len(spec.fixed):])!r}", list(names), spec.params))
        return out

    def rows(self) -> list[RowRequest]:
        spec = self.spec
        out = [RowRequest(spec.baseline_label, tuple(spec.fixed), dict(spec.params))]
        for n in range(1, len(spec.factors) + 1):
            on = tuple(spec.factors[:n])
            out.append(RowRequest(spec.row_label(on), tuple(spec.fixed) + on, dict(spec.params)))
        return out

    def initial(self) -> list[CellRequest]:
        return cells_for(self.spec, self.rows())

    def describe(self) -> dict[str, Any]:
        return {"steps": [r.label for r in self.rows()]}

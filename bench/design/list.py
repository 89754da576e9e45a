"""``design = "list"``: the spec's explicit ``[[rows]]`` (label, tricks, params), fixed tricks added to each."""

from __future__ import annotations

from typing import Any

from bench.design import register
from bench.design._base import CellRequest, Design, RowRequest
from bench.design.full import cells_for
from bench.spec.model import Spec

__all__ = ["ListDesign"]


@register
class ListDesign(Design):
    name = "list"
    uses_rows = True
    needs_factors = False

    @classmethod
    def rows_to_check(cls, spec: Spec) -> list[tuple[str, list[str], dict[str, dict[str, Any]]]]:
        return [(f"row {r.label!r}", list(spec.fixed) + [t for t in r.tricks if t not in spec.fixed],
                 {**spec.params, **r.params}) for r in spec.rows]

    def rows(self) -> list[RowRequest]:
        spec = self.spec
        fixed = tuple(spec.fixed)
        return [RowRequest(r.label, fixed + tuple(t for t in r.tricks if t not in fixed), {**spec.params, **r.params})
                for r in spec.rows]

    def initial(self) -> list[CellRequest]:
        return cells_for(self.spec, self.rows())

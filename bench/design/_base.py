"""The design family's contract: which cells to run next, given which are finished.

A design is pure: it reads the spec and the finished results it is handed, and returns cell requests. It
trains nothing and opens no store; the runner registers what it asks for, runs it, and asks again. The runner
knows no design by name (the way the engine knows no trick): it calls :meth:`Design.initial` once when an
experiment is registered and, for an adaptive design, :meth:`Design.next` at every *look* (when every cell the
design asked for so far is finished), exactly once per look even with several workers or machines.

One module per design registers a subclass with :func:`bench.design.register`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pandas is imported by the layers that use results, not at import time
    import pandas as pd

    from bench.runner.spec import Spec

__all__ = ["RowRequest", "CellRequest", "Results", "Design"]


@dataclass(frozen=True)
class RowRequest:
    """A configuration a design asks for: its label, enabled tricks (fixed tricks included, spec order) and the
    parameters of the enabled tricks as the spec gives them (the planner resolves defaults)."""

    label: str
    tricks: tuple[str, ...]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class CellRequest:
    """One unit of work: a configuration trained on ``fold`` with ``seed`` and evaluated on the test cases.

    ``stage`` names the part of the design the cell belongs to (``"main"``, ``"foldover"``, ``"look-2"``,
    ``"select-1"``, ``"confirm-1"``...): analyses and reports use it to keep selection and confirmation apart.
    """

    row: RowRequest
    fold: int
    seed: int
    stage: str = "main"


@dataclass(frozen=True)
class Results:
    """What the runner hands a design at a look: the experiment's cells and their per-case metrics.

    ``cells``: one row per cell, the columns of :func:`bench.store.queries.cells` (``cell_id``, ``label``,
    ``fold``, ``seed``, ``state``, ``objective``...) plus ``stage`` and ``toggles`` (factor -> 0/1).
    ``metrics``: one row per finished cell x test case x region, the columns of
    :func:`bench.store.queries.case_metrics` (``cell_id``, ``label``, ``fold``, ``seed``, ``case_id``,
    ``region``, ``dice``, ``hd95``...) plus ``stage``.
    """

    cells: pd.DataFrame
    metrics: pd.DataFrame


class Design(abc.ABC):
    """Base of every design. Subclasses set ``name`` and implement :meth:`initial`."""

    #: the spec's ``design = "..."`` value
    name: ClassVar[str]
    #: True when :meth:`next` may ask for more cells after the first ones finish
    adaptive: ClassVar[bool] = False

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    @abc.abstractmethod
    def initial(self) -> list[CellRequest]:
        """The cells to register when the experiment starts (all of them, for a fixed design)."""

    def next(self, results: Results) -> list[CellRequest] | None:
        """At a look: more cells to run (``[]``: none yet), or ``None`` when the design is complete."""
        return None

    def describe(self) -> dict[str, Any]:
        """What ``bench plan`` and the report show beyond the cells (generators, resolution, alias chains,
        looks, ladder steps); JSON-serialisable."""
        return {}

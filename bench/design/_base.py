"""The design family's contract: which cells to run next, given which are finished.

A design is pure: it reads the spec and the finished results it is handed, and returns cell requests. It
trains nothing and opens no store; the runner registers what it asks for, runs it, and asks again. The runner
knows no design by name (the way the engine knows no trick): it calls :meth:`Design.initial` once when an
experiment is registered and, for an adaptive design, :meth:`Design.next` at every *look* (when every cell the
design asked for so far is finished), exactly once per look even with several workers or machines.

One module per design registers a subclass with :func:`bench.design.register`. A design also owns its rules:
what it needs from a spec (:meth:`Design.check`, :meth:`Design.settings`, :attr:`Design.keys`), how its rows are
checked, counted and compared, and what the runner and the report do with it (the class attributes below), so
a new design is one new file.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bench.spec.checks import err
from bench.spec.model import Spec

if TYPE_CHECKING:  # pandas is imported by the layers that use results, not at import time
    import pandas as pd

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
    #: configurations are created by a sampler trial by trial (an Optuna search): the runner serves them from
    #: the Optuna queue and the report shows parameter importances
    searches: ClassVar[bool] = False
    #: the design's rows are the spec's ``[[rows]]`` (other designs refuse them)
    uses_rows: ClassVar[bool] = False
    #: the design needs a non-empty ``factors`` list
    needs_factors: ClassVar[bool] = True
    #: top-level spec keys only this design reads, with what they mean (other designs refuse them)
    keys: ClassVar[dict[str, str]] = {}
    #: ``[replication]`` may wrap it (a fixed set of configurations that more seeds can sharpen)
    replicable: ClassVar[bool] = True
    #: a fixed set of configurations: a stored experiment may be extended from one such design to another
    fixed_rows: ClassVar[bool] = True
    #: "full factorial" or "fractional factorial" when the rows form a two-level design in the factors (the
    #: report estimates main effects and interactions); None otherwise
    two_level: ClassVar[str | None] = None
    #: every combination of the factors is a row (2^k)
    complete_grid: ClassVar[bool] = False
    #: each row is also compared with the row before it (a ladder's steps)
    stepwise: ClassVar[bool] = False
    #: rows are chosen on validation Dice and confirmed with fresh seeds on test cases: Table 1 comes from the
    #: confirmation runs and the selection path is an appendix
    confirms: ClassVar[bool] = False
    #: the spec's ``baseline_label`` names a row of the design (otherwise the first ``[[rows]]`` row, if any)
    baseline_row: ClassVar[bool] = False

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    # ------------------------------------------------------------------------------ rules on the spec

    @classmethod
    def settings(cls, source: str, raw: dict[str, Any], factors: tuple[str, ...]) -> dict[str, Any]:
        """Spec fields read from the design's own top-level :attr:`keys` of the TOML table ``raw``."""
        return {}

    @classmethod
    def check(cls, spec: Spec) -> None:
        """Refuse (SpecError naming the key) a spec this design cannot run; called before its rows resolve."""
        if cls.needs_factors and not spec.factors:
            raise err(spec.source, f"design = {cls.name!r} needs a non-empty factors list")

    @classmethod
    def rows_to_check(cls, spec: Spec) -> list[tuple[str, list[str], dict[str, dict[str, Any]]]]:
        """``(where, tricks, params)`` of the rows the user wrote, which must resolve before anything runs
        (by default each factor alone on top of the fixed set)."""
        return [(f"factor {t!r}", list(spec.fixed) + [t], spec.params) for t in spec.factors]

    @classmethod
    def baseline(cls, spec: Spec) -> str | None:
        """The label of the row other rows are compared with, as stored with the experiment."""
        if cls.baseline_row:
            return spec.baseline_label
        return spec.rows[0].label if spec.rows else None

    @classmethod
    def planned_size(cls, spec: Spec, cells: int, trainings: int) -> tuple[int, int]:
        """``(cells, trainings)`` that ``bench plan`` announces, given the planned ones."""
        return cells, trainings

    @classmethod
    def plan_rows(cls, spec: Spec, configurations: int) -> str:
        """How ``bench plan`` names the design's rows, given the planned configurations."""
        return f"{configurations} configurations"

    @classmethod
    def launch_cells(cls, spec: Spec, cells: int) -> int:
        """The number of cells a launch announces, given the registered ones."""
        return cells

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

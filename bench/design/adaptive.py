"""``[replication]``: adaptive replication around any fixed design.

The wrapped design says which configurations to run (its rows); this wrapper decides how many seeds each
gets. It starts every row with the first ``looks[0]`` seeds; at each look it estimates every comparison
(each row against the first, the baseline; for a full or fractional factorial the main effect of each
factor; a design may name its own contrasts with ``comparisons()``) with run and case variance, applies
:mod:`bench.analysis.stopping`, and raises to ``looks[k+1]`` seeds only the rows of comparisons still
undecided. Factorial designs, whose estimates rest on
balance (full grids and fractions), get a whole new replicate of every row instead. After the
last look (``max_seeds``), whatever is still undecided is reported as undecided (budget).

State is read from the results at every call (rows and seeds already registered), so the design is pure and a
resumed run continues where it stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.analysis.stopping import Decision, Rules, case_values, contrast_estimate, decide
from bench.design._base import CellRequest, Design, Results, RowRequest

if TYPE_CHECKING:
    from bench.runner.spec import Spec

__all__ = ["Replication"]


class Replication(Design):
    """Adds seeds to undecided comparisons of ``inner``'s rows, look by look."""

    name = "replication"
    adaptive = True

    def __init__(self, spec: Spec, inner: Design) -> None:
        super().__init__(spec)
        if spec.replication is None:
            raise ValueError("Replication needs a spec with [replication]")
        if inner.adaptive:
            raise ValueError(f"[replication] cannot wrap the adaptive design {inner.name!r}")
        self.inner = inner
        self.rep = spec.replication
        self.seeds = self.rep.seeds(spec.seeds)
        self._rows: list[RowRequest] | None = None

    # ------------------------------------------------------------------------------------------- rows

    def rows(self) -> list[RowRequest]:
        """The wrapped design's configurations, in its order (the first is the baseline of comparisons)."""
        if self._rows is None:
            seen: dict[str, RowRequest] = {}
            for c in self.inner.initial():
                seen.setdefault(c.row.label, c.row)
            self._rows = list(seen.values())
        return self._rows

    @property
    def factorial(self) -> bool:
        """Two-level factorial designs (full grids, fractions): main effects, and seeds by whole replicates."""
        return bool(getattr(self.inner, "whole_replicates", self.inner.name in ("full", "fractional")))

    def comparisons(self) -> list[tuple[str, dict[str, float]]]:
        """``[(name, {label: weight})]``: the inner design's contrasts if it names them; the main effect of each
        factor for a factorial design; else each row against the first."""
        own = getattr(self.inner, "comparisons", None)
        if callable(own):
            return list(own())
        rows = self.rows()
        if self.factorial:
            out = []
            for f in self.spec.factors:
                on = [r.label for r in rows if f in r.tricks]
                off = [r.label for r in rows if f not in r.tricks]
                if on and off:
                    out.append((f"main effect of {f}", {**{lab: 1.0 / len(on) for lab in on},
                                                         **{lab: -1.0 / len(off) for lab in off}}))
            return out
        base = rows[0].label
        return [(f"{r.label} vs {base}", {r.label: 1.0, base: -1.0}) for r in rows[1:]]

    def _cells(self, rows: list[RowRequest], seeds: tuple[int, ...], stage: str) -> list[CellRequest]:
        return [CellRequest(r, fold, seed, stage) for r in rows for fold in self.spec.folds for seed in seeds]

    # ------------------------------------------------------------------------------------------- the looks

    def initial(self) -> list[CellRequest]:
        """The inner design's first cells (their stages kept: main, foldover...) with the first look's seeds."""
        first = self.seeds[: self.rep.looks[0]]
        stage = {c.row.label: c.stage for c in self.inner.initial()}
        return [c for r in self.rows() for c in self._cells([r], first, stage[r.label])]

    def rules(self) -> Rules:
        return Rules(halfwidth=self.rep.halfwidth, margin=self.rep.margin, alpha=self.rep.alpha,
                     comparisons=len(self.comparisons()), looks=len(self.rep.looks))

    def seeds_registered(self, results: Results) -> dict[str, int]:
        """Row label -> how many seeds it has registered (per fold)."""
        cells = results.cells
        out = {r.label: 0 for r in self.rows()}
        if len(cells):
            for label, n in cells.groupby("label")["seed"].nunique().items():
                if label in out:
                    out[str(label)] = int(n)
        return out

    def look_index(self, results: Results) -> int:
        """Index into ``looks`` of the look whose cells are registered (the highest seed count reached)."""
        n = max(self.seeds_registered(results).values(), default=0)
        reached = [k for k, s in enumerate(self.rep.looks) if s <= n]
        return reached[-1] if reached else 0

    def decisions(self, results: Results) -> list[Decision]:
        """Every comparison's decision from the finished cells (budget-limited ones say so)."""
        rules = self.rules()
        table = case_values(results.metrics) if len(results.metrics) else None
        last = self.look_index(results) == len(self.rep.looks) - 1
        out = []
        for name, weights in self.comparisons():
            try:
                if table is None:
                    raise ValueError("no finished runs yet")
                d = decide(contrast_estimate(table, weights, name), rules)
            except ValueError as exc:
                d = Decision(name, "undecided", str(exc), float("nan"), None, None, rules.level)
            if not d.decided and last and self._complete(results):
                d = Decision(d.name, "undecided", f"budget: max_seeds = {self.rep.max_seeds} reached; {d.reason}",
                             d.estimate, d.low, d.high, d.level)
            out.append(d)
        return out

    def _complete(self, results: Results) -> bool:
        return bool(len(results.cells)) and not results.cells["state"].isin(("queued", "running")).any()

    def next(self, results: Results) -> list[CellRequest] | None:
        k = self.look_index(results)
        if k >= len(self.rep.looks) - 1:
            return None
        open_ = [d.name for d in self.decisions(results) if not d.decided]
        if not open_:
            return None
        names = set(open_)
        rows = self.rows()
        if self.factorial:  # balance (orthogonality) needs every row to get the new seeds
            grow = rows
        else:
            involved = {lab for name, w in self.comparisons() if name in names for lab in w}
            grow = [r for r in rows if r.label in involved]
        new_seeds = self.seeds[self.rep.looks[k]: self.rep.looks[k + 1]]
        return self._cells(grow, new_seeds, f"look-{k + 2}")

    def describe(self) -> dict[str, Any]:
        rules = self.rules()
        comps = self.comparisons()
        n_rows = len(self.rows())
        n_folds = len(self.spec.folds)
        return {**self.inner.describe(),
                "replication looks": f"{', '.join(map(str, self.rep.looks))} seeds per configuration (seeds "
                                     f"{', '.join(map(str, self.seeds))}); the cells above are the first look",
                "stopping": f"a comparison is decided when its {100 * rules.level:.2f}% interval (1 - alpha/(m K), "
                            f"m = {len(comps)}, K = {len(self.rep.looks)}) excludes 0, lies within "
                            f"+/-{self.rep.margin:g}, is narrower than +/-{self.rep.halfwidth:g}, or reaches the "
                            "test-set floor",
                "adds": ("whole replicates (every row), keeping the design balanced" if self.factorial
                         else "seeds only to the rows of undecided comparisons"),
                "at most": f"{n_rows * n_folds * self.rep.max_seeds} cells ({n_rows} rows x {n_folds} folds x "
                           f"{self.rep.max_seeds} seeds)",
                "comparisons": [name for name, _ in comps]}

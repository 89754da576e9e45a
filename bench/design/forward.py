"""``design = "forward"``: the paper's ladder built by the tool, with selection and confirmation kept apart.

Selection (stages ``select-1``, ``select-2``...): from the current stack (the fixed tricks at first), train every
remaining factor added to it on the spec's folds and seeds, and compare each candidate with the current stack
on validation Dice (the cells' objective), paired by fold and seed. The best candidate (largest mean gain) is
added only if its one-sided Holm-adjusted p-value across the candidates of the step is below ``alpha``;
otherwise selection ends. Test cases play no part in choosing.

Confirmation (stages ``confirm-0``...``confirm-J``): every row of the selected ladder is trained again with
fresh seeds (never used in selection) and evaluated on the held-out test cases; step j (row j against row
j-1) is tested one-sided at ``alpha`` as a fixed sequence: the first step that fails ends the confirmed
ladder, and later steps are not tested. Table 1 reports the confirmed ladder from these runs only:
the gain of a winner picked among k candidates on the same data is biased upwards (about 1.6 SE for k = 11).

State is recomputed from the results at every call, so the design is pure and resumable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scipy import stats

from bench.analysis.power import seeds_for_ladder
from bench.analysis.stopping import Estimate, case_values, contrast_estimate, paired_run_estimate
from bench.design import register
from bench.design._base import CellRequest, Design, Results, RowRequest
from bench.spec.checks import err
from bench.spec.model import Spec

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Forward", "Step", "Confirmation", "holm", "seeds_for_ladder"]

ALPHA = 0.05


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adj = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adj[i] = running
    return adj


def one_sided_p(est: Estimate) -> float:
    """P-value of ``effect <= 0`` against ``effect > 0`` (1.0 when the SE is unknown)."""
    if est.se is None:
        return 1.0
    if est.se == 0:
        return 0.0 if est.estimate > 0 else 1.0
    t = est.estimate / est.se
    return float(stats.norm.sf(t) if not math.isfinite(est.df) else stats.t.sf(t, max(est.df, 1.0)))


@dataclass(frozen=True)
class Candidate:
    trick: str
    label: str
    estimate: Estimate | None  # None: not finished
    p: float
    p_holm: float


@dataclass(frozen=True)
class Step:
    """One selection step: the stack it started from, its candidates and the trick it added (or None)."""

    number: int
    base_label: str
    candidates: tuple[Candidate, ...]
    added: str | None
    finished: bool


@dataclass(frozen=True)
class Confirmation:
    """One confirmed (or not) rung of the ladder, from the confirmation runs only."""

    number: int
    trick: str
    label: str
    previous: str
    estimate: Estimate | None
    p: float
    status: str  # confirmed | failed | not tested | running


@register
class Forward(Design):
    name = "forward"
    adaptive = True
    confirms = True
    replicable = False
    fixed_rows = False

    @classmethod
    def check(cls, spec: Spec) -> None:
        if not spec.factors:
            raise err(spec.source, "design = 'forward' needs factors (the candidate tricks of the ladder)")
        if spec.train.get("val_every", 0) < 1:
            raise err(spec.source, "design = 'forward' needs train.val_every >= 1 (steps are selected on "
                                   "validation Dice; test cases only confirm)")

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.alpha = ALPHA
        top = max(spec.seeds) + 1
        self.confirm_seeds = tuple(range(top, top + len(spec.seeds)))

    # ------------------------------------------------------------------------------------------- rows

    def row(self, stack: list[str]) -> RowRequest:
        return RowRequest(self.spec.row_label(stack), tuple(self.spec.fixed) + tuple(stack), self.spec.params)

    def _cells(self, rows: list[RowRequest], seeds: tuple[int, ...], stage: str) -> list[CellRequest]:
        return [CellRequest(r, f, s, stage) for r in rows for f in self.spec.folds for s in seeds]

    def _step_cells(self, number: int, stack: list[str]) -> list[CellRequest]:
        rest = [t for t in self.spec.factors if t not in stack]
        rows = ([self.row(stack)] if number == 1 else []) + [self.row(stack + [t]) for t in rest]
        return self._cells(rows, tuple(self.spec.seeds), f"select-{number}")

    def initial(self) -> list[CellRequest]:
        return self._step_cells(1, [])

    # ------------------------------------------------------------------------------------------- reading

    @staticmethod
    def _by_label(cells: pd.DataFrame) -> dict[str, pd.DataFrame]:
        return {str(k): g for k, g in cells.groupby("label")} if len(cells) else {}

    def _objectives(self, by: dict[str, pd.DataFrame], label: str) -> dict[tuple[int, int], float]:
        sel = by.get(label)
        if sel is None:
            return {}
        sel = sel[(sel["state"] == "done") & sel["seed"].isin(self.spec.seeds) & sel["objective"].notna()]
        return {(int(f), int(s)): float(o) for f, s, o in zip(sel["fold"], sel["seed"], sel["objective"])}

    @staticmethod
    def _registered(by: dict[str, pd.DataFrame], label: str, seeds: tuple[int, ...]) -> bool:
        sel = by.get(label)
        return sel is not None and bool(sel["seed"].isin(seeds).any())

    @staticmethod
    def _finished(by: dict[str, pd.DataFrame], label: str, seeds: tuple[int, ...]) -> bool:
        sel = by.get(label)
        if sel is None:
            return False
        sel = sel[sel["seed"].isin(seeds)]
        return len(sel) > 0 and not sel["state"].isin(("queued", "running")).any()

    def path(self, results: Results) -> list[Step]:
        """The selection steps taken so far (the last may be unfinished)."""
        cells = self._by_label(results.cells)
        stack: list[str] = []
        steps: list[Step] = []
        seeds = tuple(self.spec.seeds)
        while len(stack) < len(self.spec.factors):
            n = len(steps) + 1
            base = self.row(stack).label
            rest = [t for t in self.spec.factors if t not in stack]
            labels = [self.row(stack + [t]).label for t in rest]
            if not all(self._registered(cells, lab, seeds) for lab in labels):
                break
            done = self._finished(cells, base, seeds) and all(self._finished(cells, lab, seeds) for lab in labels)
            a = self._objectives(cells, base)
            ests: list[Estimate | None] = []
            for lab in labels:
                try:
                    ests.append(paired_run_estimate(a, self._objectives(cells, lab), f"{lab} vs {base}"))
                except ValueError:
                    ests.append(None)
            ps = [one_sided_p(e) if e is not None else 1.0 for e in ests]
            adj = holm(ps)
            cands = tuple(Candidate(t, lab, e, p, q) for t, lab, e, p, q in zip(rest, labels, ests, ps, adj))
            added = None
            scored = [c for c in cands if c.estimate is not None]
            if done and scored:
                best = max(scored, key=lambda c: c.estimate.estimate)  # type: ignore[union-attr]
                if best.p_holm < self.alpha:
                    added = best.trick
            steps.append(Step(n, base, cands, added, done))
            if added is None:
                break
            stack.append(added)
        return steps

    def ladder(self, results: Results) -> list[str]:
        """The selected stack, in the order the steps added it."""
        return [s.added for s in self.path(results) if s.added]

    def _selection_over(self, steps: list[Step]) -> bool:
        if not steps:
            return False
        last = steps[-1]
        return last.finished and (last.added is None or len([s for s in steps if s.added]) == len(self.spec.factors))

    def confirmations(self, results: Results) -> list[Confirmation]:
        """The fixed-sequence confirmation of the selected ladder (test cases, fresh seeds only)."""
        ladder = self.ladder(results)
        cells = self._by_label(results.cells)
        metrics = results.metrics
        if len(metrics):
            metrics = metrics[metrics["seed"].isin(self.confirm_seeds)]
        table = case_values(metrics) if len(metrics) else None
        out: list[Confirmation] = []
        failed = False
        for j in range(1, len(ladder) + 1):
            lab, prev = self.row(ladder[:j]).label, self.row(ladder[: j - 1]).label
            ready = self._finished(cells, lab, self.confirm_seeds) and self._finished(cells, prev,
                                                                                          self.confirm_seeds)
            est: Estimate | None = None
            p = 1.0
            if ready and table is not None:
                try:
                    est = contrast_estimate(table, {lab: 1.0, prev: -1.0}, f"{lab} vs {prev}")
                    p = one_sided_p(est)
                except ValueError:
                    est = None
            if failed:
                status = "not tested"
            elif not ready:
                status = "running"
            elif p < self.alpha:
                status = "confirmed"
            else:
                status, failed = "failed", True
            out.append(Confirmation(j, ladder[j - 1], lab, prev, est, p, status))
        return out

    # ------------------------------------------------------------------------------------------- the looks

    def next(self, results: Results) -> list[CellRequest] | None:
        steps = self.path(results)
        if not self._selection_over(steps):
            if steps and not steps[-1].finished:
                return []
            stack = self.ladder(results)
            return self._step_cells(len(steps) + 1, stack)
        ladder = self.ladder(results)
        if not ladder:
            return None
        rows = [self.row(ladder[:j]) for j in range(len(ladder) + 1)]
        by = self._by_label(results.cells)
        if not all(self._registered(by, r.label, self.confirm_seeds) for r in rows):
            return [c for j, r in enumerate(rows) for c in self._cells([r], self.confirm_seeds, f"confirm-{j}")]
        return None

    def decisions(self, results: Results) -> list[dict[str, Any]]:
        """What ``bench status`` shows: each selection step and each confirmation, decided or not, and why."""
        out: list[dict[str, Any]] = []
        for s in self.path(results):
            if not s.finished:
                out.append({"name": f"select-{s.number} (from {s.base_label})", "decided": False,
                            "reason": "selection cells still running"})
                continue
            best = max((c for c in s.candidates if c.estimate is not None),
                       key=lambda c: c.estimate.estimate, default=None)  # type: ignore[union-attr]
            why = (f"best {best.label}: validation gain {best.estimate.estimate:+.4f}, Holm p = {best.p_holm:.3g}"
                   if best is not None and best.estimate is not None else "no finished candidate")
            out.append({"name": f"select-{s.number} (from {s.base_label})", "decided": True,
                        "reason": f"{'added ' + s.added if s.added else 'nothing added'}; {why}"})
        for c in self.confirmations(results):
            reason = c.status if c.estimate is None else (
                f"{c.status}: test gain {c.estimate.estimate:+.4f}, one-sided p = {c.p:.3g}")
            out.append({"name": f"confirm-{c.number} {c.label} vs {c.previous}",
                        "decided": c.status in ("confirmed", "failed", "not tested"), "reason": reason})
        return out

    def describe(self) -> dict[str, Any]:
        k = len(self.spec.factors)
        n_runs = len(self.spec.folds) * len(self.spec.seeds)
        per_step = [k - i + (1 if i == 0 else 0) for i in range(k)]
        steps = [f"select-{i + 1}: {n} configurations x {n_runs} runs = {n * n_runs} cells"
                 + (" (baseline + every candidate)" if i == 0 else f" (stack of {i} + each remaining candidate)")
                 for i, n in enumerate(per_step)]
        steps.append(f"confirm-0..confirm-J: the J+1 ladder rows x {len(self.spec.folds)} folds x "
                     f"{len(self.confirm_seeds)} fresh seeds (at most {(k + 1) * len(self.spec.folds) * len(self.confirm_seeds)}"
                     " cells)")
        return {
            "ladder steps": steps,
            "selection": f"validation Dice on folds {list(self.spec.folds)} x seeds {list(self.spec.seeds)}, "
                         f"paired by fold and seed, one-sided, Holm across the step's candidates at {self.alpha:g}; "
                         "stops at the first step whose best candidate is not significant",
            "confirmation": f"test cases, fresh seeds {list(self.confirm_seeds)}, one-sided at {self.alpha:g} as a "
                            "fixed sequence (stops at the first step that fails); Table 1 from these runs only",
            "at most": f"{sum(per_step) * n_runs} selection cells + "
                       f"{(k + 1) * len(self.spec.folds) * len(self.confirm_seeds)} confirmation cells "
                       "(the cells above are the first step)",
        }

"""``[replication]``: adaptive replication around any fixed design.

The wrapped design says which configurations to run (its rows); this wrapper decides how many seeds each
gets. It starts every row with the first ``looks[0]`` seeds; at each look it estimates every comparison
(each row against the first, the baseline; for a full or fractional factorial the main effect of each
factor; a design may name its own contrasts with ``comparisons()``) with run and case variance, applies
:mod:`bench.analysis.stopping`, and raises to ``looks[k+1]`` seeds only rows of comparisons still undecided:
with ``allocation = "balanced"`` (the default) every arm of them; with ``"variance"``
(:meth:`Replication.allocate`), for each undecided comparison, its arms in the order of how much SE^2 a new
seed of theirs removes (``w_r^2 s_run,r^2 / S_r``, summed over the undecided comparisons an arm serves, so a
shared baseline counts once for all of them), until the half-width predicted from the current variance
components at the next look's seed counts reaches the target; if no choice reaches it, every arm grows.
A row left behind at one look can be raised at a later one (straight to that look's seed count), so every
comparison is looked at most K times. Factorial designs, whose estimates rest on balance (full grids and
fractions), get a whole new replicate of every row instead. After the last look (``max_seeds``), whatever is
still undecided is reported as undecided (budget).

State is read from the results at every call (rows and seeds already registered), so the design is pure and a
resumed run continues where it stopped.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.analysis.stopping import (
    Decision,
    Estimate,
    Rules,
    arm_matrices,
    case_values,
    contrast_estimate,
    decide,
    predicted_halfwidth,
)
from bench.design._base import CellRequest, Design, Results, RowRequest
from bench.spec.model import Spec

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
        self._history: dict[int, list[Decision]] = {}  # decisions of finished earlier looks (their data are fixed)

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
        whole = getattr(self.inner, "whole_replicates", None)
        return bool(self.inner.two_level is not None if whole is None else whole)

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

    def estimates(self, results: Results) -> dict[str, Estimate | str]:
        """Every comparison's estimate from the finished cells, or why there is none."""
        arms = arm_matrices(case_values(results.metrics)) if len(results.metrics) else None
        out: dict[str, Estimate | str] = {}
        for name, weights in self.comparisons():
            try:
                if arms is None:
                    raise ValueError("no finished runs yet")
                out[name] = contrast_estimate(None, weights, name, arms=arms)
            except ValueError as exc:
                out[name] = str(exc)
        return out

    def _at_look(self, results: Results, j: int) -> Results:
        """The results as they stood at look ``j`` (0: the first look): the cells registered by later looks
        (stages ``look-N``, N > j + 1) left out."""

        def keep(df: pd.DataFrame) -> pd.DataFrame:
            if not len(df) or "stage" not in df:
                return df
            n = df["stage"].astype(str).str.extract(r"^look-(\d+)$")[0].astype(float)
            return df[~(n > j + 1)]

        return Results(keep(results.cells), keep(results.metrics))

    def _judge(self, ests: dict[str, Estimate | str], rules: Rules) -> list[Decision]:
        out = []
        for name, _ in self.comparisons():
            e = ests[name]
            out.append(Decision(name, "undecided", e, float("nan"), None, None, rules.level) if isinstance(e, str)
                       else decide(e, rules))
        return out

    def decisions(self, results: Results, estimates: dict[str, Estimate | str] | None = None) -> list[Decision]:
        """Every comparison's decision: the one of the first look that decided it (its reason says which look;
        a decision stands, so later seeds of a shared arm do not reopen it), else its state now from the
        finished cells (budget-limited ones say so)."""
        rules = self.rules()
        k = self.look_index(results)
        first: dict[str, tuple[int, Decision]] = {}
        for j in range(k):  # earlier looks: their cells were all finished when the next look was taken
            if j not in self._history:
                self._history[j] = self._judge(self.estimates(self._at_look(results, j)), rules)
            for d in self._history[j]:
                if d.decided and d.name not in first:
                    first[d.name] = (j, d)
        now = self._judge(self.estimates(results) if estimates is None else estimates, rules)
        last = k == len(self.rep.looks) - 1
        out = []
        for d in now:
            if d.name in first:
                j, dj = first[d.name]
                d = Decision(dj.name, dj.verdict, f"look {j + 1}: {dj.reason}", dj.estimate, dj.low, dj.high,
                             dj.level)
            elif not d.decided and last and self._complete(results):
                d = Decision(d.name, "undecided", f"budget: max_seeds = {self.rep.max_seeds} reached; {d.reason}",
                             d.estimate, d.low, d.high, d.level)
            out.append(d)
        return out

    def _complete(self, results: Results) -> bool:
        return bool(len(results.cells)) and not results.cells["state"].isin(("queued", "running")).any()

    def allocate(self, estimates: dict[str, Estimate | str], open_: list[str], have: dict[str, int],
                 target: int) -> set[str]:
        """The rows to raise to ``target`` seeds so that the undecided comparisons ``open_`` can be decided
        at the next look (module docstring). ``have``: seeds per row now."""
        comps = dict(self.comparisons())
        folds = max(1, len(self.spec.folds))
        ests = {n: e for n, e in estimates.items() if n in open_ and isinstance(e, Estimate)}
        grow: set[str] = set()
        for name in open_:  # no estimate (an arm without runs, one run): every arm of it grows
            if name not in ests or set(ests[name].run_var) != set(ests[name].weights):
                grow.update(lab for lab in comps[name] if have.get(lab, 0) < target)
        gain: dict[str, float] = {}  # SE^2 one more seed of a row removes, over the comparisons it serves
        for e in ests.values():
            for lab, v in e.run_var.items():
                s = max(1, e.runs[lab])
                gain[lab] = gain.get(lab, 0.0) + e.weights[lab] ** 2 * v * folds / (s * (s + folds))
        level = self.rules().precise_level
        for e in ests.values():
            if predicted_halfwidth(e, {}, level) is None:
                continue
            arms = sorted((lab for lab in e.weights if have.get(lab, 0) < target),
                          key=lambda lab: (-gain.get(lab, 0.0), lab))
            runs = {lab: (target if lab in grow else have.get(lab, 0)) * folds for lab in e.weights}
            chosen = [lab for lab in arms if lab in grow]
            for lab in arms:
                h = predicted_halfwidth(e, runs, level)
                if h is not None and h <= self.rep.halfwidth:
                    break
                if lab not in chosen:
                    chosen.append(lab)
                    runs[lab] = target * folds
            else:
                h = predicted_halfwidth(e, runs, level)
                if h is None or h > self.rep.halfwidth:
                    chosen = arms  # the target is not predicted within reach: every arm grows
            grow.update(chosen or arms[:1])
        return grow

    def next(self, results: Results) -> list[CellRequest] | None:
        k = self.look_index(results)
        if k >= len(self.rep.looks) - 1:
            return None
        ests = self.estimates(results)
        open_ = [d.name for d in self.decisions(results, ests) if not d.decided]
        if not open_:
            return None
        rows = self.rows()
        have = self.seeds_registered(results)
        target = self.rep.looks[k + 1]
        if self.factorial:  # balance (orthogonality) needs every row to get the new seeds
            grow = rows
        else:
            if self.rep.allocation == "variance":
                labels = self.allocate(ests, open_, have, target)
            else:
                comps = dict(self.comparisons())
                labels = {lab for name in open_ for lab in comps[name]}
            grow = [r for r in rows if r.label in labels]
        stage = f"look-{k + 2}"
        return [c for r in grow for c in self._cells([r], self.seeds[have.get(r.label, 0): target], stage)]

    def describe(self) -> dict[str, Any]:
        rules = self.rules()
        comps = self.comparisons()
        n_rows = len(self.rows())
        n_folds = len(self.spec.folds)
        return {**self.inner.describe(),
                "replication looks": f"{', '.join(map(str, self.rep.looks))} seeds per configuration (seeds "
                                     f"{', '.join(map(str, self.seeds))}); the cells above are the first look",
                "stopping": f"a comparison is decided when its {100 * rules.level:.2f}% interval (1 - alpha/(m K), "
                            f"m = {len(comps)}, K = {len(self.rep.looks)}) excludes 0 or lies within "
                            f"+/-{self.rep.margin:g}, when its {100 * rules.precise_level:.2f}% interval "
                            f"(1 - alpha/m) is narrower than +/-{self.rep.halfwidth:g}, or when it reaches the "
                            "test-set floor",
                "adds": ("whole replicates (every row), keeping the design balanced" if self.factorial
                         else "seeds only to rows of undecided comparisons: the arms whose seeds narrow them most "
                              "(a shared baseline once for all), until the next look is predicted to reach the "
                              "half-width (allocation = \"variance\")" if self.rep.allocation == "variance"
                         else "seeds only to the rows of undecided comparisons (every arm of them)"),
                "at most": f"{n_rows * n_folds * self.rep.max_seeds} cells ({n_rows} rows x {n_folds} folds x "
                           f"{self.rep.max_seeds} seeds)",
                "comparisons": [name for name, _ in comps]}

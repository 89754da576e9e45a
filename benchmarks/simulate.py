"""A simulator for designs and intervals: training and evaluation replaced by draws from a known model.

Per-case Dice of configuration x (factor toggles z = +-1), run r (one fold x seed training) and case c:

    y = base + sum_f (e_f / 2) z_f + sum_{a<b} (g_ab / 2) z_a z_b + run[x, r] + case[c] + eps[x, r, c]

so ``e_f`` is the true main effect (mean with f on minus mean with f off, over a balanced design) and ``g_ab``
the true two-factor interaction in the classical +-1 coding. ``run ~ N(0, sd_run^2)`` (one per training, shared
by the three regions), ``case ~ N(0, sd_case^2)`` (one per test case, shared by every configuration: the
pairing), ``eps ~ N(0, sd_res^2)``. Values are not clipped to [0, 1]: the model is the linear one the analysis
assumes, so coverage measures the intervals, not the clipping.

Two ways to run a study:

- :func:`run_study`: the real planner (``bench.runner.plan``), results store (SQLite), Optuna work queue and
  report analysis (``bench.report.tables.analyse``) on a spec's text; only training+evaluation are replaced.
  Adaptive designs (``Design.next``) can be driven through :func:`run_cells` with the cells they ask for.
- :func:`fast_study`: the same model drawn straight into ``(runs, cases)`` matrices and handed to
  :mod:`bench.analysis` (for the hundreds of studies a coverage figure needs).

Heavy tails (:class:`HeavyTailModel`, :func:`draw_heavy`): two arms whose per-case Dice is drawn on the logit
scale, with t(3) run x case noise and hard cases that some runs lose entirely (Dice 0, as real ET is lost on
small tumours), i.e. zero-inflated, heavy-tailed per-case values on which the linear model above is wrong on
purpose; ``benchmarks/bench_heavy_tails.py`` measures the intervals' coverage and false claims on them.

Importable from ``benchmarks/`` (``from simulate import TruthModel, fast_study, run_study``) or as
``benchmarks.simulate`` from the repository root.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TruthModel", "study_model", "rows_of", "draw_runs", "fast_study", "run_study", "run_cells",
           "ofat_rows", "FastResult", "results_of", "HeavyTailModel", "draw_heavy", "heavy_truth",
           "heavy_scenarios"]

REGIONS = ("ET", "WT", "TC")


@dataclass(frozen=True)
class TruthModel:
    """The known model of a simulated study (see the module docstring)."""

    factors: tuple[str, ...]
    main: dict[str, float]
    interactions: dict[tuple[str, str], float] = field(default_factory=dict)
    base: float = 0.70
    sd_run: float = 0.10
    sd_case: float = 0.15
    sd_res: float = 0.06
    region_offset: dict[str, float] = field(default_factory=lambda: {"ET": -0.1, "WT": 0.15, "TC": 0.0})

    def mean(self, toggles: Sequence[int]) -> float:
        """Expected Dice of a configuration (0/1 toggles in factor order), before run and case noise."""
        z = 2.0 * np.asarray(toggles, dtype=float) - 1.0
        out = self.base + sum(self.main.get(f, 0.0) / 2 * z[i] for i, f in enumerate(self.factors))
        idx = {f: i for i, f in enumerate(self.factors)}
        for (a, b), g in self.interactions.items():
            out += g / 2 * z[idx[a]] * z[idx[b]]
        return float(out)

    def truth(self, members: Iterable[Sequence[str]]) -> float:
        """The true value of a contrast that estimates the sum of these effects (an alias class)."""
        total = 0.0
        for m in members:
            m = tuple(m)
            if len(m) == 1:
                total += self.main.get(m[0], 0.0)
            elif len(m) == 2:
                total += self.interactions.get(m, self.interactions.get((m[1], m[0]), 0.0))  # type: ignore[arg-type]
        return total


def study_model(factors: Sequence[str]) -> TruthModel:
    """Effects and variance components near the effect study (benchmarks/tricks.md: effects from -0.03 to
    +0.21, sd over seeds 0.03-0.24): a decreasing set of main effects and three interactions."""
    sizes = [0.20, 0.15, 0.12, 0.07, 0.05, 0.03, 0.01, -0.03, 0.10, 0.0, -0.02]
    fs = tuple(factors)
    main = {f: sizes[i % len(sizes)] for i, f in enumerate(fs)}
    inter: dict[tuple[str, str], float] = {}
    if len(fs) >= 2:
        inter[(fs[0], fs[1])] = -0.05
    if len(fs) >= 4:
        inter[(fs[2], fs[3])] = 0.04
    if len(fs) >= 5:
        inter[(fs[0], fs[4])] = 0.03
    return TruthModel(fs, main, inter)




def rows_of(design: str, k: int, *, resolution: int | None = None, runs: int | None = None) -> np.ndarray:
    """0/1 rows of a design over k factors: ``full``, ``fractional`` (bench's generator table) or ``ofat``."""
    if design == "full":
        return np.array(list(itertools.product((0, 1), repeat=k)), dtype=int)
    if design == "fractional":
        from bench.design.fractional import choose

        return choose(k, resolution=resolution, runs=runs).matrix
    if design == "ofat":
        return ofat_rows(k)
    raise ValueError(f"design {design!r}: full, fractional or ofat")


def ofat_rows(k: int) -> np.ndarray:
    """The one-trick-at-a-time design: the baseline and each factor alone."""
    return np.vstack([np.zeros((1, k), dtype=int), np.eye(k, dtype=int)])


def draw_runs(model: TruthModel, rows: np.ndarray, seeds: int, cases: int, rng: np.random.Generator,
              region: str | None = None) -> list[np.ndarray]:
    """One ``(seeds, cases)`` matrix per row: the draws of one study (case effects shared by all rows)."""
    case = rng.normal(0.0, model.sd_case, cases)
    off = model.region_offset.get(region, 0.0) if region else 0.0
    out = []
    for r in rows:
        mu = model.mean(r) + off
        run = rng.normal(0.0, model.sd_run, (seeds, 1))
        out.append(mu + run + case[None, :] + rng.normal(0.0, model.sd_res, (seeds, cases)))
    return out


def contrast_weights(rows: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """+-2/N weights of the effect whose column is the product of ``factors``' +-1 columns."""
    z = 2 * rows - 1
    col = np.prod(z[:, list(factors)], axis=1).astype(float)
    plus, minus = col > 0, col < 0
    return np.where(plus, 1.0 / plus.sum(), -1.0 / minus.sum())


@dataclass
class FastResult:
    """Per effect: truth, estimate, t-interval, bootstrap interval, run_measured, significant."""

    names: list[str]
    truth: np.ndarray
    estimate: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    boot_lo: np.ndarray
    boot_hi: np.ndarray
    run_measured: np.ndarray
    significant: np.ndarray


def fast_study(model: TruthModel, rows: np.ndarray, seeds: int, cases: int, rng: np.random.Generator, *,
               n_boot: int = 0, ofat: bool = False, level: float = 0.95) -> FastResult:
    """One simulated study analysed with :func:`bench.analysis.effects.effect`: the main effects of a two-level
    design (the +-1 contrasts), or for ``ofat`` each factor alone minus the baseline (its simple effect)."""
    from bench.analysis.effects import effect

    ys = draw_runs(model, rows, seeds, cases, rng)
    k = rows.shape[1]
    res: dict[str, list[Any]] = {n: [] for n in ("truth", "est", "lo", "hi", "blo", "bhi", "run", "sig")}
    names = []
    for j, f in enumerate(model.factors[:k]):
        if ofat:
            w = np.zeros(len(rows))
            w[0], w[j + 1] = -1.0, 1.0
            truth = model.mean(rows[j + 1]) - model.mean(rows[0])
        else:
            w = contrast_weights(rows, [j])
            truth = float(w @ np.array([model.mean(r) for r in rows]))  # the alias sum the contrast estimates
        e = effect(f, ys, w, level=level, n_boot=n_boot, seed=int(rng.integers(1 << 30)))
        names.append(f)
        for key, v in zip(res, (truth, e.estimate, e.ci_lo, e.ci_hi, e.boot_lo, e.boot_hi, e.run_measured,
                                e.significant)):
            res[key].append(v)
    a = {k2: np.array(v) for k2, v in res.items()}
    return FastResult(names, a["truth"], a["est"], a["lo"], a["hi"], a["blo"], a["bhi"], a["run"], a["sig"])


# ------------------------------------------------------------------------------------ heavy tails, lost cases


@dataclass(frozen=True)
class HeavyTailModel:
    """Two arms A (baseline) and B. Per-case Dice of arm a, run r, case c:

        y = expit(base + delta * [a = B] + case[c] + run[a, r] + noise_scale * t_3[a, r, c])

    then set to 0 (the case lost entirely) when case c is hard (probability ``p_hard``, shared by both arms)
    and run (a, r) loses it (probability ``p_lost``, independently per run). ``case ~ N(0, sd_case^2)``,
    ``run ~ N(0, sd_run^2)``, all on the logit scale. The effect is ``delta`` on the logit scale; its truth on
    the Dice scale (what the intervals estimate) is :func:`heavy_truth`."""

    delta: float = 0.0
    base: float = 1.5
    sd_case: float = 1.0
    sd_run: float = 0.3
    noise_scale: float = 0.3
    noise_df: float = 3.0
    p_hard: float = 0.15
    p_lost: float = 0.5


def draw_heavy(model: HeavyTailModel, runs: int, cases: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``[B, A]``: each arm's ``(runs, cases)`` Dice matrix on the same test cases."""
    from scipy.special import expit

    case = rng.normal(0.0, model.sd_case, cases)
    hard = rng.random(cases) < model.p_hard
    out = []
    for arm in (1, 0):
        run = rng.normal(0.0, model.sd_run, (runs, 1))
        eta = model.base + arm * model.delta + case[None, :] + run
        y = expit(eta + model.noise_scale * rng.standard_t(model.noise_df, (runs, cases)))
        y[hard[None, :] & (rng.random((runs, cases)) < model.p_lost)] = 0.0
        out.append(y)
    return out


def heavy_truth(model: HeavyTailModel, draws: int = 20, seed: int = 1) -> float:
    """Expected mean Dice of B minus A over cases, runs and noise (Monte Carlo, 8 million values per arm;
    exactly 0 when ``delta`` is 0)."""
    if model.delta == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(draws):
        b, a = draw_heavy(model, 400, 1000, rng)
        total += float(b.mean() - a.mean())
    return total / draws


def heavy_scenarios() -> dict[str, HeavyTailModel]:
    """The named scenarios of ``bench_heavy_tails.py``: which cases are lost x run-to-run spread."""
    out = {}
    for lost, (p_hard, p_lost) in {"hard cases lost": (0.15, 0.5), "any case lost": (1.0, 0.15)}.items():
        for sd_run in (0.1, 0.3, 0.5):
            out[f"{lost}, sd_run {sd_run:g}"] = HeavyTailModel(sd_run=sd_run, p_hard=p_hard, p_lost=p_lost)
    return out


# ------------------------------------------------------------------------------------ through the real runner


def run_cells(store: Any, queue: Any, cell_ids: Sequence[int], model: TruthModel, cases: int,
              rng: np.random.Generator, case_effects: np.ndarray, worker: str = "sim") -> int:
    """Serve the queue like a worker would, with a draw instead of training+evaluation; returns cells done."""
    from sqlalchemy import select

    from bench.runner import state
    from bench.store.models import Cell, Configuration

    queue.enqueue(cell_ids)
    done = 0
    while (trial := queue.pop()) is not None:
        cid = int(trial.user_attrs["cell_id"])
        if not state.claim_cell(store, cid, worker, "sim", 60.0):
            queue.finish(trial, "fail")
            continue
        with store.session() as s:
            toggles = s.scalar(select(Configuration.toggles).join(Cell, Cell.configuration_id == Configuration.id)
                               .where(Cell.id == cid))
        mu = model.mean([int(toggles.get(f, 0)) for f in model.factors])
        run = rng.normal(0.0, model.sd_run)
        metrics = []
        for region in REGIONS:
            off = model.region_offset.get(region, 0.0)
            ys = mu + off + run + case_effects + rng.normal(0.0, model.sd_res, cases)
            for c, y in enumerate(ys):
                metrics.append({"case_id": f"case{c:03d}", "region": region, "dice": float(y), "hd95": 5.0,
                                "sensitivity": 0.9, "specificity": 0.99, "penalty": False})
        state.finish_cell(store, cid, worker, metrics, [], objective=float(mu))
        queue.finish(trial, "complete", float(mu))
        done += 1
    return done


def results_of(url: str, experiment: str) -> Any:
    """The :class:`bench.design.Results` a design's ``next`` gets at a look: cells (with ``toggles``) and the
    per-case metrics of the finished ones (with ``stage``)."""
    from bench.design import Results
    from bench.store import queries

    cells = queries.cells(url, experiment)
    conf = queries.configurations(url, experiment).set_index("configuration_id")
    cells["toggles"] = cells["configuration_id"].map(conf["toggles"])
    return Results(cells, queries.case_metrics(url, experiment))


def run_study(spec_text: str, model: TruthModel, *, cases: int = 10, seed: int = 0,
              folder: str | Path | None = None, n_boot: int = 500) -> Any:
    """Plan, register, queue and 'run' a spec with draws from ``model``, then analyse it as ``bench report``
    does. Returns ``(analysis, report_data)``; ``folder`` keeps the workspace (default: a temporary one)."""
    from bench.report.build import load_report_data
    from bench.report.tables import analyse
    from bench.runner import state
    from bench.runner.plan import plan
    from bench.runner.queue import WorkQueue, open_storage
    from bench.runner.spec import parse_spec
    from bench.store import open_store

    rng = np.random.default_rng(seed)
    case_effects = rng.normal(0.0, model.sd_case, cases)
    tmp = None
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-sim-")
        folder = tmp.name
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    try:
        spec = parse_spec(spec_text, "<simulated spec>", check_data=False)
        url = f"sqlite:///{root / 'results.db'}"
        store = open_store(url)
        ids = [cid for cid, _ in state.register_experiment(store, spec, plan(spec))]
        queue = WorkQueue(open_storage(None, root), spec.name)
        run_cells(store, queue, ids, model, cases, rng, case_effects)
        data = load_report_data(url, spec.name)
        return analyse(data, n_boot=n_boot, seed=seed), data
    finally:
        if tmp is not None:
            try:
                store.engine.dispose()  # type: ignore[possibly-undefined]
            except Exception:  # noqa: BLE001
                pass
            tmp.cleanup()

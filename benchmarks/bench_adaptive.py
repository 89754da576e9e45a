"""Simulation benchmark of adaptive replication and the forward ladder (no training: draws from a known model).

The real designs (:class:`bench.design.adaptive.Replication`, :class:`bench.design.forward.Forward`) and the
real stopping rules run look by look; only training and evaluation are replaced by draws from

    test Dice of case c, run s, configuration r = mu + a_c + (ac)_rc + effect_r + b_rs + e_rsc
    validation Dice of run s, configuration r   = mu_v + effect_v,r + b_rs + v_rs

with a_c ~ N(0, sd_case) shared by every configuration, (ac)_rc ~ N(0, sd_int), b_rs ~ N(0, sd_run_r) (run to
run; per configuration), e ~ N(0, sd_res), v ~ N(0, sd_val) (validation-set sampling of one run).

    python benchmarks/bench_adaptive.py adaptive --studies 500 --json benchmarks/adaptive.json
    python benchmarks/bench_adaptive.py adaptive --studies 500 --allocation variance --json ...
    python benchmarks/bench_adaptive.py adaptive --studies 500 --scenario clear --json benchmarks/adaptive-clear.json
    python benchmarks/bench_adaptive.py adaptive --studies 500 --precise-at-looks --json ...  (ablation: old levels)
    python benchmarks/bench_adaptive.py forward --studies 500 --json benchmarks/forward.json
    python benchmarks/bench_adaptive.py fixed --studies 2000 --json benchmarks/fixed-unbalanced.json

Coverage is reported for the nominal 95% interval of the final data (overall and per comparison), the one at
1 - alpha/K (K looks) and the decision interval (the interval of the look and rule that decided: 1 - alpha/m
for precise, 1 - alpha/(m K) otherwise).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bench.analysis.stopping import arm_matrices, case_values, contrast_estimate
from bench.design import CellRequest, Results, RowRequest
from bench.design.adaptive import Replication
from bench.design.forward import Forward, seeds_for_ladder
from bench.runner.spec import parse_spec

TRICKS = ["warmup", "patch_fusion", "model_fusion", "self_ensemble", "dense_blocks", "multitask",
          "heuristic_sampling", "random_patch_size", "focal_loss", "hard_mining", "semi_supervised"]


@dataclass
class Model:
    """Known effects and variance components (Dice units)."""

    effects: dict[str, float]  # trick -> effect on test Dice
    val_effects: dict[str, float] | None = None  # trick -> effect on validation Dice (default: the same)
    sd_run: dict[str, float] = field(default_factory=dict)  # label -> run sd (default sd_run_default)
    sd_run_default: float = 0.01
    sd_case: float = 0.10
    sd_int: float = 0.01
    sd_res: float = 0.01
    sd_val: float = 0.004
    cases: int = 40


class Simulator:
    """Finishes cell requests with draws from a :class:`Model`; keeps the Results a runner would build."""

    def __init__(self, model: Model, rng: np.random.Generator, *, test_stages: tuple[str, ...] | None = None):
        self.m, self.rng = model, rng
        self.case = rng.normal(0.0, model.sd_case, model.cases)
        self.inter: dict[str, np.ndarray] = {}
        self.cells: list[tuple] = []
        self.metric_blocks: list[pd.DataFrame] = []
        self.have: set[tuple[str, int, int]] = set()
        self.case_ids = [f"c{i:03d}" for i in range(model.cases)]
        # stages whose test metrics the design reads (None: all); the forward ladder never reads the test
        # cases of its selection cells, so the simulation skips drawing them
        self.test_stages = test_stages

    def _effect(self, tricks: tuple[str, ...], val: bool) -> float:
        eff = self.m.val_effects if (val and self.m.val_effects is not None) else self.m.effects
        return sum(eff.get(t, 0.0) for t in tricks)

    def run(self, requests: list[CellRequest]) -> int:
        n = 0
        for r in requests:
            key = (r.row.label, r.fold, r.seed)
            if key in self.have:
                continue
            self.have.add(key)
            n += 1
            lab = r.row.label
            if lab not in self.inter:
                self.inter[lab] = self.rng.normal(0.0, self.m.sd_int, self.m.cases)
            b = self.rng.normal(0.0, self.m.sd_run.get(lab, self.m.sd_run_default))
            obj = 0.7 + self._effect(r.row.tricks, True) + b + self.rng.normal(0.0, self.m.sd_val)
            cid = len(self.cells) + 1
            self.cells.append((cid, lab, r.fold, r.seed, "done", obj, r.stage))
            if self.test_stages is not None and not r.stage.startswith(self.test_stages):
                continue
            y = (0.75 + self.case + self.inter[lab] + self._effect(r.row.tricks, False) + b
                 + self.rng.normal(0.0, self.m.sd_res, self.m.cases))
            self.metric_blocks.append(pd.DataFrame({
                "cell_id": cid, "label": lab, "fold": r.fold, "seed": r.seed, "case_id": self.case_ids,
                "region": "WT", "dice": y, "stage": r.stage}))
        return n

    def results(self) -> Results:
        cells = pd.DataFrame(self.cells, columns=["cell_id", "label", "fold", "seed", "state", "objective", "stage"])
        if len(self.metric_blocks) > 1:  # concatenate once, keep the result for the next look
            self.metric_blocks = [pd.concat(self.metric_blocks, ignore_index=True)]
        metrics = self.metric_blocks[0] if self.metric_blocks else pd.DataFrame()
        return Results(cells, metrics)


def drive(design: Any, sim: Simulator) -> int:
    """Run a design to completion; returns the number of trainings (cells)."""
    n = sim.run(design.initial())
    while True:
        new = design.next(sim.results())
        if new is None:
            return n
        n += sim.run(new)


def _spec(design: str, factors: list[str], seeds: int, extra: str = "") -> Any:
    text = (f'name = "sim"\ndesign = "{design}"\nfactors = {json.dumps(factors)}\nfolds = [0]\n'
            f"seeds = {list(range(seeds))}\n[data]\npath = 'synthetic'\n[train]\nval_every = 1\n{extra}")
    return parse_spec(text, "<simulation>", check_data=False)


# ---------------------------------------------------------------------------------------------- adaptive


class _Rows:
    """A list design of baseline + each trick alone (what the runner's planner gives the wrapper)."""

    name, adaptive, whole_replicates = "rows", False, False

    def __init__(self, spec: Any, tricks: list[str]):
        self.spec, self.tricks = spec, tricks

    def initial(self) -> list[CellRequest]:
        rows = [RowRequest("BL", ())] + [RowRequest(f"BL+{t}", (t,)) for t in self.tricks]
        return [CellRequest(r, 0, s) for r in rows for s in self.spec.seeds]

    def describe(self) -> dict[str, Any]:
        return {}


def fixed_seeds(model: Model, labels: list[str], halfwidth: float, level: float) -> int:
    """Seeds per configuration a fixed plan needs so that the worst comparison (largest SE) reaches the
    half-width at ``level``, from the true components (what a pilot's estimates predict)."""
    z = stats.norm.ppf(1 - (1 - level) / 2)
    base = model.sd_run.get("BL", model.sd_run_default)
    worst = max(model.sd_run.get(lab, model.sd_run_default) for lab in labels[1:])
    case_part = 2 * model.sd_int ** 2 / model.cases
    for s in range(2, 1000):
        se2 = case_part + (base ** 2 + worst ** 2 + 2 * model.sd_res ** 2 / model.cases) / s
        if z * math.sqrt(se2) <= halfwidth:
            return s
    raise ValueError("half-width unreachable")


SCENARIOS: dict[str, dict[str, Any]] = {
    # baseline + 6 tricks alone; run-to-run sd per configuration: the baseline 0.005, the noisiest trick (the
    # worst comparison, which the fixed plan is sized for) 0.008. Three comparisons (0, +0.004, +0.01) can
    # only end as "precise".
    "mixed": {
        "effects": [0.0, 0.004, 0.01, 0.02, 0.04, 0.08],
        "sd_run": {"BL": 0.005, "BL+warmup": 0.004, "BL+patch_fusion": 0.003, "BL+model_fusion": 0.005,
                   "BL+self_ensemble": 0.006, "BL+dense_blocks": 0.005, "BL+multitask": 0.008},
    },
    # most tricks with clear effects, and run-to-run sd that differs between configurations as it does for
    # stochastic tricks (sampling, ensembling: up to 0.008 against a baseline of 0.005, so that the fixed plan
    # is the same 11 seeds as in "mixed"); one null trick, one small one
    "clear": {
        "effects": [0.0, 0.01, 0.03, 0.04, 0.05, 0.06],
        "sd_run": {"BL": 0.005, "BL+warmup": 0.004, "BL+patch_fusion": 0.005, "BL+model_fusion": 0.006,
                   "BL+self_ensemble": 0.008, "BL+dense_blocks": 0.007, "BL+multitask": 0.008},
    },
}


def bench_adaptive(studies: int, seed: int, scenario: str = "mixed", allocation: str = "balanced") -> dict[str, Any]:
    tricks = TRICKS[:6]
    sc = SCENARIOS[scenario]
    effects = dict(zip(tricks, sc["effects"]))
    sd_run = dict(sc["sd_run"])
    model = Model(effects, sd_run=sd_run)
    rep_toml = ("[replication]\nhalfwidth = 0.01\nlooks = [3, 5, 8, 12]\nmax_seeds = 12\nmargin = 0.005\n"
                f'allocation = "{allocation}"\n')
    spec = _spec("ladder", ["warmup"], 3, rep_toml)  # only its [replication], folds and seeds are used
    labels = ["BL"] + [f"BL+{t}" for t in tricks]
    m = len(tricks)
    s95 = fixed_seeds(model, labels, 0.01, 0.95)
    s_adj = fixed_seeds(model, labels, 0.01, 1 - 0.05 / m)
    rng = np.random.default_rng(seed)
    trainings, n_int = [], 0
    cover = {"95": {t: 0 for t in tricks}, "looks": {t: 0 for t in tricks}, "decision": {t: 0 for t in tricks}}
    looks = len(spec.replication.looks)
    verdicts: dict[str, dict[str, int]] = {t: {} for t in tricks}
    seeds_used: dict[str, list[int]] = {lab: [] for lab in labels}
    for _ in range(studies):
        design = Replication(spec, _Rows(spec, tricks))
        sim = Simulator(model, rng)
        trainings.append(drive(design, sim))
        res = sim.results()
        arms = arm_matrices(case_values(res.metrics))
        for lab, n in res.cells.groupby("label")["seed"].nunique().items():
            seeds_used[str(lab)].append(int(n))
        for d in design.decisions(res):
            t = d.name.split(" vs ")[0][3:]
            verdicts[t][d.verdict] = verdicts[t].get(d.verdict, 0) + 1
            est = contrast_estimate(None, {f"BL+{t}": 1.0, "BL": -1.0}, arms=arms)
            truth = effects[t]
            q = stats.t.ppf(0.975, max(est.df, 1.0))
            cover["95"][t] += abs(est.estimate - truth) <= q * est.se
            q_k = stats.t.ppf(1 - 0.05 / (2 * looks), max(est.df, 1.0))
            cover["looks"][t] += abs(est.estimate - truth) <= q_k * est.se
            cover["decision"][t] += d.low is not None and d.low <= truth <= d.high
        n_int += m
    frac = {k: sum(v.values()) / n_int for k, v in cover.items()}
    return {
        "scenario": scenario, "allocation": allocation, "studies": studies, "comparisons": m, "effects": effects, "sd_run": sd_run,
        "mean_trainings": float(np.mean(trainings)), "max_trainings": int(np.max(trainings)),
        "fixed_seeds_95": s95, "fixed_trainings_95": s95 * len(labels),
        "fixed_seeds_bonferroni": s_adj, "fixed_trainings_bonferroni": s_adj * len(labels),
        "coverage_95": frac["95"], "coverage_looks": frac["looks"], "coverage_decision": frac["decision"],
        "coverage_95_by_trick": {t: v / studies for t, v in cover["95"].items()},
        "coverage_decision_by_trick": {t: v / studies for t, v in cover["decision"].items()},
        "fraction_of_fixed": float(np.mean(trainings)) / (s_adj * len(labels)),
        "verdicts": verdicts, "mean_seeds": {lab: float(np.mean(v)) for lab, v in seeds_used.items()},
    }


# ---------------------------------------------------------------------------------------------- forward


def bench_forward(studies: int, seed: int, seeds: int | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    k = len(TRICKS)
    null = Model({})
    # the budget `bench plan --power 0.02` predicts for this ladder from a pilot's components (run, residual,
    # interaction = variance of a per-case difference = 2 sd_int^2) and the pilot's paired validation
    # differences (variance 2 (sd_run^2 + sd_val^2): the run effect and the validation-set noise of both runs)
    sel_var = 2 * (null.sd_run_default ** 2 + null.sd_val ** 2)
    planned = seeds_for_ladder(null.sd_run_default ** 2, null.sd_res ** 2, 2 * null.sd_int ** 2, null.cases, k, 0.02,
                               selection_var=sel_var)
    s = planned if seeds is None else seeds
    out: dict[str, Any] = {"candidates": k, "planned_seeds": planned, "seeds": s, "studies": studies,
                           "selection_var": sel_var}
    spec = _spec("forward", TRICKS, s)
    sel_any = conf_any = 0
    cells_null = []
    for _ in range(studies):
        fw = Forward(spec)
        sim = Simulator(null, rng, test_stages=("confirm",))
        cells_null.append(drive(fw, sim))
        res = sim.results()
        sel_any += bool(fw.ladder(res))
        conf_any += any(c.status == "confirmed" for c in fw.confirmations(res))
    out["null"] = {"selected_any": sel_any / studies, "confirmed_any": conf_any / studies,
                   "mean_trainings": float(np.mean(cells_null))}
    one = Model({"model_fusion": 0.02})
    found = confirmed = wrong = 0
    gains_sel, gains_conf, cells_one = [], [], []
    for _ in range(studies):
        fw = Forward(spec)
        sim = Simulator(one, rng, test_stages=("confirm",))
        cells_one.append(drive(fw, sim))
        res = sim.results()
        ladder = fw.ladder(res)
        found += "model_fusion" in ladder
        conf = fw.confirmations(res)
        ok = [c.trick for c in conf if c.status == "confirmed"]
        confirmed += "model_fusion" in ok
        wrong += any(t != "model_fusion" for t in ok)
        step1 = fw.path(res)[0]
        best = max(step1.candidates, key=lambda c: c.estimate.estimate)
        if best.trick == "model_fusion" and step1.added:
            gains_sel.append(best.estimate.estimate)
            c1 = conf[0] if conf else None
            if c1 is not None and c1.estimate is not None:
                gains_conf.append(c1.estimate.estimate)
    p = confirmed / studies
    out["one_trick"] = {"effect": 0.02, "selected": found / studies, "confirmed": p,
                        "confirmed_binomial_se": math.sqrt(p * (1 - p) / studies),
                        "confirmed_lower_95": p - 1.96 * math.sqrt(p * (1 - p) / studies),
                        "false_inclusion_others": wrong / studies,
                        "mean_selection_gain_of_winner": float(np.mean(gains_sel)) if gains_sel else None,
                        "mean_confirmation_gain": float(np.mean(gains_conf)) if gains_conf else None,
                        "mean_trainings": float(np.mean(cells_one))}
    return out


def bench_fixed(studies: int, seed: int) -> dict[str, Any]:
    """No adaptivity: coverage of the 95% interval of one comparison (+0.04, run sd 0.008 against a baseline at
    0.005) with fixed, possibly unbalanced run counts, to separate what the interval itself loses with few runs
    from what stopping adds."""
    rng = np.random.default_rng(seed)
    model = Model({"self_ensemble": 0.04}, sd_run={"BL": 0.005, "BL+self_ensemble": 0.008})
    out: dict[str, Any] = {"studies": studies, "effect": 0.04, "sd_run": dict(model.sd_run), "coverage_95": {}}
    for s_t, s_b in ((3, 3), (3, 9), (3, 12), (5, 9), (8, 8)):
        hits = 0
        for _ in range(studies):
            sim = Simulator(model, rng)
            sim.run([CellRequest(RowRequest("BL", ()), 0, s) for s in range(s_b)]
                    + [CellRequest(RowRequest("BL+self_ensemble", ("self_ensemble",)), 0, s) for s in range(s_t)])
            arms = arm_matrices(case_values(sim.results().metrics))
            est = contrast_estimate(None, {"BL+self_ensemble": 1.0, "BL": -1.0}, arms=arms)
            hits += abs(est.estimate - 0.04) <= stats.t.ppf(0.975, max(est.df, 1.0)) * est.se
        out["coverage_95"][f"trick {s_t} runs, baseline {s_b}"] = hits / studies
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=("adaptive", "forward", "fixed"))
    ap.add_argument("--studies", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="mixed", help="adaptive: effects and run sd")
    ap.add_argument("--allocation", choices=("balanced", "variance"), default="balanced",
                    help="adaptive: [replication] allocation")
    ap.add_argument("--precise-at-looks", action="store_true",
                    help="adaptive, ablation: judge the half-width and floor rules at 1 - alpha/(m K) as before")
    ap.add_argument("--seeds", type=int, help="forward: seeds per configuration instead of the planned budget")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.precise_at_looks:  # the rules as they were: every rule at 1 - alpha/(m K)
        from bench.analysis import stopping

        stopping.Rules.precise_level = property(lambda self: self.level)  # type: ignore[assignment,method-assign]
    if args.which == "adaptive":
        out = bench_adaptive(args.studies, args.seed, args.scenario, args.allocation)
    elif args.which == "forward":
        out = bench_forward(args.studies, args.seed, args.seeds)
    else:
        out = bench_fixed(args.studies, args.seed)
    out["precise_at_looks"] = bool(args.precise_at_looks) if args.which == "adaptive" else None
    out["seconds"] = round(time.time() - t0, 1)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        from bench.atomic import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

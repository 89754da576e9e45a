"""Adaptive replication and the forward ladder as pure designs, on simulated results with known effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.design import CellRequest, Results, get_design
from bench.design.adaptive import Replication
from bench.design.forward import Forward, holm
from bench.errors import SpecError
from bench.runner.spec import parse_spec

SPEC = """
name = "t"
design = "{design}"
factors = ["warmup", "patch_fusion", "model_fusion"]
folds = [0]
seeds = [0, 1, 2]
[data]
path = "synthetic"
folds = 3
[train]
iterations = 4
val_every = 2
{extra}
"""
REP = "[replication]\nhalfwidth = 0.01\nlooks = [3, 5, 8]\nmax_seeds = 8\nmargin = 0.005\n"


def spec(design: str = "ladder", extra: str = REP):
    return parse_spec(SPEC.format(design=design, extra=extra), "t.toml", check_data=False)


class Sim:
    """Known effects per trick; run noise (sd_run) per cell, case effects shared, residual per case."""

    def __init__(self, effects: dict[str, float], sd_run: float, sd_case: float = 0.1, sd_res: float = 0.01,
                 cases: int = 20, seed: int = 0, val_effects: dict[str, float] | None = None):
        self.rng = np.random.default_rng(seed)
        self.effects, self.val = effects, val_effects or effects
        self.sd_run, self.sd_res = sd_run, sd_res
        self.case = self.rng.normal(0.7, sd_case, cases)
        self.cells: list[dict] = []
        self.metrics: list[dict] = []

    def truth(self, tricks, effects) -> float:
        return sum(effects.get(t, 0.0) for t in tricks)

    def run(self, requests: list[CellRequest]) -> None:
        have = {(c["label"], c["fold"], c["seed"]) for c in self.cells}
        for r in requests:
            if (r.row.label, r.fold, r.seed) in have:
                continue
            cid = len(self.cells) + 1
            run = self.rng.normal(0, self.sd_run)
            obj = 0.6 + self.truth(r.row.tricks, self.val) + run + self.rng.normal(0, 0.002)
            self.cells.append({"cell_id": cid, "label": r.row.label, "fold": r.fold, "seed": r.seed,
                               "state": "done", "objective": obj, "stage": r.stage})
            mu = self.truth(r.row.tricks, self.effects) + run
            for i, c in enumerate(self.case):
                for region in ("ET", "TC", "WT"):
                    self.metrics.append({"cell_id": cid, "label": r.row.label, "fold": r.fold, "seed": r.seed,
                                         "case_id": f"c{i:02d}", "region": region, "stage": r.stage,
                                         "dice": c + mu + self.rng.normal(0, self.sd_res)})

    def results(self) -> Results:
        return Results(pd.DataFrame(self.cells), pd.DataFrame(self.metrics))


def drive(design, sim: Sim, limit: int = 20) -> int:
    sim.run(design.initial())
    looks = 0
    while looks < limit:
        new = design.next(sim.results())
        if new is None:
            return looks
        sim.run(new)
        looks += 1
    raise AssertionError("design never completed")


class _Rows:
    """A fixed design of explicit rows (what the runner's plan adapter hands the wrapper)."""

    name, adaptive = "rows", False
    whole_replicates = False

    def __init__(self, spec, rows):
        self.spec, self._rows = spec, rows

    def initial(self):
        from bench.design import RowRequest

        return [CellRequest(RowRequest(lab, tuple(t)), 0, s) for lab, t in self._rows for s in self.spec.seeds]

    def describe(self):
        return {}


ROWS = [("BL", []), ("BL+warmup", ["warmup"]), ("BL+fuse", ["patch_fusion"])]


def test_replication_adds_seeds_only_to_undecided_comparisons():
    sp = spec()
    rep = Replication(sp, _Rows(sp, ROWS))
    # warmup helps by far more than the noise: decided at the first look; patch fusion is tiny and noisy
    sim = Sim({"warmup": 0.15, "patch_fusion": 0.004}, sd_run=0.02)
    first = rep.initial()
    assert {c.seed for c in first} == {0, 1, 2} and {c.stage for c in first} == {"main"}
    sim.run(first)
    d = {x.name: x for x in rep.decisions(sim.results())}
    assert d["BL+warmup vs BL"].verdict == "helps"
    assert not d["BL+fuse vs BL"].decided
    new = rep.next(sim.results())
    assert {c.row.label for c in new} == {"BL", "BL+fuse"}  # warmup's row gets no more seeds
    assert {c.seed for c in new} == {3, 4} and {c.stage for c in new} == {"look-2"}
    assert rep.rules().level == pytest.approx(1 - 0.05 / (2 * 3))
    assert rep.rules().precise_level == pytest.approx(1 - 0.05 / 2)
    assert "97.50% interval (1 - alpha/m)" in rep.describe()["stopping"]


def test_a_decision_stands_and_says_which_look_made_it():
    sp = spec()
    rep = Replication(sp, _Rows(sp, ROWS))
    sim = Sim({"warmup": 0.15, "patch_fusion": 0.004}, sd_run=0.02)
    sim.run(rep.initial())
    at_first = {x.name: x for x in rep.decisions(sim.results())}["BL+warmup vs BL"]
    assert at_first.verdict == "helps" and not at_first.reason.startswith("look")
    sim.run(rep.next(sim.results()))  # the baseline gets seeds 3, 4: the estimate of warmup's comparison moves
    res = sim.results()
    later = {x.name: x for x in rep.decisions(res)}["BL+warmup vs BL"]
    assert later.verdict == "helps" and later.reason == f"look 1: {at_first.reason}"
    assert (later.low, later.high) == (at_first.low, at_first.high)
    # the data of look 1 are the cells registered before look 2's (stage look-2 left out)
    first = rep._at_look(res, 0)
    assert set(first.cells["seed"]) == {0, 1, 2} and set(first.metrics["seed"]) == {0, 1, 2}
    assert set(rep._at_look(res, 1).cells["seed"]) == {0, 1, 2, 3, 4}
    # a fresh design object (the runner makes one per look) reaches the same decisions from the results alone
    again = Replication(sp, _Rows(sp, ROWS)).decisions(res)
    assert [x.as_dict() for x in again] == [x.as_dict() for x in rep.decisions(res)]
    # the remaining comparison is judged on all the data now
    now = {x.name: x for x in rep.decisions(res)}["BL+fuse vs BL"]
    assert not now.reason.startswith("look")


def test_variance_allocation_grows_the_arms_that_narrow_a_comparison_most():
    from bench.analysis.stopping import Estimate

    sp = spec(extra=REP + 'allocation = "variance"\n')
    assert sp.replication.allocation == "variance"
    rep = Replication(sp, _Rows(sp, [("BL", []), ("BL+a", ["warmup"]), ("BL+b", ["patch_fusion"])]))
    # m = 2: the half-width rule at 1 - 0.05/2 (z 2.2414). a: its own run variance is tiny; growing the
    # baseline alone to 5 seeds predicts 2.2414 * sqrt(1e-6 + 8e-5/5 + 1e-6/3) = 0.00933 <= 0.01 (now 0.0119)
    a = Estimate("BL+a vs BL", 0.0, 0.0053, float("inf"), 0.001, {"BL": 3, "BL+a": 3}, 20,
                 {"BL": 8e-5, "BL+a": 1e-6}, {"BL+a": 1.0, "BL": -1.0})
    # b: its own arm dominates (4e-4 / 3); even both arms at 5 seeds predict 0.022 > 0.01: both grow
    b = Estimate("BL+b vs BL", 0.0, 0.013, float("inf"), 0.001, {"BL": 3, "BL+b": 3}, 20,
                 {"BL": 8e-5, "BL+b": 4e-4}, {"BL+b": 1.0, "BL": -1.0})
    have = {"BL": 3, "BL+a": 3, "BL+b": 3}
    ests = {a.name: a, b.name: b}
    assert rep.allocate(ests, [a.name, b.name], have, 5) == {"BL", "BL+b"}
    assert rep.allocate(ests, [a.name], have, 5) == {"BL"}
    # a comparison without a measured run component grows every arm
    c = Estimate("BL+a vs BL", 0.0, None, 0.0, 0.001, {"BL": 3, "BL+a": 1}, 20, {"BL": 8e-5}, {"BL+a": 1.0, "BL": -1.0})
    assert rep.allocate({c.name: c}, [c.name], {"BL": 3, "BL+a": 1, "BL+b": 3}, 5) == {"BL", "BL+a"}
    assert "allocation = \"variance\"" in rep.describe()["adds"]
    # a row left behind is raised straight to the next look's count: with variance allocation on real
    # draws, the new cells continue each row's own seeds
    sim = Sim({"warmup": 0.0, "patch_fusion": 0.0}, sd_run=0.02)
    sim.run(rep.initial())
    new = rep.next(sim.results())
    assert new and {c.seed for c in new} == {3, 4}


def test_replication_stops_at_max_seeds_and_reports_budget():
    sp = spec()
    rep = Replication(sp, _Rows(sp, ROWS))
    sim = Sim({"warmup": 0.0, "patch_fusion": 0.004}, sd_run=0.05)
    looks = drive(rep, sim)
    assert looks == 2  # looks at 3 and 5 seeds asked for more; the one at 8 is the budget
    seeds = pd.DataFrame(sim.cells).groupby("label")["seed"].nunique().to_dict()
    assert max(seeds.values()) == 8
    undecided = [x for x in rep.decisions(sim.results()) if not x.decided]
    assert undecided and all(x.reason.startswith("budget: max_seeds = 8 reached") for x in undecided)


def test_whole_replicates_for_orthogonal_designs():
    sp = spec()
    inner = _Rows(sp, ROWS)
    inner.whole_replicates = True
    rep = Replication(sp, inner)
    sim = Sim({"warmup": 0.15, "patch_fusion": 0.004}, sd_run=0.02)
    sim.run(rep.initial())
    new = rep.next(sim.results())
    assert {c.row.label for c in new} == {"BL", "BL+warmup", "BL+fuse"}


def test_replication_spec_validation():
    assert spec().replication.seeds((0, 1, 2)) == (0, 1, 2, 3, 4, 5, 6, 7)
    for bad, msg in [("looks = [3, 2]", "increasing"), ("looks = [1, 3]", "first >= 2"),
                     ("looks = [3, 20]", "exceeds max_seeds"), ("halfwidth = 0", "halfwidth"),
                     ("halfwith = 0.01", "did you mean 'halfwidth'"),
                     ('allocation = "neyman"', "must be \"balanced\" or \"variance\"")]:
        with pytest.raises(SpecError, match=msg):
            spec(extra=f"[replication]\n{bad}\n")
    with pytest.raises(SpecError, match=r"\[replication\] cannot be used with design = 'forward'"):
        spec("forward")


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_forward_selects_on_validation_and_confirms_on_fresh_seeds():
    sp = spec("forward", "")
    fw = get_design(sp)
    assert isinstance(fw, Forward) and fw.adaptive
    # warmup helps, model fusion helps less; patch fusion does nothing
    sim = Sim({"warmup": 0.05, "model_fusion": 0.03}, sd_run=0.005)
    first = fw.initial()
    assert {c.row.label for c in first} == {"BL", "BL+warmup", "BL+patch_fusion", "BL+model_fusion"}
    assert {c.stage for c in first} == {"select-1"}
    drive(fw, sim)
    res = sim.results()
    assert fw.ladder(res) == ["warmup", "model_fusion"]
    steps = fw.path(res)
    assert [s.added for s in steps] == ["warmup", "model_fusion", None]
    stages = pd.DataFrame(sim.cells).groupby("stage")["seed"].agg(set).to_dict()
    assert stages["confirm-0"] == stages["confirm-2"] == {3, 4, 5}  # fresh seeds
    assert all(v <= {0, 1, 2} for k, v in stages.items() if k.startswith("select"))
    conf = fw.confirmations(res)
    assert [c.status for c in conf] == ["confirmed", "confirmed"]
    assert conf[0].estimate.estimate == pytest.approx(0.05, abs=0.01)


def test_forward_adds_nothing_when_no_trick_helps():
    sp = spec("forward", "")
    fw = get_design(sp)
    sim = Sim({}, sd_run=0.02, seed=3)
    drive(fw, sim)
    assert fw.ladder(sim.results()) == []
    assert not any(c["stage"].startswith("confirm") for c in sim.cells)


def test_forward_fixed_sequence_stops_at_first_failure():
    sp = spec("forward", "")
    fw = get_design(sp)
    # selected on validation (a gain there), but no gain on the test cases for the first step
    sim = Sim({"warmup": 0.0, "model_fusion": 0.05}, sd_run=0.002,
              val_effects={"warmup": 0.08, "model_fusion": 0.04})
    drive(fw, sim)
    conf = fw.confirmations(sim.results())
    assert fw.ladder(sim.results()) == ["warmup", "model_fusion"]
    assert [c.status for c in conf] == ["failed", "not tested"]


def test_forward_report_uses_confirmation_runs_only():
    from bench.report.forward import confirmation_data, selection_frame
    from bench.report.tables import ReportData

    text = SPEC.format(design="forward", extra="")
    sp = parse_spec(text, "t.toml", check_data=False)
    fw = get_design(sp)
    sim = Sim({"warmup": 0.0, "model_fusion": 0.05}, sd_run=0.002, val_effects={"warmup": 0.08,
                                                                                 "model_fusion": 0.04})
    drive(fw, sim)
    cells = pd.DataFrame(sim.cells)
    confs = pd.DataFrame([{"configuration_id": i, "label": lab, "position": i, "toggles": {}}
                          for i, lab in enumerate(dict.fromkeys(cells["label"]))])
    data = ReportData("t", confs, cells, pd.DataFrame(sim.metrics), pd.DataFrame(),
                      {"spec": text, "design": "forward"})
    out, rep = confirmation_data(data)
    # warmup was selected but failed confirmation: the confirmed ladder is the baseline alone
    assert [c.status for c in rep.confirmations] == ["failed", "not tested"]
    assert list(out.configurations["label"]) == ["BL"] and out.record["design"] == "ladder"
    assert set(out.cells["seed"]) == {3, 4, 5} and set(out.case_metrics["seed"]) == {3, 4, 5}
    sel = selection_frame(rep)
    assert list(sel[sel["outcome"] == "added"]["configuration"]) == ["BL+warmup", "BL+warmup+model_fusion"]
    assert list(sel[sel["stage"].str.startswith("confirm")]["outcome"]) == ["failed", "not tested"]


FRACTIONAL = """
name = "fr"
design = "fractional"
factors = ["warmup", "patch_fusion", "model_fusion", "self_ensemble"]
resolution = 4
folds = [0]
seeds = [0, 1, 2]
[data]
path = "synthetic"
[train]
iterations = 4
[replication]
looks = [3, 5]
max_seeds = 5
"""


def test_replication_of_a_fraction_adds_whole_replicates_of_main_effects():
    from bench.design import design_for

    sp = parse_spec(FRACTIONAL, "fr.toml", check_data=False)
    rep = design_for(sp)
    assert isinstance(rep, Replication) and rep.factorial
    names = [n for n, _ in rep.comparisons()]
    assert names == [f"main effect of {f}" for f in sp.factors]
    w = dict(rep.comparisons())["main effect of warmup"]
    assert sorted(w.values()) == [-0.25] * 4 + [0.25] * 4  # 8 runs, half with warmup on
    sim = Sim({"warmup": 0.1, "patch_fusion": 0.001}, sd_run=0.01)
    sim.run(rep.initial())
    new = rep.next(sim.results())
    assert len({c.row.label for c in new}) == 8 and {c.seed for c in new} == {3, 4}


def test_bench_plan_shows_looks_and_ladder_steps(tmp_path, capsys):
    import json

    from bench.cli import main

    f = tmp_path / "fr.toml"
    f.write_text(FRACTIONAL)
    assert main(["plan", str(f), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["cells"] == 8 * 3 and d["describe"]["replication looks"].startswith("3, 5 seeds")
    assert "at most" in d["describe"] and "whole replicates" in d["describe"]["adds"]
    g = tmp_path / "fwd.toml"
    g.write_text(SPEC.format(design="forward", extra=""))
    assert main(["plan", str(g)]) == 0
    out = capsys.readouterr().out
    assert "select-1: 4 configurations x 3 runs = 12 cells" in out and "fresh seeds [3, 4, 5]" in out


def test_seeds_for_ladder_is_the_smallest_budget_meeting_both_stages():
    import math

    from scipy import stats

    from bench.analysis.power import seeds_for_ladder as from_power
    from bench.design.forward import seeds_for_ladder

    assert seeds_for_ladder is from_power
    s = seeds_for_ladder(1e-4, 0.0, 0.0, 40, 11, 0.02)

    def ok(n: int, var: float = 2e-4) -> bool:  # selection at alpha / 11 binds with no case variance
        zp = stats.t.ppf(math.sqrt(0.8), n - 1)  # t, not z: the SE is estimated from the n paired runs
        return stats.t.ppf(1 - 0.05 / 11, n - 1) + zp <= 0.02 / math.sqrt(var / n)

    assert s == 11 and ok(s) and not ok(s - 1)
    # validation-set noise (sd 0.004 per run) on top of the run variance: selection needs more seeds
    v = 2 * (1e-4 + 0.004 ** 2)
    s_val = seeds_for_ladder(1e-4, 0.0, 0.0, 40, 11, 0.02, selection_var=v)
    assert s_val == 12 and ok(s_val, v) and not ok(s_val - 1, v)
    assert seeds_for_ladder(1e-4, 0.0, 0.0, 40, 11, 0.02, folds=2) < s  # two folds pair twice the runs
    assert seeds_for_ladder(1e-4, 0.0, 0.0, 40, 2, 0.02) < s  # fewer candidates, milder Holm
    assert seeds_for_ladder(1e-4, 0.0, 0.04, 40, 11, 0.02) is None  # below the test-set floor

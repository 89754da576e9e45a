"""``bench plan``: what a spec would run and what it would cost, without training or writing any store."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "plan_summary"]


def register(subparsers: Any) -> None:
    from bench.cli.run import add_design_options

    p = subparsers.add_parser(
        "plan", help="show a spec's configurations, cells, trainings, cost and design (nothing runs)",
        description="Validate a spec exactly as `bench run` does and print every configuration (label and 0/1 "
                    "toggles), the cells and trainings, the cost estimate and the design's description "
                    "(for a fractional design: generators, resolution and alias chains). Writes nothing.",
    )
    p.add_argument("spec", nargs="?", default=None, help="spec file or packaged spec name (default: demo)")
    add_design_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--power", type=float, metavar="DELTA",
                   help="from a finished pilot in this workspace: seeds per configuration that detect an "
                        "effect of DELTA Dice with 80%% power (two-sided 5%%)")
    p.add_argument("--pilot", help="experiment whose results are the pilot for --power (default: the spec's name)")
    p.add_argument("--results", help="results database URL (default: sqlite:///<workspace>/.bench/results.db)")
    p.add_argument("--workspace", default=".", help="folder that holds .bench/ (default: the current folder)")
    p.set_defaults(handler=_plan)


def _measured_speed(url: str, sqlite_path: Path | None) -> tuple[float, int] | None:
    """Median seconds per iteration over this workspace's finished trainings, and how many."""
    if sqlite_path is not None and not sqlite_path.exists():
        return None
    try:
        from sqlalchemy import select

        from bench.store import open_store
        from bench.store.models import Training

        store = open_store(url)
        with store.session() as s:
            rows = s.execute(select(Training.seconds, Training.iterations).where(Training.state == "done")).all()
    except Exception:  # noqa: BLE001 - no speed known: the estimate falls back to the budget
        return None
    rates = sorted(sec / it for sec, it in rows if sec and it)
    if not rates:
        return None
    return rates[len(rates) // 2], len(rates)


def plan_summary(spec: Any, *, results_url: str | None = None, sqlite_path: Path | None = None) -> dict[str, Any]:
    """Everything ``bench plan`` prints, as one JSON-serialisable dict."""
    from bench.design import design_class
    from bench.runner.looks import design_for
    from bench.runner.plan import plan, training_plan

    p = plan(spec)
    design = design_for(spec)  # with [replication]: the adaptive wrapper around the spec's design
    keys: set[str] = set()
    for cell in p.cells:
        if not cell.configuration.refused:
            keys.update(k for _, k in training_plan(spec, cell.configuration, cell.fold, cell.seed, "plan",
                                                    spec.data.folds))
    stages: dict[str, int] = {}
    for cell in p.cells:
        stages[cell.stage] = stages.get(cell.stage, 0) + 1
    n_cells, n_trainings = design_class(spec.design).planned_size(spec, len(p.cells), len(keys))
    from bench.runner.workspace import engine_of

    engine, engine_options = engine_of(spec)
    iterations = int(engine.budget_iterations(dict(spec.train)))
    cost: dict[str, Any] = {"iterations_per_training": iterations, "iterations": iterations * n_trainings}
    speed = _measured_speed(results_url, sqlite_path) if results_url else None
    if speed is not None:
        cost.update(seconds_per_iteration=speed[0], measured_trainings=speed[1],
                    hours=speed[0] * iterations * n_trainings / 3600.0)
    return {
        "name": spec.name, "design": spec.design, "source": spec.source,
        "engine": {"name": engine.name, **engine_options},
        "factors": list(spec.factors), "fixed": list(spec.fixed), "folds": list(spec.folds),
        "seeds": list(spec.seeds),
        "configurations": [{"label": c.label, "toggles": dict(c.toggles),
                            **({"refused": c.refused} if c.refused else {})} for c in p.configurations],
        "rows": design_class(spec.design).plan_rows(spec, len(p.configurations)),
        "cells": n_cells, "stages": stages, "trainings": n_trainings, "cost": cost,
        "describe": design.describe(),
    }


def _power(spec: Any, args: argparse.Namespace, url: str, n_rows: int) -> dict[str, Any]:
    from bench.analysis.layout import layouts
    from bench.analysis.power import pilot_components, seeds_for_power
    from bench.design import design_class
    from bench.errors import SpecError, StoreError
    from bench.store import queries

    delta = float(args.power)
    if not delta > 0 or math.isnan(delta):
        raise SpecError(f"--power {args.power}: must be a Dice difference > 0, e.g. --power 0.02")
    pilot = args.pilot or spec.name
    try:
        metrics = queries.case_metrics(url, pilot)
    except StoreError as exc:
        raise StoreError(f"--power needs a finished pilot in this workspace: {exc}") from None
    if metrics.empty:
        raise StoreError(f"--power: pilot {pilot!r} has no finished cell yet; run it first (bench run)")
    out: dict[str, Any] = {"delta": delta, "pilot": pilot, "alpha": 0.05, "power": 0.8, "by_metric": []}
    sel = None
    if design_class(spec.design).confirms:  # selection compares validation Dice: its paired spread, from the pilot's cells
        from bench.analysis.power import selection_variance

        sel = selection_variance(queries.cells(url, pilot))
        out["selection_var"] = None if sel is None else {"variance": sel[0], "df": sel[1]}
    for region in ("ET", "WT", "TC", None):
        lay = layouts(metrics, "dice", region=region)
        mats = [m for m in lay.matrices if m.shape[0] > 0]
        name = f"Dice {region}" if region else "mean Dice (ET, WT, TC)"
        try:
            comp = pilot_components(mats)
        except ValueError as exc:
            raise StoreError(f"--power: pilot {pilot!r}: {exc}; run it with two or more seeds "
                             f"(seeds = [0, 1, 2])") from None
        entry: dict[str, Any] = {"metric": name, "cases": comp.cases, "s_run": math.sqrt(comp.run),
                                 "s_res": math.sqrt(comp.residual), "s_interaction": math.sqrt(comp.interaction)}
        pair = seeds_for_power(comp, delta, sum_w2=2.0)
        entry["seeds_pairwise"] = pair.seeds
        entry["floor"] = pair.floor
        if design_class(spec.design).two_level and n_rows >= 2:
            main = seeds_for_power(comp, delta, sum_w2=4.0 / n_rows)
            entry["seeds_main_effect"] = main.seeds
        if design_class(spec.design).confirms:  # find among the candidates and confirm, 80% for both together
            from bench.analysis.power import seeds_for_ladder

            entry["seeds_forward_ladder"] = seeds_for_ladder(comp.run, comp.residual, comp.interaction, comp.cases,
                                                             len(spec.factors), delta, folds=len(spec.folds),
                                                             selection_var=None if sel is None else sel[0])
            entry["selection_sd"] = None if sel is None else math.sqrt(sel[0])
        out["by_metric"].append(entry)
    return out


def _fmt_seeds(n: int | None) -> str:
    return "not reachable (below the floor)" if n is None else str(n)


def _print_text(d: dict[str, Any]) -> None:
    w = sys.stdout.write
    factors = d["factors"]
    w(f"{d['name']} ({d['source']}): design {d['design']}, factors {', '.join(factors) or '-'}"
      + (f", fixed {', '.join(d['fixed'])}" if d["fixed"] else "") + "\n")
    eng = dict(d["engine"])
    w(f"engine: {eng.pop('name')}" + "".join(f", {k} = {v}" for k, v in eng.items()) + "\n")
    stages = ", ".join(f"{k} {v}" for k, v in d["stages"].items())
    rows = d["rows"]
    w(f"{rows} x {len(d['folds'])} fold(s) x {len(d['seeds'])} seed(s) = "
      f"{d['cells']} cells" + (f" ({stages})" if len(d["stages"]) > 1 else "") + f", {d['trainings']} trainings\n")
    c = d["cost"]
    if "hours" in c:
        w(f"cost: {d['trainings']} trainings x {c['iterations_per_training']} iterations at "
          f"{c['seconds_per_iteration']:.3f} s/iteration (median of {c['measured_trainings']} trainings in this "
          f"workspace): about {c['hours']:.2f} h on one device\n")
    else:
        w(f"cost: {d['trainings']} trainings x {c['iterations_per_training']} iterations = {c['iterations']} "
          f"iterations (no finished training in this workspace to time them)\n")
    if d["configurations"]:
        width = max(len(x["label"]) for x in d["configurations"])
        head = "  ".join(f[:12] for f in factors)
        w(f"\n{'configuration'.ljust(width)}  {head}\n")
        for x in d["configurations"]:
            marks = "  ".join(str(x["toggles"].get(f, 0)).center(len(f[:12])) for f in factors)
            w(f"{x['label'].ljust(width)}  {marks}" + (f"  refused: {x['refused']}" if "refused" in x else "") + "\n")
    desc = d["describe"]
    if desc:
        w("\n")
        for key, value in desc.items():
            if key == "estimable":
                w("estimated:\n")
                for e in value:
                    w(f"  {e['name']}" + ("  (alias sum)" if e["aliased"] else "") + "\n")
            elif isinstance(value, list):
                w(f"{key.replace('_', ' ')}:\n" + "".join(f"  {v}\n" for v in value))
            elif isinstance(value, dict):
                w(f"{key.replace('_', ' ')}: " + ", ".join(f"{k} = {v}" for k, v in value.items()) + "\n")
            else:
                w(f"{key.replace('_', ' ')}: {value}\n")
    pw = d.get("power")
    if pw:
        w(f"\npower: seeds per configuration to detect {pw['delta']:g} Dice with 80% power (two-sided 5%), from "
          f"pilot {pw['pilot']!r}:\n")
        for e in pw["by_metric"]:
            line = (f"  {e['metric']}: pairwise comparison {_fmt_seeds(e['seeds_pairwise'])}"
                    + (f", main effect {_fmt_seeds(e['seeds_main_effect'])}" if "seeds_main_effect" in e else "")
                    + (f", forward ladder (select and confirm) {_fmt_seeds(e['seeds_forward_ladder'])} ("
                       + (f"selection: paired validation sd {e['selection_sd']:.4f} from the pilot"
                          if e.get("selection_sd") is not None else
                          "selection sized from test-set components: the pilot has no paired validation Dice, so "
                          "validation-set noise is left out and this is a lower bound") + ")"
                       if "seeds_forward_ladder" in e else "")
                    + f"; s_run {e['s_run']:.3f}, s_res {e['s_res']:.3f}, s_int {e['s_interaction']:.3f}; "
                    f"floor with {e['cases']} test cases: {e['floor']:.3f} (smaller effects need more cases)\n")
            w(line)


def _plan(args: argparse.Namespace) -> int:
    from bench.cli.run import spec_from_args
    from bench.runner.worker import Workspace

    spec = spec_from_args(args)
    ws = Workspace(Path(args.workspace).resolve())
    url = args.results or ws.results_url
    sqlite_path = (ws.root / "results.db") if args.results is None else None
    d = plan_summary(spec, results_url=url, sqlite_path=sqlite_path)
    if args.power is not None:
        if sqlite_path is not None and not sqlite_path.exists():
            from bench.errors import StoreError

            raise StoreError(f"--power needs a finished pilot: no results database at {sqlite_path} "
                             "(run a pilot with bench run, or pass --results URL)")
        d["power"] = _power(spec, args, url, len(d["configurations"]))
    if args.json:
        print(json.dumps(d, indent=2, default=str))
    else:
        _print_text(d)
    return 0

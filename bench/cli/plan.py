"""``bench plan``: what a spec would run and what it would cost, without training or writing any store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


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


def _fmt_seeds(n: int | None, why: str | None, cap: int) -> str:
    if n is not None:
        return str(n)
    if why == "floor":
        return "not reachable with any number of seeds (at or below the floor: more test cases needed)"
    return f"more than {cap} seeds (the search's cap)"


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
        w(f"\npower: seeds per configuration to detect {pw['delta']:g} Dice with 80% power (two-sided 5%, Student's "
          f"t at the Satterthwaite degrees of freedom of each number of seeds, as the report tests), from "
          f"pilot {pw['pilot']!r}:\n")
        for e in pw["by_metric"]:
            cap = e["max_seeds"]
            line = (f"  {e['metric']}: pairwise comparison {_fmt_seeds(e['seeds_pairwise'], e['why_pairwise'], cap)}"
                    + (f", main effect {_fmt_seeds(e['seeds_main_effect'], e['why_main_effect'], cap)}"
                       if "seeds_main_effect" in e else "")
                    + (", forward ladder (select and confirm) "
                       f"{_fmt_seeds(e['seeds_forward_ladder'], e['why_forward_ladder'], e['max_seeds_forward_ladder'])} ("
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
    from bench.runner.planning import plan_summary, power_summary
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
        d["power"] = power_summary(spec, float(args.power), args.pilot, url, len(d["configurations"]))
    if args.json:
        print(json.dumps(d, indent=2, default=str))
    else:
        _print_text(d)
    return 0

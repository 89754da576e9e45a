"""Designs and intervals, verified by simulation (benchmarks/simulate.py): coverage, the one-run caveat, widths.

    python benchmarks/bench_design.py                 # 500 studies per setting (a few minutes on 2 cores)
    python benchmarks/bench_design.py --studies 100 --store-studies 5

1. Coverage: the share of 95% intervals (t with Satterthwaite df, and the two-way bootstrap) that contain the
   true main effect, over ``--studies`` simulated studies of a full 2^4 and resolution IV fractions (7 factors
   in 16 runs, 11 factors in 32 runs) with 2, 3 and 5 seeds.
2. One seed: how many intervals say that run variance is not measured and how many effects are claimed.
3. The real path: ``--store-studies`` studies of a fractional spec through the planner, store, queue and report
   analysis (``run_study``); their coverage and the report's wording.
4. Width at equal trainings: resolution IV fraction vs one-trick-at-a-time (baseline + each trick alone).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulate import fast_study, ofat_rows, rows_of, run_study, study_model  # noqa: E402

FACTORS = ("warmup", "heuristic_sampling", "focal_loss", "patch_fusion", "multitask", "random_patch_size",
           "model_fusion", "semi_supervised", "dense_blocks", "self_ensemble", "hard_mining")


def coverage(design: str, k: int, seeds: int, studies: int, cases: int, n_boot: int, rng: np.random.Generator,
             resolution: int | None = None) -> dict[str, float]:
    model = study_model(FACTORS[:k])
    rows = rows_of(design, k, resolution=resolution)
    hit = boot_hit = total = caveat = claimed = 0
    widths = []
    for _ in range(studies):
        r = fast_study(model, rows, seeds, cases, rng, n_boot=n_boot)
        hit += int(((r.lo <= r.truth) & (r.truth <= r.hi)).sum())
        if n_boot:
            boot_hit += int(((r.boot_lo <= r.truth) & (r.truth <= r.boot_hi)).sum())
        total += len(r.truth)
        caveat += int((~r.run_measured).sum())
        claimed += int(r.significant.sum())
        widths.append(np.mean(r.hi - r.lo))
    return {"rows": len(rows), "intervals": total, "coverage": hit / total,
            "boot_coverage": boot_hit / total if n_boot else float("nan"), "caveat": caveat / total,
            "claimed": claimed / total, "width": float(np.mean(widths))}


def width_ratio(k: int, frac_seeds: int, ofat_seeds: int, studies: int, cases: int,
                rng: np.random.Generator) -> dict[str, float]:
    model = study_model(FACTORS[:k])
    frac = rows_of("fractional", k, resolution=4)
    ofat = ofat_rows(k)
    wf, wo, cf, co = [], [], 0, 0
    for _ in range(studies):  # interleaved: both designs drawn in the same loop
        a = fast_study(model, frac, frac_seeds, cases, rng)
        b = fast_study(model, ofat, ofat_seeds, cases, rng, ofat=True)
        wf.append(np.mean(a.hi - a.lo))
        wo.append(np.mean(b.hi - b.lo))
        cf += int(((a.lo <= a.truth) & (a.truth <= a.hi)).sum())
        co += int(((b.lo <= b.truth) & (b.truth <= b.hi)).sum())
    n = studies * k
    return {"frac_trainings": len(frac) * frac_seeds, "ofat_trainings": len(ofat) * ofat_seeds,
            "frac_width": float(np.mean(wf)), "ofat_width": float(np.mean(wo)),
            "ratio": float(np.mean(wo) / np.mean(wf)), "frac_cov": cf / n, "ofat_cov": co / n}


def store_studies(n: int, seeds: int, cases: int) -> dict[str, float]:
    factors = list(FACTORS[:4])
    spec = (f'name = "sim"\ndesign = "fractional"\nresolution = 4\nfactors = {factors!r}\n'
            f"seeds = {list(range(seeds))!r}\n[data]\npath = \"synthetic\"\n").replace("'", '"')
    model = study_model(factors)
    hit = total = tagged = 0
    t0 = time.perf_counter()
    for i in range(n):
        a, _ = run_study(spec, model, cases=cases, seed=1000 + i, n_boot=200)
        eff = a.effects[(a.effects["kind"] == "main") & a.effects["metric"].str.startswith("Dice")]
        for row in eff.itertuples():
            truth = model.truth([(row.effect,)])
            hit += int(row.ci_lo <= truth <= row.ci_hi)
            total += 1
            tagged += int(not row.run_measured)
    return {"studies": n, "intervals": total, "coverage": hit / total if total else float("nan"),
            "case_only": tagged / max(total, 1), "seconds_per_study": (time.perf_counter() - t0) / max(n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=500)
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--boot", type=int, default=400, help="two-way bootstrap resamples per interval (0: off)")
    ap.add_argument("--store-studies", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="coverage,one,width,store",
                    help="comma-separated parts to run: coverage, one, width, store")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    settings = [("full", 4, None), ("fractional", 7, 4), ("fractional", 11, 4)]
    if "coverage" in parts:
        _coverage_part(args, settings, rng)
    if "one" in parts:
        print("\n## One seed per configuration\n")
        for design, k, res in settings[:2]:
            c = coverage(design, k, 1, args.studies, args.cases, 0, rng, res)
            print(f"- {design} {k} factors: {100 * c['caveat']:.0f}% of {c['intervals']} intervals say run variance "
                  f"is not measured; effects claimed significant: {100 * c['claimed']:.1f}%; case-only coverage "
                  f"{100 * c['coverage']:.1f}%")
    if "width" in parts:
        _width_part(args, rng)
    if "store" in parts and args.store_studies:
        print("\n## Through the planner, store, queue and report analysis\n")
        for seeds in (2, 1):
            s = store_studies(args.store_studies, seeds, args.cases)
            print(f"- 2^(4-1) IV, {seeds} seed(s): {s['studies']} studies, {s['intervals']} Dice main-effect "
                  f"intervals, coverage {100 * s['coverage']:.1f}%, tagged 'cases only' {100 * s['case_only']:.0f}%, "
                  f"{s['seconds_per_study']:.2f} s per study", flush=True)
    print(f"\n(total {time.perf_counter() - t0:.0f} s on a shared 2-core machine)")


def _coverage_part(args: argparse.Namespace, settings: list, rng: np.random.Generator) -> None:
    print(f"## Coverage of 95% intervals of the main effects ({args.studies} studies each, {args.cases} test "
          f"cases; sd_run 0.10, sd_case 0.15, sd_res 0.06)\n")
    print("| design | rows | seeds | intervals | t-interval coverage | two-way bootstrap coverage | mean width |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for design, k, res in settings:
        for seeds in (2, 3, 5):
            if k == 11 and seeds == 5:
                continue
            c = coverage(design, k, seeds, args.studies, args.cases, args.boot, rng, res)
            name = f"full 2^{k}" if design == "full" else f"2^({k}-{k - int(np.log2(c['rows']))}) IV"
            print(f"| {name} | {c['rows']} | {seeds} | {c['intervals']} | {100 * c['coverage']:.1f}% | "
                  f"{100 * c['boot_coverage']:.1f}% | {c['width']:.3f} |", flush=True)


def _width_part(args: argparse.Namespace, rng: np.random.Generator) -> None:
    print("\n## Width at equal trainings: resolution IV fraction vs one-trick-at-a-time\n")
    print("| factors | fraction trainings | OFAT trainings | fraction width | OFAT width | OFAT / fraction | "
          "coverage (fraction / OFAT) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for k, fs, os_ in ((7, 3, 6), (11, 3, 8)):
        w = width_ratio(k, fs, os_, args.studies, args.cases, rng)
        print(f"| {k} | {w['frac_trainings']} | {w['ofat_trainings']} | {w['frac_width']:.3f} | "
              f"{w['ofat_width']:.3f} | {w['ratio']:.2f}x | {100 * w['frac_cov']:.1f}% / {100 * w['ofat_cov']:.1f}% |",
              flush=True)


if __name__ == "__main__":
    main()

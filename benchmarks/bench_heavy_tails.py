"""Coverage and false claims of the effect intervals on heavy-tailed, zero-inflated per-case Dice.

    python benchmarks/bench_heavy_tails.py --studies 2000 --boot 0      # the interval bench reports
    python benchmarks/bench_heavy_tails.py --studies 600 --boot 300     # with the two-way bootstrap beside it

Two arms (``simulate.HeavyTailModel``): Dice on the logit scale, t(3) run x case noise, hard cases that some
runs lose entirely. Scenarios: which cases are lost (15% of cases hard, each run loses a hard case with
probability 0.5; or every case lost by each run with probability 0.15) x run-to-run spread (sd 0.1, 0.3, 0.5
on the logit scale) x size (runs per arm x test cases). For each, ``--studies`` studies with no effect (a
claim is false when the interval excludes 0) and as many with a logit effect of ``--effect`` (coverage of the
true Dice difference; a claim is false when the interval excludes 0 on the wrong side).

Intervals compared, all at 95% on the same draws:

- ``default``: :func:`bench.analysis.effects.effect`'s t-interval (what reports, Table 1's marks and
  ``significant`` use): Satterthwaite degrees of freedom over the mean squares the run term is made of;
- ``run df only``: the same standard error with the run terms' degrees of freedom taken as MS_run's alone
  (the rule before this benchmark, recomputed here);
- ``bootstrap``: the two-way bootstrap of the same function (``--boot`` resamples; 0 leaves it out);
- ``cases only`` (a reference, not an interval bench offers): the paired t-interval on the per-case
  differences of the run-averaged arms, no run term. Where it covers well, runs add little; where it falls far
  below 95%, run-to-run variance is what a claim must survive;
- ``known variance`` (a reference no study can compute): the estimate +- 1.96 times the true standard deviation
  of the estimate, taken as the spread of the row's own estimates over its studies. It is the ideal 95%
  interval: what it shows is how far a row's figures move by sampling alone (2,000 studies: binomial SE 0.49
  points), e.g. how many no-effect rows an exact 95% interval puts above 5% false claims.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulate import draw_heavy, heavy_scenarios, heavy_truth  # noqa: E402

SIZES = ((2, 10), (3, 30), (5, 30), (3, 100))


def run_df_only(ys: list[np.ndarray], level: float = 0.95) -> tuple[float, float]:
    """The t-interval with each run term on MS_run's degrees of freedom alone (the former rule)."""
    from bench.analysis.variance import variance_components

    c = ys[0].shape[1]
    est = float(ys[0].mean() - ys[1].mean())
    d = ys[0].mean(axis=0) - ys[1].mean(axis=0)
    terms = [(float(np.var(d, ddof=1)) / c, c - 1)]
    for y in ys:
        k = variance_components(y)
        terms.append((k.run / y.shape[0], k.df_run))
    se2 = sum(t for t, _ in terms)
    denom = sum(t * t / df for t, df in terms if t > 0)
    q = float(stats.t.ppf(0.5 + level / 2, se2 * se2 / denom))
    return est - q * np.sqrt(se2), est + q * np.sqrt(se2)


def cases_only(ys: list[np.ndarray], level: float = 0.95) -> tuple[float, float]:
    """The paired t-interval over test cases of the run-averaged difference (no run term)."""
    d = ys[0].mean(axis=0) - ys[1].mean(axis=0)
    c = d.size
    half = float(stats.t.ppf(0.5 + level / 2, c - 1)) * float(np.std(d, ddof=1)) / np.sqrt(c)
    return float(d.mean()) - half, float(d.mean()) + half


def _count(hit: list[int], lo: float, hi: float, truth: float) -> None:
    """Add one study to ``hit`` = [covered, false claims]."""
    hit[0] += int(lo <= truth <= hi)
    claim = lo > 0 or hi < 0
    hit[1] += int(claim and (truth == 0 or np.sign(lo + hi) != np.sign(truth)))


def measure(model, runs: int, cases: int, studies: int, n_boot: int, truth: float,
            rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Per interval: (coverage, false-claim rate) over ``studies`` studies."""
    from bench.analysis.effects import effect

    hits = {k: [0, 0] for k in ("default", "run df only", "bootstrap", "cases only", "known variance")}
    estimates = np.empty(studies)
    for i in range(studies):
        ys = draw_heavy(model, runs, cases, rng)
        e = effect("B - A", ys, np.array([1.0, -1.0]), n_boot=n_boot, seed=i)
        estimates[i] = e.estimate
        found = {"default": (e.ci_lo, e.ci_hi), "run df only": run_df_only(ys), "cases only": cases_only(ys)}
        if n_boot:
            found["bootstrap"] = (e.boot_lo, e.boot_hi)
        for k, (lo, hi) in found.items():
            _count(hits[k], lo, hi, truth)
    half = float(stats.norm.ppf(0.975)) * float(estimates.std())
    for est in estimates:
        _count(hits["known variance"], est - half, est + half, truth)
    return {k: (v[0] / studies, v[1] / studies) for k, v in hits.items() if n_boot or k != "bootstrap"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=2000, help="studies per scenario, size and effect (default 2000)")
    ap.add_argument("--boot", type=int, default=300, help="two-way bootstrap resamples (0: leave it out)")
    ap.add_argument("--effect", type=float, default=0.3, help="the logit-scale effect of the coverage rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    names = ["default", "run df only"] + (["bootstrap"] if args.boot else []) + ["cases only", "known variance"]
    print(f"{args.studies} studies per row; coverage of the 95% interval / false claims (no effect: excludes 0; "
          f"effect {args.effect:g} on the logit scale: excludes 0 on the wrong side)\n")
    print("| scenario | runs x cases | effect (Dice) | " + " | ".join(f"{n}: coverage, false" for n in names) + " |")
    print("|---|---|---:|" + "---:|" * len(names))
    worst = {n: [1.0, 0.0, 0.0] for n in names}  # lowest coverage, highest coverage, most false claims
    outside = {n: [0, 0, 0] for n in names}  # rows below 93%, rows above 97%, no-effect rows over 5% false
    rng = np.random.default_rng(args.seed)
    for name, model in heavy_scenarios().items():
        for delta in (0.0, args.effect):
            m = replace(model, delta=delta)
            truth = heavy_truth(m)
            for runs, cases in SIZES:
                res = measure(m, runs, cases, args.studies, args.boot, truth, rng)
                cells = []
                for n in names:
                    cov, false = res[n]
                    worst[n] = [min(worst[n][0], cov), max(worst[n][1], cov), max(worst[n][2], false)]
                    outside[n][0] += cov < 0.93
                    outside[n][1] += cov > 0.97
                    outside[n][2] += truth == 0 and false > 0.05
                    cells.append(f"{100 * cov:.1f}%, {100 * false:.1f}%")
                print(f"| {name} | {runs} x {cases} | {truth:+.4f} | " + " | ".join(cells) + " |", flush=True)
    rows = 2 * len(SIZES) * len(heavy_scenarios())
    print(f"\nOver {rows} rows ({rows // 2} with no effect); binomial SE of one row's coverage at 95%: "
          f"{100 * np.sqrt(0.95 * 0.05 / args.studies):.2f} points")
    for n in names:
        lo, hi, false = worst[n]
        below, above, over = outside[n]
        print(f"{n}: coverage {100 * lo:.1f}-{100 * hi:.1f}% ({below} rows below 93%, {above} above 97%), "
              f"false claims at most {100 * false:.1f}% ({over} no-effect rows over 5%)")
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

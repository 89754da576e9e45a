"""Speed of `bench report --rank`: 16 configurations x 3 runs x 125 test cases x 3 regions (Dice + HD95: 6
criteria), 1000 bootstrap resamples of cases and runs, 10,000 permutations per pair (120 pairs).

Times each stage of :mod:`bench.analysis.ranking` on a per-case DataFrame shaped like the results DB's, the
rank stability plot, and the whole ``build_report`` with and without ``rank=True`` on the same data stored
in SQLite. Side by side, the peer: the straightforward pandas implementation of one bootstrap resample
(re-average the drawn runs, ``groupby(...).rank(method="min")`` per case and criterion, two means), timed on
a few resamples and scaled to the same count.

    python benchmarks/bench_ranking.py [--configs 16] [--runs 3] [--cases 125] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REGIONS = ("ET", "TC", "WT")


def _metric(ci: int, fold: int, seed: int, k: int, region: str) -> tuple[float, float]:
    rng = np.random.default_rng(ci * 100003 + seed * 1009 + k * 7 + ord(region[0]))
    d = float(np.clip(0.7 + 0.004 * ci + rng.normal(0, 0.08), 0, 1))
    h = 373.13 if (k == 7 and region == "ET" and ci % 5 == 0) else float(abs(rng.normal(6 - 0.05 * ci, 2)))
    return d, h


def _frame(n_conf: int, n_runs: int, n_cases: int) -> pd.DataFrame:
    rows = []
    for ci in range(n_conf):
        for s in range(n_runs):
            for k in range(n_cases):
                for r in REGIONS:
                    d, h = _metric(ci, 0, s, k, r)
                    rows.append((ci + 1, f"C{ci:02d}", ci, 0, s, f"case{k:03d}", r, d, h))
    return pd.DataFrame(rows, columns=["configuration_id", "label", "position", "fold", "seed", "case_id", "region",
                                       "dice", "hd95"])


def _peer_one_resample(df: pd.DataFrame, rng: np.random.Generator, n_runs: int) -> pd.Series:
    """One bootstrap resample the straightforward way (pandas), final ranks by label."""
    cases = df["case_id"].unique()
    drawn = pd.DataFrame({"case_id": rng.choice(cases, size=len(cases)), "draw": np.arange(len(cases))})
    parts = []
    for _label, sub in df.groupby("label"):
        runs = rng.integers(0, n_runs, size=n_runs)
        picked = pd.concat([sub[sub["seed"] == s] for s in runs])
        parts.append(picked.groupby(["label", "case_id", "region"])[["dice", "hd95"]].mean().reset_index())
    per = pd.concat(parts).merge(drawn, on="case_id")
    per["hd95"] = -per["hd95"]
    long = per.melt(id_vars=["label", "draw", "region"], value_vars=["dice", "hd95"], var_name="metric")
    long["rank"] = long.groupby(["draw", "region", "metric"])["value"].rank(method="min", ascending=False)
    score = long.groupby(["label", "draw"])["rank"].mean().groupby("label").mean()
    return score.rank(method="min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cases", type=int, default=125)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--permutations", type=int, default=10000)
    ap.add_argument("--peer-resamples", type=int, default=10)
    args = ap.parse_args()

    from bench.analysis import ranking

    df = _frame(args.configs, args.runs, args.cases)
    print(f"{args.configs} configurations x {args.runs} runs x {args.cases} cases x {len(REGIONS)} regions = "
          f"{len(df)} per-case rows; {args.resamples} resamples, {args.permutations} permutations")
    t0 = time.perf_counter()
    inp = ranking.rank_input(df, ranking.metric_set("dice"))
    t1 = time.perf_counter()
    oriented = inp.oriented()
    ranks, _, _ = ranking.rank_then_aggregate(np.stack([v.mean(axis=0) for v in oriented]))
    t2 = time.perf_counter()
    ranking.permutation_pvalues(ranks.sum(axis=2), args.permutations, 0)
    t3 = time.perf_counter()
    ranking.bootstrap_ranks(oriented, args.resamples, 0)
    t4 = time.perf_counter()
    r = ranking.rank(inp, n_boot=args.resamples, n_permutations=args.permutations)
    t5 = time.perf_counter()
    print(f"arrange {t1 - t0:.3f} s | rank-then-aggregate {t2 - t1:.4f} s | permutation tests "
          f"({len(r.labels) * (len(r.labels) - 1) // 2} pairs) {t3 - t2:.3f} s | bootstrap {t4 - t3:.3f} s | "
          f"whole rank() {t5 - t4:.3f} s")
    from bench.report import ranking as rank_out

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        rank_out.write_files(r, Path(tmp), ("markdown", "csv"))
        print(f"ranking files + rank stability plot (PNG + PDF): {time.perf_counter() - t:.3f} s")

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(args.peer_resamples):
        _peer_one_resample(df, rng, args.runs)
    per = (time.perf_counter() - t) / args.peer_resamples
    ours = (t4 - t3) / args.resamples
    print(f"peer (pandas, one resample at a time): {per:.3f} s a resample -> {per * args.resamples:.1f} s for "
          f"{args.resamples}; ours {ours * 1e3:.2f} ms a resample: {per / ours:.0f}x")

    from bench.report.build import build_report
    from bench.report.demo import DemoRow, fill_results

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'results.db'}"
        rows = [DemoRow(f"C{ci:02d}", {}) for ci in range(args.configs)]
        fill_results(url, "rank-bench", "list", rows, _metric, seeds=tuple(range(args.runs)), cases=args.cases,
                     baseline="C00", curves=False)
        for rank_on in (False, True):
            t = time.perf_counter()
            build_report(url, "rank-bench", out=Path(tmp) / "out", formats=("markdown", "csv", "html"), pdf=False,
                         n_boot=args.resamples, rank=rank_on, permutations=args.permutations, log_mlflow=False)
            print(f"build_report (markdown, csv, html, figures), rank={rank_on}: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()

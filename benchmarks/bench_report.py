"""Speed of `bench report`: a 2^6 full grid (64 configurations) x 3 seeds x 50 cases (28,800 per-case rows).

Fills a SQLite results database through the ORM with synthetic numbers, then times ``build_report`` (database
read, statistics, every format, PNG+PDF figures; pdflatex excluded) against the 10 s target, and, side by
side in the same process, the vectorised statistics against a plain per-pair / per-resample loop (the peer).

    python benchmarks/bench_report.py [--repeat 3] [--pdf]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_S = 10.0
FACTORS = ["warmup", "focal", "multitask", "heuristic", "patch_fusion", "model_fusion"]


def _metric(ci: int, fold: int, seed: int, k: int, region: str) -> tuple[float, float]:
    rng = np.random.default_rng(ci * 100003 + seed * 1009 + k * 7 + ord(region[0]))
    d = float(np.clip(0.7 + 0.004 * bin(ci).count("1") + rng.normal(0, 0.08), 0, 1))
    h = 373.13 if (k == 7 and region == "ET" and ci % 9 == 0) else float(abs(rng.normal(6, 2)))
    return d, h


def _naive_stats(a) -> float:  # type: ignore[no-untyped-def]
    """The peer: the same tests and intervals with one scipy call per pair and one mean per resample."""
    from scipy import stats

    t = time.perf_counter()
    rng = np.random.default_rng(0)
    n = len(a.case_ids)
    idx = rng.integers(0, n, size=(a.n_boot, n))
    for x in a.case_values.values():
        for i in range(x.shape[0]):
            if i != a.baseline_index:
                stats.wilcoxon(x[i], x[a.baseline_index])
            np.percentile([x[i][r].mean() for r in idx], [2.5, 97.5])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pdf", action="store_true", help="also time pdflatex on report.tex")
    args = ap.parse_args()

    from bench.report.build import build_report, load_report_data
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the known-results helper
    from known_results import fill_results, grid_rows

    from bench.report.tables import analyse

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'results.db'}"
        t = time.perf_counter()
        fill_results(url, "bench-grid", "full", grid_rows(FACTORS), _metric, seeds=(0, 1, 2), cases=50)
        fill_s = time.perf_counter() - t
        build_report(url, "bench-grid", out=Path(tmp) / "warm", pdf=False)  # imports, font cache
        times, cpu = [], []
        for r in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            res = build_report(url, "bench-grid", out=Path(tmp) / f"r{r}", pdf=args.pdf)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        t = time.perf_counter()
        data = load_report_data(url, "bench-grid")
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        a = analyse(data)
        stats_s = time.perf_counter() - t
        naive_s = _naive_stats(a)
        rows = len(data.case_metrics)
    best = min(times)
    print(f"grid: 64 configurations x 3 seeds x 50 cases = {rows} per-case rows (fill through the ORM: {fill_s:.1f} s)")
    print(f"{'figure':<46}{'seconds':>10}")
    print(f"{'build_report (all formats + figures' + (' + pdf' if args.pdf else '') + '), best':<46}{best:>10.2f}")
    print(f"{'build_report, median of ' + str(args.repeat):<46}{float(np.median(times)):>10.2f}")
    print(f"{'build_report, CPU time of this process, best':<46}{min(cpu):>10.2f}")
    print(f"{'  of which: database read':<46}{read_s:>10.2f}")
    print(f"{'  of which: statistics (vectorised)':<46}{stats_s:>10.2f}")
    print(f"{'peer: statistics as per-pair/per-resample loops':<46}{naive_s:>10.2f}")
    print(f"speed-up of the vectorised statistics over the loops: {naive_s / stats_s:.1f}x")
    print(f"target {TARGET_S:.0f} s wall: {'met' if best <= TARGET_S else 'NOT met'} ({best:.2f} s; CPU {min(cpu):.2f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); files: {len(res.files)}")


if __name__ == "__main__":
    main()

"""Runner benchmarks: two local workers against one on an 8-cell CPU grid, and the bookkeeping cost per cell.

    python benchmarks/bench_runner.py [--iterations 40] [--keep DIR]

Both contenders run in this process's session, side by side, on the same spec (fresh workspaces, data
prepared before the clock starts). Figures: wall time of each, the speed-up (target >= 1.7x), and per cell
the time outside training and evaluation (target <= 1 s), plus the planning/registration time per cell.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SPEC = """
name = "bench8"
design = "full"
fixed = []
factors = ["warmup", "heuristic_sampling", "focal_loss"]
folds = [0]
seeds = [0]
[params]
warmup = {{ epochs = 1 }}
[data]
path = "synthetic"
folds = 3
test_fraction = 0.25
test_cases = 2
[data.synthetic]
cases = 8
shape = [32, 32, 32]
[model]
depth = 2
width = 8
[train]
iterations = {iterations}
epoch_length = 10
patch = 24
batch = 2
num_workers = 0
"""


def run(folder: Path, workers: int, iterations: int) -> dict:
    from bench.runner import launch as L
    from bench.runner.spec import parse_spec
    from bench.store import queries as q

    spec = parse_spec(SPEC.format(iterations=iterations), "bench8.toml")
    opts = L.RunOptions(spec=spec, folder=folder, tracking_uri="none", workers=workers, devices=("cpu",),
                        threads=1, progress=False)
    t0 = time.perf_counter()
    prep = L.prepare_run(opts)  # data generation + preparation + planning + registration + enqueue
    t_prep = time.perf_counter() - t0
    t1 = time.perf_counter()
    L._run_workers(opts, prep.workspace, spec, prep.results_url, "", prep.cell_ids)
    wall = time.perf_counter() - t1
    cells = q.cells(prep.results_url, "bench8")
    assert list(cells["state"]) == ["done"] * 8, cells[["label", "state", "error"]]
    span = (cells["finished_at"] - cells["started_at"]).dt.total_seconds()
    overhead = span - cells["train_seconds"] - cells["eval_seconds"]
    return {"wall": wall, "prep": t_prep, "overhead_mean": float(overhead.mean()),
            "overhead_max": float(overhead.max()), "train_mean": float(cells["train_seconds"].mean()),
            "eval_mean": float(cells["eval_seconds"].mean())}


def planning_cost() -> tuple[float, int]:
    """Plan + register + enqueue the 16-cell demo grid into fresh stores (no data, no training)."""
    from bench.runner import state
    from bench.runner.plan import plan
    from bench.runner.queue import WorkQueue, open_storage
    from bench.runner.spec import load_spec
    from bench.store import open_store

    with tempfile.TemporaryDirectory() as d:
        spec = load_spec(Path(__file__).resolve().parents[1] / "runs" / "demo.toml")
        store = open_store(f"sqlite:///{d}/r.db")
        t0 = time.perf_counter()
        p = plan(spec)
        ids = [cid for cid, _ in state.register_experiment(store, spec, p)]
        WorkQueue(open_storage(None, Path(d)), spec.name).enqueue(ids)
        return time.perf_counter() - t0, len(ids)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--keep", type=Path, default=None)
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_runner_"))
    t_plan, n = planning_cost()
    print(f"planning + registration + enqueue of the demo grid: {t_plan:.2f} s for {n} cells "
          f"= {t_plan / n:.3f} s per cell (target <= 1 s)", flush=True)
    one = run(root / "one", 1, args.iterations)
    print("1 worker:", {k: round(v, 2) for k, v in one.items()}, flush=True)
    two = run(root / "two", 2, args.iterations)
    print("2 workers:", {k: round(v, 2) for k, v in two.items()}, flush=True)
    print(f"{'contender':28s} {'wall s':>8s} {'prep s':>8s} {'train/cell':>10s} {'eval/cell':>9s} "
          f"{'overhead/cell':>13s} {'max':>6s}")
    for name, r in (("1 worker (1 thread)", one), ("2 workers (1 thread each)", two)):
        print(f"{name:28s} {r['wall']:8.1f} {r['prep']:8.1f} {r['train_mean']:10.2f} {r['eval_mean']:9.2f} "
              f"{r['overhead_mean']:13.2f} {r['overhead_max']:6.2f}")
    print(f"speed-up of 2 workers over 1: {one['wall'] / two['wall']:.2f}x (target >= 1.7x)")


if __name__ == "__main__":
    main()

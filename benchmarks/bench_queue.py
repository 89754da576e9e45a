"""The queue at scale: W worker processes on PostgreSQL serve N queued cells whose training and evaluation are
a short stub (the claims, leases, heartbeats, results-database writes and MLflow writes are the real ones);
K workers are SIGKILLed mid-run. Checks every cell done exactly once and no lost or duplicated per-case row;
reports claims per second and the p50/p99 claim latency per N, for the results-database claims
(``SELECT ... FOR UPDATE SKIP LOCKED``) and, for comparison, the Optuna queue the runner used before.

    python benchmarks/bench_queue.py [--workers 32] [--sizes 100,500,2000] [--optuna-sizes 100,500]
        [--kill 4] [--stub 0.05] [--no-mlflow] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Each (design, N) gets fresh databases that are dropped afterwards. The two designs run one after the other for
each N (interleaved by size), so load from other processes affects both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SPEC = """
name = "{name}"
design = "full"
fixed = []
factors = ["warmup"]
folds = [0]
seeds = [{seeds}]
[params]
warmup = {{ epochs = 1 }}
[data]
path = "synthetic"
test_cases = 2
[model]
depth = 2
width = 4
[train]
iterations = 4
epoch_length = 2
patch = 16
batch = 1
num_workers = 0
"""


# ---------------------------------------------------------------------------------------------- worker side


def serve(args: argparse.Namespace) -> int:
    """One stub worker: the real Worker with ``_execute`` replaced by a sleep and made-up metrics."""
    from bench.runner import state
    from bench.runner.worker import Worker, WorkerOptions
    from bench.runner.workspace import Workspace

    out = open(args.out, "a", buffering=1)

    class StubWorker(Worker):
        def _claim(self) -> Any:
            t0 = time.perf_counter()
            got = self._claim_cell()
            if got is not None:
                out.write(json.dumps({"t": time.time(), "dt": time.perf_counter() - t0}) + "\n")
            return got

        def _claim_cell(self) -> Any:
            return Worker._claim(self)

        def _execute(self, info: Any, trial: Any, stop: Any, hb: Any) -> Any:
            time.sleep(args.stub)
            metrics = [{"case_id": f"case{c}", "region": r, "dice": 0.5 + 0.01 * c, "hd95": 3.0, "sensitivity": 0.9,
                        "specificity": 0.99, "penalty": False} for c in range(2) for r in ("ET", "TC", "WT")]
            fields = {"train_seconds": args.stub, "eval_seconds": 0.0, "git_commit": self._commit,
                      "packages": self._packages, "device": "cpu"}
            fields["mlflow_run_id"] = self._mlflow_done(info, metrics, [], 0.5, fields) or None
            return metrics, fields, [], 0.5

    class OptunaStubWorker(StubWorker):
        """The design before: cells popped from the Optuna queue (compare-and-set on enqueued trials)."""

        def __init__(self, opts: WorkerOptions):
            super().__init__(opts)
            from bench.runner.queue import WorkQueue, open_storage

            self.queue = WorkQueue(open_storage(opts.storage_url, opts.workspace.root), opts.experiment)

        def _search_budget_left(self) -> bool:
            return False

        def _claim_cell(self) -> Any:
            while True:
                trial = self.queue.pop()
                if trial is None:
                    return None
                info = state.cell_info(self.store, int(trial.user_attrs["cell_id"]))
                if info is not None and state.claim_cell(self.store, info.cell_id, self.wid, "cpu",
                                                         self.opts.heartbeat_timeout):
                    return state.cell_info(self.store, info.cell_id), trial
                self.queue.finish(trial, "complete" if info is not None and info.state == "done" else "fail")

    opts = WorkerOptions(experiment=args.serve, workspace=Workspace(Path(args.workspace)), results_url=args.results,
                         storage_url=args.storage, tracking_uri=args.tracking, parent_run_id=args.parent or "",
                         heartbeat_interval=5.0,
                         heartbeat_timeout=30.0, poll=0.2)
    (OptunaStubWorker if args.storage else StubWorker)(opts).run()
    out.close()
    return 0


# ---------------------------------------------------------------------------------------------- driver side


def _admin(pg: str, sql: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(pg.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(sql))
    eng.dispose()


def _db_url(pg: str, name: str) -> str:
    return pg.rsplit("/", 1)[0] + "/" + name


def one(pg: str, design: str, n: int, workers: int, kill: int, stub: float, mlflow: bool) -> dict[str, Any]:
    from sqlalchemy import func, select

    from bench.runner import state
    from bench.runner.plan import plan
    from bench.runner.spec import parse_spec
    from bench.store import open_store
    from bench.store import queries as q
    from bench.store.models import Cell

    tag = f"bq_{design}_{n}_{os.getpid()}"
    dbs = [tag] + ([f"{tag}_mlflow"] if mlflow else [])
    for db in dbs:
        _admin(pg, f'DROP DATABASE IF EXISTS "{db}"')
        _admin(pg, f'CREATE DATABASE "{db}"')
    results = _db_url(pg, tag)
    tmp = Path(tempfile.mkdtemp(prefix=tag))
    try:
        name = f"q{n}"
        spec = parse_spec(SPEC.format(name=name, seeds=", ".join(str(s) for s in range(n // 2))), f"{name}.toml")
        store = open_store(results)
        t0 = time.perf_counter()
        ids = [cid for cid, _ in state.register_experiment(store, spec, plan(spec))]
        t_register = time.perf_counter() - t0
        t_enqueue = 0.0
        storage = None
        if design == "optuna":
            from bench.runner.queue import WorkQueue, open_storage

            storage = results
            t0 = time.perf_counter()
            WorkQueue(open_storage(storage, tmp), name).enqueue(ids)
            t_enqueue = time.perf_counter() - t0
        tracking = _db_url(pg, f"{tag}_mlflow").replace("postgresql://", "postgresql+psycopg://", 1) if mlflow \
            else "none"
        parent = ""
        if mlflow:
            from bench.runner.tracking import Tracker

            # the parent run creates the MLflow schema once, before the workers and the clock start
            parent = Tracker(tracking, name, str(tmp / "artifacts")).start_parent(name, {"cells": n}, {})
            assert parent, "MLflow parent run could not be created"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs = []
        t_start = time.time()
        for i in range(workers):
            cmd = [sys.executable, __file__, "--serve", name, "--results", results, "--workspace", str(tmp),
                   "--tracking", tracking, "--out", str(tmp / f"claims{i}.jsonl"), "--stub", str(stub)]
            if storage:
                cmd += ["--storage", storage]
            if parent:
                cmd += ["--parent", parent]
            procs.append(subprocess.Popen(cmd, env=env))
        killed: list[int] = []
        held: list[int] = []
        deadline = time.time() + 1800
        while any(p.poll() is None for p in procs) and time.time() < deadline:
            time.sleep(0.5)
            if len(killed) < kill:
                with store.session() as s:
                    done = s.scalar(select(func.count()).select_from(Cell).where(Cell.state == "done")) or 0
                    running = s.execute(select(Cell.id, Cell.worker).where(Cell.state == "running")).all()
                if done >= 0.3 * n:
                    pids = {p.pid: p for p in procs if p.poll() is None}
                    random.seed(n)
                    victims = [(cid, int(w.split(":")[1])) for cid, w in running
                               if w and int(w.split(":")[1]) in pids]
                    for cid, pid in victims[: kill - len(killed)]:
                        os.kill(pid, signal.SIGKILL)
                        pids[pid].wait()
                        killed.append(pid)
                        held.append(cid)
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        claims = []
        for f in tmp.glob("claims*.jsonl"):
            for line in f.read_text().splitlines():
                try:
                    claims.append(json.loads(line))
                except ValueError:
                    pass
        cells = q.cells(results, name)
        metrics = q.case_metrics(results, name)
        done = int((cells["state"] == "done").sum())
        ok = {
            "every cell done": done == n,
            # each claim adds one attempt: beyond one per cell, only the cells of killed workers ran again
            "re-runs only for killed workers": n <= int(cells["attempts"].sum()) <= n + len(killed),
            "per-case rows complete": len(metrics) == 6 * n,
            "no duplicated per-case row": not metrics.duplicated(["cell_id", "case_id", "region"]).any(),
        }
        if mlflow:
            import mlflow as mf

            client = mf.MlflowClient(tracking_uri=tracking)
            exp = client.get_experiment_by_name(name)
            runs = client.search_runs([exp.experiment_id], max_results=50000) if exp else []
            cell_runs = {r.data.tags.get("cell_id") for r in runs} - {None}
            ok["an MLflow run per cell"] = len(cell_runs) == n
        ts = sorted(c["t"] for c in claims)
        lat = sorted(c["dt"] for c in claims)
        # sustained: the middle 80% of the claims
        lo, hi = ts[int(0.1 * len(ts))], ts[int(0.9 * len(ts)) - 1]
        sustained = (int(0.9 * len(ts)) - int(0.1 * len(ts))) / max(hi - lo, 1e-9)
        wall = (ts[-1] - t_start) if ts else float("nan")
        store.engine.dispose()
        from bench.store.session import dispose_engines

        dispose_engines()
        return {"design": design, "cells": n, "workers": workers, "killed": len(killed), "taken_over": len(held),
                "extra_attempts": int(cells["attempts"].sum()) - n,
                "register_s": round(t_register, 2), "enqueue_s": round(t_enqueue, 2), "wall_s": round(wall, 1),
                "claims": len(claims), "claims_per_s": round(sustained, 1),
                "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
                "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat else None,
                "checks": ok}
    finally:
        for db in dbs:
            try:
                _admin(pg, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            except Exception:  # noqa: BLE001 - best effort
                pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--sizes", default="100,500,2000")
    ap.add_argument("--optuna-sizes", default="100,500", help="sizes also run with the Optuna queue ('' for none)")
    ap.add_argument("--kill", type=int, default=4)
    ap.add_argument("--stub", type=float, default=0.05, help="seconds of the stub training + evaluation")
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    for hidden in ("--results", "--storage", "--workspace", "--tracking", "--out", "--parent"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args)
    rows = []
    optuna_sizes = {int(s) for s in args.optuna_sizes.split(",") if s.strip()}
    for n in (int(s) for s in args.sizes.split(",")):
        for design in ("db", "optuna") if n in optuna_sizes else ("db",):
            r = one(args.pg, design, n, args.workers, args.kill, args.stub, not args.no_mlflow)
            rows.append(r)
            failed = [k for k, v in r["checks"].items() if not v]
            print(f"{design:6s} N={n:5d} W={r['workers']:2d} killed={r['killed']} cells run again="
                  f"{r['extra_attempts']}  "
                  f"{r['claims_per_s']:7.1f} claims/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  wall "
                  f"{r['wall_s']} s  (register {r['register_s']} s, enqueue {r['enqueue_s']} s)  "
                  + ("checks ok" if not failed else f"FAILED: {', '.join(failed)}"), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    big = [r for r in rows if r["design"] == "db" and r["cells"] == max(x["cells"] for x in rows)]
    met = all(all(r["checks"].values()) for r in rows) and all(
        r["claims_per_s"] >= 50 and (r["p99_ms"] or 1e9) < 1000 for r in big)
    print("targets (>= 50 claims/s, p99 < 1 s at the largest N, every check): " + ("met" if met else "NOT met"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

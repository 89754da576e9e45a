"""``bench run``, ``bench worker``, ``bench status`` and ``bench cancel``: run experiments (here or on Slurm),
join them, see where they stand, cancel them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, cast

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run", help="plan, queue and run an experiment spec (default: the packaged demo grid)",
        description="Plan every cell (tricks x fold x seed) of a spec, validate them all, queue them and run them. "
                    "Running the same spec again continues it: finished cells are skipped, new ones run.",
    )
    p.add_argument("spec", nargs="?", default=None,
                   help="spec file, or the name of a packaged spec (demo, table1, table1-cpu, search, brats-cpu); "
                        "default: demo")
    add_design_options(p)
    _common(p)
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: one per device in --devices)")
    p.add_argument("--devices", default=None, help="cpu, or cuda:0,cuda:1 ... (one worker per device)")
    p.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    p.add_argument("--test-ids", default=None, metavar="FILE",
                   help="held-out test cases (one case ID a line); sets the spec's [data] test_ids")
    p.add_argument("--splits", default=None, metavar="FILE",
                   help="folds from nnU-Net's splits_final.json or bench's splits.json; sets [data] splits")
    p.add_argument("--max-restarts", type=int, default=3,
                   help="dead workers (local processes, Slurm tasks) restarted per run (default 3)")
    sl = p.add_argument_group("launching on Slurm (--launcher slurm)")
    sl.add_argument("--launcher", choices=("local", "slurm"), default="local",
                    help="local: worker processes here (default); slurm: a job array of --workers tasks")
    sl.add_argument("--partition", help="Slurm partition (default: the cluster's default)")
    sl.add_argument("--gpus-per-worker", type=int, default=0, help="GPUs per Slurm task (default 0: CPU)")
    sl.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs per Slurm task (default 1)")
    sl.add_argument("--time", help="time limit per Slurm task, HH:MM:SS (workers hand back their cell 120 s "
                                   "before it)")
    sl.add_argument("--slurm-arg", action="append", default=[],
                    help="extra sbatch option, e.g. --slurm-arg=--qos=long (repeatable)")
    sl.add_argument("--wait", action="store_true",
                    help="follow the Slurm job array until the experiment is done (default: return after "
                         "submitting)")
    p.set_defaults(handler=_run)

    w = subparsers.add_parser(
        "worker", help="join a running experiment from another process or machine",
        description="Serve an experiment's queue until it is empty. Several workers on several machines may share "
                    "one PostgreSQL --storage and --results.",
    )
    w.add_argument("experiment", help="experiment name (the spec's name)")
    _common(w)
    w.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    w.add_argument("--parent-run", default="", help=argparse.SUPPRESS)
    w.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    w.set_defaults(handler=_worker)

    s = subparsers.add_parser("status", help="list every cell of an experiment with its state",
                              description="Without EXPERIMENT: every experiment with its cell counts.")
    s.add_argument("experiment", nargs="?", help="experiment name")
    s.add_argument("--results", help="results database URL (default: sqlite:///<workspace>/.bench/results.db)")
    s.add_argument("--workspace", default=".", help="folder holding .bench/ (default: the current folder)")
    s.set_defaults(handler=_status)

    c = subparsers.add_parser("cancel", help="cancel an experiment's Slurm jobs; running cells go back to the queue",
                              description="Cancels the Slurm job arrays of EXPERIMENT (workers hand back their "
                                          "cells, not failed); `bench run` on the same spec continues it later.")
    c.add_argument("experiment", help="experiment name")
    c.add_argument("--results", help="results database URL (default: sqlite:///<workspace>/.bench/results.db)")
    c.add_argument("--workspace", default=".", help="folder holding .bench/ (default: the current folder)")
    c.set_defaults(handler=_cancel)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="Optuna storage: a journal file path or a database URL "
                                     "(default: <workspace>/.bench/optuna.journal)")
    p.add_argument("--results", help="results database URL (default: sqlite:///<workspace>/.bench/results.db)")
    p.add_argument("--tracking", help="MLflow tracking URI (default: sqlite:///<workspace>/.bench/mlflow.db; "
                                      "'none' to turn MLflow off)")
    p.add_argument("--workspace", default=".", help="folder that holds .bench/ (default: the current folder)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker")
    p.add_argument("--heartbeat-interval", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--heartbeat-timeout", type=float, default=60.0,
                   help="seconds without a heartbeat before a worker's cell is handed to another (default 60)")


def _check_positive(name: str, value: int | None) -> None:
    from bench.errors import SpecError

    if value is not None and value < 1:
        raise SpecError(f"{name} {value}: must be >= 1")


def _run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="bench: %(message)s")
    _check_positive("--workers", args.workers)
    spec = spec_from_args(args)  # before importing the runner (SQLAlchemy, Optuna): spec errors come fast
    from bench.errors import SpecError

    _check_positive("--cpus-per-worker", args.cpus_per_worker)
    if args.gpus_per_worker < 0:
        raise SpecError(f"--gpus-per-worker {args.gpus_per_worker}: must be >= 0")
    if args.max_restarts < 0:
        raise SpecError(f"--max-restarts {args.max_restarts}: must be >= 0")
    slurm = _slurm_options(args)
    from bench.runner.launch import RunOptions, launch, parse_devices

    devices = parse_devices(args.devices)
    workers = args.workers or len(devices)
    opts = RunOptions(spec=spec, folder=Path(args.workspace), results_url=args.results, storage_url=args.storage,
                      tracking_uri=args.tracking, workers=workers, devices=devices, retry_failed=args.retry_failed,
                      threads=args.threads, heartbeat_interval=args.heartbeat_interval,
                      heartbeat_timeout=args.heartbeat_timeout, launcher=args.launcher, slurm=slurm,
                      wait=args.wait or args.launcher == "local", max_restarts=args.max_restarts)
    result = launch(opts)
    if result.submitted:
        print(f"{result.experiment}: submitted {result.submitted}; follow it with `bench status {result.experiment}"
              f"{_results_arg(args)}`, stop it with `bench cancel {result.experiment}{_results_arg(args)}`")
        return 0
    print(result.table)
    c = result.counts
    print(f"{result.experiment}: {c.get('done', 0)} done, {c.get('failed', 0)} failed, "
          f"{c.get('skipped', 0)} skipped, {c.get('queued', 0) + c.get('running', 0)} not finished "
          f"({result.n_trainings} trainings); `bench report {result.experiment}` writes the tables",
          file=sys.stderr)
    if result.interrupted:
        print("bench: interrupted; run the same command again to continue", file=sys.stderr)
    return result.exit_code


#: the design options of ``bench run`` and ``bench plan``: design name -> (option, help)
_DESIGN_FLAGS = {
    "full": ("--grid", "run the spec's factors as a full 2^k grid"),
    "ladder": ("--ladder", "run the spec's factors as a cumulative ladder (BL, BL+a, BL+a+b, ...)"),
    "optuna": ("--optuna", "search the factors (and their parameters) with Optuna"),
}
DESIGN_OPTIONS = {name: flag for name, (flag, _) in _DESIGN_FLAGS.items()}


def add_design_options(p: argparse.ArgumentParser) -> None:
    """``--grid`` / ``--ladder`` / ``--optuna`` and ``--trials`` (shared by ``bench run`` and ``bench plan``)."""
    design = p.add_mutually_exclusive_group()
    for name, (flag, text) in _DESIGN_FLAGS.items():
        design.add_argument(flag, dest="design", action="store_const", const=name, help=text)
    p.add_argument("--trials", type=int, help="number of Optuna trials (search designs)")


def spec_from_args(args: argparse.Namespace) -> Any:
    """The validated spec of ``args.spec`` with the design options applied (what ``bench run`` would run)."""
    from bench.runner.overrides import override_spec
    from bench.runner.spec import load_spec

    _check_positive("--trials", args.trials)
    spec = load_spec(args.spec)
    test_ids = splits = None
    if getattr(args, "test_ids", None) is not None:
        from bench.data.splits import read_id_list

        test_ids = read_id_list(args.test_ids)
    if getattr(args, "splits", None) is not None:
        splits = str(Path(args.splits).expanduser().resolve())
    return override_spec(spec, design=args.design, trials=args.trials, test_ids=test_ids, splits=splits,
                         options={**DESIGN_OPTIONS, "trials": "--trials"})


def _slurm_options(args: argparse.Namespace) -> Any:
    """The Slurm options, refused in one line when given without ``--launcher slurm``."""
    from bench.errors import SpecError

    given = [name for name, val, default in (("--partition", args.partition, None), ("--time", args.time, None),
                                             ("--gpus-per-worker", args.gpus_per_worker, 0),
                                             ("--cpus-per-worker", args.cpus_per_worker, 1),
                                             ("--slurm-arg", args.slurm_arg, []), ("--wait", args.wait, False))
             if val != default]
    if args.launcher != "slurm":
        if given:
            raise SpecError(f"{given[0]}: only used with --launcher slurm")
        return None
    from bench.runner.launchers.slurm import SlurmOptions

    return SlurmOptions.from_cli(partition=args.partition, gpus_per_worker=args.gpus_per_worker,
                                 cpus_per_worker=args.cpus_per_worker, time=args.time, extra=list(args.slurm_arg))


def _results_arg(args: argparse.Namespace) -> str:
    from bench.store.session import redact_url

    return f" --results {redact_url(args.results)}" if args.results else ""


def _worker(args: argparse.Namespace) -> int:
    import logging

    from bench.runner.launchers.slurm import requeue_self
    from bench.runner.lease import slurm_task
    from bench.runner.worker import WorkerOptions, Workspace, run_worker
    from bench.store.session import redact_url

    logging.basicConfig(level=logging.WARNING, format="bench worker: %(message)s")
    ws = Workspace(Path(args.workspace).resolve())
    ws.root.mkdir(parents=True, exist_ok=True)
    # A Slurm job carries the store URLs in its environment (never on a command line or in a script).
    results = args.results or os.environ.get("BENCH_RESULTS") or ws.results_url
    storage = args.storage or os.environ.get("BENCH_STORAGE") or None
    tracking = args.tracking or os.environ.get("BENCH_TRACKING") or None
    opts = WorkerOptions(experiment=args.experiment, workspace=ws, results_url=results,
                         storage_url=storage, tracking_uri=tracking, parent_run_id=args.parent_run,
                         device=args.device, threads=args.threads or 0, heartbeat_interval=args.heartbeat_interval,
                         heartbeat_timeout=args.heartbeat_timeout)
    if not args.quiet:
        print(f"bench worker: serving {args.experiment!r} on {args.device} (results {redact_url(opts.results_url)})",
              file=sys.stderr)
    outcomes = run_worker(opts, handle_signals=True)
    if not args.quiet:
        for o in outcomes:
            print(f"  {o.label} fold {o.fold} seed {o.seed}: {o.state}" + (f" ({o.error})" if o.error else ""),
                  file=sys.stderr)
    if opts.signals and opts.signals[-1] in ("SIGUSR1", "SIGTERM") and slurm_task():
        # A Slurm warning (time limit, preemption) or scancel: the cell is handed back, which is no failure.
        print(f"bench worker: {opts.signals[-1]}: cell handed back to the queue", file=sys.stderr)
        if opts.signals[-1] == "SIGUSR1":
            requeue_self(opts)
        return 0
    if opts.stop.is_set():
        return 130
    return 1 if any(o.state == "failed" for o in outcomes) else 0


def _status(args: argparse.Namespace) -> int:
    from bench.runner.worker import Workspace
    from bench.store import queries as q

    ws = Workspace(Path(args.workspace).resolve())
    url = args.results or ws.results_url
    if not args.experiment:
        ex = q.experiments(url)
        if ex.empty:
            print("no experiments yet; start one with `bench run`")
            return 0
        for r in ex.itertuples():
            print(f"{r.name:30s} {r.design:7s} {r.n_cells:4d} cells: {r.n_done} done, {r.n_running} running, "
                  f"{r.n_queued} queued, {r.n_failed} failed, {r.n_skipped} skipped")
        return 0
    cells = q.cells(url, args.experiment)
    width = max([len(str(x)) for x in cells["label"]] + [5])
    print(f"{'label':{width}s}  fold  seed  state    device   tries  worker / reason")
    for c in cells.itertuples():
        note = cast("str | None", c.error if c.state in ("failed", "skipped", "pruned") else (c.worker or ""))
        tries = f"{c.attempts}" + (f" ({c.preemptions} handed back)" if getattr(c, "preemptions", 0) else "")
        print(f"{c.label:{width}s}  {c.fold:4d}  {c.seed:4d}  {c.state:8s} {str(c.device or ''):8s} {tries:6s} "
              f"{note or ''}")
    counts = cells["state"].value_counts().to_dict()
    print(", ".join(f"{n} {st}" for st, n in counts.items()))
    from bench.runner.looks import status_lines
    from bench.store import open_store

    for line in status_lines(open_store(url), args.experiment):  # adaptive designs: what is decided, and why
        print(line)
    _print_launches(url, args.experiment)
    return 0


def _print_launches(url: str, experiment: str) -> None:
    """The experiment's launches: restarts with their reasons, and each Slurm task's state."""
    from bench.runner.launchers._base import launches
    from bench.store import open_store

    for ln in launches(open_store(url), experiment):
        jobs = f" job {', '.join(ln['job_ids'])}" if ln["job_ids"] else ""
        print(f"launch {ln['id']}: {ln['launcher']}{jobs}, {ln['workers']} worker(s), {ln['state']}, "
              f"{ln['restarts']} restart(s)")
        for ev in ln["events"][1:]:
            print(f"  {ev['time']}  {ev['text']}")
        if ln["launcher"] == "slurm" and ln["state"] == "running":
            from bench.runner.launchers.slurm import task_states

            tasks = task_states(ln["job_ids"])
            if tasks is None:
                print("  (Slurm does not answer here: task states unknown)")
            for task, (st, reason) in sorted(tasks.items()) if tasks else ():
                print(f"  slurm:{task}  {st}" + (f" ({reason})" if reason and reason != "None" else ""))


def _cancel(args: argparse.Namespace) -> int:
    from bench.runner.launchers.slurm import cancel
    from bench.runner.worker import Workspace
    from bench.store import open_store

    ws = Workspace(Path(args.workspace).resolve())
    store = open_store(args.results or ws.results_url)
    jobs, released = cancel(store, args.experiment)
    if not jobs:
        print(f"{args.experiment}: no running Slurm launch to cancel (local runs stop with Ctrl-C)",
              file=sys.stderr)
        return 0
    print(f"{args.experiment}: cancelled Slurm job {', '.join(jobs)}; {released} running cell(s) handed back to the "
          "queue; `bench run` on the same spec continues it", file=sys.stderr)
    return 0

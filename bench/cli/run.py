"""``bench run``, ``bench worker`` and ``bench status``: run experiments, join them, see where they stand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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
    design = p.add_mutually_exclusive_group()
    design.add_argument("--grid", dest="design", action="store_const", const="full",
                        help="run the spec's factors as a full 2^k grid")
    design.add_argument("--ladder", dest="design", action="store_const", const="ladder",
                        help="run the spec's factors as a cumulative ladder (BL, BL+a, BL+a+b, ...)")
    design.add_argument("--optuna", dest="design", action="store_const", const="optuna",
                        help="search the factors (and their parameters) with Optuna")
    p.add_argument("--trials", type=int, help="number of Optuna trials (search designs)")
    _common(p)
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: one per device in --devices)")
    p.add_argument("--devices", default=None, help="cpu, or cuda:0,cuda:1 ... (one worker per device)")
    p.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    p.add_argument("--test-ids", default=None, metavar="FILE",
                   help="held-out test cases (one case ID a line); sets the spec's [data] test_ids")
    p.add_argument("--splits", default=None, metavar="FILE",
                   help="folds from nnU-Net's splits_final.json or bench's splits.json; sets [data] splits")
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
    import json
    import logging

    from bench.errors import SpecError
    from bench.runner.launch import RunOptions, launch, parse_devices
    from bench.runner.spec import load_spec, parse_spec

    logging.basicConfig(level=logging.WARNING, format="bench: %(message)s")
    _check_positive("--workers", args.workers)
    _check_positive("--trials", args.trials)
    devices = parse_devices(args.devices)
    spec = load_spec(args.spec)
    text = spec.text
    if args.design and args.design != spec.design:
        if args.design in ("full", "ladder") and not spec.factors:
            raise SpecError(f"{spec.source}: --{'grid' if args.design == 'full' else 'ladder'} needs factors")
        text = _override(text, "design", f'"{args.design}"')
    if args.trials is not None:
        if (args.design or spec.design) != "optuna":
            raise SpecError("--trials is only used by Optuna searches (--optuna or design = 'optuna')")
        text = _override(text, "trials", str(args.trials), table="optuna")
    if args.test_ids is not None:  # the IDs themselves go into the stored spec, not the file's path
        from bench.data.splits import read_id_list

        text = _override(text, "test_ids", json.dumps(read_id_list(args.test_ids)), table="data")
    if args.splits is not None:
        text = _override(text, "splits", json.dumps(str(Path(args.splits).expanduser().resolve())), table="data")
    if text != spec.text:
        # The overrides become part of the stored spec, so workers joining later see the same experiment.
        spec = parse_spec(text, spec.source)
    workers = args.workers or len(devices)
    opts = RunOptions(spec=spec, folder=Path(args.workspace), results_url=args.results, storage_url=args.storage,
                      tracking_uri=args.tracking, workers=workers, devices=devices, retry_failed=args.retry_failed,
                      threads=args.threads, heartbeat_interval=args.heartbeat_interval,
                      heartbeat_timeout=args.heartbeat_timeout)
    result = launch(opts)
    print(result.table)
    c = result.counts
    print(f"{result.experiment}: {c.get('done', 0)} done, {c.get('failed', 0)} failed, "
          f"{c.get('skipped', 0)} skipped, {c.get('queued', 0) + c.get('running', 0)} not finished "
          f"({result.n_trainings} trainings); `bench report {result.experiment}` writes the tables",
          file=sys.stderr)
    if result.interrupted:
        print("bench: interrupted; run the same command again to continue", file=sys.stderr)
    return result.exit_code


def _override(text: str, key: str, value: str, table: str | None = None) -> str:
    """Set ``key = value`` at the top level (or in ``[table]``) of a spec's TOML text, keeping the rest."""
    import re

    lines = text.splitlines()
    current: str | None = None
    header_at: int | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[]").strip()
            if current == table:
                header_at = i
            continue
        if current == table and re.match(rf"{re.escape(key)}\s*=", stripped):
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    if table is None:
        return f"{key} = {value}\n" + text
    if header_at is not None:
        lines.insert(header_at + 1, f"{key} = {value}")
        return "\n".join(lines) + "\n"
    return text.rstrip("\n") + f"\n\n[{table}]\n{key} = {value}\n"


def _worker(args: argparse.Namespace) -> int:
    import logging

    from bench.runner.worker import WorkerOptions, Workspace, run_worker
    from bench.store.session import redact_url

    logging.basicConfig(level=logging.WARNING, format="bench worker: %(message)s")
    ws = Workspace(Path(args.workspace).resolve())
    ws.root.mkdir(parents=True, exist_ok=True)
    opts = WorkerOptions(experiment=args.experiment, workspace=ws, results_url=args.results or ws.results_url,
                         storage_url=args.storage, tracking_uri=args.tracking, parent_run_id=args.parent_run,
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
    print(f"{'label':{width}s}  fold  seed  state    device   worker / reason")
    for c in cells.itertuples():
        note = c.error if c.state in ("failed", "skipped", "pruned") else (c.worker or "")
        print(f"{c.label:{width}s}  {c.fold:4d}  {c.seed:4d}  {c.state:8s} {str(c.device or ''):8s} {note or ''}")
    counts = cells["state"].value_counts().to_dict()
    print(", ".join(f"{n} {st}" for st, n in counts.items()))
    return 0

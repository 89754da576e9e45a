"""``bench run``: validate, prepare the data, plan, register, enqueue, start the workers (a launcher from
:mod:`bench.runner.launchers`: local processes or a Slurm job array), summarise.

Order matters for the user's data: the spec is validated completely before any store is opened; the results
database is only written once the data is prepared and every cell planned.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.design import design_class
from bench.errors import SpecError
from bench.runner import looks, state
from bench.runner.plan import plan as make_plan
from bench.runner.plan import training_plan
from bench.runner.search import search_settings
from bench.runner.spec import Spec
from bench.runner.workspace import Workspace, engine_of, ensure_dataset

__all__ = ["RunOptions", "RunResult", "Prepared", "prepare_run", "launch", "summary_table", "parse_devices"]

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    spec: Spec
    folder: Path = field(default_factory=Path.cwd)
    results_url: str | None = None
    storage_url: str | None = None
    tracking_uri: str | None = None
    workers: int = 1
    devices: tuple[str, ...] = ("cpu",)
    retry_failed: bool = False
    threads: int | None = None  # per worker; default: 1 when several CPU workers share the machine
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 60.0
    progress: bool = True
    stop: threading.Event = field(default_factory=threading.Event)
    launcher: str = "local"  # local | slurm (bench.runner.launchers)
    slurm: Any = None  # bench.runner.launchers.slurm.SlurmOptions for --launcher slurm
    wait: bool = True  # slurm: follow the job array until the experiment is done (local: always)
    max_restarts: int = 3  # dead workers restarted per run (local processes, Slurm tasks)


@dataclass
class RunResult:
    experiment: str
    n_cells: int
    n_trainings: int
    counts: dict[str, int]
    interrupted: bool
    table: str

    submitted: str = ""  # a launcher that returned after submitting: what it submitted (job ids)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.counts.get("failed", 0) else 0


def parse_devices(text: str | None) -> tuple[str, ...]:
    if not text:
        return ("cpu",)
    devs = tuple(d.strip() for d in text.split(",") if d.strip())
    for d in devs:
        if not (d == "cpu" or d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit())):
            raise SpecError(f"--devices: {d!r} is not a device; accepted cpu, cuda, cuda:N (comma-separated)")
    return devs or ("cpu",)


def _say(opts: RunOptions, msg: str) -> None:
    if opts.progress:
        print(msg, file=sys.stderr, flush=True)


@dataclass
class Prepared:
    """An experiment registered and queued, ready for workers (what ``bench run`` does before running)."""

    spec: Spec
    workspace: Workspace
    results_url: str
    store: Any
    cell_ids: list[int]
    n_cells: int
    n_trainings: int


def prepare_run(opts: RunOptions) -> Prepared:
    """Prepare the data, plan, register the cells in the results database and enqueue the unfinished ones."""
    from bench.runner.queue import WorkQueue, open_storage
    from bench.store import open_store

    spec = opts.spec
    ws = Workspace(opts.folder.resolve())
    results_url = opts.results_url or ws.results_url
    p = make_plan(spec)
    if opts.results_url is None or opts.storage_url is None:
        ws.root.mkdir(parents=True, exist_ok=True)
    store = open_store(results_url)
    state.check_extension(store, spec)  # refuses before anything is written
    # Grids, ladders and lists claim their cells in the results database; only a search uses the Optuna queue.
    storage = open_storage(opts.storage_url, ws.root) if design_class(spec.design).searches else None

    engine, _ = engine_of(spec)
    for conf in p.configurations:  # tricks without a form on the engine: refused before anything is prepared
        if not conf.refused:
            engine.check_stack(conf.stack())
    ds = ensure_dataset(spec, ws, progress=opts.progress)
    keys: set[str] = set()
    for cell in p.cells:
        if not cell.configuration.refused:
            keys.update(k for _, k in training_plan(spec, cell.configuration, cell.fold, cell.seed, ds.fingerprint,
                                                    ds.n_folds))
    cell_states = state.register_experiment(store, spec, p)
    looks.record_initial(store, spec)  # adaptive designs: the stages of the first look
    ids = [cid for cid, _ in cell_states]
    if opts.retry_failed:
        n = state.requeue_failed(store, ids)
        if n:
            _say(opts, f"retrying {n} failed cell(s)")
    if storage is not None:
        queue = WorkQueue(storage, spec.name, **search_settings(spec))
        queue.recover(store, opts.heartbeat_timeout)
        pending = [cid for cid, st in _states(store, ids).items() if st in ("queued", "running")]
        queue.enqueue(pending)
    counts = _count(_states(store, ids).values())
    with store.session() as s:
        from sqlalchemy import select

        from bench.store.models import Training

        trained = set(s.scalars(select(Training.key).where(Training.key.in_(keys), Training.state == "done")))
    n_cells = design_class(spec.design).launch_cells(spec, len(ids))
    _say(opts, f"{spec.name}: {len(p.configurations)} configurations, {n_cells} cells, {len(keys)} trainings "
               f"({counts.get('done', 0)} cells done, {counts.get('skipped', 0)} skipped, "
               f"{len(keys - trained)} trainings to run)")
    for conf in p.refused:
        _say(opts, f"  skipped {conf.label}: {conf.refused}")
    return Prepared(spec, ws, results_url, store, ids, n_cells, len(keys))


def launch(opts: RunOptions) -> RunResult:
    """Run (or continue, or extend) the experiment of ``opts.spec``; with a launcher that submits jobs and
    ``opts.wait`` False, return once they are submitted."""
    from bench.runner.launchers import get_launcher

    launcher_cls = get_launcher(opts.launcher)
    launcher_cls.precheck(opts)
    prep = prepare_run(opts)
    spec, ws, store, ids = prep.spec, prep.workspace, prep.store, prep.cell_ids
    todo = (design_class(spec.design).searches or any(st in ("queued", "running") for st in _states(store, ids).values())
            or looks.pending(store, spec))
    tracker, parent = _start_parent(opts, ws, spec, store, prep.n_cells, prep.n_trainings) if todo else (None, "")
    interrupted = False
    submitted = ""
    final: dict[str, int] = {}
    try:
        launcher = _make_launcher(launcher_cls, opts, ws, spec, prep.results_url, parent, ids, store)
        try:
            interrupted = launcher.run()
        finally:
            launcher.ctx.progress.close()
        submitted = launcher.submitted
    finally:
        if design_class(spec.design).searches or looks.is_adaptive(spec):  # cells come trial by trial, look by look
            ids = state.experiment_cells(store, spec.name)
        final = _count(_states(store, ids).values())
        if tracker is not None and parent and not submitted:
            status = "KILLED" if interrupted else ("FAILED" if final.get("failed") else "FINISHED")
            try:
                tracker.finish_launch(parent, status, final)
            except Exception:  # noqa: BLE001 - MLflow is a mirror
                pass
    table = summary_table(store, spec.name)
    return RunResult(spec.name, prep.n_cells, prep.n_trainings, final, interrupted, table, submitted)


def _make_launcher(cls: Any, opts: RunOptions, ws: Workspace, spec: Spec, results_url: str, parent: str,
                   ids: list[int], store: Any) -> Any:
    from bench.runner.launchers import LaunchContext
    from bench.runner.progress import Progress

    progress = Progress(opts.progress, store, ids, ws)
    ctx = LaunchContext(opts=opts, workspace=ws, spec=spec, results_url=results_url, parent_run=parent,
                        threads=_threads(opts), progress=progress, store=store, cell_ids=ids)
    return cls(ctx)


def _run_workers(opts: RunOptions, ws: Workspace, spec: Spec, results_url: str, parent: str,
                 ids: list[int]) -> bool:
    """Run the workers of ``opts.launcher`` to the end of the queue; True when interrupted (Ctrl-C)."""
    from bench.runner.launchers import get_launcher
    from bench.store import open_store

    launcher = _make_launcher(get_launcher(opts.launcher), opts, ws, spec, results_url, parent, ids,
                              open_store(results_url))
    try:
        return bool(launcher.run())
    finally:
        launcher.ctx.progress.close()


def _states(store: Any, ids: list[int]) -> dict[int, str]:
    from sqlalchemy import select

    from bench.store.models import Cell

    with store.session() as s:
        return {cid: st for cid, st in s.execute(select(Cell.id, Cell.state).where(Cell.id.in_(ids))).all()}


def _count(states: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for st in states:
        out[st] = out.get(st, 0) + 1
    return out


def _start_parent(opts: RunOptions, ws: Workspace, spec: Spec, store: Any, n_cells: int,
                  n_trainings: int) -> tuple[Any, str]:
    if opts.tracking_uri == "none":
        return None, ""
    try:
        from bench.runner.tracking import Tracker, default_artifact_root, default_tracking_uri

        uri = opts.tracking_uri or default_tracking_uri(ws.folder)
        tracker = Tracker(uri, spec.name, None if opts.tracking_uri else default_artifact_root(ws.folder))
        name = f"{spec.name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
        parent = tracker.start_parent(name, {"design": spec.design, "n_cells": n_cells, "n_trainings": n_trainings,
                                             "factors": ",".join(spec.factors), "workers": opts.workers,
                                             "devices": ",".join(opts.devices)},
                                      {"spec": spec.source})
        if parent:
            from sqlalchemy import update

            from bench.store.models import Experiment

            exp_id = getattr(tracker, "_experiment_id", None)
            with store.session() as s:
                s.execute(update(Experiment).where(Experiment.name == spec.name)
                          .values(mlflow_parent_run_id=parent, mlflow_experiment_id=exp_id))
        return tracker, parent
    except Exception:  # noqa: BLE001 - MLflow is a mirror: never fail the run for it
        log.warning("MLflow parent run could not be started", exc_info=True)
        return None, ""


def _threads(opts: RunOptions) -> int:
    if opts.threads is not None:
        return opts.threads
    if opts.workers > 1 and all(d == "cpu" for d in opts.devices):
        import os

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // opts.workers)  # the CPU workers share the cores
    return 0


def _missed_by_cell(metrics: Any) -> dict[int, str]:
    """cell id -> "no ET voxel predicted (...)" for the regions a cell never predicted (bench.evaluation.missed)."""
    from bench.evaluation.missed import missed_note, missed_regions

    by: dict[int, list[Any]] = {}
    for m in missed_regions(metrics):
        by.setdefault(m.cell_id, []).append(m)
    return {cid: missed_note([m.region for m in ms], {m.region: m.cases for m in ms}) for cid, ms in by.items()}


def summary_table(store: Any, experiment: str) -> str:
    """label, fold, seed, state and the mean test Dice ET/WT/TC of every cell (failed: the reason)."""
    from bench.store import queries as q

    cells = q.cells(store, experiment)
    metrics = q.case_metrics(store, experiment)
    means = metrics.groupby(["cell_id", "region"])["dice"].mean() if len(metrics) else None
    missed = _missed_by_cell(metrics)
    rows: list[tuple[str, ...]] = [("label", "fold", "seed", "state", "Dice ET", "Dice WT", "Dice TC", "note")]
    for c in cast(Any, cells.itertuples()):  # row fields: the store's columns
        vals = []
        for region in ("ET", "WT", "TC"):
            v = means.get((c.cell_id, region)) if means is not None else None
            vals.append("" if v is None else f"{v:.3f}")
        note = (c.error or "")[:60] if c.state in ("failed", "skipped", "pruned") else missed.get(c.cell_id, "")
        rows.append((str(c.label), str(c.fold), str(c.seed), str(c.state), *vals, note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

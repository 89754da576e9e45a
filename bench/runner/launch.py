"""``bench run``: validate, prepare the data, plan, register, enqueue, run the workers, summarise.

Order matters for the user's data: the spec is validated completely before any store is opened; the results
database is only written once the data is prepared and every cell planned.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import SpecError
from bench.runner import looks, state
from bench.runner.plan import plan as make_plan
from bench.runner.plan import training_plan
from bench.runner.spec import Spec
from bench.runner.worker import WorkerOptions, Workspace, ensure_dataset, run_worker, search_settings

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


@dataclass
class RunResult:
    experiment: str
    n_cells: int
    n_trainings: int
    counts: dict[str, int]
    interrupted: bool
    table: str

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
    storage = open_storage(opts.storage_url, ws.root)

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
    queue = WorkQueue(storage, spec.name, **search_settings(spec))
    queue.recover(store, opts.heartbeat_timeout)
    pending = [cid for cid, st in _states(store, ids).items() if st in ("queued", "running")]
    queue.enqueue(pending)
    counts = _count(_states(store, ids).values())
    with store.session() as s:
        from sqlalchemy import select

        from bench.store.models import Training

        trained = set(s.scalars(select(Training.key).where(Training.key.in_(keys), Training.state == "done")))
    n_cells = len(ids) if spec.design != "optuna" else spec.optuna.trials
    _say(opts, f"{spec.name}: {len(p.configurations)} configurations, {n_cells} cells, {len(keys)} trainings "
               f"({counts.get('done', 0)} cells done, {counts.get('skipped', 0)} skipped, "
               f"{len(keys - trained)} trainings to run)")
    for conf in p.refused:
        _say(opts, f"  skipped {conf.label}: {conf.refused}")
    return Prepared(spec, ws, results_url, store, ids, n_cells, len(keys))


def launch(opts: RunOptions) -> RunResult:
    """Run (or continue, or extend) the experiment of ``opts.spec``."""
    prep = prepare_run(opts)
    spec, ws, store, ids = prep.spec, prep.workspace, prep.store, prep.cell_ids
    todo = spec.design == "optuna" or any(st in ("queued", "running") for st in _states(store, ids).values())
    tracker, parent = _start_parent(opts, ws, spec, store, prep.n_cells, prep.n_trainings) if todo else (None, "")
    interrupted = False
    final: dict[str, int] = {}
    try:
        interrupted = _run_workers(opts, ws, spec, prep.results_url, parent, ids)
    finally:
        if spec.design == "optuna" or looks.is_adaptive(spec):  # cells created trial by trial, look by look
            ids = state.experiment_cells(store, spec.name)
        final = _count(_states(store, ids).values())
        if tracker is not None and parent:
            status = "KILLED" if interrupted else ("FAILED" if final.get("failed") else "FINISHED")
            try:
                tracker.finish_launch(parent, status, final)
            except Exception:  # noqa: BLE001 - MLflow is a mirror
                pass
    table = summary_table(store, spec.name)
    return RunResult(spec.name, prep.n_cells, prep.n_trainings, final, interrupted, table)


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


def _worker_options(opts: RunOptions, ws: Workspace, spec: Spec, results_url: str, parent: str, device: str,
                    threads: int) -> WorkerOptions:
    return WorkerOptions(experiment=spec.name, workspace=ws, results_url=results_url, storage_url=opts.storage_url,
                         tracking_uri=opts.tracking_uri, parent_run_id=parent, device=device, threads=threads,
                         heartbeat_interval=opts.heartbeat_interval, heartbeat_timeout=opts.heartbeat_timeout,
                         stop=opts.stop)


def _threads(opts: RunOptions) -> int:
    if opts.threads is not None:
        return opts.threads
    if opts.workers > 1 and all(d == "cpu" for d in opts.devices):
        import os

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // opts.workers)  # the CPU workers share the cores
    return 0


class _Bar:
    """A tqdm bar over cells; the postfix shows the running cell(s) and their iteration."""

    def __init__(self, opts: RunOptions, store: Any, ids: list[int], ws: Workspace):
        self.store, self.ids, self.ws = store, ids, ws
        self.bar = None
        self.start = {st: n for st, n in _count(_states(store, ids).values()).items()}
        if opts.progress:
            from tqdm import tqdm

            todo = sum(n for st, n in self.start.items() if st in ("queued", "running"))
            self.bar = tqdm(total=todo, desc="cells", unit="cell", file=sys.stderr, dynamic_ncols=True)
        self.finished0 = sum(n for st, n in self.start.items() if st in ("done", "failed", "pruned"))

    def update(self, live: dict[str, Any] | None = None) -> None:
        if self.bar is None:
            return
        counts = _count(_states(self.store, self.ids).values())
        finished = sum(n for st, n in counts.items() if st in ("done", "failed", "pruned")) - self.finished0
        self.bar.n = max(0, min(finished, self.bar.total))
        infos = [live] if live else _read_status(self.ws)
        parts = []
        for info in infos:
            if info.get("state") == "training" and info.get("iteration") is not None:
                parts.append(f"{info.get('cell')} it {info['iteration']}/{info.get('total')}")
            elif info.get("state") in ("evaluating", "waiting for training"):
                parts.append(f"{info.get('cell')} {info['state']}")
        fails = counts.get("failed", 0)
        self.bar.set_postfix_str(("; ".join(parts[:3]) + (f"; {fails} failed" if fails else ""))[:100],
                                 refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.update()
            self.bar.close()


def _read_status(ws: Workspace) -> list[dict[str, Any]]:
    out = []
    for f in sorted(ws.status_dir.glob("*.json")) if ws.status_dir.exists() else []:
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if time.time() - float(info.get("time", 0)) < 120 and info.get("state") != "stopped":
            out.append(info)
    return out


def _run_workers(opts: RunOptions, ws: Workspace, spec: Spec, results_url: str, parent: str,
                 ids: list[int]) -> bool:
    """Run the workers to the end of the queue; returns True when interrupted (Ctrl-C)."""
    from bench.store import open_store

    store = open_store(results_url)
    bar = _Bar(opts, store, ids, ws)
    threads = _threads(opts)
    try:
        if opts.workers <= 1:
            wopts = _worker_options(opts, ws, spec, results_url, parent, opts.devices[0], threads)
            last = [0.0]

            def on_progress(info: dict[str, Any]) -> None:
                now = time.time()
                if now - last[0] > 0.5 or info.get("state") in ("done", "released"):
                    last[0] = now
                    bar.update(info)

            wopts.on_progress = on_progress
            previous = signal.getsignal(signal.SIGINT)

            def _on_sigint(signum: int, frame: Any) -> None:
                if opts.stop.is_set():
                    raise KeyboardInterrupt
                opts.stop.set()
                print("\nbench: stopping after a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, _on_sigint)
            try:
                run_worker(wopts)
            finally:
                if threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGINT, previous)
            return opts.stop.is_set()
        return _run_subprocesses(opts, ws, spec, results_url, parent, threads, bar)
    finally:
        bar.close()


def worker_command(experiment: str, *, results_url: str, storage_url: str | None, tracking_uri: str | None,
                   workspace: Path, device: str, threads: int, parent: str, heartbeat_interval: float,
                   heartbeat_timeout: float) -> list[str]:
    cmd = [sys.executable, "-m", "bench", "worker", experiment, "--results", results_url, "--workspace",
           str(workspace), "--device", device, "--threads", str(threads), "--heartbeat-interval",
           str(heartbeat_interval), "--heartbeat-timeout", str(heartbeat_timeout), "--quiet"]
    if storage_url:
        cmd += ["--storage", storage_url]
    if tracking_uri:
        cmd += ["--tracking", tracking_uri]
    if parent:
        cmd += ["--parent-run", parent]
    return cmd


def _run_subprocesses(opts: RunOptions, ws: Workspace, spec: Spec, results_url: str, parent: str, threads: int,
                      bar: _Bar) -> bool:
    procs = []
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for i in range(opts.workers):
        device = opts.devices[i % len(opts.devices)]
        cmd = worker_command(spec.name, results_url=results_url, storage_url=opts.storage_url,
                             tracking_uri=opts.tracking_uri, workspace=ws.folder, device=device, threads=threads,
                             parent=parent, heartbeat_interval=opts.heartbeat_interval,
                             heartbeat_timeout=opts.heartbeat_timeout)
        procs.append(subprocess.Popen(cmd, env=env))
    interrupted = False
    try:
        while any(pr.poll() is None for pr in procs):
            if opts.stop.wait(1.0):
                interrupted = True
                for pr in procs:
                    if pr.poll() is None:
                        pr.send_signal(signal.SIGINT)
                break
            bar.update()
    except KeyboardInterrupt:
        interrupted = True
        for pr in procs:
            if pr.poll() is None:
                pr.send_signal(signal.SIGINT)
    for pr in procs:
        try:
            pr.wait()
        except KeyboardInterrupt:
            pr.kill()
            pr.wait()
    return interrupted


def summary_table(store: Any, experiment: str) -> str:
    """label, fold, seed, state and the mean test Dice ET/WT/TC of every cell (failed: the reason)."""
    from bench.store import queries as q

    cells = q.cells(store, experiment)
    metrics = q.case_metrics(store, experiment)
    means = metrics.groupby(["cell_id", "region"])["dice"].mean() if len(metrics) else None
    rows: list[tuple[str, ...]] = [("label", "fold", "seed", "state", "Dice ET", "Dice WT", "Dice TC", "note")]
    for c in cells.itertuples():
        vals = []
        for region in ("ET", "WT", "TC"):
            v = means.get((c.cell_id, region)) if means is not None else None
            vals.append("" if v is None else f"{v:.3f}")
        note = (c.error or "")[:60] if c.state in ("failed", "skipped", "pruned") else ""
        rows.append((str(c.label), str(c.fold), str(c.seed), str(c.state), *vals, note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

"""A worker: claims cells, runs them (trains or reuses their trainings, predicts and evaluates the test split),
records everything in the results database, mirrors it to MLflow.

Several workers (processes, machines, Slurm tasks) may serve one experiment. Grid, ladder and list designs
claim their cells straight from the results database (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, see
:func:`bench.runner.state.claim_next_cell`); a search (``design = "optuna"``) takes its trials from the Optuna
queue (:mod:`bench.runner.queue`) and claims each trial's cell the same way. Leases and heartbeats are in
:mod:`bench.runner.lease`, one cell's execution in :mod:`bench.runner.cell`, the workspace and dataset in
:mod:`bench.runner.workspace`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.design import design_class
from bench.runner import looks, state
from bench.runner.cell import (
    CellExecution,
    Interrupted,
    Pruned,
    objective_from_curve,
    reason_of,
)
from bench.runner.lease import Heartbeat, install_stop_signals, relay_stop, worker_identity
from bench.runner.spec import Spec, parse_spec
from bench.runner.workspace import Workspace, ensure_dataset, git_commit, package_versions

__all__ = ["WorkerOptions", "Workspace", "run_worker", "ensure_dataset", "CellOutcome", "objective_from_curve",
           "package_versions", "git_commit", "search_settings", "Worker"]

log = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    experiment: str
    workspace: Workspace
    results_url: str
    storage_url: str | None = None  # None: the workspace journal (search designs only)
    tracking_uri: str | None = None  # None: the workspace MLflow; "none": no MLflow
    parent_run_id: str = ""
    device: str = "cpu"
    threads: int = 0  # torch CPU threads (0: torch's default)
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 60.0
    poll: float = 1.0
    max_cells: int = 0  # stop after this many cells (0: until the queue is empty)
    stop: threading.Event = field(default_factory=threading.Event)
    on_progress: Callable[[dict[str, Any]], None] | None = None
    #: names of the stop signals received (SIGUSR1: a Slurm warning before a time limit or preemption)
    signals: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CellOutcome:
    cell_id: int
    label: str
    fold: int
    seed: int
    state: str  # done | failed | pruned | released | lost
    error: str | None = None


class Worker(CellExecution):
    def __init__(self, opts: WorkerOptions):
        from bench.store import open_store
        from bench.store.queries import experiment_record

        self.opts = opts
        self.store = open_store(opts.results_url)
        self.wid = worker_identity()
        state.register_live(self.wid)
        rec = experiment_record(self.store, opts.experiment)
        self.spec: Spec = parse_spec(rec.spec_toml, f"experiment {opts.experiment} (stored spec)", check_data=False)
        self.mlflow_parent = opts.parent_run_id or (rec.mlflow_parent_run_id or "")
        self.queue: Any = None
        if design_class(self.spec.design).searches:
            from bench.runner.queue import WorkQueue, open_storage

            self.queue = WorkQueue(open_storage(opts.storage_url, opts.workspace.root), opts.experiment,
                                   **search_settings(self.spec))
        self._tracker: Any = None
        self._cell_t0: float | None = None  # when the running cell was claimed: its MLflow run's start
        self._commit = git_commit()
        self._packages = package_versions()
        self.outcomes: list[CellOutcome] = []
        self._status_file = opts.workspace.status_dir / f"{self.wid.replace(':', '_')}.json"

    # ---------------------------------------------------------------------------------------- status

    def _status(self, **info: Any) -> None:
        info = {"worker": self.wid, "device": self.opts.device, "time": time.time(), "pid": os.getpid(), **info}
        if self.opts.on_progress is not None:
            self.opts.on_progress(info)
        try:
            import json

            self._status_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._status_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(info, default=str))
            os.replace(tmp, self._status_file)
        except OSError:
            pass

    def tracker(self) -> Any:
        if self._tracker is None and self.opts.tracking_uri != "none":
            try:
                from bench.runner.tracking import Tracker, default_artifact_root, default_tracking_uri

                uri = self.opts.tracking_uri or default_tracking_uri(self.opts.workspace.folder)
                art = None if self.opts.tracking_uri else default_artifact_root(self.opts.workspace.folder)
                self._tracker = Tracker(uri, self.opts.experiment, art)
            except Exception:  # noqa: BLE001 - MLflow is a mirror: never fail a cell for it
                log.warning("MLflow tracking is unavailable", exc_info=True)
                self.opts.tracking_uri = "none"
        return self._tracker

    # ---------------------------------------------------------------------------------------- the loop

    def run(self) -> list[CellOutcome]:
        """Serve cells until the experiment has none left to run (or ``opts.stop`` is set)."""
        reason = "queue empty"
        try:
            if self.opts.threads:
                import torch

                torch.set_num_threads(self.opts.threads)
            while not self.opts.stop.is_set():
                if self.opts.max_cells and len(self.outcomes) >= self.opts.max_cells:
                    reason = "max cells"
                    break
                claimed = self._claim()
                if claimed is None:
                    if self._on_empty_queue():
                        continue
                    if not self._work_left():
                        break
                    self._status(state="waiting")
                    self.opts.stop.wait(self.opts.poll)
                    continue
                info, trial = claimed
                self.outcomes.append(self._run_cell(info, trial))
            if self.opts.stop.is_set():
                reason = "signal " + ",".join(self.opts.signals) if self.opts.signals else "stopped"
        finally:
            self._status(state="stopped", reason=reason)
            state.register_live(self.wid, False)
        return self.outcomes

    def _on_empty_queue(self) -> bool:
        """The queue is empty: an adaptive design may add cells here (a look, once per look across workers).
        Returns True when new cells were queued (the loop then claims again at once)."""
        return looks.take_look(self.store, self.spec, self.queue, self.wid)

    def _work_left(self) -> bool:
        """Cells may still come: some are queued or held by a live worker (which may die and hand them back),
        or a search has trials left to ask."""
        if self.queue is not None:
            self.queue.recover(self.store, self.opts.heartbeat_timeout)
            return bool(self.queue.active()) or self._search_budget_left()
        return state.open_cells(self.store, self.spec.name) > 0 or looks.pending(self.store, self.spec)

    def _claim(self) -> tuple[state.CellInfo, Any] | None:
        """The next cell this worker now holds, with its Optuna trial (search designs; None otherwise)."""
        if self.queue is None:
            info = state.claim_next_cell(self.store, self.spec.name, self.wid, self.opts.device,
                                         self.opts.heartbeat_timeout)
            return (info, None) if info is not None else None
        while True:
            trial = self.queue.pop()
            if trial is None:
                trial = self._new_search_trial()
            if trial is None:
                return None
            cell_id = trial.user_attrs.get("cell_id")
            if cell_id is None:
                trial = self.queue.study._storage.get_trial(trial._trial_id)  # refreshed attrs
                cell_id = trial.user_attrs.get("cell_id")
            info = state.cell_info(self.store, int(cell_id)) if cell_id is not None else None
            if info is not None and state.claim_cell(self.store, info.cell_id, self.wid, self.opts.device,
                                                     self.opts.heartbeat_timeout):
                return state.cell_info(self.store, info.cell_id) or info, trial
            # Finished, skipped, or held by a live worker (a duplicate trial): close this trial.
            done = info is not None and info.state == "done"
            self.queue.finish(trial, "complete" if done else "fail")

    def _search_budget_left(self) -> bool:
        if self.queue is None:
            return False
        return len([t for t in self.queue.study.get_trials(deepcopy=False)
                    if t.user_attrs.get("search")]) < self.spec.optuna.trials

    def _new_search_trial(self) -> Any | None:
        if not self._search_budget_left():
            return None
        from bench.runner.search import configuration_from_trial

        trial = self.queue.ask()
        self.queue.set_attr(trial, "search", True)
        pc = configuration_from_trial(self.spec, trial)
        cell_ids = state.add_configuration(self.store, self.spec.name, pc, self.spec.folds[:1], self.spec.seeds[:1])
        self.queue.set_attr(trial, "cell_id", cell_ids[0])
        if pc.refused:
            state.skip_cell(self.store, cell_ids[0], pc.refused)
            self.queue.finish(trial, "fail")
            return None
        trial.set_user_attr("cell_id", cell_ids[0])
        return trial

    def _finish_trial(self, trial: Any, outcome: str, value: float | None = None) -> None:
        if trial is not None and self.queue is not None:
            self.queue.finish(trial, outcome, value)

    def _run_cell(self, info: state.CellInfo, trial: Any) -> CellOutcome:
        cell_stop = threading.Event()
        # a beat less often than a third of the timeout would let a live lease look stale
        interval = min(self.opts.heartbeat_interval, self.opts.heartbeat_timeout / 3)
        hb = Heartbeat(self.store, self.wid, info.cell_id, cell_stop, interval)
        hb.start()
        relay = threading.Thread(target=relay_stop, args=(self.opts.stop, cell_stop), daemon=True)
        relay.start()
        t0 = self._cell_t0 = time.time()
        try:
            result = self._execute(info, trial, cell_stop, hb)
        except Interrupted:
            if hb.lost.is_set():
                return self._lost(info)
            # Handed back, not failed: the next holder resumes from the training's last checkpoint.
            state.release_cell(self.store, info.cell_id, self.wid, preempted=True)
            self._finish_trial(trial, "fail")
            self._status(state="released", cell=info.label, cell_id=info.cell_id)
            return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "released")
        except Pruned as exc:
            state.prune_cell(self.store, info.cell_id, self.wid, str(exc))
            self._finish_trial(trial, "pruned")
            return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "pruned", str(exc))
        except Exception as exc:  # noqa: BLE001 - a failed cell is recorded and the run goes on
            if hb.lost.is_set():
                return self._lost(info)
            reason = reason_of(exc)
            log.warning("cell %s (%s fold %s seed %s) failed: %s", info.cell_id, info.label, info.fold, info.seed,
                        reason)
            state.fail_cell(self.store, info.cell_id, self.wid, reason, eval_seconds=None,
                            git_commit=self._commit, packages=self._packages)
            self._finish_trial(trial, "fail")
            self._mlflow_failed(info, reason, t0)
            return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "failed", reason)
        finally:
            hb.close()
            cell_stop.set()
        metrics, fields, keys, objective = result
        if not state.finish_cell(self.store, info.cell_id, self.wid, metrics, keys, objective=objective, **fields):
            return self._lost(info)
        self._finish_trial(trial, "complete", objective)
        self._status(state="done", cell=info.label, cell_id=info.cell_id)
        return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "done")

    def _lost(self, info: state.CellInfo) -> CellOutcome:
        log.warning("cell %s: lease lost to another worker; result discarded", info.cell_id)
        return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "lost")


def search_settings(spec: Spec) -> dict[str, Any]:
    """Sampler and pruner of the queue's study: only a search design has them (grids are only enqueued)."""
    if not design_class(spec.design).searches:
        return {}
    import optuna

    sampler = (optuna.samplers.TPESampler(seed=spec.optuna.seed) if spec.optuna.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=spec.optuna.seed))
    pruner: Any = {"median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
                   "hyperband": optuna.pruners.HyperbandPruner(),
                   "none": optuna.pruners.NopPruner()}[spec.optuna.pruner]
    return {"sampler": sampler, "pruner": pruner}


def run_worker(opts: WorkerOptions, *, handle_signals: bool = False) -> list[CellOutcome]:
    """Serve the experiment's cells until none is left (or ``opts.stop`` is set). With ``handle_signals``,
    SIGINT, SIGTERM and SIGUSR1 set the stop event: the running training checkpoints, its cell goes back to
    the queue (not failed), and the worker returns."""
    if handle_signals:
        install_stop_signals(opts.stop, opts.signals)
    return Worker(opts).run()

"""A worker: pops cells from the queue, trains (or reuses) their trainings, predicts and evaluates the test
split, records everything in the results database, mirrors it to MLflow.

Several workers (processes, machines) may serve one experiment: cells are leased in the results database with a
heartbeat (:mod:`bench.runner.state`); a worker that dies has its cell handed to another one once the heartbeat
is older than ``heartbeat_timeout`` (at once when the dead process was on the same host). Trainings are
locked per training key, so a training is never run twice at once, and cells that need a training another
worker is running wait for it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError, TrainingDiverged
from bench.runner import state
from bench.runner.spec import Spec, parse_spec

__all__ = ["WorkerOptions", "Workspace", "run_worker", "ensure_dataset", "CellOutcome", "objective_from_curve",
           "package_versions", "git_commit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workspace:
    """Where the stores live: ``<folder>/.bench/`` (results.db, optuna.journal, trainings/, cache/, data/,
    mlflow.db, mlartifacts/, workers/)."""

    folder: Path

    @property
    def root(self) -> Path:
        return self.folder / ".bench"

    @property
    def results_url(self) -> str:
        return f"sqlite:///{self.root / 'results.db'}"

    @property
    def trainings(self) -> Path:
        return self.root / "trainings"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def status_dir(self) -> Path:
        return self.root / "workers"


@dataclass
class WorkerOptions:
    experiment: str
    workspace: Workspace
    results_url: str
    storage_url: str | None = None  # None: the workspace journal
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


@dataclass(frozen=True)
class CellOutcome:
    cell_id: int
    label: str
    fold: int
    seed: int
    state: str  # done | failed | pruned | released | lost
    error: str | None = None


class _Interrupted(Exception):
    pass


class _LeaseLost(Exception):
    pass


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("bench", "torch", "numpy", "scipy", "nibabel", "optuna", "mlflow", "sqlalchemy", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    import subprocess

    here = Path(__file__).resolve().parents[2]
    try:
        res = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    commit = res.stdout.strip()
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def objective_from_curve(curve: list[dict[str, Any]], objective: str) -> float | None:
    """The objective from the last validated point of a learning curve (None without validation)."""
    for p in reversed(curve):
        vals = {r: p.get(f"val_dice_{r}") for r in ("ET", "TC", "WT")}
        if all(v is not None for v in vals.values()):
            if objective == "mean_val_dice":
                return float(sum(vals.values()) / 3)  # type: ignore[arg-type]
            return float(vals[objective[-2:].upper()])  # type: ignore[arg-type]
    return None


# ---------------------------------------------------------------------------------------------- data


_DATASETS: dict[tuple[str, str], Any] = {}


def _synthetic_folder(spec: Spec, ws: Workspace) -> Path:
    from bench.data.synth import synthesize

    opts: dict[str, Any] = {"cases": 12, "unlabeled": 0, "shape": [48, 48, 48], "seed": 0, "format": "brats2019"}
    opts.update(spec.data.synthetic)
    tag = json.dumps(opts, sort_keys=True)
    import hashlib

    folder = ws.data / f"synthetic-{hashlib.sha256(tag.encode()).hexdigest()[:10]}"
    done = folder / ".complete"
    if done.exists():
        return folder
    ws.data.mkdir(parents=True, exist_ok=True)
    lock = ws.data / (folder.name + ".lock")
    import fcntl

    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if not done.exists():
            import shutil
            import tempfile

            tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=ws.data))
            synthesize(tmp, cases=int(opts["cases"]), unlabeled=int(opts["unlabeled"]), shape=tuple(opts["shape"]),
                       fmt=str(opts["format"]), seed=int(opts["seed"]))
            (tmp / ".complete").write_text(tag)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
    return folder


def ensure_dataset(spec: Spec, ws: Workspace, *, progress: bool = False) -> Any:
    """Generate (synthetic) and prepare the spec's dataset in the workspace cache; cached per process."""
    from bench.data.prepare import prepare

    source = _synthetic_folder(spec, ws) if spec.data.is_synthetic else Path(spec.data.path).expanduser()
    key = (str(source), json.dumps(dataclasses.asdict(spec.data), sort_keys=True, default=str))
    if key not in _DATASETS:
        _DATASETS[key] = prepare(source, ws.cache, spacing=spec.data.spacing, normalization=spec.data.normalization,
                                 fmt=spec.data.format, folds=spec.data.folds, test_fraction=spec.data.test_fraction,
                                 split_seed=spec.data.split_seed, progress=progress,
                                 test_ids=spec.data.test_ids, splits=spec.data.splits,
                                 options=("data.folds", "data.test_fraction"),
                                 split_names=("data.test_ids", "data.splits"))
    return _DATASETS[key]


def test_cases(spec: Spec, ds: Any) -> list[str]:
    ids = list(ds.test_ids())
    return ids[: spec.data.test_cases] if spec.data.test_cases else ids


# ---------------------------------------------------------------------------------------------- the worker


class _Heartbeat(threading.Thread):
    """Refreshes the cell lease (and the training lock being held); sets ``lost`` and ``stop`` when the lease
    was taken over by another worker."""

    def __init__(self, opts: WorkerOptions, store: Any, wid: str, cell_id: int, stop: threading.Event):
        super().__init__(daemon=True, name=f"heartbeat-{cell_id}")
        self.opts, self.store, self.wid, self.cell_id, self.stop_cell = opts, store, wid, cell_id, stop
        self.training_key: str | None = None
        self.lost = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.opts.heartbeat_interval):
            try:
                if not state.heartbeat_cell(self.store, self.cell_id, self.wid):
                    self.lost.set()
                    self.stop_cell.set()
                    return
                key = self.training_key
                if key:
                    state.heartbeat_training(self.store, key, self.wid)
            except Exception:  # noqa: BLE001 - a database hiccup: try again next beat
                log.warning("heartbeat of cell %s failed", self.cell_id, exc_info=True)

    def close(self) -> None:
        self._done.set()
        self.join(timeout=5)


class Worker:
    def __init__(self, opts: WorkerOptions):
        from bench.store import open_store

        self.opts = opts
        self.store = open_store(opts.results_url)
        self.wid = state.worker_id()
        state.register_live(self.wid)
        from bench.store.queries import experiment_record

        rec = experiment_record(self.store, opts.experiment)
        self.spec = parse_spec(rec.spec_toml, f"experiment {opts.experiment} (stored spec)", check_data=False)
        self.mlflow_parent = opts.parent_run_id or (rec.mlflow_parent_run_id or "")
        from bench.runner.queue import WorkQueue, open_storage

        self.queue = WorkQueue(open_storage(opts.storage_url, opts.workspace.root), opts.experiment,
                               **search_settings(self.spec))
        self._tracker: Any = None
        self._commit = git_commit()
        self._packages = package_versions()
        self.outcomes: list[CellOutcome] = []
        self._status_file = opts.workspace.status_dir / f"{self.wid.replace(':', '_')}.json"

    # ---------------------------------------------------------------------------------------- status

    def _status(self, **info: Any) -> None:
        info = {"worker": self.wid, "device": self.opts.device, "time": time.time(), **info}
        if self.opts.on_progress is not None:
            self.opts.on_progress(info)
        try:
            self._status_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._status_file.with_suffix(".tmp")
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
        try:
            if self.opts.threads:
                import torch

                torch.set_num_threads(self.opts.threads)
            while not self.opts.stop.is_set():
                if self.opts.max_cells and len(self.outcomes) >= self.opts.max_cells:
                    break
                trial = self.queue.pop()
                if trial is None and self.spec.design == "optuna":
                    trial = self._new_search_trial()
                if trial is None:
                    self.queue.recover(self.store, self.opts.heartbeat_timeout)
                    if not self.queue.active() and not self._search_budget_left():
                        break
                    self._status(state="waiting")
                    self.opts.stop.wait(self.opts.poll)
                    continue
                self._serve(trial)
        finally:
            self._status(state="stopped")
            state.register_live(self.wid, False)
        return self.outcomes

    def _search_budget_left(self) -> bool:
        if self.spec.design != "optuna":
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
            with self.store.session() as s:
                from bench.store.models import Cell

                c = s.get(Cell, cell_ids[0])
                if c is not None and c.state == "queued":
                    c.state, c.error = "skipped", pc.refused
            self.queue.finish(trial, "fail")
            return None
        trial.set_user_attr("cell_id", cell_ids[0])
        return trial

    def _serve(self, trial: Any) -> None:
        cell_id = trial.user_attrs.get("cell_id")
        if cell_id is None:
            trial = self.queue.study._storage.get_trial(trial._trial_id)  # refreshed attrs
            cell_id = trial.user_attrs.get("cell_id")
        info = state.cell_info(self.store, int(cell_id)) if cell_id is not None else None
        if info is None or not state.claim_cell(self.store, info.cell_id, self.wid, self.opts.device,
                                                self.opts.heartbeat_timeout):
            # Finished, skipped, or held by a live worker (a duplicate trial): close this trial.
            done = info is not None and info.state == "done"
            self.queue.finish(trial, "complete" if done else "fail")
            return
        outcome = self._run_cell(info, trial)
        self.outcomes.append(outcome)

    def _run_cell(self, info: state.CellInfo, trial: Any) -> CellOutcome:
        cell_stop = threading.Event()
        hb = _Heartbeat(self.opts, self.store, self.wid, info.cell_id, cell_stop)
        hb.start()
        relay = threading.Thread(target=_relay_stop, args=(self.opts.stop, cell_stop, hb), daemon=True)
        relay.start()
        t0 = time.time()
        try:
            result = self._execute(info, trial, cell_stop, hb)
        except _Interrupted:
            if hb.lost.is_set():
                return self._lost(info, trial)
            state.release_cell(self.store, info.cell_id, self.wid)
            self.queue.finish(trial, "fail")
            self._status(state="released", cell=info.label)
            return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "released")
        except _Pruned as exc:
            with self.store.session() as s:
                from bench.store.models import Cell

                c = s.get(Cell, info.cell_id)
                if c is not None and c.worker == self.wid:
                    c.state, c.error, c.finished_at = "pruned", str(exc), state.utcnow()
            self.queue.finish(trial, "pruned")
            return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "pruned", str(exc))
        except Exception as exc:  # noqa: BLE001 - a failed cell is recorded and the run goes on
            if hb.lost.is_set():
                return self._lost(info, trial)
            reason = _reason(exc)
            log.warning("cell %s (%s fold %s seed %s) failed: %s", info.cell_id, info.label, info.fold, info.seed,
                        reason)
            state.fail_cell(self.store, info.cell_id, self.wid, reason, eval_seconds=None,
                            git_commit=self._commit, packages=self._packages)
            self.queue.finish(trial, "fail")
            self._mlflow_failed(info, reason, t0)
            return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "failed", reason)
        finally:
            hb.close()
            cell_stop.set()
        metrics, fields, keys, objective = result
        if not state.finish_cell(self.store, info.cell_id, self.wid, metrics, keys, objective=objective, **fields):
            return self._lost(info, trial)
        self.queue.finish(trial, "complete", objective)
        self._status(state="done", cell=info.label, cell_id=info.cell_id)
        return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "done")

    def _lost(self, info: state.CellInfo, trial: Any) -> CellOutcome:
        log.warning("cell %s: lease lost to another worker; result discarded", info.cell_id)
        return CellOutcome(info.cell_id, info.label, info.fold, info.seed, "lost")

    # ---------------------------------------------------------------------------------------- one cell

    def _execute(self, info: state.CellInfo, trial: Any, stop: threading.Event, hb: _Heartbeat) -> Any:
        from bench.engine.api import predict
        from bench.evaluation.metrics import evaluate_case
        from bench.runner.plan import training_plan
        from tricks import resolve

        spec = self.spec
        ds = ensure_dataset(spec, self.opts.workspace)
        stack = resolve(list(info.tricks), info.params)
        plan = training_plan(spec, _conf_view(info), info.fold, info.seed, ds.fingerprint, ds.n_folds)
        checkpoints: list[str] = []
        train_seconds = 0.0
        own_curve: list[dict[str, Any]] = []
        for i, (fold, key) in enumerate(plan):
            ckpt, seconds, curve = self._ensure_training(info, fold, key, stack, ds, stop, hb,
                                                         trial if i == 0 else None)
            checkpoints.append(ckpt)
            train_seconds += seconds
            if i == 0:
                own_curve = curve
        with self.store.session() as s:
            from bench.store.models import Cell

            c = s.get(Cell, info.cell_id)
            if c is not None:
                c.training_key = plan[0][1]
        t_eval = time.time()
        icfg = stack.inference_config(spec.inference_config(device=self.opts.device))
        metrics: list[dict[str, Any]] = []
        cases = test_cases(spec, ds)
        for n, (case_id, labels) in enumerate(predict(checkpoints, ds, cases, icfg, device=self.opts.device)):
            if stop.is_set():
                raise _Interrupted()
            spacing = ds.meta(case_id).spacing
            per_region = evaluate_case(labels, ds.source_label(case_id), spacing)
            for region, m in per_region.items():
                metrics.append({"case_id": case_id, "region": region, "dice": float(m.dice), "hd95": float(m.hd95),
                                "sensitivity": float(m.sensitivity), "specificity": float(m.specificity),
                                "penalty": bool(m.penalty)})
            self._status(state="evaluating", cell=info.label, cell_id=info.cell_id, case=n + 1, cases=len(cases))
        eval_seconds = time.time() - t_eval
        objective = objective_from_curve(own_curve, spec.objective)
        fields = {"train_seconds": train_seconds, "eval_seconds": eval_seconds, "git_commit": self._commit,
                  "packages": self._packages, "device": self.opts.device}
        fields["mlflow_run_id"] = self._mlflow_done(info, metrics, own_curve, objective, fields) or None
        return metrics, fields, [k for _, k in plan], objective

    def _ensure_training(self, info: state.CellInfo, fold: int, key: str, stack: Any, ds: Any,
                         stop: threading.Event, hb: _Heartbeat, trial: Any) -> tuple[str, float, list]:
        """Reuse or run one training; returns (checkpoint, seconds, curve)."""
        from bench.engine.api import FINAL_CHECKPOINT, TrainingStopped, train

        spec = self.spec
        out_dir = self.opts.workspace.trainings / key
        machine: dict[str, Any] = {"device": self.opts.device}
        if self.opts.threads:
            machine["threads"] = self.opts.threads
            machine["num_workers"] = 0
        tcfg = spec.train_config(fold, info.seed, **machine)
        while True:
            status, row = state.claim_training(self.store, key, fold, info.seed, self.wid,
                                               self.opts.heartbeat_timeout, items=dict(stack.training_items()),
                                               out_dir=str(out_dir), device=self.opts.device)
            if status == "done" and row is not None and row.checkpoint and Path(row.checkpoint).exists():
                curve = _read_curve(out_dir)
                return row.checkpoint, float(row.seconds or 0.0), curve
            if status == "busy":
                self._status(state="waiting for training", cell=info.label, cell_id=info.cell_id, key=key)
                if stop.wait(self.opts.poll):
                    raise _Interrupted()
                continue
            break
        # claimed (or done elsewhere with the checkpoint missing here: train again, deterministic)
        hb.training_key = key
        progress = _progress_fn(self, info, trial, stop, spec)
        try:
            result = train(ds, out_dir, spec.model_config(), tcfg, stack, resume=True, progress=progress, stop=stop)
        except TrainingStopped:
            state.release_training(self.store, key, self.wid)
            if getattr(progress, "pruned", None):
                raise _Pruned(progress.pruned) from None  # type: ignore[attr-defined]
            raise _Interrupted() from None
        except BaseException as exc:
            state.fail_training(self.store, key, self.wid, _reason(exc))
            raise
        finally:
            hb.training_key = None
        ckpt = str(result.checkpoint if result.checkpoint else out_dir / FINAL_CHECKPOINT)
        state.finish_training(self.store, key, self.wid, ckpt, float(result.seconds), int(result.iterations),
                              list(result.curve))
        return ckpt, float(result.seconds), list(result.curve)

    # ---------------------------------------------------------------------------------------- MLflow

    def _mlflow_done(self, info: state.CellInfo, metrics: list[dict[str, Any]], curve: list[dict[str, Any]],
                     objective: float | None, fields: dict[str, Any]) -> str:
        tracker = self.tracker()
        if tracker is None:
            return ""
        try:
            from bench.runner.tracking import cell_params

            final: dict[str, Any] = {}
            for region in ("ET", "TC", "WT"):
                rows = [m for m in metrics if m["region"] == region]
                if rows:
                    final[f"dice_{region.lower()}"] = sum(m["dice"] for m in rows) / len(rows)
                    final[f"hd95_{region.lower()}"] = sum(m["hd95"] for m in rows) / len(rows)
            if objective is not None:
                final["objective"] = objective
            final["train_seconds"] = fields["train_seconds"]
            final["eval_seconds"] = fields["eval_seconds"]
            params = cell_params(self.spec.factors, info.tricks, info.params, self.spec.train, info.fold, info.seed)
            rows_curve = [state_curve_row(p) for p in curve]
            return str(tracker.log_cell(self.mlflow_parent, info.label, params, final, rows_curve,
                                        tags={"cell_id": info.cell_id, "device": self.opts.device},
                                        config={"label": info.label, "tricks": list(info.tricks),
                                                "params": info.params, "model": self.spec.model,
                                                "train": self.spec.train, "inference": self.spec.inference},
                                        case_rows=metrics) or "")
        except Exception:  # noqa: BLE001 - never fail a cell for the mirror
            log.warning("MLflow logging of cell %s failed", info.cell_id, exc_info=True)
            return ""

    def _mlflow_failed(self, info: state.CellInfo, reason: str, t0: float) -> None:
        tracker = self.tracker()
        if tracker is None:
            return
        try:
            from bench.runner.tracking import cell_params

            params = cell_params(self.spec.factors, info.tricks, info.params, self.spec.train, info.fold, info.seed)
            tracker.log_cell(self.mlflow_parent, info.label, params, {}, (), tags={"error": reason[:500]},
                             status="FAILED", start_time=t0, end_time=time.time())
        except Exception:  # noqa: BLE001
            log.debug("MLflow logging of failed cell %s failed", info.cell_id, exc_info=True)


class _Pruned(Exception):
    pass


def state_curve_row(p: dict[str, Any]) -> dict[str, Any]:
    row = {"iteration": p.get("iteration"), "epoch": p.get("epoch")}
    if p.get("loss") is not None:
        row["train_loss"] = p["loss"]
    if p.get("lr") is not None:
        row["lr"] = p["lr"]
    for r in ("ET", "TC", "WT"):
        if p.get(f"val_dice_{r}") is not None:
            row[f"val_dice_{r.lower()}"] = p[f"val_dice_{r}"]
    return row


def _read_curve(out_dir: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((out_dir / "curve.json").read_text())
    except (OSError, ValueError):
        return []
    if isinstance(data, dict):
        data = data.get("curve", [])
    return list(data) if isinstance(data, list) else []


def _conf_view(info: state.CellInfo) -> Any:
    from bench.runner.plan import PlannedConfiguration

    return PlannedConfiguration(info.label, 0, info.tricks, info.toggles, info.params, info.config_hash)


def _relay_stop(global_stop: threading.Event, cell_stop: threading.Event, hb: _Heartbeat) -> None:
    while not cell_stop.is_set():
        if global_stop.wait(0.2):
            cell_stop.set()
            return


def _progress_fn(worker: Worker, info: state.CellInfo, trial: Any, stop: threading.Event, spec: Spec) -> Any:
    search = spec.design == "optuna" and trial is not None and spec.optuna.pruner != "none"

    class Progress:
        pruned: str | None = None

        def __call__(self, p: dict[str, Any]) -> None:
            worker._status(state="training", cell=info.label, cell_id=info.cell_id,
                           iteration=p.get("iteration"), total=p.get("total"), loss=p.get("loss"))
            val = p.get("val")
            if search and isinstance(val, dict):
                got = {r: val.get(r, val.get(r.lower())) for r in ("ET", "TC", "WT")}
                if all(v is not None for v in got.values()):
                    vals = {r: float(v) for r, v in got.items()}  # type: ignore[arg-type]
                    value = (sum(vals.values()) / 3 if spec.objective == "mean_val_dice"
                             else vals[spec.objective[-2:].upper()])
                    step = int(p.get("iteration", 0))
                    trial.report(float(value), step)
                    if trial.should_prune():
                        self.pruned = f"pruned by Optuna at iteration {step} (validation {value:.3f})"
                        stop.set()

    return Progress()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TrainingDiverged):
        return f"TrainingDiverged: {exc}"
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "out of memory" in text.lower() or name == "OutOfMemoryError":
        return f"OutOfMemory: {text}"
    if isinstance(exc, BenchError):
        return f"{name}: {text}"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{name}: {text}{where}"


def search_settings(spec: Spec) -> dict[str, Any]:
    """Sampler and pruner of the queue's study: only a search design has them (grids are only enqueued)."""
    if spec.design != "optuna":
        return {}
    import optuna

    sampler = (optuna.samplers.TPESampler(seed=spec.optuna.seed) if spec.optuna.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=spec.optuna.seed))
    pruner: Any = {"median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
                   "hyperband": optuna.pruners.HyperbandPruner(),
                   "none": optuna.pruners.NopPruner()}[spec.optuna.pruner]
    return {"sampler": sampler, "pruner": pruner}


def run_worker(opts: WorkerOptions, *, handle_signals: bool = False) -> list[CellOutcome]:
    """Serve the experiment's queue until it is empty (or ``opts.stop`` is set). With ``handle_signals``,
    SIGINT/SIGTERM set the stop event: the running training checkpoints and its cell goes back to the queue."""
    if handle_signals:
        def _on_signal(signum: int, frame: Any) -> None:
            opts.stop.set()

        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
    return Worker(opts).run()

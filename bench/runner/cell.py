"""How a cell runs: its trainings reused or trained (one training key at a time, locked in the results
database), the test split predicted and evaluated, and the result mirrored to MLflow.

:class:`CellExecution` is the part of :class:`bench.runner.worker.Worker` that runs one claimed cell; the
worker's loop (claiming, leases, outcomes) is in :mod:`bench.runner.worker`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from bench.design import design_class
from bench.errors import BenchError, TrainingDiverged
from bench.runner import locks, state
from bench.runner.lease import Heartbeat
from bench.runner.spec import Spec
from bench.runner.workspace import engine_of, ensure_dataset, test_cases

__all__ = ["CellExecution", "Interrupted", "Pruned", "objective_from_curve", "state_curve_row", "reason_of"]

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """The cell was stopped (a signal, or its lease was lost) before it finished."""


class Pruned(Exception):
    """An Optuna pruner stopped the cell's training."""


def objective_from_curve(curve: list[dict[str, Any]], objective: str) -> float | None:
    """The objective from the last validated point of a learning curve (None without validation)."""
    for p in reversed(curve):
        vals = {r: p.get(f"val_dice_{r}") for r in ("ET", "TC", "WT")}
        if all(v is not None for v in vals.values()):
            if objective == "mean_val_dice":
                return float(sum(vals.values()) / 3)  # type: ignore[arg-type]
            return float(vals[objective[-2:].upper()])  # type: ignore[arg-type]
    return None


class CellExecution:
    """Runs one claimed cell for a worker (needs ``spec``, ``opts``, ``store``, ``wid``, ``_commit``,
    ``_packages``, ``mlflow_parent``, ``_status()`` and ``tracker()`` from the worker)."""

    spec: Spec
    opts: Any
    store: Any
    wid: str
    mlflow_parent: str
    _commit: str | None
    _packages: dict[str, str]

    def _status(self, **info: Any) -> None:  # pragma: no cover - provided by the worker
        raise NotImplementedError

    def tracker(self) -> Any:  # pragma: no cover - provided by the worker
        raise NotImplementedError

    def _execute(self, info: state.CellInfo, trial: Any, stop: threading.Event, hb: Heartbeat) -> Any:
        from bench.engines import PredictJob
        from bench.evaluation.per_case import case_rows
        from bench.runner.plan import training_plan
        from tricks import resolve

        spec = self.spec
        eng, options = engine_of(spec)
        ds = ensure_dataset(spec, self.opts.workspace)
        stack = resolve(list(info.tricks), info.params)
        eng.check_stack(stack)
        plan = training_plan(spec, _conf_view(info), info.fold, info.seed, ds.fingerprint, ds.n_folds)
        checkpoints: list[str] = []
        train_seconds = 0.0
        own_curve: list[dict[str, Any]] = []
        for i, (fold, key) in enumerate(plan):
            ckpt, seconds, curve = self._ensure_training(eng, options, info, fold, key, stack, ds, stop, hb,
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
        pjob = PredictJob(stack, inference=dict(spec.inference), options=options, device=self.opts.device)
        metrics: list[dict[str, Any]] = []
        cases = test_cases(spec, ds)
        for n, (case_id, labels) in enumerate(eng.predict([Path(c) for c in checkpoints], ds, cases, pjob)):
            if stop.is_set():
                raise Interrupted()
            spacing = ds.meta(case_id).spacing
            reference = ds.source_label(case_id)
            metrics.extend(case_rows(case_id, labels, reference, spacing, lesionwise=spec.evaluation.lesionwise,
                                     rules=spec.evaluation.rules, cohort=spec.evaluation.cohort))
            self._status(state="evaluating", cell=info.label, cell_id=info.cell_id, case=n + 1, cases=len(cases))
        eval_seconds = time.time() - t_eval
        objective = objective_from_curve(own_curve, spec.objective)
        fields = {"train_seconds": train_seconds, "eval_seconds": eval_seconds, "git_commit": self._commit,
                  "packages": self._packages, "device": self.opts.device}
        fields["mlflow_run_id"] = self._mlflow_done(info, metrics, own_curve, objective, fields) or None
        return metrics, fields, [k for _, k in plan], objective

    def _ensure_training(self, eng: Any, options: dict[str, Any], info: state.CellInfo, fold: int, key: str,
                         stack: Any, ds: Any, stop: threading.Event, hb: Heartbeat,
                         trial: Any) -> tuple[str, float, list]:
        """Reuse or run one training through the engine; returns (checkpoint, seconds, curve)."""
        from bench.engine.api import TrainingStopped
        from bench.runner.plan import train_job

        spec = self.spec
        out_dir = self.opts.workspace.trainings / key
        machine: dict[str, Any] = {"device": self.opts.device}
        if self.opts.threads:
            machine["threads"] = self.opts.threads
            machine["num_workers"] = 0
        job = train_job(spec, stack, fold, info.seed, options, machine)
        while True:
            status, row = locks.claim_training(self.store, key, fold, info.seed, self.wid,
                                               self.opts.heartbeat_timeout, items=dict(stack.training_items()),
                                               out_dir=str(out_dir), device=self.opts.device)
            if status == "done" and row is not None and row.checkpoint and Path(row.checkpoint).exists():
                curve = _read_curve(out_dir)
                return row.checkpoint, float(row.seconds or 0.0), curve
            if status == "busy":
                self._status(state="waiting for training", cell=info.label, cell_id=info.cell_id, key=key)
                if stop.wait(self.opts.poll):
                    raise Interrupted()
                continue
            break
        # claimed (or done elsewhere with the checkpoint missing here: train again, deterministic)
        hb.training_key = key
        resume_from = eng.resume_point(out_dir)
        if resume_from is not None:
            # said on purpose: a handed-over cell must continue, never retrain from scratch
            log.warning("cell %s: training %s resumes from its checkpoint %s", info.cell_id, key[:12], resume_from)
        progress = _progress_fn(self, info, trial, stop, spec)
        try:
            result = eng.train(ds, out_dir, job, resume=True, progress=progress, stop=stop)
        except TrainingStopped:
            locks.release_training(self.store, key, self.wid)
            if getattr(progress, "pruned", None):
                raise Pruned(progress.pruned) from None  # type: ignore[attr-defined]
            raise Interrupted() from None
        except BaseException as exc:
            locks.fail_training(self.store, key, self.wid, reason_of(exc))
            raise
        finally:
            hb.training_key = None
        ckpt = str(result.checkpoint)
        locks.finish_training(self.store, key, self.wid, ckpt, float(result.seconds), int(result.iterations),
                              list(result.curve))
        return ckpt, float(result.seconds), list(result.curve)

    # ---------------------------------------------------------------------------------------- MLflow

    def _mlflow_done(self, info: state.CellInfo, metrics: list[dict[str, Any]], curve: list[dict[str, Any]],
                     objective: float | None, fields: dict[str, Any]) -> str:
        tracker = self.tracker()
        if tracker is None:
            return ""
        try:
            from bench.runner.tracking import cell_params, lesion_means

            final: dict[str, Any] = {}
            for region in ("ET", "TC", "WT"):
                rows = [m for m in metrics if m["region"] == region]
                if rows:
                    final[f"dice_{region.lower()}"] = sum(m["dice"] for m in rows) / len(rows)
                    final[f"hd95_{region.lower()}"] = sum(m["hd95"] for m in rows) / len(rows)
            from bench.evaluation.per_case import rule_means

            final.update({**lesion_means(metrics), **rule_means(metrics)})
            if objective is not None:
                final["objective"] = objective
            final["train_seconds"] = fields["train_seconds"]
            final["eval_seconds"] = fields["eval_seconds"]
            params = cell_params(self.spec.factors, info.tricks, info.params, self.spec.train, info.fold, info.seed)
            rows_curve = [state_curve_row(p) for p in curve]
            return str(tracker.log_cell(self.mlflow_parent, info.label, params, final, rows_curve,
                                        tags={"cell_id": info.cell_id, "device": self.opts.device,
                                              "worker": self.wid},
                                        config={"label": info.label, "tricks": list(info.tricks),
                                                "params": info.params, "model": self.spec.model,
                                                "train": self.spec.train, "inference": self.spec.inference},
                                        case_rows=metrics, start_time=getattr(self, "_cell_t0", None),
                                        end_time=time.time()) or "")
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
            tracker.log_cell(self.mlflow_parent, info.label, params, {}, (),
                             tags={"error": reason[:500], "worker": self.wid}, status="FAILED", start_time=t0,
                             end_time=time.time())
        except Exception:  # noqa: BLE001
            log.debug("MLflow logging of failed cell %s failed", info.cell_id, exc_info=True)


def state_curve_row(p: dict[str, Any]) -> dict[str, Any]:
    row = {"iteration": p.get("iteration"), "epoch": p.get("epoch")}
    if p.get("loss") is not None:
        row["train_loss"] = p["loss"]
    if p.get("lr") is not None:
        row["lr"] = p["lr"]
    for r in ("ET", "TC", "WT"):
        if p.get(f"val_dice_{r}") is not None:
            row[f"val_dice_{r.lower()}"] = p[f"val_dice_{r}"]
    for k, v in p.items():  # an engine's own curve values (nnunet: val_loss, per-class pseudo-Dice)
        if (k == "val_loss" or k.startswith("val_dice_class_")) and v is not None:
            row[k.lower()] = v
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


def _progress_fn(worker: Any, info: state.CellInfo, trial: Any, stop: threading.Event, spec: Spec) -> Any:
    search = design_class(spec.design).searches and trial is not None and spec.optuna.pruner != "none"

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


def reason_of(exc: BaseException) -> str:
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

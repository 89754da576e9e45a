"""Read-only query helpers over the results database, returning pandas DataFrames.

Reports and ``bench status`` read the database only through these. Every function takes ``url``: a
SQLAlchemy URL, a SQLite path, an :class:`~sqlalchemy.Engine` or an opened
:class:`~bench.store.session.ResultsStore`. An unknown experiment raises :class:`bench.errors.StoreError`
naming it and listing the known ones.

Row order is always the design order: configuration ``position``, then fold, then seed (then case, region).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select

from bench.errors import StoreError
from bench.store.models import (
    CaseMetric,
    CaseValue,
    Cell,
    CellTraining,
    Configuration,
    CurvePoint,
    Experiment,
    Training,
)
from bench.store.session import ResultsStore, open_store

__all__ = [
    "ExperimentRecord",
    "experiments",
    "experiment_record",
    "configurations",
    "cells",
    "case_metrics",
    "case_values",
    "curves",
    "trainings",
    "REGIONS",
]

REGIONS = ("ET", "TC", "WT")

UrlLike = str | os.PathLike[str] | Engine | ResultsStore

_CELL_COLUMNS = [
    "cell_id", "configuration_id", "label", "position", "fold", "seed", "state", "device", "training_key",
    "train_seconds", "eval_seconds", "objective", "started_at", "finished_at", "error", "git_commit", "packages",
    "mlflow_run_id", "worker", "attempts", "stage", "preemptions",
]
_METRIC_COLUMNS = [
    "cell_id", "configuration_id", "label", "position", "fold", "seed", "case_id", "region", "dice", "hd95",
    "sensitivity", "specificity", "penalty", "stage",
]
LESION_COLUMNS = ["lesion_dice", "lesion_hd95", "legacy_dice", "legacy_hd95", "num_tp", "num_fp", "num_fn"]
_CURVE_COLUMNS = [
    "cell_id", "label", "position", "fold", "seed", "training_key", "epoch", "iteration", "train_loss", "lr",
    "val_dice_et", "val_dice_tc", "val_dice_wt",
]


@dataclass(frozen=True)
class ExperimentRecord:
    """What the reproducibility appendix and the MLflow links need about one experiment."""

    name: str
    design: str
    spec_toml: str
    factors: list[str]
    baseline_label: str | None
    objective: str
    mlflow_experiment_id: str | None
    mlflow_parent_run_id: str | None
    created_at: dt.datetime
    labels: list[str] = field(default_factory=list)


def _store(url: UrlLike) -> ResultsStore:
    return open_store(url)


def _experiment_id(store: ResultsStore, name: str) -> int:
    with store.session() as s:
        eid = s.scalar(select(Experiment.id).where(Experiment.name == name))
        if eid is None:
            known = list(s.scalars(select(Experiment.name).order_by(Experiment.name)))
            raise StoreError(
                f"experiment {name!r} is not in the results database {store.url} "
                f"(known: {', '.join(known) if known else 'none; run `bench run` first'})"
            )
        return int(eid)


def experiments(url: UrlLike) -> pd.DataFrame:
    """One row per experiment: name, design, created_at, n_configurations, n_cells and n_<state> counts."""
    store = _store(url)
    states = ("queued", "running", "done", "failed", "skipped", "pruned")
    with store.session() as s:
        exps = s.execute(
            select(Experiment.id, Experiment.name, Experiment.design, Experiment.created_at,
                   Experiment.baseline_label).order_by(Experiment.created_at, Experiment.id)
        ).all()
        counts: dict[tuple[int, str], int] = {
            (eid, st): int(n)
            for eid, st, n in s.execute(
                select(Cell.experiment_id, Cell.state, func.count()).group_by(Cell.experiment_id, Cell.state)
            ).all()
        }
        nconf: dict[int, int] = {
            eid: int(n)
            for eid, n in s.execute(
                select(Configuration.experiment_id, func.count()).group_by(Configuration.experiment_id)
            ).all()
        }
    rows = []
    for eid, name, design, created, baseline in exps:
        row: dict[str, Any] = {
            "name": name, "design": design, "created_at": created, "baseline_label": baseline,
            "n_configurations": nconf.get(eid, 0),
            "n_cells": sum(counts.get((eid, st), 0) for st in states),
        }
        for st in states:
            row[f"n_{st}"] = counts.get((eid, st), 0)
        rows.append(row)
    columns = ["name", "design", "created_at", "baseline_label", "n_configurations", "n_cells"] + [
        f"n_{st}" for st in states
    ]
    return pd.DataFrame(rows, columns=columns)


def experiment_record(url: UrlLike, experiment: str) -> ExperimentRecord:
    """The stored spec text, design, factors, baseline label, objective and MLflow ids of one experiment."""
    store = _store(url)
    eid = _experiment_id(store, experiment)
    with store.session() as s:
        e = s.get(Experiment, eid)
        assert e is not None
        labels = list(
            s.scalars(select(Configuration.label).where(Configuration.experiment_id == eid)
                      .order_by(Configuration.position))
        )
        return ExperimentRecord(
            name=e.name, design=e.design, spec_toml=e.spec_toml, factors=list(e.factors or []),
            baseline_label=e.baseline_label, objective=e.objective,
            mlflow_experiment_id=e.mlflow_experiment_id, mlflow_parent_run_id=e.mlflow_parent_run_id,
            created_at=e.created_at, labels=labels,
        )


def configurations(url: UrlLike, experiment: str) -> pd.DataFrame:
    """One row per configuration in design order: configuration_id, label, position, config_hash, tricks
    (list of enabled trick names), toggles (factor -> 0/1), params (trick -> {param: value}), refused (reason
    the registry refused the combination, else None)."""
    store = _store(url)
    eid = _experiment_id(store, experiment)
    with store.session() as s:
        rows = [
            {
                "configuration_id": c.id, "label": c.label, "position": c.position, "config_hash": c.config_hash,
                "tricks": list(c.tricks or []), "toggles": dict(c.toggles or {}), "params": dict(c.params or {}),
                "refused": c.refused,
            }
            for c in s.scalars(
                select(Configuration).where(Configuration.experiment_id == eid).order_by(Configuration.position)
            )
        ]
    return pd.DataFrame(rows, columns=["configuration_id", "label", "position", "config_hash", "tricks",
                                       "toggles", "params", "refused"])


def cells(url: UrlLike, experiment: str) -> pd.DataFrame:
    """One row per cell (configuration x fold x seed) with its state, timings, error and provenance.

    ``train_seconds`` is the wall time of the trainings the cell used, shared ones included (a training shared
    by cells that differ only in inference tricks appears in each of them); for compute cost count each
    training once with :func:`trainings`. ``training_key`` is the cell's own fold training (its curve)."""
    store = _store(url)
    eid = _experiment_id(store, experiment)
    with store.session() as s:
        result = s.execute(
            select(Cell, Configuration.label, Configuration.position)
            .join(Configuration, Cell.configuration_id == Configuration.id)
            .where(Cell.experiment_id == eid)
            .order_by(Configuration.position, Cell.fold, Cell.seed)
        ).all()
        rows = [
            {
                "cell_id": c.id, "configuration_id": c.configuration_id, "label": label, "position": pos,
                "fold": c.fold, "seed": c.seed, "state": c.state, "device": c.device,
                "training_key": c.training_key, "train_seconds": c.train_seconds, "eval_seconds": c.eval_seconds,
                "objective": c.objective, "started_at": c.started_at, "finished_at": c.finished_at,
                "error": c.error, "git_commit": c.git_commit, "packages": dict(c.packages or {}),
                "mlflow_run_id": c.mlflow_run_id, "worker": c.worker, "attempts": c.attempts,
                "stage": c.stage,
                "preemptions": c.preemptions,
            }
            for c, label, pos in result
        ]
    return pd.DataFrame(rows, columns=_CELL_COLUMNS)


def case_metrics(url: UrlLike, experiment: str, *, only_done: bool = True) -> pd.DataFrame:
    """One row per (cell, test case, region): dice, hd95 (mm), sensitivity, specificity, penalty (bool:
    HD95 took the 373.13 penalty), then the BraTS 2023 lesion-wise columns ``LESION_COLUMNS`` (NaN unless
    the spec sets ``[evaluation] lesionwise``). By default only cells in state ``done`` are included."""
    store = _store(url)
    eid = _experiment_id(store, experiment)
    stmt = (
        select(CaseMetric.cell_id, Cell.configuration_id, Configuration.label, Configuration.position, Cell.fold,
               Cell.seed, CaseMetric.case_id, CaseMetric.region, CaseMetric.dice, CaseMetric.hd95,
               CaseMetric.sensitivity, CaseMetric.specificity, CaseMetric.penalty, Cell.stage,
               *(getattr(CaseMetric, c) for c in LESION_COLUMNS))
        .join(Cell, CaseMetric.cell_id == Cell.id)
        .join(Configuration, Cell.configuration_id == Configuration.id)
        .where(Cell.experiment_id == eid)
        .order_by(Configuration.position, Cell.fold, Cell.seed, CaseMetric.case_id, CaseMetric.region)
    )
    if only_done:
        stmt = stmt.where(Cell.state == "done")
    with store.session() as s:
        rows = [tuple(r) for r in s.execute(stmt).all()]
    df = pd.DataFrame(rows, columns=_METRIC_COLUMNS + LESION_COLUMNS)
    df["penalty"] = df["penalty"].astype(bool)
    for col in ("dice", "hd95", "sensitivity", "specificity", *LESION_COLUMNS):
        df[col] = df[col].astype(float)  # counts too: NaN where not evaluated
    return df


def case_values(url: UrlLike, experiment: str, *, only_done: bool = True) -> pd.DataFrame:
    """One row per (cell, test case, region, metric) of the values by a later year's rules (spec ``[evaluation]
    rules``): cell_id, configuration_id, label, position, fold, seed, case_id, rules, cohort, region, metric,
    value (NaN where the official code leaves the value empty). Empty for experiments without them."""
    store = _store(url)
    eid = _experiment_id(store, experiment)
    stmt = (
        select(CaseValue.cell_id, Cell.configuration_id, Configuration.label, Configuration.position, Cell.fold,
               Cell.seed, CaseValue.case_id, CaseValue.rules, CaseValue.cohort, CaseValue.region,
               CaseValue.metric, CaseValue.value)
        .join(Cell, CaseValue.cell_id == Cell.id)
        .join(Configuration, Cell.configuration_id == Configuration.id)
        .where(Cell.experiment_id == eid)
        .order_by(Configuration.position, Cell.fold, Cell.seed, CaseValue.case_id, CaseValue.region,
                  CaseValue.metric)
    )
    if only_done:
        stmt = stmt.where(Cell.state == "done")
    with store.session() as s:
        rows = [tuple(r) for r in s.execute(stmt).all()]
    df = pd.DataFrame(rows, columns=["cell_id", "configuration_id", "label", "position", "fold", "seed",
                                     "case_id", "rules", "cohort", "region", "metric", "value"])
    df["value"] = df["value"].astype(float)
    return df


def curves(url: UrlLike, experiment: str) -> pd.DataFrame:
    """Learning-curve points of each cell's own training: epoch, iteration, train_loss, lr and validation
    Dice per region (NaN where the point has no validation)."""
    store = _store(url)
    eid = _experiment_id(store, experiment)
    stmt = (
        select(Cell.id, Configuration.label, Configuration.position, Cell.fold, Cell.seed, Cell.training_key,
               CurvePoint.epoch, CurvePoint.iteration, CurvePoint.train_loss, CurvePoint.lr,
               CurvePoint.val_dice_et, CurvePoint.val_dice_tc, CurvePoint.val_dice_wt)
        .join(Configuration, Cell.configuration_id == Configuration.id)
        .join(CurvePoint, CurvePoint.training_key == Cell.training_key)
        .where(Cell.experiment_id == eid)
        .order_by(Configuration.position, Cell.fold, Cell.seed, CurvePoint.iteration)
    )
    with store.session() as s:
        rows = [tuple(r) for r in s.execute(stmt).all()]
    df = pd.DataFrame(rows, columns=_CURVE_COLUMNS)
    for col in ("train_loss", "lr", "val_dice_et", "val_dice_tc", "val_dice_wt"):
        df[col] = df[col].astype(float)
    return df


def trainings(url: UrlLike, experiment: str) -> pd.DataFrame:
    """One row per training an experiment's cells used: training_key, fold, seed, state, seconds, iterations,
    device, checkpoint, and ``cells`` (the ids of the cells that used it). Sum ``seconds`` here for the
    compute an experiment cost: each training counts once however many cells share it."""
    store = _store(url)
    eid = _experiment_id(store, experiment)
    with store.session() as s:
        pairs = s.execute(
            select(CellTraining.training_key, CellTraining.cell_id)
            .join(Cell, CellTraining.cell_id == Cell.id).where(Cell.experiment_id == eid)
        ).all()
        users: dict[str, list[int]] = {}
        for key, cid in pairs:
            users.setdefault(key, []).append(int(cid))
        rows = [
            {"training_key": t.key, "fold": t.fold, "seed": t.seed, "state": t.state, "seconds": t.seconds,
             "iterations": t.iterations, "device": t.device, "checkpoint": t.checkpoint,
             "cells": sorted(users.get(t.key, []))}
            for t in s.scalars(select(Training).where(Training.key.in_(list(users))).order_by(Training.key))
        ]
    return pd.DataFrame(rows, columns=["training_key", "fold", "seed", "state", "seconds", "iterations", "device",
                                       "checkpoint", "cells"])

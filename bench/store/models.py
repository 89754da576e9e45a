"""The results database: typed SQLAlchemy 2 ORM models.

One row per experiment (a spec), per configuration (a set of trick toggles and parameters), per cell
(configuration x fold x seed: the unit of work), per training (identified by its training key: cells that
differ only in inference-phase tricks share one), per case metric (case x region) and per learning-curve point.

The schema is created and upgraded by the migrations in ``bench/store/migrations`` (see
:func:`bench.store.session.open_store`); these classes must stay in step with the latest migration (a test
compares them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "CaseValue",
    "Experiment",
    "Configuration",
    "Cell",
    "Launch",
    "Training",
    "CellTraining",
    "CaseMetric",
    "CurvePoint",
    "Look",
    "CELL_STATES",
    "TRAINING_STATES",
    "utcnow",
]

#: queued: waiting for a worker; running: a worker holds it (heartbeat_at is fresh); done: metrics stored;
#: failed: error holds the reason; skipped: the trick registry refused the combination (reason in error);
#: pruned: an Optuna search stopped the trial early (reason in error; search designs only).
CELL_STATES = ("queued", "running", "done", "failed", "skipped", "pruned")
TRAINING_STATES = ("running", "done", "failed")


def utcnow() -> dt.datetime:
    """Timezone-aware current time in UTC (stored naive-UTC by SQLite, with zone by PostgreSQL)."""
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        dt.datetime: DateTime(timezone=True),
    }


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    design: Mapped[str] = mapped_column(String(20))
    spec_toml: Mapped[str] = mapped_column(Text)
    spec_hash: Mapped[str] = mapped_column(String(64))
    factors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    baseline_label: Mapped[str | None] = mapped_column(String(300), nullable=True)
    objective: Mapped[str] = mapped_column(String(100), default="mean_val_dice")
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    mlflow_parent_run_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    configurations: Mapped[list[Configuration]] = relationship(
        back_populates="experiment", cascade="all, delete-orphan", order_by="Configuration.position"
    )
    cells: Mapped[list[Cell]] = relationship(back_populates="experiment", cascade="all, delete-orphan")


class Configuration(Base):
    __tablename__ = "configurations"
    __table_args__ = (UniqueConstraint("experiment_id", "config_hash", name="uq_configurations_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(300))
    position: Mapped[int] = mapped_column(Integer)
    config_hash: Mapped[str] = mapped_column(String(64))
    #: enabled trick names in stack order (factors switched on plus fixed tricks)
    tricks: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: factor -> 0/1 for every factor of the design
    toggles: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: trick -> {param: value} for the enabled tricks (resolved: defaults filled in)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: reason the registry refused this combination (its cells are stored as skipped); None when valid
    refused: Mapped[str | None] = mapped_column(Text, nullable=True)

    experiment: Mapped[Experiment] = relationship(back_populates="configurations")
    cells: Mapped[list[Cell]] = relationship(back_populates="configuration")


class Cell(Base):
    __tablename__ = "cells"
    __table_args__ = (
        UniqueConstraint("configuration_id", "fold", "seed", name="uq_cells_config_fold_seed"),
        Index("ix_cells_experiment_state", "experiment_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id", ondelete="CASCADE"), index=True)
    fold: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    device: Mapped[str | None] = mapped_column(String(50), nullable=True)
    #: training key of this cell's own fold (the learning curve shown for the cell)
    training_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    train_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    eval_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: objective value (mean validation Dice unless the spec says otherwise)
    objective: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    packages: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: lease: which worker holds the cell and when it last said so
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: the part of the design the cell belongs to ("main", "foldover", "look-2"...): bench.design.CellRequest
    stage: Mapped[str] = mapped_column(String(40), default="main", server_default="main")
    #: attempts that ended by a hand-back on a signal (preemption, time limit, Ctrl-C): not failures
    preemptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    experiment: Mapped[Experiment] = relationship(back_populates="cells")
    configuration: Mapped[Configuration] = relationship(back_populates="cells")
    metrics: Mapped[list[CaseMetric]] = relationship(back_populates="cell", cascade="all, delete-orphan")
    values: Mapped[list[CaseValue]] = relationship(back_populates="cell", cascade="all, delete-orphan")


class Training(Base):
    """One training run, shared by every cell whose training key matches."""

    __tablename__ = "trainings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    fold: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="running")
    out_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    iterations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    items: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    device: Mapped[str | None] = mapped_column(String(50), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: lock: the worker training it now and its last heartbeat
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    curve: Mapped[list[CurvePoint]] = relationship(
        back_populates="training", cascade="all, delete-orphan", order_by="CurvePoint.iteration"
    )


class CellTraining(Base):
    """Every training a cell's prediction used (model fusion uses the k fold trainings)."""

    __tablename__ = "cell_trainings"

    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id", ondelete="CASCADE"), primary_key=True)
    training_key: Mapped[str] = mapped_column(ForeignKey("trainings.key", ondelete="CASCADE"), primary_key=True)


class CaseMetric(Base):
    __tablename__ = "case_metrics"
    __table_args__ = (UniqueConstraint("cell_id", "case_id", "region", name="uq_case_metrics_cell_case_region"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(10))
    dice: Mapped[float] = mapped_column(Float)
    hd95: Mapped[float] = mapped_column(Float)
    sensitivity: Mapped[float] = mapped_column(Float)
    specificity: Mapped[float] = mapped_column(Float)
    #: True when HD95 took the 373.13 penalty (exactly one of prediction and reference empty)
    penalty: Mapped[bool] = mapped_column(Boolean, default=False)
    #: BraTS 2023 lesion-wise values (spec ``[evaluation] lesionwise``); NULL when not evaluated
    lesion_dice: Mapped[float | None] = mapped_column(Float, nullable=True)
    lesion_hd95: Mapped[float | None] = mapped_column(Float, nullable=True)
    legacy_dice: Mapped[float | None] = mapped_column(Float, nullable=True)
    legacy_hd95: Mapped[float | None] = mapped_column(Float, nullable=True)
    num_tp: Mapped[int | None] = mapped_column(Integer, nullable=True)
    num_fp: Mapped[int | None] = mapped_column(Integer, nullable=True)
    num_fn: Mapped[int | None] = mapped_column(Integer, nullable=True)

    cell: Mapped[Cell] = relationship(back_populates="metrics")


class CaseValue(Base):
    """One value of one test case by a later year's rules (spec ``[evaluation] rules``, e.g. 2025's
    ``lesionwise_dsc_mean`` of region ``ET``); NULL stands for the official code's empty (NaN) value."""

    __tablename__ = "case_values"
    __table_args__ = (UniqueConstraint("cell_id", "case_id", "rules", "region", "metric",
                                       name="uq_case_values_cell_case_rules_region_metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[str] = mapped_column(String(200))
    rules: Mapped[str] = mapped_column(String(8))
    cohort: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(10))
    metric: Mapped[str] = mapped_column(String(40))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)

    cell: Mapped[Cell] = relationship(back_populates="values")


class CurvePoint(Base):
    __tablename__ = "curve_points"
    __table_args__ = (UniqueConstraint("training_key", "iteration", name="uq_curve_points_key_iteration"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    training_key: Mapped[str] = mapped_column(ForeignKey("trainings.key", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    iteration: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_dice_et: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_dice_tc: Mapped[float | None] = mapped_column(Float, nullable=True)
    val_dice_wt: Mapped[float | None] = mapped_column(Float, nullable=True)

    training: Mapped[Training] = relationship(back_populates="curve")


class Look(Base):
    """A look of an adaptive design: the cells it registered (``[[cell_id, stage], ...]``; look 0: the initial
    cells), the decisions it saw, and whether the design said it was complete. The unique (experiment, look)
    row is inserted in the transaction that registers the cells: a look happens once."""

    __tablename__ = "looks"
    __table_args__ = (UniqueConstraint("experiment_id", "look", name="uq_looks_experiment_look"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    look: Mapped[int] = mapped_column(Integer)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    cells: Mapped[list[Any]] = mapped_column(JSON, default=list)
    decisions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Launch(Base):
    """One launch of an experiment's workers: local processes or a Slurm job array (``job_ids``: the array and
    any task resubmitted after it died), with the restarts and their reasons (``events``)."""

    __tablename__ = "launches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    launcher: Mapped[str] = mapped_column(String(20))
    job_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    workers: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="running")
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    #: ``[{"time": iso, "text": ...}]``: submissions, restarts (with the reason), cancellation
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

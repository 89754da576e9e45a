"""Initial schema: experiments, configurations, cells, trainings, cell_trainings, case_metrics, curve_points.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("design", sa.String(20), nullable=False),
        sa.Column("spec_toml", sa.Text(), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("factors", sa.JSON(), nullable=False),
        sa.Column("baseline_label", sa.String(300), nullable=True),
        sa.Column("objective", sa.String(100), nullable=False),
        sa.Column("mlflow_experiment_id", sa.String(100), nullable=True),
        sa.Column("mlflow_parent_run_id", sa.String(100), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "configurations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("label", sa.String(300), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("tricks", sa.JSON(), nullable=False),
        sa.Column("toggles", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("refused", sa.Text(), nullable=True),
        sa.UniqueConstraint("experiment_id", "config_hash", name="uq_configurations_hash"),
    )
    op.create_index("ix_configurations_experiment_id", "configurations", ["experiment_id"])
    op.create_table(
        "cells",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("configuration_id", sa.Integer(), sa.ForeignKey("configurations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("fold", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("device", sa.String(50), nullable=True),
        sa.Column("training_key", sa.String(64), nullable=True),
        sa.Column("train_seconds", sa.Float(), nullable=True),
        sa.Column("eval_seconds", sa.Float(), nullable=True),
        sa.Column("objective", sa.Float(), nullable=True),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("mlflow_run_id", sa.String(100), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", _TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.UniqueConstraint("configuration_id", "fold", "seed", name="uq_cells_config_fold_seed"),
    )
    op.create_index("ix_cells_configuration_id", "cells", ["configuration_id"])
    op.create_index("ix_cells_experiment_state", "cells", ["experiment_id", "state"])
    op.create_table(
        "trainings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("fold", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("out_dir", sa.Text(), nullable=True),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("iterations", sa.Integer(), nullable=True),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("device", sa.String(50), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
    )
    op.create_table(
        "cell_trainings",
        sa.Column("cell_id", sa.Integer(), sa.ForeignKey("cells.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("training_key", sa.String(64), sa.ForeignKey("trainings.key", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_table(
        "case_metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cell_id", sa.Integer(), sa.ForeignKey("cells.id", ondelete="CASCADE"), nullable=False),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("dice", sa.Float(), nullable=False),
        sa.Column("hd95", sa.Float(), nullable=False),
        sa.Column("sensitivity", sa.Float(), nullable=False),
        sa.Column("specificity", sa.Float(), nullable=False),
        sa.Column("penalty", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("cell_id", "case_id", "region", name="uq_case_metrics_cell_case_region"),
    )
    op.create_index("ix_case_metrics_cell_id", "case_metrics", ["cell_id"])
    op.create_table(
        "curve_points",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("training_key", sa.String(64), sa.ForeignKey("trainings.key", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.Column("lr", sa.Float(), nullable=True),
        sa.Column("val_dice_et", sa.Float(), nullable=True),
        sa.Column("val_dice_tc", sa.Float(), nullable=True),
        sa.Column("val_dice_wt", sa.Float(), nullable=True),
        sa.UniqueConstraint("training_key", "iteration", name="uq_curve_points_key_iteration"),
    )
    op.create_index("ix_curve_points_training_key", "curve_points", ["training_key"])


def downgrade() -> None:
    for table in ("curve_points", "case_metrics", "cell_trainings", "trainings", "cells", "configurations",
                  "experiments"):
        op.drop_table(table)

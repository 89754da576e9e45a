"""Looks of adaptive designs: one row per (experiment, look), inserted in the transaction that registers the
look's cells, so a look happens exactly once however many workers reach it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "looks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("look", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("cells", sa.JSON(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("experiment_id", "look", name="uq_looks_experiment_look"),
    )
    op.create_index("ix_looks_experiment_id", "looks", ["experiment_id"])


def downgrade() -> None:
    op.drop_index("ix_looks_experiment_id", table_name="looks")
    op.drop_table("looks")

"""Launches and hand-backs: ``cells.preemptions`` (times a cell was handed back on a signal, not failed) and the
``launches`` table (one row per ``bench run`` launch: local processes or a Slurm job array, its restarts).

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("preemptions", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "launches",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("launcher", sa.String(20), nullable=False),
        sa.Column("job_ids", sa.JSON(), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("submitted_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("launches")
    with op.batch_alter_table("cells") as batch:
        batch.drop_column("preemptions")

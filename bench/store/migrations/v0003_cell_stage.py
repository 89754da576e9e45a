"""Cells get a ``stage``: the part of the design they belong to ("main", "foldover", "look-2"...).

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("stage", sa.String(40), nullable=False, server_default="main"))


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.drop_column("stage")

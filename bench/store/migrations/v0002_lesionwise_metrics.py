"""Lesion-wise (BraTS 2023) values per case and region: nullable columns on case_metrics.

Filled only by experiments whose spec sets ``[evaluation] lesionwise``; NULL elsewhere.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_FLOATS = ("lesion_dice", "lesion_hd95", "legacy_dice", "legacy_hd95")
_INTS = ("num_tp", "num_fp", "num_fn")


def upgrade() -> None:
    with op.batch_alter_table("case_metrics") as batch:
        for name in _FLOATS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        for name in _INTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("case_metrics") as batch:
        for name in (*_FLOATS, *_INTS):
            batch.drop_column(name)

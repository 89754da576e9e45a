"""Per-case values by a later year's BraTS rules (spec ``[evaluation] rules = "2024" | "2025"``): the
``case_values`` table, one row per (cell, case, rules, region, metric). Older results have none and stay
readable as they are.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_values",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cell_id", sa.Integer(), sa.ForeignKey("cells.id", ondelete="CASCADE"), nullable=False),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("rules", sa.String(8), nullable=False),
        sa.Column("cohort", sa.String(20), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.UniqueConstraint("cell_id", "case_id", "rules", "region", "metric",
                            name="uq_case_values_cell_case_rules_region_metric"),
    )
    op.create_index("ix_case_values_cell_id", "case_values", ["cell_id"])


def downgrade() -> None:
    op.drop_index("ix_case_values_cell_id", table_name="case_values")
    op.drop_table("case_values")

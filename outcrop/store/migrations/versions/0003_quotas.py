"""Quota counters per principal, model and minute; streams in progress.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_usage",
        sa.Column("principal", sa.String(200), primary_key=True),
        sa.Column("model_id", sa.String(200), primary_key=True),
        sa.Column("window", sa.Integer, primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
    )
    op.create_table(
        "active_streams",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    op.create_index("ix_active_streams_principal", "active_streams", ["principal"])


def downgrade() -> None:
    op.drop_index("ix_active_streams_principal", "active_streams")
    op.drop_table("active_streams")
    op.drop_table("quota_usage")

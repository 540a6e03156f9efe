"""Guardrails and their versions.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guardrails",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("version", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_guardrails_name", "guardrails", ["name"])


def downgrade() -> None:
    op.drop_index("ix_guardrails_name", "guardrails")
    op.drop_table("guardrails")

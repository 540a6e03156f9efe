"""Account-level enforced guardrail configurations (PutEnforcedGuardrailConfiguration).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enforced_guardrails",
        sa.Column("config_id", sa.String(40), primary_key=True),
        sa.Column("account", sa.String(12), nullable=False, unique=True),  # one configuration per account
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("enforced_guardrails")

"""A default guardrail per principal, applied to every call its keys make.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("guardrail", sa.String(300)))


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("guardrail")

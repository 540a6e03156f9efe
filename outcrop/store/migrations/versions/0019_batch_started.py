"""Batch jobs remember when they first started running records (`batch_jobs.started_at`): OpenAI's batch object
shows it as `in_progress_at`.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_jobs") as batch:
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("batch_jobs") as batch:
        batch.drop_column("started_at")

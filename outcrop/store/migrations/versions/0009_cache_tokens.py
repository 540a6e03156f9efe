"""Usage records count prompt-cache reads and writes apart (the prompt cache of issue 12).

`cache_tokens` was never written with anything but 0; it becomes `cache_read_tokens`, and
`cache_write_tokens` is added.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.alter_column("cache_tokens", new_column_name="cache_read_tokens", existing_type=sa.Integer,
                           existing_nullable=False)  # fmt: skip
        batch.add_column(sa.Column("cache_write_tokens", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("cache_write_tokens")
        batch.alter_column("cache_read_tokens", new_column_name="cache_tokens", existing_type=sa.Integer,
                           existing_nullable=False)  # fmt: skip

"""A counter that every change to keys, principals and access grants moves (store/epoch.py), so that what a
process caches of them is good exactly until the next change, made by any process.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "auth_epoch",
        sa.Column("name", sa.String(20), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.bulk_insert(table, [{"name": "auth", "value": 0}])


def downgrade() -> None:
    op.drop_table("auth_epoch")

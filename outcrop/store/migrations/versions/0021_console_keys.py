"""Quotas an administrator sets at run time (the console's Keys page): `quota_rules`, one row a rule, counted
with the [[quotas]] of the config file (outcrop.metering.quotas); and `usage_records.credential_id`, the key an
invocation was made with, so usage can be read per key as well as per principal.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_rules",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("principal", sa.String(200)),
        sa.Column("group_name", sa.String(200)),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("requests_per_minute", sa.Integer),
        sa.Column("tokens_per_minute", sa.Integer),
        sa.Column("concurrent_streams", sa.Integer),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("credential_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("credential_id")
    op.drop_table("quota_rules")

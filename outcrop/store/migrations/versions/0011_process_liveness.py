"""Faults: a process's stream leases end with it, and a usage record is written once.

`processes`: one row per `outcrop serve` process that holds stream leases, with what tells whether it is
still alive (store/processes.py). `active_streams.owner`: the process a lease belongs to (rows from before
have none and keep the old 15-minute expiry). `usage_records.request_id`: unique, so a batch written again
after a lost acknowledgement adds nothing.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "processes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("machine", sa.String(120), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("pid_started", sa.String(40)),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
    )
    with op.batch_alter_table("active_streams") as batch:
        batch.add_column(sa.Column("owner", sa.String(40)))
    op.create_index("ix_active_streams_owner", "active_streams", ["owner"])
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("request_id", sa.String(40)))
    op.create_index("ix_usage_records_request_id", "usage_records", ["request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_usage_records_request_id", "usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("request_id")
    op.drop_index("ix_active_streams_owner", "active_streams")
    with op.batch_alter_table("active_streams") as batch:
        batch.drop_column("owner")
    op.drop_table("processes")

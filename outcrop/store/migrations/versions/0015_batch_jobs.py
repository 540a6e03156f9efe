"""Batch jobs (outcrop.jobs): `batch_jobs`, one row per job with its status, counters and owner process, and
`batch_records`, each record's input line and, once run, its output line (the checkpoint a resumed job starts from).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.String(12), primary_key=True),
        sa.Column("codec", sa.String(20), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("principal", sa.Text, nullable=False),
        sa.Column("principal_name", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(2048), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("inputs", sa.Text),
        sa.Column("client_token", sa.String(256)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("processed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("succeeded", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("errored", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("owner", sa.String(40)),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_batch_jobs_submitted", "batch_jobs", ["submitted_at"])
    op.create_index("ix_batch_jobs_token", "batch_jobs", ["codec", "principal_name", "client_token"], unique=True)
    op.create_table(
        "batch_records",
        sa.Column("job_id", sa.String(12), sa.ForeignKey("batch_jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("record_key", sa.Text),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_batch_records_state", "batch_records", ["job_id", "state", "seq"])


def downgrade() -> None:
    op.drop_index("ix_batch_records_state", "batch_records")
    op.drop_table("batch_records")
    op.drop_index("ix_batch_jobs_token", "batch_jobs")
    op.drop_index("ix_batch_jobs_submitted", "batch_jobs")
    op.drop_table("batch_jobs")

"""Ingestion jobs and the per-data-source document ledger that makes ingestion incremental.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingestion_jobs",
        sa.Column("id", sa.String(10), primary_key=True),
        sa.Column("knowledge_base_id", sa.String(10), nullable=False),
        sa.Column(
            "data_source_id", sa.String(10), sa.ForeignKey("data_sources.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("documents_scanned", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("metadata_scanned", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("new_indexed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("modified_indexed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("metadata_modified", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("deleted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("failure_reasons", sa.Text),
        sa.Column("principal", sa.Text, nullable=False),
        sa.Column("owner", sa.String(40)),
        sa.Column("active", sa.String(10), unique=True),
        sa.Column("client_token", sa.String(256)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ingestion_jobs_source", "ingestion_jobs", ["data_source_id", "started_at"])
    op.create_index("ix_ingestion_jobs_token", "ingestion_jobs", ["data_source_id", "client_token"], unique=True)
    op.create_table(
        "knowledge_documents",
        sa.Column(
            "data_source_id",
            sa.String(10),
            sa.ForeignKey("data_sources.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("document_id", sa.String(64), primary_key=True),
        sa.Column("knowledge_base_id", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("source_tag", sa.String(300)),
        sa.Column("sidecar_tag", sa.String(300)),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("metadata_hash", sa.String(64)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("chunks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("job_id", sa.String(10)),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("owner", sa.String(40)),
        sa.Column("pending", sa.Text),
        sa.Column("pending_data", sa.LargeBinary),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_knowledge_documents_status", "knowledge_documents", ["status"])


def downgrade() -> None:
    op.drop_index("ix_knowledge_documents_status", "knowledge_documents")
    op.drop_table("knowledge_documents")
    op.drop_index("ix_ingestion_jobs_token", "ingestion_jobs")
    op.drop_index("ix_ingestion_jobs_source", "ingestion_jobs")
    op.drop_table("ingestion_jobs")

"""Knowledge bases, their data sources, and tags of bedrock-agent resources.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "knowledge_bases",
        sa.Column("id", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("role_arn", sa.Text, nullable=False),
        sa.Column("configuration", sa.Text, nullable=False),
        sa.Column("storage", sa.Text),
        sa.Column("embedding_model", sa.String(200), nullable=False),
        sa.Column("dimensions", sa.Integer, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("failure_reasons", sa.Text),
        sa.Column("client_token", sa.String(256), unique=True),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "data_sources",
        sa.Column("id", sa.String(10), primary_key=True),
        sa.Column(
            "knowledge_base_id",
            sa.String(10),
            sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("configuration", sa.Text, nullable=False),
        sa.Column("ingestion", sa.Text),
        sa.Column("encryption", sa.Text),
        sa.Column("deletion_policy", sa.String(10), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("failure_reasons", sa.Text),
        sa.Column("client_token", sa.String(256)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_data_sources_name", "data_sources", ["knowledge_base_id", "name"], unique=True)
    op.create_index("ix_data_sources_token", "data_sources", ["knowledge_base_id", "client_token"], unique=True)
    op.create_table(
        "resource_tags",
        sa.Column("resource", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("resource_tags")
    op.drop_index("ix_data_sources_token", "data_sources")
    op.drop_index("ix_data_sources_name", "data_sources")
    op.drop_table("data_sources")
    op.drop_table("knowledge_bases")

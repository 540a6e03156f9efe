"""Files (OpenAI's /v1/files, purpose "batch", and the output files of OpenAI batches): `files`, one row per file
with its owner, purpose, name, size and the object-storage URI of its bytes (outcrop.objects).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("principal_name", sa.String(200), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_files_owner", "files", ["principal_name", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_files_owner", "files")
    op.drop_table("files")

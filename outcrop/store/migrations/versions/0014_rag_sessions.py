"""RetrieveAndGenerate sessions: `rag_sessions` (one per sessionId, with the principal that opened it) and
`rag_session_turns` (each question and answer, replayed to the model on a follow-up).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rag_sessions",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("kms_key_arn", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rag_sessions_updated", "rag_sessions", ["updated_at"])
    op.create_table(
        "rag_session_turns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(100), sa.ForeignKey("rag_sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rag_session_turns_session", "rag_session_turns", ["session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_rag_session_turns_session", "rag_session_turns")
    op.drop_table("rag_session_turns")
    op.drop_index("ix_rag_sessions_updated", "rag_sessions")
    op.drop_table("rag_sessions")

"""Agent memory (memoryConfiguration SESSION_SUMMARY): `agent_memory`, one summary per (agent, memoryId, session),
made when a session given a memoryId ends; `agent_sessions.memory_id` names the memory an open session belongs to,
so one that reaches its idle TTL is summarized before it goes (outcrop.agents.memory).

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_sessions") as batch:
        batch.add_column(sa.Column("memory_id", sa.String(100)))
    op.create_table(
        "agent_memory",
        sa.Column("agent_id", sa.String(100), primary_key=True),
        sa.Column("memory_id", sa.String(100), primary_key=True),
        sa.Column("session_id", sa.String(100), primary_key=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_expiry", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_memory_recent", "agent_memory", ["agent_id", "memory_id", "session_start"])
    op.create_index("ix_agent_memory_expires", "agent_memory", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_agent_memory_expires", "agent_memory")
    op.drop_index("ix_agent_memory_recent", "agent_memory")
    op.drop_table("agent_memory")
    with op.batch_alter_table("agent_sessions") as batch:
        batch.drop_column("memory_id")

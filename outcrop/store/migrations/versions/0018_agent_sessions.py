"""Agent sessions: `agent_sessions`, one row per (agent, sessionId) of InvokeAgent / InvokeInlineAgent, its state
as JSON, kept until the agent's idle TTL passes (outcrop.agents.sessions).

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_sessions",
        sa.Column("agent_id", sa.String(100), primary_key=True),
        sa.Column("session_id", sa.String(100), primary_key=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_sessions_expires", "agent_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_agent_sessions_expires", "agent_sessions")
    op.drop_table("agent_sessions")

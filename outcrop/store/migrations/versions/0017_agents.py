"""Bedrock Agents' control plane (outcrop/agents/catalog.py): `agents` (each agent's DRAFT), `agent_versions`
(numbered snapshots), `agent_action_groups` and `agent_knowledge_bases` (per agent version) and `agent_aliases`.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _agent_fk() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("agent_id", sa.String(10), sa.ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)


def _times() -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False)]  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("failure_reasons", sa.Text),
        sa.Column("versions", sa.Integer, nullable=False, server_default="0"),
        sa.Column("client_token", sa.String(256), unique=True),
        sa.Column("request_hash", sa.String(64)),
        *_times(),
        sa.Column("prepared_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "agent_versions",
        _agent_fk(),
        sa.Column("version", sa.String(5), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        *_times(),
    )
    op.create_table(
        "agent_action_groups",
        _agent_fk(),
        sa.Column("version", sa.String(5), primary_key=True),
        sa.Column("id", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("client_token", sa.String(256)),
        sa.Column("request_hash", sa.String(64)),
        *_times(),
    )
    op.create_index("ix_agent_action_groups_name", "agent_action_groups", ["agent_id", "version", "name"], unique=True)
    op.create_table(
        "agent_knowledge_bases",
        _agent_fk(),
        sa.Column("version", sa.String(5), primary_key=True),
        sa.Column("knowledge_base_id", sa.String(10), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        *_times(),
    )
    op.create_table(
        "agent_aliases",
        _agent_fk(),
        sa.Column("id", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("routing", sa.Text, nullable=False),
        sa.Column("history", sa.Text, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("client_token", sa.String(256)),
        sa.Column("request_hash", sa.String(64)),
        *_times(),
    )
    op.create_index("ix_agent_aliases_name", "agent_aliases", ["agent_id", "name"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_agent_aliases_name", "agent_aliases")
    op.drop_table("agent_aliases")
    op.drop_table("agent_knowledge_bases")
    op.drop_index("ix_agent_action_groups_name", "agent_action_groups")
    op.drop_table("agent_action_groups")
    op.drop_table("agent_versions")
    op.drop_table("agents")

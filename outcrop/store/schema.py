"""Every table Outcrop keeps. Changes go through a migration in migrations/versions/."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Index, MetaData, String, Table, Text

metadata = MetaData()

principals = Table(
    "principals",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(20), nullable=False, default="user"),  # user | application
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True)),
)

groups = Table(
    "groups",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("principal_id", String(40), ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", String(40), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)

# One row per credential. API keys (Bedrock API keys, OpenAI and Anthropic keys alike) are stored as a
# SHA-256 of the whole key: they are long random strings, so a fast hash is enough and the key itself
# is never kept. AWS secret keys must be usable to recompute SigV4, so they are encrypted (Fernet) with
# a key file only the server's owner can read.
credentials = Table(
    "credentials",
    metadata,
    Column("id", String(64), primary_key=True),  # API key id, or the AWS access key id
    Column("principal_id", String(40), ForeignKey("principals.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(20), nullable=False),  # api_key | aws
    Column("secret_hash", String(64), unique=True),  # api_key: sha256 hex of the whole key
    Column("secret_encrypted", Text),  # aws: Fernet token of the secret access key
    Column("label", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)
Index("ix_credentials_principal", credentials.c.principal_id)

# Who may use an early-access model: a principal or a group, by name. Approving an access request
# adds a grant; revoking removes it. Generally available models need none; disabled ones admit none.
access_grants = Table(
    "access_grants",
    metadata,
    Column("model_id", String(200), primary_key=True),
    Column("subject", String(220), primary_key=True),  # "principal:NAME" | "group:NAME"
    Column("granted_by", String(200), nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
)

access_requests = Table(
    "access_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("model_id", String(200), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("reason", Text),
    Column("status", String(20), nullable=False),  # pending | approved | denied
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(200)),
    Column("decided_at", DateTime(timezone=True)),
    Column("decision_note", Text),
)
Index("ix_access_requests_status", access_requests.c.status)

"""Every table Outcrop keeps. Changes go through a migration in migrations/versions/."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

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
    Column("guardrail", String(300)),  # `id[:version]` every call by this principal goes through
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

# Quota counters: one row per principal, model and minute, shared by every process on the database.
quota_usage = Table(
    "quota_usage",
    metadata,
    Column("principal", String(200), primary_key=True),
    Column("model_id", String(200), primary_key=True),
    Column("window", Integer, primary_key=True),  # minutes since the epoch
    Column("requests", Integer, nullable=False, default=0),
    Column("tokens", Integer, nullable=False, default=0),
)

# Quotas set at run time by an administrator (the console), counted with the config file's [[quotas]].
quota_rules = Table(
    "quota_rules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("principal", String(200)),  # a principal's name, or
    Column("group_name", String(200)),  # a group's; neither: everyone
    Column("model", String(200), nullable=False),  # a model id, or "*"
    Column("requests_per_minute", Integer),
    Column("tokens_per_minute", Integer),
    Column("concurrent_streams", Integer),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Console sessions signed out: each process refuses these session ids until they would have expired anyway.
console_signouts = Table(
    "console_signouts",
    metadata,
    Column("sid", String(64), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),  # unix seconds: the session's own expiry
)

# Streams in progress, for the concurrent-streams quota. A process that dies leaves its rows behind; they stop
# counting as soon as their owner is seen dead (store/processes.py), and are deleted then. Rows without an owner
# (written before migration 0011) stop counting once older than metering.quotas.LEASE_S.
active_streams = Table(
    "active_streams",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("principal", String(200), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("owner", String(40)),  # processes.id of the process serving the stream
)
Index("ix_active_streams_principal", active_streams.c.principal)
Index("ix_active_streams_owner", active_streams.c.owner)

# Processes that hold stream leases, and how to tell whether each is alive (store/processes.py): on the same
# machine its pid (and that pid's start time), elsewhere a heartbeat it moves every few seconds.
processes = Table(
    "processes",
    metadata,
    Column("id", String(40), primary_key=True),  # random, new for every process
    Column("host", String(255), nullable=False),  # host name, for people reading the table
    Column("machine", String(120), nullable=False),  # same value: same kernel and pid namespace
    Column("pid", Integer, nullable=False),
    Column("pid_started", String(40)),  # the kernel's start time of that pid (Linux), so a reused pid is told apart
    Column("started_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),  # the last heartbeat (epoch seconds)
)

# One row ("auth"): moved by every change to keys, principals and grants (store/epoch.py).
auth_epoch = Table(
    "auth_epoch",
    metadata,
    Column("name", String(20), primary_key=True),
    Column("value", Integer, nullable=False),
)

# One row per invocation, written in batches by metering.usage.UsageRecorder.
usage_records = Table(
    "usage_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("principal", String(200), nullable=False),
    Column("model_id", String(200), nullable=False),
    Column("dialect", String(20), nullable=False),
    Column("operation", String(60), nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cache_read_tokens", Integer, nullable=False),  # prompt tokens taken from the prompt cache
    Column("cache_write_tokens", Integer, nullable=False, server_default="0"),  # computed up to a cache point
    Column("latency_ms", Integer, nullable=False),
    Column("ttft_ms", Integer),
    Column("status", String(60), nullable=False),  # ok | cancelled | the error's class name
    Column("request_id", String(40)),  # one per invocation: a batch written twice adds no row (unique)
    Column("credential_id", String(64)),  # the key it was made with (None: local mode, or before migration 0021)
)
Index("ix_usage_records_at", usage_records.c.at)
Index("ix_usage_records_request_id", usage_records.c.request_id, unique=True)

# Bedrock's model invocation logging configuration: one row (name "default"), shared by every process.
invocation_logging = Table(
    "invocation_logging",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("config", Text, nullable=False),  # the loggingConfig JSON, as PutModelInvocationLoggingConfiguration got it
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Guardrails: one row per version; "DRAFT" is the working copy, "1", "2", ... immutable snapshots of it.
guardrails = Table(
    "guardrails",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("version", String(10), primary_key=True),
    Column("name", String(50), nullable=False),
    Column("description", Text),
    Column("config", Text, nullable=False),  # the Create/UpdateGuardrail body's policies and messages, as JSON
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_guardrails_name", guardrails.c.name)

# Account-level enforced guardrails: PutEnforcedGuardrailConfiguration's guardrailInferenceConfig, as JSON.
enforced_guardrails = Table(
    "enforced_guardrails",
    metadata,
    Column("config_id", String(40), primary_key=True),
    Column("account", String(12), nullable=False, unique=True),  # one configuration per account, even racing
    Column("config", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

# Knowledge bases (outcrop/knowledge/catalog.py): the Create/UpdateKnowledgeBase configuration as JSON, with the
# embedding model it resolved to and the dimensions of its vectors. `client_token`: CreateKnowledgeBase's
# idempotency token, with a hash of the request it stood for (`request_hash`).
knowledge_bases = Table(
    "knowledge_bases",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("description", Text),
    Column("role_arn", Text, nullable=False),
    Column("configuration", Text, nullable=False),  # knowledgeBaseConfiguration
    Column("storage", Text),  # storageConfiguration; NULL: the embedded store
    Column("embedding_model", String(200), nullable=False),
    Column("dimensions", Integer, nullable=False),
    Column("status", String(24), nullable=False),  # CREATING | ACTIVE | DELETING | UPDATING | FAILED | ...
    Column("failure_reasons", Text),  # JSON list
    Column("client_token", String(256), unique=True),
    Column("request_hash", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# A knowledge base's data sources; deleting the knowledge base deletes them (and, through them, their jobs).
data_sources = Table(
    "data_sources",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("knowledge_base_id", String(10), ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", Text),
    Column("configuration", Text, nullable=False),  # dataSourceConfiguration
    Column("ingestion", Text),  # vectorIngestionConfiguration
    Column("encryption", Text),  # serverSideEncryptionConfiguration (kept, not applied)
    Column("deletion_policy", String(10), nullable=False),  # DELETE | RETAIN
    Column("status", String(24), nullable=False),  # AVAILABLE | DELETING | DELETE_UNSUCCESSFUL
    Column("failure_reasons", Text),
    Column("client_token", String(256)),
    Column("request_hash", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_data_sources_name", data_sources.c.knowledge_base_id, data_sources.c.name, unique=True)
Index("ix_data_sources_token", data_sources.c.knowledge_base_id, data_sources.c.client_token, unique=True)

# Tags of bedrock-agent resources (TagResource), by the resource part of their ARN: `knowledge-base/ID`.
resource_tags = Table(
    "resource_tags",
    metadata,
    Column("resource", String(200), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

# Ingestion jobs (outcrop/knowledge/ingest.py), one row a StartIngestionJob. Their statistics are bumped in the
# transaction that commits each document's row in `knowledge_documents`, so they stay true across a crash.
# `active`: the data source's id while the job runs (STARTING, IN_PROGRESS, STOPPING), NULL after: its unique
# index lets one job run per data source. `owner`: the processes.id of the process running it (a job whose owner
# is dead is resumed by the next server that starts). `principal`: whom its embeddings are metered to (JSON).
ingestion_jobs = Table(
    "ingestion_jobs",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("knowledge_base_id", String(10), nullable=False),
    Column("data_source_id", String(10), ForeignKey("data_sources.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # STARTING | IN_PROGRESS | COMPLETE | FAILED | STOPPING | STOPPED
    Column("description", Text),
    Column("documents_scanned", BigInteger, nullable=False, default=0),
    Column("metadata_scanned", BigInteger, nullable=False, default=0),
    Column("new_indexed", BigInteger, nullable=False, default=0),
    Column("modified_indexed", BigInteger, nullable=False, default=0),
    Column("metadata_modified", BigInteger, nullable=False, default=0),
    Column("deleted", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
    Column("failure_reasons", Text),  # JSON list
    Column("principal", Text, nullable=False),
    Column("owner", String(40)),
    Column("active", String(10), unique=True),
    Column("client_token", String(256)),
    Column("request_hash", String(64)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_ingestion_jobs_source", ingestion_jobs.c.data_source_id, ingestion_jobs.c.started_at)
Index("ix_ingestion_jobs_token", ingestion_jobs.c.data_source_id, ingestion_jobs.c.client_token, unique=True)

# The documents of each data source as last ingested: what incremental ingestion diffs the source against.
# `document_id`: the vector store's id of its chunks; `uri`: s3://bucket/key, or a CUSTOM document's id.
# `source_tag` / `sidecar_tag`: the listing's fingerprint of the file and of its <name>.metadata.json (ETag,
# size, modification time), `content_hash` / `metadata_hash`: SHA-256 of their bytes. `status`: INDEXED |
# FAILED (with `reason`) after a job; STARTING | IN_PROGRESS | DELETING while IngestKnowledgeBaseDocuments /
# DeleteKnowledgeBaseDocuments work on it, with the request's content in `pending` / `pending_data` until done.
# `generation` moves with every such request, so a worker commits only what is still wanted.
knowledge_documents = Table(
    "knowledge_documents",
    metadata,
    Column("data_source_id", String(10), ForeignKey("data_sources.id", ondelete="CASCADE"), primary_key=True),
    Column("document_id", String(64), primary_key=True),
    Column("knowledge_base_id", String(10), nullable=False),
    Column("kind", String(8), nullable=False),  # S3 | CUSTOM
    Column("uri", Text, nullable=False),
    Column("source_tag", String(300)),
    Column("sidecar_tag", String(300)),
    Column("content_hash", String(64)),
    Column("metadata_hash", String(64)),
    Column("status", String(32), nullable=False),
    Column("reason", Text),
    Column("chunks", Integer, nullable=False, default=0),
    Column("job_id", String(10)),  # the ingestion job that last wrote the row
    Column("generation", Integer, nullable=False, default=0),
    Column("owner", String(40)),  # processes.id of the process working on a STARTING / IN_PROGRESS / DELETING row
    Column("pending", Text),  # JSON: the content and metadata a direct ingestion request gave
    Column("pending_data", LargeBinary),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_knowledge_documents_status", knowledge_documents.c.status)

# RetrieveAndGenerate sessions (sessionId): who opened one, and its turns, replayed to the model on a follow-up.
rag_sessions = Table(
    "rag_sessions",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("principal", String(200), nullable=False),  # only the principal that opened it may use it
    Column("kms_key_arn", Text),  # sessionConfiguration.kmsKeyArn (kept, not applied)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_rag_sessions_updated", rag_sessions.c.updated_at)

rag_session_turns = Table(
    "rag_session_turns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(100), ForeignKey("rag_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_rag_session_turns_session", rag_session_turns.c.session_id, rag_session_turns.c.id)

# Batch jobs (outcrop.jobs): one row per job, whatever its API (Bedrock CreateModelInvocationJob, OpenAI batches).
batch_jobs = Table(
    "batch_jobs",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("codec", String(20), nullable=False),  # whose format: bedrock | openai
    Column("name", String(100), nullable=False),
    Column("principal", Text, nullable=False),  # the owner as JSON: the job runs with its access and quotas
    Column("principal_name", String(200), nullable=False),
    Column("model_id", String(2048), nullable=False),  # as the caller named it
    Column("status", String(16), nullable=False),  # outcrop.jobs.store.STATES
    Column("message", Text),
    Column("spec", Text, nullable=False),  # the codec's configuration of the job (JSON)
    Column("inputs", Text),  # the input files found when it was validated (JSON list of URIs)
    Column("client_token", String(256)),
    Column("request_hash", String(64)),
    Column("total", BigInteger, nullable=False, server_default="0"),
    Column("processed", BigInteger, nullable=False, server_default="0"),
    Column("succeeded", BigInteger, nullable=False, server_default="0"),
    Column("errored", BigInteger, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("owner", String(40)),  # the process running it (store.processes); a dead owner's job is resumed
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),  # first moved to in_progress
)
Index("ix_batch_jobs_submitted", batch_jobs.c.submitted_at)
Index("ix_batch_jobs_token", batch_jobs.c.codec, batch_jobs.c.principal_name, batch_jobs.c.client_token, unique=True)

# Each record of a job: its input line, and once run, its output line (the checkpoint a resumed job starts from).
batch_records = Table(
    "batch_records",
    metadata,
    Column("job_id", String(12), ForeignKey("batch_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),  # its place in the job's inputs, files in order
    Column("part", Integer, nullable=False),  # which input file
    Column("record_key", Text),  # the record's own id (recordId, custom_id) when it has one
    Column("state", String(8), nullable=False),  # pending | done | error
    Column("input", Text, nullable=False),
    Column("output", Text),  # the output line, written when the record is done (or found wrong when validated)
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
)
Index("ix_batch_records_state", batch_records.c.job_id, batch_records.c.state, batch_records.c.seq)

# Files uploaded through OpenAI's /v1/files (purpose "batch") and the output / error files of OpenAI batches: the
# bytes live in object storage (outcrop.objects) at `uri`; only their owner (and administrators) see them.
files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("principal_name", String(200), nullable=False),
    Column("purpose", String(32), nullable=False),  # batch | batch_output
    Column("filename", String(512), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("uri", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
)
Index("ix_files_owner", files.c.principal_name, files.c.created_at)

# Agents (outcrop/agents/catalog.py): the DRAFT of each agent, its Create/UpdateAgent members as JSON (`spec`);
# `versions`: the last numbered version given out (numbers are never reused). Numbered versions are snapshots in
# `agent_versions`, with their action groups and knowledge-base links copied under the version's number.
agents = Table(
    "agents",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("spec", Text, nullable=False),
    Column("status", String(24), nullable=False),  # NOT_PREPARED | PREPARING | PREPARED | FAILED
    Column("failure_reasons", Text),  # JSON list
    Column("versions", Integer, nullable=False, server_default="0"),
    Column("client_token", String(256), unique=True),
    Column("request_hash", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("prepared_at", DateTime(timezone=True)),
)

agent_versions = Table(
    "agent_versions",
    metadata,
    Column("agent_id", String(10), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("version", String(5), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("spec", Text, nullable=False),
    Column("status", String(24), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Action groups of an agent version (DRAFT or a number). `payload`: an S3 apiSchema's OpenAPI text, read once.
agent_action_groups = Table(
    "agent_action_groups",
    metadata,
    Column("agent_id", String(10), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("version", String(5), primary_key=True),
    Column("id", String(10), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("state", String(10), nullable=False),
    Column("spec", Text, nullable=False),
    Column("payload", Text),
    Column("client_token", String(256)),
    Column("request_hash", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_agent_action_groups_name", agent_action_groups.c.agent_id, agent_action_groups.c.version,
      agent_action_groups.c.name, unique=True)  # fmt: skip

agent_knowledge_bases = Table(
    "agent_knowledge_bases",
    metadata,
    Column("agent_id", String(10), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("version", String(5), primary_key=True),
    Column("knowledge_base_id", String(10), primary_key=True),
    Column("description", Text, nullable=False),
    Column("state", String(10), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Aliases (the test alias TSTALIASID is not stored: it always routes to the DRAFT). `routing`: routingConfiguration,
# `history`: agentAliasHistoryEvents, both JSON.
agent_aliases = Table(
    "agent_aliases",
    metadata,
    Column("agent_id", String(10), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String(10), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("description", Text),
    Column("routing", Text, nullable=False),
    Column("history", Text, nullable=False),
    Column("status", String(24), nullable=False),
    Column("client_token", String(256)),
    Column("request_hash", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_agent_aliases_name", agent_aliases.c.agent_id, agent_aliases.c.name, unique=True)

# Agent sessions (outcrop.agents.sessions): per (agent, sessionId), the attributes, finished turns and a plan
# stopped by returnControl, as one JSON document; gone once expires_at (the agent's idle TTL) has passed.
agent_sessions = Table(
    "agent_sessions",
    metadata,
    Column("agent_id", String(100), primary_key=True),  # "INLINE" for InvokeInlineAgent
    Column("session_id", String(100), primary_key=True),
    Column("principal", String(200), nullable=False),  # only the principal that opened it may use it
    Column("state", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # the memoryId of InvokeAgent: summarized into agent_memory when it ends (no index of its own: the sweep reads
    # the expired rows by ix_agent_sessions_expires, and every turn's write would pay for one)
    Column("memory_id", String(100)),
)
Index("ix_agent_sessions_expires", agent_sessions.c.expires_at)

# Agent memory (outcrop.agents.memory): a summary of each ended session of a memoryId, for the later sessions of
# that memoryId (their prompt shows the newest maxRecentSessions); gone once expires_at (storageDays) has passed.
agent_memory = Table(
    "agent_memory",
    metadata,
    Column("agent_id", String(100), primary_key=True),
    Column("memory_id", String(100), primary_key=True),
    Column("session_id", String(100), primary_key=True),
    Column("principal", String(200), nullable=False),  # only the principal whose sessions made it reads it
    Column("summary", Text, nullable=False),
    Column("session_start", DateTime(timezone=True), nullable=False),
    Column("session_expiry", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
Index("ix_agent_memory_recent", agent_memory.c.agent_id, agent_memory.c.memory_id, agent_memory.c.session_start)
Index("ix_agent_memory_expires", agent_memory.c.expires_at)

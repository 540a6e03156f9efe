"""Knowledge bases and data sources as plain values, and the checks botocore's `bedrock-agent` model cannot make.

A knowledge base is an account resource, scoped like a guardrail: its ARN names this server's one account
(`arn:aws:bedrock:REGION:000000000000:knowledge-base/ID`), and an ARN naming another account is never found.

What this server serves (anything else is a ValidationException that says what is):
- type VECTOR, with an `embeddingModelArn` naming an embedding model served here (a model id, an alias, or a
  foundation-model ARN), `dimensions` at most the model's (fewer keep the leading components, re-normalized),
  FLOAT32 vectors only;
- storage: no `storageConfiguration` is the embedded store (SQLite with sqlite-vec + FTS5 in the data
  directory); `RDS` is PostgreSQL with pgvector;
- data sources: `S3` (`bucketArn` + `inclusionPrefixes`; see `LOCAL_FOLDERS` for the local-folder case) and
  `CUSTOM` (documents pushed by IngestKnowledgeBaseDocuments);
- chunking: FIXED_SIZE, HIERARCHICAL (two levels, parent then child), SEMANTIC and NONE, with every size that is
  embedded at most the embedding model's longest input. As on Bedrock, it cannot change after creation.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from outcrop import errors
from outcrop.guardrails.ids import ACCOUNT
from outcrop.knowledge.chunking_config import decode

# A data source whose bucketArn is `arn:aws:s3:::NAME` reads the folder `<knowledge_dir>/folders/NAME`
# (knowledge_dir: a [server] setting, default `$OUTCROP_HOME/knowledge`)
# when that folder exists (a symbolic link there may point anywhere the server's owner chooses), and the S3
# bucket NAME otherwise. Only the server's owner decides which local folders are readable: an API caller can
# name a bucket, never a path.
LOCAL_FOLDERS = "folders"  # under config.knowledge_dir

STORAGE_TYPES = ("RDS",)  # plus the embedded default (no storageConfiguration)
SOURCE_TYPES = ("S3", "CUSTOM")
_ARN = re.compile(
    r"^arn:aws[a-z-]*:bedrock:[^:]*:(?P<account>\d{12}):(?P<kind>[a-z-]+)/(?P<id>[0-9A-Za-z]+(/[0-9A-Za-z]+)?)$"
)  # fmt: skip
_TAGGED = {"knowledge-base": 1, "agent": 1, "agent-alias": 2}  # the kinds of resources tagged here: parts of their id


def knowledge_base_arn(region: str, kb_id: str) -> str:
    return f"arn:aws:bedrock:{region}:{ACCOUNT}:knowledge-base/{kb_id}"


def tagged_resource(arn: str) -> str | None:
    """The resource an ARN of TagResource & co. names here (`knowledge-base/ID`, `agent/ID`,
    `agent-alias/AGENT_ID/ALIAS_ID`), or None: another account's ARN, or a kind of resource this server does not
    keep, names nothing here."""
    m = _ARN.match(arn)
    if m is None or m.group("account") != ACCOUNT or _TAGGED.get(m.group("kind")) != m.group("id").count("/") + 1:
        return None
    return f"{m.group('kind')}/{m.group('id')}"


def request_hash(body: dict[str, Any]) -> str:
    """What a clientToken stands for: a retry with the same token must carry the same request."""
    plain = {k: v for k, v in body.items() if k != "clientToken"}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class EmbeddingModel:
    """What a knowledge base's checks need to know of its embedding model."""

    model_id: str
    dimensions: int
    max_tokens: int


@dataclass(frozen=True)
class KnowledgeBase:
    id: str
    name: str
    description: str | None
    role_arn: str
    configuration: dict[str, Any]  # knowledgeBaseConfiguration, as the caller gave it
    storage: dict[str, Any] | None  # storageConfiguration; None: the embedded store
    embedding_model: str  # the served model id the ARN resolved to
    dimensions: int  # of the stored vectors
    status: str
    failure_reasons: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    def arn(self, region: str) -> str:
        return knowledge_base_arn(region, self.id)


@dataclass(frozen=True)
class DataSource:
    knowledge_base_id: str
    id: str
    name: str
    description: str | None
    configuration: dict[str, Any]  # dataSourceConfiguration
    ingestion: dict[str, Any] | None  # vectorIngestionConfiguration
    encryption: dict[str, Any] | None  # serverSideEncryptionConfiguration: kept and reported, not applied
    deletion_policy: str  # DELETE | RETAIN: what deleting the data source does to its vectors
    status: str
    failure_reasons: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


# --- checks -------------------------------------------------------------------------------------


def embedding_model_arn(body: dict[str, Any]) -> str:
    """The embeddingModelArn of a Create/UpdateKnowledgeBase body (already valid for the service model), which must
    be a VECTOR knowledge base's."""
    config = body["knowledgeBaseConfiguration"]
    if config["type"] != "VECTOR":
        raise errors.InvalidRequest(
            f"knowledgeBaseConfiguration.type {config['type']} is not supported by this server; only VECTOR is."
        )
    vector = config.get("vectorKnowledgeBaseConfiguration")
    if vector is None:
        raise errors.InvalidRequest("knowledgeBaseConfiguration.vectorKnowledgeBaseConfiguration is required for "
                                    "a VECTOR knowledge base.")  # fmt: skip
    return str(vector["embeddingModelArn"])


def check_knowledge_base(body: dict[str, Any], model: EmbeddingModel) -> int:
    """A Create/UpdateKnowledgeBase body (already valid for the service model) that this server can serve, with
    `model` the embedding model its ARN names: the dimensions of its vectors."""
    embedding_model_arn(body)
    vector = body["knowledgeBaseConfiguration"]["vectorKnowledgeBaseConfiguration"]
    if "supplementalDataStorageConfiguration" in vector:
        raise errors.InvalidRequest("supplementalDataStorageConfiguration (images from multimodal documents) is "
                                    "not supported by this server.")  # fmt: skip
    bedrock = (vector.get("embeddingModelConfiguration") or {}).get("bedrockEmbeddingModelConfiguration") or {}
    where = "knowledgeBaseConfiguration.vectorKnowledgeBaseConfiguration.embeddingModelConfiguration."
    where += "bedrockEmbeddingModelConfiguration"
    if bedrock.get("embeddingDataType", "FLOAT32") != "FLOAT32":
        raise errors.InvalidRequest(f"{where}.embeddingDataType: only FLOAT32 is supported by this server.")
    for member in ("audio", "video"):
        if member in bedrock:
            raise errors.InvalidRequest(f"{where}.{member} is not supported by this server (text only).")
    dimensions = bedrock.get("dimensions", model.dimensions)
    if not 1 <= dimensions <= model.dimensions:
        raise errors.InvalidRequest(
            f"{where}.dimensions: the embedding model '{model.model_id}' gives {model.dimensions}-dimensional "
            f"vectors, so dimensions must be between 1 and {model.dimensions}, not {dimensions}."
        )
    _check_storage(body.get("storageConfiguration"))
    return int(dimensions)


def _check_storage(storage: dict[str, Any] | None) -> None:
    if storage is None:
        return
    kind = storage["type"]
    if kind not in STORAGE_TYPES:
        raise errors.InvalidRequest(
            f"storageConfiguration.type {kind} is not supported by this server. Supported: RDS (PostgreSQL with "
            "pgvector), or no storageConfiguration for the embedded store (SQLite with sqlite-vec)."
        )
    if "rdsConfiguration" not in storage:
        raise errors.InvalidRequest("storageConfiguration.rdsConfiguration is required for type RDS.")
    extra = sorted(k for k in storage if k not in ("type", "rdsConfiguration"))
    if extra:
        raise errors.InvalidRequest(f"storageConfiguration of type RDS takes rdsConfiguration only, not {extra}.")


def check_data_source(body: dict[str, Any], model: EmbeddingModel) -> None:
    """A Create/UpdateDataSource body (already valid for the service model) that this server can ingest, for a
    knowledge base embedding with `model`."""
    config = body["dataSourceConfiguration"]
    kind = config["type"]
    if kind not in SOURCE_TYPES:
        raise errors.InvalidRequest(
            f"dataSourceConfiguration.type {kind} is not supported by this server. Supported: S3 (an S3 bucket, "
            "or a local folder the server's owner named after it), CUSTOM (documents pushed through "
            "IngestKnowledgeBaseDocuments)."
        )
    others = sorted(k for k in config if k not in ("type", "s3Configuration"))
    if others or (kind == "CUSTOM" and "s3Configuration" in config):
        raise errors.InvalidRequest(f"dataSourceConfiguration of type {kind} takes "
                                    f"{'s3Configuration only' if kind == 'S3' else 'no other member'}.")  # fmt: skip
    if kind == "S3" and "s3Configuration" not in config:
        raise errors.InvalidRequest("dataSourceConfiguration.s3Configuration is required for type S3.")
    ingestion = body.get("vectorIngestionConfiguration") or {}
    unsupported = sorted(k for k in ingestion if k != "chunkingConfiguration")
    if unsupported:
        raise errors.InvalidRequest(
            f"vectorIngestionConfiguration: {', '.join(unsupported)} not supported by this server (documents are "
            "parsed by the server's own parsers; chunkingConfiguration is supported)."
        )
    if "chunkingConfiguration" in ingestion:
        check_chunking(ingestion["chunkingConfiguration"], model)


def check_chunking(chunking: dict[str, Any], model: EmbeddingModel) -> None:
    """The strategy's own configuration is there (and no other), in Bedrock's ranges, and every chunk that is
    embedded fits the model (chunking_config.decode)."""
    decode(chunking, max_tokens_limit=model.max_tokens)

"""Knowledge bases, data sources, ingestion jobs and documents in bedrock-agent's output shapes (botocore's
KnowledgeBase, DataSource, IngestionJob, KnowledgeBaseDocumentDetail and their summaries). Pure: values in, wire
dicts out."""

from __future__ import annotations

from typing import Any

from outcrop.knowledge.direct import identify
from outcrop.knowledge.ledger import Document, Job
from outcrop.knowledge.resources import DataSource, KnowledgeBase


def _described(out: dict[str, Any], description: str | None) -> dict[str, Any]:
    if description:
        out["description"] = description
    return out


def knowledge_base(kb: KnowledgeBase, region: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "knowledgeBaseId": kb.id, "name": kb.name, "knowledgeBaseArn": kb.arn(region), "roleArn": kb.role_arn,
        "knowledgeBaseConfiguration": kb.configuration, "status": kb.status,
        "createdAt": kb.created_at.isoformat(), "updatedAt": kb.updated_at.isoformat(),
    }  # fmt: skip
    if kb.storage is not None:  # the embedded store has no storageConfiguration of Bedrock's to report
        out["storageConfiguration"] = kb.storage
    if kb.failure_reasons:
        out["failureReasons"] = list(kb.failure_reasons)
    return _described(out, kb.description)


def knowledge_base_summary(kb: KnowledgeBase) -> dict[str, Any]:
    out = {"knowledgeBaseId": kb.id, "name": kb.name, "status": kb.status, "updatedAt": kb.updated_at.isoformat()}
    return _described(out, kb.description)


def data_source(ds: DataSource) -> dict[str, Any]:
    out: dict[str, Any] = {
        "knowledgeBaseId": ds.knowledge_base_id, "dataSourceId": ds.id, "name": ds.name, "status": ds.status,
        "dataSourceConfiguration": ds.configuration, "dataDeletionPolicy": ds.deletion_policy,
        "createdAt": ds.created_at.isoformat(), "updatedAt": ds.updated_at.isoformat(),
    }  # fmt: skip
    if ds.ingestion is not None:
        out["vectorIngestionConfiguration"] = ds.ingestion
    if ds.encryption is not None:
        out["serverSideEncryptionConfiguration"] = ds.encryption
    if ds.failure_reasons:
        out["failureReasons"] = list(ds.failure_reasons)
    return _described(out, ds.description)


def data_source_summary(ds: DataSource) -> dict[str, Any]:
    out = {"knowledgeBaseId": ds.knowledge_base_id, "dataSourceId": ds.id, "name": ds.name, "status": ds.status,
           "updatedAt": ds.updated_at.isoformat()}  # fmt: skip
    return _described(out, ds.description)


# --- ingestion ---------------------------------------------------------------------------------------------


def ingestion_job(job: Job) -> dict[str, Any]:
    out = ingestion_job_summary(job)
    if job.failure_reasons:
        out["failureReasons"] = list(job.failure_reasons)
    return out


def ingestion_job_summary(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {
        "knowledgeBaseId": job.knowledge_base_id, "dataSourceId": job.data_source_id, "ingestionJobId": job.id,
        "status": job.status, "statistics": dict(job.statistics), "startedAt": job.started_at.isoformat(),
        "updatedAt": job.updated_at.isoformat(),
    }  # fmt: skip
    return _described(out, job.description)


def document_detail(kb_id: str, ds_id: str, kind: str, uri: str, doc: Document | None) -> dict[str, Any]:
    """A KnowledgeBaseDocumentDetail; a document the ledger does not hold is NOT_FOUND."""
    out: dict[str, Any] = {"knowledgeBaseId": kb_id, "dataSourceId": ds_id,
                           "status": doc.status if doc is not None else "NOT_FOUND",
                           "identifier": identify(kind, uri)}  # fmt: skip
    if doc is not None:
        if doc.reason:
            out["statusReason"] = doc.reason
        out["updatedAt"] = doc.updated_at.isoformat()
    return out

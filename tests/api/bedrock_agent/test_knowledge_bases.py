"""The knowledge base control plane through boto3's `bedrock-agent` client against a real server: knowledge bases
and data sources created, read, listed page by page, updated and deleted; clientToken retries; tags; and the
errors Bedrock gives (unknown ids, a model that is not an embedding model served here, dimensions too large,
chunks longer than the model reads, unsupported storage, another account's ARN)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.api.app import build_app
from outcrop.config import ModelSpec, Settings
from outcrop.conversation import EmbedRequest, EmbedResult
from outcrop.engines.base import EngineStats
from outcrop.engines.echo import EchoEngine
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.registry import Registry
from tests.conftest import client, serve_app

EMBED = "test.embed-v1:0"
CHAT = "test.echo-v1:0"
EMBED_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{EMBED}"
ROLE = "arn:aws:iam::123456789012:role/kb-role"
RDS_ARN = "arn:aws:rds:us-east-1:123456789012:cluster:kb-cluster"


class FakeEmbedder:
    """A 16-dimensional embedding model reading at most 512 tokens (the control plane only reads its sizes)."""

    dimensions = 16
    max_tokens = 512

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        return EmbedResult(np.zeros((len(request.texts), self.dimensions), np.float32), 0)  # type: ignore[call-arg]

    def stats(self) -> EngineStats:
        return EngineStats(in_flight=0, queued=0, max_queue=1)

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = Path(tmp_path_factory.mktemp("kb"))
    models = (ModelSpec(id=EMBED, kind="embedding", engine="sentence-transformers"),
              ModelSpec(id=CHAT, engine="echo", n_ctx=64))  # fmt: skip
    settings = Settings(config_path=tmp / "c.toml", models=models, builtin_model=False, builtin_embedding_model=False,
                        knowledge_dir=str(tmp / "knowledge"),
                        knowledge_rds_urls={RDS_ARN: "postgresql://kb:secret@127.0.0.1:9/kb"})  # fmt: skip
    registry = Registry(settings, {EMBED: FakeEmbedder(), CHAT: EchoEngine(context_length=64)})  # type: ignore[dict-item]
    catalog = KnowledgeCatalog(store.connect(f"sqlite:///{tmp / 'o.db'}"))
    with serve_app(build_app(settings, registry, knowledge=catalog)) as url:
        yield client("bedrock-agent", url)


def _kb(name: str, **extra: Any) -> dict[str, Any]:
    vector: dict[str, Any] = {"embeddingModelArn": EMBED_ARN}
    if "dimensions" in extra:
        vector["embeddingModelConfiguration"] = {"bedrockEmbeddingModelConfiguration": {
            "dimensions": extra.pop("dimensions")}}  # fmt: skip
    return {"name": name, "roleArn": ROLE,
            "knowledgeBaseConfiguration": {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": vector}, **extra}  # fmt: skip


S3 = {"type": "S3", "s3Configuration": {"bucketArn": "arn:aws:s3:::docs-bucket", "inclusionPrefixes": ["manuals/"]}}
FIXED = {"chunkingConfiguration": {"chunkingStrategy": "FIXED_SIZE",
                                   "fixedSizeChunkingConfiguration": {"maxTokens": 300, "overlapPercentage": 20}}}  # fmt: skip


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_knowledge_base_lifecycle(agent: Any) -> None:
    made = agent.create_knowledge_base(**_kb("manuals", description="Product manuals", dimensions=8))["knowledgeBase"]
    kb_id = made["knowledgeBaseId"]
    assert len(kb_id) == 10 and kb_id.isalnum() and kb_id.upper() == kb_id
    assert made["status"] == "ACTIVE"
    assert made["knowledgeBaseArn"] == f"arn:aws:bedrock:us-east-1:000000000000:knowledge-base/{kb_id}"
    assert "storageConfiguration" not in made  # the embedded store
    got = agent.get_knowledge_base(knowledgeBaseId=kb_id)["knowledgeBase"]
    assert got["name"] == "manuals" and got["description"] == "Product manuals" and got["roleArn"] == ROLE
    vector = got["knowledgeBaseConfiguration"]["vectorKnowledgeBaseConfiguration"]
    assert vector["embeddingModelArn"] == EMBED_ARN
    assert vector["embeddingModelConfiguration"]["bedrockEmbeddingModelConfiguration"]["dimensions"] == 8
    assert got["createdAt"].tzinfo is not None

    changed = agent.update_knowledge_base(knowledgeBaseId=kb_id, **_kb("manuals-v2", dimensions=8))["knowledgeBase"]
    assert changed["name"] == "manuals-v2" and "description" not in changed
    with pytest.raises(ClientError) as err:  # the vectors already stored have 8 dimensions
        agent.update_knowledge_base(knowledgeBaseId=kb_id, **_kb("manuals-v2", dimensions=16))
    assert _code(err) == "ValidationException" and "cannot change" in str(err.value)

    gone = agent.delete_knowledge_base(knowledgeBaseId=kb_id)
    assert gone["status"] == "DELETING" and gone["knowledgeBaseId"] == kb_id
    for call in (agent.get_knowledge_base, agent.delete_knowledge_base):
        with pytest.raises(ClientError) as err:
            call(knowledgeBaseId=kb_id)
        assert (
            _code(err) == "ResourceNotFoundException"
            and err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        )


def test_list_pages(agent: Any) -> None:
    ids = [agent.create_knowledge_base(**_kb(f"paged-{i}"))["knowledgeBase"]["knowledgeBaseId"] for i in range(5)]
    seen: list[str] = []
    token: str | None = None
    while True:
        page = agent.list_knowledge_bases(maxResults=2, **({"nextToken": token} if token else {}))
        assert len(page["knowledgeBaseSummaries"]) <= 2
        seen += [s["knowledgeBaseId"] for s in page["knowledgeBaseSummaries"]]
        token = page.get("nextToken")
        if token is None:
            break
    assert [i for i in seen if i in ids] == ids  # every one once, in creation order
    summary = next(s for s in agent.list_knowledge_bases()["knowledgeBaseSummaries"] if s["knowledgeBaseId"] == ids[0])
    assert summary["name"] == "paged-0" and summary["status"] == "ACTIVE"
    pages = agent.get_paginator("list_knowledge_bases").paginate(PaginationConfig={"PageSize": 3})
    assert [
        s["knowledgeBaseId"] for p in pages for s in p["knowledgeBaseSummaries"] if s["knowledgeBaseId"] in ids
    ] == ids
    with pytest.raises(ClientError) as err:
        agent.list_knowledge_bases(nextToken="not-a-token")
    assert _code(err) == "ValidationException"
    for i in ids:
        agent.delete_knowledge_base(knowledgeBaseId=i)


def test_client_token_makes_create_idempotent(agent: Any) -> None:
    token = str(uuid.uuid4())
    first = agent.create_knowledge_base(clientToken=token, **_kb("retried"))["knowledgeBase"]
    again = agent.create_knowledge_base(clientToken=token, **_kb("retried"))["knowledgeBase"]
    assert again["knowledgeBaseId"] == first["knowledgeBaseId"]
    with pytest.raises(ClientError) as err:  # the same token for another request
        agent.create_knowledge_base(clientToken=token, **_kb("something-else"))
    assert _code(err) == "ConflictException" and err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(ClientError) as err:  # another request (boto3 gives it a fresh token) with a name in use
        agent.create_knowledge_base(**_kb("retried"))
    assert _code(err) == "ConflictException"
    agent.delete_knowledge_base(knowledgeBaseId=first["knowledgeBaseId"])


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (_kb("bad-model") | {"knowledgeBaseConfiguration": {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": "amazon.titan-embed-text-v9:0"}}}, "names no model served here"),
        (_kb("chat-model") | {"knowledgeBaseConfiguration": {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{CHAT}"}}}, "not an embedding model"),
        (_kb("too-wide", dimensions=1024), "between 1 and 16"),
        (_kb("kendra") | {"knowledgeBaseConfiguration": {"type": "KENDRA", "kendraKnowledgeBaseConfiguration": {
            "kendraIndexArn": "arn:aws:kendra:us-east-1:123456789012:index/abcdefabcdefabcdefabcdefabcdefabcdef"}}},
         "only VECTOR"),
        (_kb("pinecone", storageConfiguration={"type": "PINECONE", "pineconeConfiguration": {
            "connectionString": "https://x.pinecone.io", "credentialsSecretArn":
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:pc", "fieldMapping": {
                "textField": "t", "metadataField": "m"}}}), "Supported: RDS"),
        (_kb("unmapped-rds", storageConfiguration={"type": "RDS", "rdsConfiguration": {
            "resourceArn": "arn:aws:rds:us-east-1:123456789012:cluster:elsewhere", "credentialsSecretArn":
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:kb", "databaseName": "kb", "tableName": "t",
            "fieldMapping": {"primaryKeyField": "id", "vectorField": "v", "textField": "t", "metadataField": "m"}}}),
         "knowledge_rds_urls"),
    ],
)  # fmt: skip
def test_bad_knowledge_bases_are_validation_errors(agent: Any, body: dict[str, Any], needle: str) -> None:
    with pytest.raises(ClientError) as err:
        agent.create_knowledge_base(**body)
    assert _code(err) == "ValidationException" and needle in str(err.value), str(err.value)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_rds_storage_is_kept(agent: Any) -> None:
    """The ARN maps to a PostgreSQL URL nothing listens on: the knowledge base is kept, FAILED with the reason (the
    PostgreSQL store itself is tested in tests/knowledge/test_vectors.py and test_service.py)."""
    rds = {"type": "RDS", "rdsConfiguration": {
        "resourceArn": RDS_ARN,
        "credentialsSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kb",
        "databaseName": "kb", "tableName": "bedrock_kb.chunks",
        "fieldMapping": {"primaryKeyField": "id", "vectorField": "embedding", "textField": "chunks",
                         "metadataField": "metadata"}}}  # fmt: skip
    made = agent.create_knowledge_base(**_kb("on-postgres", storageConfiguration=rds))["knowledgeBase"]
    got = agent.get_knowledge_base(knowledgeBaseId=made["knowledgeBaseId"])["knowledgeBase"]
    assert got["storageConfiguration"] == rds
    assert got["status"] == "FAILED" and "could not be made" in got["failureReasons"][0], got
    agent.delete_knowledge_base(knowledgeBaseId=made["knowledgeBaseId"])


def test_data_source_lifecycle(agent: Any) -> None:
    kb_id = agent.create_knowledge_base(**_kb("with-sources"))["knowledgeBase"]["knowledgeBaseId"]
    made = agent.create_data_source(knowledgeBaseId=kb_id, name="manuals", dataSourceConfiguration=S3,
                                    vectorIngestionConfiguration=FIXED)["dataSource"]  # fmt: skip
    ds_id = made["dataSourceId"]
    assert made["status"] == "AVAILABLE" and made["knowledgeBaseId"] == kb_id and made["dataDeletionPolicy"] == "DELETE"
    got = agent.get_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id)["dataSource"]
    assert got["dataSourceConfiguration"] == S3 and got["vectorIngestionConfiguration"] == FIXED
    custom = agent.create_data_source(knowledgeBaseId=kb_id, name="pushed",
                                      dataSourceConfiguration={"type": "CUSTOM"})["dataSource"]  # fmt: skip
    assert custom["dataSourceConfiguration"] == {"type": "CUSTOM"}

    first = agent.list_data_sources(knowledgeBaseId=kb_id, maxResults=1)
    second = agent.list_data_sources(knowledgeBaseId=kb_id, maxResults=1, nextToken=first["nextToken"])
    assert [s["dataSourceId"] for s in first["dataSourceSummaries"] + second["dataSourceSummaries"]] == [
        ds_id, custom["dataSourceId"]]  # fmt: skip
    assert "nextToken" not in second

    other = {"type": "S3", "s3Configuration": {"bucketArn": "arn:aws:s3:::docs-bucket", "inclusionPrefixes": ["faq/"]}}
    done = agent.update_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id, name="manuals", description="FAQ",
                                    dataSourceConfiguration=other, vectorIngestionConfiguration=FIXED,
                                    dataDeletionPolicy="RETAIN")["dataSource"]  # fmt: skip
    assert done["dataSourceConfiguration"] == other and done["dataDeletionPolicy"] == "RETAIN"
    semantic = {"chunkingConfiguration": {"chunkingStrategy": "SEMANTIC", "semanticChunkingConfiguration": {
        "maxTokens": 300, "bufferSize": 0, "breakpointPercentileThreshold": 95}}}  # fmt: skip
    with pytest.raises(ClientError) as err:  # as on Bedrock, chunking is fixed at creation
        agent.update_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id, name="manuals",
                                 dataSourceConfiguration=other, vectorIngestionConfiguration=semantic)  # fmt: skip
    assert _code(err) == "ValidationException" and "cannot change" in str(err.value)
    with pytest.raises(ClientError) as err:
        agent.create_data_source(knowledgeBaseId=kb_id, name="manuals", dataSourceConfiguration=S3)
    assert _code(err) == "ConflictException"

    gone = agent.delete_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id)
    assert gone["status"] == "DELETING"
    with pytest.raises(ClientError) as err:
        agent.get_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id)
    assert _code(err) == "ResourceNotFoundException"
    agent.delete_knowledge_base(knowledgeBaseId=kb_id)  # takes its remaining data source with it
    with pytest.raises(ClientError) as err:
        agent.list_data_sources(knowledgeBaseId=kb_id)
    assert _code(err) == "ResourceNotFoundException"


@pytest.mark.parametrize(
    ("config", "ingestion", "needle"),
    [
        ({"type": "WEB", "webConfiguration": {"sourceConfiguration": {"urlConfiguration": {
            "seedUrls": [{"url": "https://example.com"}]}}}}, None, "Supported: S3"),
        (S3, {"chunkingConfiguration": {"chunkingStrategy": "FIXED_SIZE", "fixedSizeChunkingConfiguration": {
            "maxTokens": 2000, "overlapPercentage": 10}}}, "reads at most 512 tokens"),
        (S3, {"chunkingConfiguration": {"chunkingStrategy": "FIXED_SIZE"}}, "fixedSizeChunkingConfiguration is required"),
        (S3, {"chunkingConfiguration": {"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {
            "levelConfigurations": [{"maxTokens": 1500}, {"maxTokens": 300}], "overlapTokens": 60}}}, None),
        (S3, {"chunkingConfiguration": {"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {
            "levelConfigurations": [{"maxTokens": 300}, {"maxTokens": 400}], "overlapTokens": 60}}},
         "more than the parent level's maxTokens"),
        (S3, {"chunkingConfiguration": {"chunkingStrategy": "NONE", "fixedSizeChunkingConfiguration": {
            "maxTokens": 300, "overlapPercentage": 20}}}, "only allowed with its own chunkingStrategy, not NONE"),
        (S3, {"parsingConfiguration": {"parsingStrategy": "BEDROCK_FOUNDATION_MODEL"}}, "not supported"),
        ({"type": "CUSTOM", "s3Configuration": S3["s3Configuration"]}, None, "no other member"),
    ],
)  # fmt: skip
def test_data_source_checks(agent: Any, config: dict[str, Any], ingestion: dict[str, Any] | None,
                            needle: str | None) -> None:  # fmt: skip
    kb_id = agent.create_knowledge_base(**_kb(f"checks-{uuid.uuid4().hex[:8]}"))["knowledgeBase"]["knowledgeBaseId"]
    extra = {"vectorIngestionConfiguration": ingestion} if ingestion else {}
    try:
        if needle is None:  # accepted: the child chunks (300) fit the model; the parents are never embedded
            agent.create_data_source(knowledgeBaseId=kb_id, name="src", dataSourceConfiguration=config, **extra)
            return
        with pytest.raises(ClientError) as err:
            agent.create_data_source(knowledgeBaseId=kb_id, name="src", dataSourceConfiguration=config, **extra)
        assert _code(err) == "ValidationException" and needle in str(err.value), str(err.value)
    finally:
        agent.delete_knowledge_base(knowledgeBaseId=kb_id)


def test_unknown_ids(agent: Any) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = [
        (agent.get_knowledge_base, {"knowledgeBaseId": "ABCDEFGHIJ"}),
        (agent.list_data_sources, {"knowledgeBaseId": "ABCDEFGHIJ"}),
        (agent.get_data_source, {"knowledgeBaseId": "ABCDEFGHIJ", "dataSourceId": "ABCDEFGHIJ"}),
        (agent.create_data_source, {"knowledgeBaseId": "ABCDEFGHIJ", "name": "x", "dataSourceConfiguration": S3}),
    ]
    for call, args in calls:
        with pytest.raises(ClientError) as err:
            call(**args)
        assert _code(err) == "ResourceNotFoundException", call
    with pytest.raises(ClientError) as err:  # not an id at all
        agent.get_knowledge_base(knowledgeBaseId="no-such-kb!")
    assert _code(err) == "ValidationException"


def test_tags_and_other_accounts(agent: Any) -> None:
    made = agent.create_knowledge_base(**_kb("tagged", tags={"team": "docs"}))["knowledgeBase"]
    arn = made["knowledgeBaseArn"]
    assert agent.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "docs"}
    agent.tag_resource(resourceArn=arn, tags={"stage": "prod", "team": "support"})
    assert agent.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "support", "stage": "prod"}
    agent.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert agent.list_tags_for_resource(resourceArn=arn)["tags"] == {"stage": "prod"}
    # the same knowledge base id under another account names nothing here
    foreign = arn.replace(":000000000000:", ":123456789012:")
    calls: list[tuple[Any, dict[str, Any]]] = [
        (agent.list_tags_for_resource, {}),
        (agent.tag_resource, {"tags": {"x": "y"}}),
        (agent.untag_resource, {"tagKeys": ["stage"]}),
    ]
    for call, args in calls:
        with pytest.raises(ClientError) as err:
            call(resourceArn=foreign, **args)
        assert _code(err) == "ResourceNotFoundException"
    agent.delete_knowledge_base(knowledgeBaseId=made["knowledgeBaseId"])
    with pytest.raises(ClientError) as err:
        agent.list_tags_for_resource(resourceArn=arn)
    assert _code(err) == "ResourceNotFoundException"


def test_the_bedrock_document_has_the_operations() -> None:
    from outcrop.api import openapi
    from outcrop.api.bedrock_agent.routes import ROUTES

    ops = {op["operationId"] for path in openapi.bedrock_document(ROUTES)["paths"].values() for op in path.values()}
    assert ops == {"CreateKnowledgeBase", "GetKnowledgeBase", "ListKnowledgeBases", "UpdateKnowledgeBase",
                   "DeleteKnowledgeBase", "CreateDataSource", "GetDataSource", "ListDataSources", "UpdateDataSource",
                   "DeleteDataSource", "TagResource", "UntagResource", "ListTagsForResource"}  # fmt: skip

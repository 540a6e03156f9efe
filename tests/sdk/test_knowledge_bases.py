"""Knowledge bases end to end, as a boto3 program uses them: create a knowledge base (the built-in MiniLM) and an S3
data source on a real moto S3 server holding a PDF, a DOCX, an HTML page and a Markdown file; ingest it; Retrieve
finds the right passage of each file; RetrieveAndGenerate and RetrieveAndGenerateStream answer with citations that
point at that passage and its S3 object. The answers come from a scripted model (citations checked exactly) and
once from the built-in llama.cpp model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from outcrop import store
from outcrop.api.app import build_app
from outcrop.config import ModelSpec, Settings
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.models import BUILTIN_EMBEDDING_ID, BUILTIN_MODEL_ID, builtin_embedding_available
from outcrop.registry import Registry
from tests.api.bedrock_agent_runtime.conftest import SCRIPTED, ScriptedEngine, number_of
from tests.conftest import client, free_port, serve_app
from tests.knowledge import files

pytestmark = pytest.mark.skipif(not builtin_embedding_available(), reason="the built-in embedding model is needed")

BUCKET = "rock-manuals"
ROLE = "arn:aws:iam::123456789012:role/kb-role"
DOCUMENTS = {
    "basalt.pdf": files.pdf(["Basalt columns form when thick lava flows cool slowly and contract.",
                             "The hexagonal columns of the Giant's Causeway in Ireland are basalt."]),
    "sandstone.docx": files.docx([("h1", "Sandstone"),
                                  ("p", "Sandstone is a clastic rock of sand-sized quartz grains cemented together.")]),
    "granite.html": b"<html><body><h1>Granite</h1><p>Granite is a coarse-grained intrusive igneous rock rich in "
                    b"quartz and feldspar, used for kitchen countertops.</p></body></html>",
    "limestone.md": b"# Limestone\n\nLimestone forms from the shells of marine organisms and fizzes in dilute "
                    b"hydrochloric acid.\n",
}  # fmt: skip
QUESTIONS = {  # question -> (the file that answers it, a phrase of the passage)
    "Where can I see hexagonal basalt columns?": ("basalt.pdf", "Giant's Causeway"),
    "What are sandstone grains made of?": ("sandstone.docx", "sand-sized quartz grains"),
    "Which rock is used for kitchen countertops?": ("granite.html", "kitchen countertops"),
    "Which rock fizzes in acid?": ("limestone.md", "fizzes in dilute"),
}


@dataclass
class World:
    agent: Any
    runtime: Any
    engine: ScriptedEngine
    kb_id: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import boto3
    from moto.server import ThreadedMotoServer

    tmp = Path(tmp_path_factory.mktemp("kb-e2e"))
    with pytest.MonkeyPatch.context() as env:
        for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
            env.setenv(name, value)
        port = free_port()
        s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        s3_server.start()
        endpoint = f"http://127.0.0.1:{port}"
        try:
            s3 = boto3.client("s3", endpoint_url=endpoint)
            s3.create_bucket(Bucket=BUCKET)
            for key, data in DOCUMENTS.items():
                s3.put_object(Bucket=BUCKET, Key=f"docs/{key}", Body=data)
            engine = ScriptedEngine()
            settings = Settings(config_path=tmp / "c.toml", models=(ModelSpec(id=SCRIPTED, engine="echo",
                                n_ctx=16384),), knowledge_dir=str(tmp / "knowledge"),
                                s3_endpoint_url=endpoint)  # fmt: skip
            registry = Registry(settings, {SCRIPTED: engine})
            app = build_app(settings, registry, knowledge=KnowledgeCatalog(store.connect(f"sqlite:///{tmp / 'o.db'}")))
            with serve_app(app) as url:
                agent = client("bedrock-agent", url)
                kb_id = _ingested(agent)
                yield World(agent, client("bedrock-agent-runtime", url), engine, kb_id)
        finally:
            s3_server.stop()


def _ingested(agent: Any) -> str:
    config = {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
        "embeddingModelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{BUILTIN_EMBEDDING_ID}"}}  # fmt: skip
    kb_id = agent.create_knowledge_base(name="rocks", roleArn=ROLE, knowledgeBaseConfiguration=config)[
        "knowledgeBase"]["knowledgeBaseId"]  # fmt: skip
    source = {"type": "S3", "s3Configuration": {"bucketArn": f"arn:aws:s3:::{BUCKET}", "inclusionPrefixes": ["docs/"]}}
    ds_id = agent.create_data_source(knowledgeBaseId=kb_id, name="manuals",
                                     dataSourceConfiguration=source)["dataSource"]["dataSourceId"]  # fmt: skip
    job_id = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id)["ingestionJob"]["ingestionJobId"]
    deadline = time.monotonic() + 300
    while True:
        job = agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId=job_id)["ingestionJob"]
        if job["status"] in ("COMPLETE", "FAILED", "STOPPED"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "COMPLETE", job
    assert job["statistics"]["numberOfNewDocumentsIndexed"] == len(DOCUMENTS), job["statistics"]
    assert job["statistics"]["numberOfDocumentsFailed"] == 0, job
    return str(kb_id)


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_retrieve_finds_the_passage_of_each_format(world: World, question: str) -> None:
    name, phrase = QUESTIONS[question]
    out = world.runtime.retrieve(knowledgeBaseId=world.kb_id, retrievalQuery={"text": question},
                                 retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 3}})  # fmt: skip
    top = out["retrievalResults"][0]  # the right file first, the passage among the first three
    assert any(phrase in r["content"]["text"] for r in out["retrievalResults"]), out["retrievalResults"]
    assert top["location"] == {"type": "S3", "s3Location": {"uri": f"s3://{BUCKET}/docs/{name}"}}
    assert top["metadata"]["x-amz-bedrock-kb-source-uri"] == f"s3://{BUCKET}/docs/{name}"


def _config(kb_id: str, model: str = SCRIPTED) -> dict[str, Any]:
    return {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {"knowledgeBaseId": kb_id, "modelArn": model}}


def test_retrieve_and_generate_cites_the_passage(world: World) -> None:
    world.engine.script = lambda r: f"Go to the Giant's Causeway in Ireland [{number_of(r, 'Giant')}]."
    out = world.runtime.retrieve_and_generate(input={"text": "Where can I see hexagonal basalt columns?"},
                                              retrieveAndGenerateConfiguration=_config(world.kb_id))  # fmt: skip
    assert out["output"]["text"] == "Go to the Giant's Causeway in Ireland."
    [citation] = out["citations"]
    span = citation["generatedResponsePart"]["textResponsePart"]["span"]
    assert out["output"]["text"][span["start"] : span["end"] + 1] == out["output"]["text"]
    [reference] = citation["retrievedReferences"]
    assert "Giant's Causeway" in reference["content"]["text"]
    assert reference["location"]["s3Location"]["uri"] == f"s3://{BUCKET}/docs/basalt.pdf"
    assert out["sessionId"]


def test_the_stream_cites_the_passage(world: World) -> None:
    world.engine.script = lambda r: f"Limestone does [{number_of(r, 'fizzes')}]."
    out = world.runtime.retrieve_and_generate_stream(input={"text": "Which rock fizzes in acid?"},
                                                     retrieveAndGenerateConfiguration=_config(world.kb_id))  # fmt: skip
    text, references = "", []
    for event in out["stream"]:
        if "output" in event:
            text += event["output"]["text"]
        if "citation" in event:
            references += event["citation"]["retrievedReferences"]
    assert text == "Limestone does."
    assert [r["location"]["s3Location"]["uri"] for r in references] == [f"s3://{BUCKET}/docs/limestone.md"]


def test_the_built_in_model_answers_from_the_documents(world: World) -> None:
    out = world.runtime.retrieve_and_generate(
        input={"text": "Which rock is used for kitchen countertops?"},
        retrieveAndGenerateConfiguration=_config(world.kb_id, BUILTIN_MODEL_ID),
    )
    assert out["output"]["text"].strip()
    cited = [r["location"]["s3Location"]["uri"] for c in out["citations"] for r in c["retrievedReferences"]]
    assert all(uri.startswith(f"s3://{BUCKET}/docs/") for uri in cited)

"""Ingestion through boto3's `bedrock-agent` client against a real server: an S3 data source on a real moto S3
server (a PDF, a DOCX, an HTML page, a Markdown file with its sidecar, a 0-byte file and an encrypted PDF) ingested
with the built-in MiniLM embedding model, statistics and failureReasons exact, then changed, re-ingested
incrementally; a local folder standing for a bucket; documents pushed to a CUSTOM data source; jobs stopped,
listed, refused while another runs; a data source deleted with its vectors; and Bedrock's errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from outcrop import store
from outcrop.api.app import App, build_app
from outcrop.config import ModelSpec, Settings
from outcrop.conversation import EmbedRequest, EmbedResult
from outcrop.engines.base import EngineStats
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.knowledge.service import index_name
from outcrop.models import BUILTIN_EMBEDDING_ID, builtin_embedding_available
from outcrop.registry import Registry
from tests.conftest import client, free_port, serve_app
from tests.knowledge import files

pytestmark = pytest.mark.skipif(not builtin_embedding_available(), reason="the built-in embedding model is needed")

GATED = "test.gated-embed-v1:0"
ROLE = "arn:aws:iam::123456789012:role/kb-role"
BUCKET = "kb-docs"
PREFIX = "manuals/"


class GatedEmbedder:
    """An 8-dimensional embedding model that answers only while its gate is open (a job that can be caught
    running)."""

    dimensions = 8
    max_tokens = 512

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        import asyncio

        self.calls += 1
        await asyncio.to_thread(self.gate.wait, 60)
        vectors = np.ones((len(request.texts), self.dimensions), np.float32)
        return EmbedResult(vectors, sum(len(t.split()) for t in request.texts))

    def stats(self) -> EngineStats:
        return EngineStats(in_flight=0, queued=0, max_queue=8)

    async def close(self) -> None:
        return None


@dataclass
class Served:
    agent: Any
    s3: Any
    app: App
    gated: GatedEmbedder
    folder: Path  # knowledge_dir


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import boto3
    from moto.server import ThreadedMotoServer

    tmp = Path(tmp_path_factory.mktemp("ingest"))
    with pytest.MonkeyPatch.context() as env:
        for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
            env.setenv(name, value)
        port = free_port()
        s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        s3_server.start()
        endpoint = f"http://127.0.0.1:{port}"
        try:
            gated = GatedEmbedder()
            models = (ModelSpec(id=GATED, kind="embedding", engine="sentence-transformers"),)
            settings = Settings(config_path=tmp / "c.toml", models=models, builtin_model=False,
                                builtin_embedding_model=True, knowledge_dir=str(tmp / "knowledge"),
                                s3_endpoint_url=endpoint)  # fmt: skip
            registry = Registry(settings, {GATED: gated})  # type: ignore[dict-item]
            catalog = KnowledgeCatalog(store.connect(f"sqlite:///{tmp / 'o.db'}"))
            app = build_app(settings, registry, knowledge=catalog)
            with serve_app(app) as url:
                yield Served(client("bedrock-agent", url), boto3.client("s3", endpoint_url=endpoint), app, gated,
                             tmp / "knowledge")  # fmt: skip
        finally:
            s3_server.stop()


def _kb(agent: Any, name: str, model: str = BUILTIN_EMBEDDING_ID) -> str:
    config = {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
        "embeddingModelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{model}"}}  # fmt: skip
    made = agent.create_knowledge_base(name=name, roleArn=ROLE, knowledgeBaseConfiguration=config)
    return str(made["knowledgeBase"]["knowledgeBaseId"])


def _s3_source(agent: Any, kb_id: str, name: str, bucket: str = BUCKET, **extra: Any) -> str:
    s3 = {"bucketArn": f"arn:aws:s3:::{bucket}", **extra}
    made = agent.create_data_source(knowledgeBaseId=kb_id, name=name,
                                    dataSourceConfiguration={"type": "S3", "s3Configuration": s3})  # fmt: skip
    return str(made["dataSource"]["dataSourceId"])


def _wait(agent: Any, kb_id: str, ds_id: str, job_id: str, until: Callable[[dict[str, Any]], bool] | None = None,
          timeout: float = 180) -> dict[str, Any]:  # fmt: skip
    """The job once it is finished (or `until` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id,
                                                      ingestionJobId=job_id)["ingestionJob"]  # fmt: skip
        done = until(job) if until else job["status"] in ("COMPLETE", "FAILED", "STOPPED")
        if done:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def _ingest(agent: Any, kb_id: str, ds_id: str) -> dict[str, Any]:
    job = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id)["ingestionJob"]
    assert job["status"] == "STARTING" and job["knowledgeBaseId"] == kb_id and job["dataSourceId"] == ds_id
    return _wait(agent, kb_id, ds_id, job["ingestionJobId"])


def _stats(**nonzero: int) -> dict[str, int]:
    names = ["numberOfDocumentsScanned", "numberOfMetadataDocumentsScanned", "numberOfNewDocumentsIndexed",
             "numberOfModifiedDocumentsIndexed", "numberOfMetadataDocumentsModified", "numberOfDocumentsDeleted",
             "numberOfDocumentsFailed"]  # fmt: skip
    short = {"scanned": names[0], "metadata": names[1], "new": names[2], "modified": names[3],
             "metadata_modified": names[4], "deleted": names[5], "failed": names[6]}  # fmt: skip
    out = dict.fromkeys(names, 0)
    out.update({short[k]: v for k, v in nonzero.items()})
    return out


def _details(agent: Any, kb_id: str, ds_id: str) -> dict[str, dict[str, Any]]:
    pages = agent.get_paginator("list_knowledge_base_documents").paginate(knowledgeBaseId=kb_id, dataSourceId=ds_id)
    out = {}
    for page in pages:
        for d in page["documentDetails"]:
            ident = d["identifier"]
            out[ident["s3"]["uri"] if ident["dataSourceType"] == "S3" else ident["custom"]["id"]] = d
    return out


def _store(served: Served, kb_id: str) -> tuple[Any, str]:
    knowledge = served.app.context.knowledge
    assert knowledge is not None
    kb = knowledge.catalog.get(kb_id)
    return knowledge.store(kb), index_name(kb)


PDF = files.pdf(["Basalt columns form when thick lava flows cool and contract.\nThe cracks meet at 120 degrees.",
                 "Page two explains columnar jointing at the Giant's Causeway."])  # fmt: skip
DOCX = files.docx([("h1", "Sandstone"), ("p", "Sandstone is a clastic rock of sand-sized grains cemented together.")])
HTML = (b"<html><head><title>Granite</title></head><body><h1>Granite</h1>"
        b"<p>Granite is a coarse-grained intrusive igneous rock rich in quartz and feldspar.</p></body></html>")  # fmt: skip
MARKDOWN = b"# Limestone\n\nLimestone forms from the shells of marine organisms and dissolves in weak acid.\n"
SIDECAR = b'{"metadataAttributes": {"rock": "sedimentary", "year": 2021}}'


def _uri(key: str, bucket: str = BUCKET) -> str:
    return f"s3://{bucket}/{key}"


def test_s3_ingestion_is_exact_and_incremental(served: Served) -> None:
    agent, s3 = served.agent, served.s3
    s3.create_bucket(Bucket=BUCKET)
    for key, body in ((PREFIX + "basalt.pdf", PDF), (PREFIX + "sandstone.docx", DOCX), (PREFIX + "granite.html", HTML),
                      (PREFIX + "limestone.md", MARKDOWN), (PREFIX + "limestone.md.metadata.json", SIDECAR),
                      (PREFIX + "empty.txt", b""), (PREFIX + "locked.pdf", files.encrypted_pdf(["secret text"])),
                      ("elsewhere/ignored.md", b"# Not under the prefix")):  # fmt: skip
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    kb_id = _kb(agent, "rocks")
    ds_id = _s3_source(agent, kb_id, "rocks-bucket", inclusionPrefixes=[PREFIX])

    job = _ingest(agent, kb_id, ds_id)
    assert job["status"] == "COMPLETE"
    assert job["statistics"] == _stats(scanned=6, metadata=1, new=4, failed=2)
    assert sorted(job["failureReasons"]) == [
        f"{_uri(PREFIX + 'empty.txt')}: the file is empty (0 bytes).",
        f"{_uri(PREFIX + 'locked.pdf')}: the PDF is encrypted and needs a password; upload it without one.",
    ]
    docs = _details(agent, kb_id, ds_id)
    assert {u: d["status"] for u, d in docs.items()} == {
        _uri(PREFIX + k): s for k, s in (("basalt.pdf", "INDEXED"), ("sandstone.docx", "INDEXED"),
                                         ("granite.html", "INDEXED"), ("limestone.md", "INDEXED"),
                                         ("empty.txt", "FAILED"), ("locked.pdf", "FAILED"))}  # fmt: skip
    assert docs[_uri(PREFIX + "empty.txt")]["statusReason"].endswith("the file is empty (0 bytes).")

    vectors, index = _store(served, kb_id)
    assert len(vectors.document_ids(index)) == 4
    knowledge = served.app.context.knowledge
    assert knowledge is not None
    from outcrop.auth.principal import LOCAL
    from outcrop.knowledge.vectors import SearchType

    async def search(text: str, kind: SearchType = SearchType.SEMANTIC) -> Any:
        return await knowledge.search(kb_id, LOCAL, text, number_of_results=2, search_type=kind)

    import asyncio

    hits = asyncio.run(search("which rock is made of cemented sand grains?"))
    assert hits[0].location == {"type": "S3", "s3Location": {"uri": _uri(PREFIX + "sandstone.docx")}}
    hits = asyncio.run(search("shells of marine organisms"))
    top = hits[0]
    assert top.metadata["rock"] == "sedimentary" and top.metadata["year"] == 2021
    assert top.metadata["x-amz-bedrock-kb-source-uri"] == _uri(PREFIX + "limestone.md")
    assert top.metadata["x-amz-bedrock-kb-data-source-id"] == ds_id
    hits = asyncio.run(search("Giant's Causeway columnar jointing"))
    assert hits[0].metadata["x-amz-bedrock-kb-document-page-number"] == 2

    # Nothing changed: nothing is embedded again (the two broken files are tried again and fail again).
    before = {u: d["updatedAt"] for u, d in _details(agent, kb_id, ds_id).items()}
    job = _ingest(agent, kb_id, ds_id)
    assert job["statistics"] == _stats(scanned=6, metadata=1, failed=2)
    # One file changed, one deleted, one added, one sidecar changed: only those are touched.
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "granite.html", Body=HTML.replace(b"coarse-grained", b"speckled"))
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "sandstone.docx")
    s3.put_object(
        Bucket=BUCKET, Key=PREFIX + "shale.txt", Body=b"Shale is a fine-grained rock that splits into layers."
    )
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "limestone.md.metadata.json",
                  Body=b'{"metadataAttributes": {"rock": "sedimentary", "year": 2024}}')  # fmt: skip
    job = _ingest(agent, kb_id, ds_id)
    assert job["statistics"] == _stats(scanned=6, metadata=1, new=1, modified=1, metadata_modified=1, deleted=1,
                                       failed=2)  # fmt: skip
    after = _details(agent, kb_id, ds_id)
    assert after[_uri(PREFIX + "basalt.pdf")]["updatedAt"] == before[_uri(PREFIX + "basalt.pdf")]
    assert after[_uri(PREFIX + "granite.html")]["updatedAt"] != before[_uri(PREFIX + "granite.html")]
    assert _uri(PREFIX + "sandstone.docx") not in after and after[_uri(PREFIX + "shale.txt")]["status"] == "INDEXED"
    assert len(vectors.document_ids(index)) == 4  # basalt, granite, limestone, shale
    hits = asyncio.run(search("shells of marine organisms"))
    assert hits[0].metadata["year"] == 2024
    hits = asyncio.run(search("speckled", SearchType.KEYWORD))
    assert hits and hits[0].location == {"type": "S3", "s3Location": {"uri": _uri(PREFIX + "granite.html")}}
    assert not asyncio.run(search("coarse", SearchType.KEYWORD))  # the old version's chunks are gone

    # The jobs, listed as the model says: newest first by default, filtered by status, page by page.
    listed = agent.list_ingestion_jobs(knowledgeBaseId=kb_id, dataSourceId=ds_id)["ingestionJobSummaries"]
    assert len(listed) == 3 and listed[0]["statistics"]["numberOfNewDocumentsIndexed"] == 1
    assert [j["startedAt"] for j in listed] == sorted((j["startedAt"] for j in listed), reverse=True)
    oldest = agent.list_ingestion_jobs(knowledgeBaseId=kb_id, dataSourceId=ds_id, maxResults=1,
                                       sortBy={"attribute": "STARTED_AT", "order": "ASCENDING"})  # fmt: skip
    assert len(oldest["ingestionJobSummaries"]) == 1 and oldest["nextToken"]
    assert oldest["ingestionJobSummaries"][0]["statistics"]["numberOfNewDocumentsIndexed"] == 4
    paged = agent.get_paginator("list_ingestion_jobs").paginate(knowledgeBaseId=kb_id, dataSourceId=ds_id,
                                                                PaginationConfig={"PageSize": 2})  # fmt: skip
    assert sum(len(p["ingestionJobSummaries"]) for p in paged) == 3
    failed = agent.list_ingestion_jobs(knowledgeBaseId=kb_id, dataSourceId=ds_id,
                                       filters=[{"attribute": "STATUS", "operator": "EQ", "values": ["FAILED"]}])  # fmt: skip
    assert failed["ingestionJobSummaries"] == []

    # Deleting the data source (dataDeletionPolicy DELETE, the default) deletes its vectors.
    agent.delete_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id)
    assert vectors.document_ids(index) == []
    agent.delete_knowledge_base(knowledgeBaseId=kb_id)


def test_local_folder_stands_for_its_bucket(served: Served) -> None:
    agent = served.agent
    folder = served.folder / "folders" / "local-notes"
    (folder / "guide").mkdir(parents=True)
    (folder / "guide" / "setup.md").write_text("# Setup\n\nRun the installer, then restart the service.\n")
    (folder / "guide" / "setup.md.metadata.json").write_text('{"metadataAttributes": {"team": "ops"}}')
    (folder / "guide" / "faq.txt").write_text("Questions people ask about the installer.")
    outside = served.folder / "secret.txt"
    outside.write_text("not for the API")
    (folder / "guide" / "link.txt").symlink_to(outside)  # points out of the folder: never read
    kb_id = _kb(agent, "notes")
    ds_id = _s3_source(agent, kb_id, "notes-folder", bucket="local-notes")
    job = _ingest(agent, kb_id, ds_id)
    assert job["status"] == "COMPLETE"
    assert job["statistics"] == _stats(scanned=2, metadata=1, new=2)
    assert set(_details(agent, kb_id, ds_id)) == {"s3://local-notes/guide/setup.md", "s3://local-notes/guide/faq.txt"}
    (folder / "guide" / "faq.txt").unlink()
    job = _ingest(agent, kb_id, ds_id)
    assert job["statistics"] == _stats(scanned=1, metadata=1, deleted=1)
    # A key that leaves the folder names nothing there.
    made = agent.ingest_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds_id, documents=[
        {"content": {"dataSourceType": "S3", "s3": {"s3Location": {"uri": "s3://local-notes/../secret.txt"}}}}])  # fmt: skip
    uri = made["documentDetails"][0]["identifier"]["s3"]["uri"]
    detail = _wait_document(agent, kb_id, ds_id, {"dataSourceType": "S3", "s3": {"uri": uri}})
    assert detail["status"] == "FAILED" and "not a plain path" in detail["statusReason"]
    agent.delete_knowledge_base(knowledgeBaseId=kb_id)


def _wait_document(agent: Any, kb_id: str, ds_id: str, identifier: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        got = agent.get_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds_id,
                                                 documentIdentifiers=[identifier])["documentDetails"][0]  # fmt: skip
        if got["status"] not in ("STARTING", "IN_PROGRESS", "PENDING", "DELETING"):
            return dict(got)
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def _custom(doc_id: str, text: str | None = None, **content: Any) -> dict[str, Any]:
    inline = {"type": "TEXT", "textContent": {"data": text}} if text is not None else content
    return {"dataSourceType": "CUSTOM", "custom": {"customDocumentIdentifier": {"id": doc_id},
                                                   "sourceType": "IN_LINE", "inlineContent": inline}}  # fmt: skip


def test_custom_documents(served: Served) -> None:
    agent, s3 = served.agent, served.s3
    s3.create_bucket(Bucket="custom-src")
    s3.put_object(Bucket="custom-src", Key="notes/obsidian.html",
                  Body=b"<p>Obsidian is volcanic glass that fractures with sharp edges.</p>")  # fmt: skip
    s3.put_object(Bucket="custom-src", Key="notes/obsidian.meta.json",
                  Body=b'{"metadataAttributes": {"origin": "volcanic"}}')  # fmt: skip
    kb_id = _kb(agent, "custom")
    ds_id = agent.create_data_source(knowledgeBaseId=kb_id, name="pushed",
                                     dataSourceConfiguration={"type": "CUSTOM"})["dataSource"]["dataSourceId"]  # fmt: skip
    attributes = [{"key": "kind", "value": {"type": "STRING", "stringValue": "mineral"}},
                  {"key": "hardness", "value": {"type": "NUMBER", "numberValue": 7}}]  # fmt: skip
    documents = [
        {"content": _custom("quartz", "Quartz is a hard mineral made of silicon and oxygen."),
         "metadata": {"type": "IN_LINE_ATTRIBUTE", "inlineAttributes": attributes}},
        {"content": _custom("feldspar.docx", type="BYTE", byteContent={
            "mimeType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "data": files.docx([("p", "Feldspar is the most common mineral group in the crust.")])})},
        {"content": {"dataSourceType": "CUSTOM", "custom": {
            "customDocumentIdentifier": {"id": "obsidian"}, "sourceType": "S3_LOCATION",
            "s3Location": {"uri": "s3://custom-src/notes/obsidian.html"}}},
         "metadata": {"type": "S3_LOCATION", "s3Location": {"uri": "s3://custom-src/notes/obsidian.meta.json"}}},
        {"content": _custom("broken.pdf", type="BYTE", byteContent={"mimeType": "application/pdf",
                                                                     "data": b"%PDF-1.7 truncated"})},
    ]  # fmt: skip
    made = agent.ingest_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds_id, documents=documents)
    assert [d["status"] for d in made["documentDetails"]] == ["STARTING"] * 4
    assert made["documentDetails"][0]["identifier"] == {"dataSourceType": "CUSTOM", "custom": {"id": "quartz"}}
    ids = ["quartz", "feldspar.docx", "obsidian", "broken.pdf"]
    got = {i: _wait_document(agent, kb_id, ds_id, {"dataSourceType": "CUSTOM", "custom": {"id": i}}) for i in ids}
    assert {i: d["status"] for i, d in got.items()} == {"quartz": "INDEXED", "feldspar.docx": "INDEXED",
                                                        "obsidian": "INDEXED", "broken.pdf": "FAILED"}  # fmt: skip
    assert got["broken.pdf"]["statusReason"] == "broken.pdf: is not a readable PDF (damaged or truncated)."
    vectors, index = _store(served, kb_id)
    assert len(vectors.document_ids(index)) == 3
    knowledge = served.app.context.knowledge
    assert knowledge is not None
    import asyncio

    from outcrop.auth.principal import LOCAL

    hits = asyncio.run(knowledge.search(kb_id, LOCAL, "silicon and oxygen", number_of_results=1))
    assert hits[0].location == {"type": "CUSTOM", "customDocumentLocation": {"id": "quartz"}}
    assert hits[0].metadata["kind"] == "mineral" and hits[0].metadata["hardness"] == 7
    hits = asyncio.run(knowledge.search(kb_id, LOCAL, "volcanic glass", number_of_results=1))
    assert hits[0].metadata["origin"] == "volcanic"
    listed = agent.list_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds_id, maxResults=3)
    assert len(listed["documentDetails"]) == 3 and listed["nextToken"]
    assert len(_details(agent, kb_id, ds_id)) == 4

    # Pushing a document again replaces it; deleting removes it.
    agent.ingest_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds_id, documents=[
        {"content": _custom("quartz", "Quartz crystals are six-sided prisms.")}])  # fmt: skip
    assert (
        _wait_document(agent, kb_id, ds_id, {"dataSourceType": "CUSTOM", "custom": {"id": "quartz"}})["status"]
        == "INDEXED"
    )
    hits = asyncio.run(knowledge.search(kb_id, LOCAL, "six-sided prisms", number_of_results=5))
    quartz = [h for h in hits if h.location == {"type": "CUSTOM", "customDocumentLocation": {"id": "quartz"}}]
    assert len(quartz) == 1 and "prisms" in quartz[0].text and "kind" not in quartz[0].metadata
    gone = agent.delete_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds_id, documentIdentifiers=[
        {"dataSourceType": "CUSTOM", "custom": {"id": "quartz"}},
        {"dataSourceType": "CUSTOM", "custom": {"id": "never-there"}}])["documentDetails"]  # fmt: skip
    assert [d["status"] for d in gone] == ["DELETING", "NOT_FOUND"]
    assert (
        _wait_document(agent, kb_id, ds_id, {"dataSourceType": "CUSTOM", "custom": {"id": "quartz"}})["status"]
        == "NOT_FOUND"
    )
    assert len(vectors.document_ids(index)) == 2

    # The wrong content type for the data source, and inline metadata Bedrock would refuse.
    with pytest.raises(ClientError) as err:
        agent.ingest_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds_id, documents=[
            {"content": {"dataSourceType": "S3", "s3": {"s3Location": {"uri": "s3://custom-src/a.txt"}}}}])  # fmt: skip
    assert err.value.response["Error"]["Code"] == "ValidationException" and "must match" in str(err.value)
    with pytest.raises(ClientError) as err:
        agent.ingest_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds_id, documents=[
            {"content": _custom("x", "text"), "metadata": {"type": "IN_LINE_ATTRIBUTE", "inlineAttributes": [
                {"key": "x-amz-bedrock-kb-source-uri", "value": {"type": "STRING", "stringValue": "s3://a/b"}}]}}])  # fmt: skip
    assert err.value.response["Error"]["Code"] == "ValidationException" and "reserved" in str(err.value)
    # A job on a CUSTOM data source has nothing to scan and leaves pushed documents alone.
    job = _ingest(agent, kb_id, ds_id)
    assert job["status"] == "COMPLETE" and job["statistics"] == _stats()
    assert len(vectors.document_ids(index)) == 2
    # dataDeletionPolicy RETAIN keeps the vectors of a deleted data source.
    agent.update_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id, name="pushed",
                             dataSourceConfiguration={"type": "CUSTOM"}, dataDeletionPolicy="RETAIN")  # fmt: skip
    agent.delete_data_source(knowledgeBaseId=kb_id, dataSourceId=ds_id)
    assert len(vectors.document_ids(index)) == 2
    agent.delete_knowledge_base(knowledgeBaseId=kb_id)


def test_stop_and_one_job_at_a_time(served: Served) -> None:
    agent, s3, gated = served.agent, served.s3, served.gated
    s3.create_bucket(Bucket="slow-bucket")
    for i in range(5):
        s3.put_object(Bucket="slow-bucket", Key=f"doc{i}.txt", Body=f"Document number {i} about rocks.".encode())
    kb_id = _kb(agent, "gated", GATED)
    ds_id = _s3_source(agent, kb_id, "slow", bucket="slow-bucket")
    gated.gate.clear()
    try:
        calls = gated.calls
        job = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, description="first")["ingestionJob"]
        job_id = job["ingestionJobId"]
        running = _wait(agent, kb_id, ds_id, job_id, lambda j: j["status"] == "IN_PROGRESS" and gated.calls > calls)
        assert running["description"] == "first" and running["statistics"]["numberOfDocumentsScanned"] == 5
        with pytest.raises(ClientError) as err:
            agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id)
        assert err.value.response["Error"]["Code"] == "ConflictException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
        stopping = agent.stop_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId=job_id)
        assert stopping["ingestionJob"]["status"] == "STOPPING"
    finally:
        gated.gate.set()
    stopped = _wait(agent, kb_id, ds_id, job_id)
    assert stopped["status"] == "STOPPED"
    with pytest.raises(ClientError) as err:  # only a running job can be stopped
        agent.stop_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId=job_id)
    assert err.value.response["Error"]["Code"] == "ConflictException"
    # The next job ingests the rest (what the stopped one finished stays done).
    job = _ingest(agent, kb_id, ds_id)
    done = stopped["statistics"]["numberOfNewDocumentsIndexed"]
    assert job["status"] == "COMPLETE" and job["statistics"] == _stats(scanned=5, new=5 - done)
    # A retried start (same clientToken) is the same job; unknown ids are Bedrock's 404s.
    token = "a" * 40
    first = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, clientToken=token)["ingestionJob"]
    again = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, clientToken=token)["ingestionJob"]
    assert again["ingestionJobId"] == first["ingestionJobId"]
    _wait(agent, kb_id, ds_id, first["ingestionJobId"])
    for call, args in ((agent.get_ingestion_job, {"ingestionJobId": "NOSUCHJOB0"}),
                       (agent.start_ingestion_job, {}), (agent.list_ingestion_jobs, {})):  # fmt: skip
        with pytest.raises(ClientError) as err:
            call(knowledgeBaseId=kb_id, dataSourceId="NOSUCHDS00", **args)
        assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId="NOSUCHJOB0")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    agent.delete_knowledge_base(knowledgeBaseId=kb_id)


def test_a_missing_bucket_fails_the_job(served: Served) -> None:
    agent = served.agent
    kb_id = _kb(agent, "nobucket", GATED)
    ds_id = _s3_source(agent, kb_id, "missing", bucket="no-such-bucket")
    job = _ingest(agent, kb_id, ds_id)
    assert job["status"] == "FAILED"
    assert job["failureReasons"] == ["s3://no-such-bucket/ was not found (NoSuchBucket)."]
    agent.delete_knowledge_base(knowledgeBaseId=kb_id)

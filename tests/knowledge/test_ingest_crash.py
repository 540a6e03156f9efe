"""kill -9 in the middle of an ingestion job, on a real `outcrop serve` process with the built-in MiniLM embedding
model and a local folder standing for a bucket. The next server started on the same home resumes the job: it ends
COMPLETE with every document indexed once, each with exactly the chunks chunking gives it (none half-indexed,
none duplicated), and statistics that count each document once although part of the work was done before the
kill."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from outcrop.knowledge.chunking_config import FixedSize
from outcrop.knowledge.indexing import Content, document_id, prepare
from outcrop.knowledge.vectors.sqlite_store import SqliteVectorStore
from outcrop.models import BUILTIN_EMBEDDING_ID, builtin_embedding_available
from tests.conftest import client, serve_process

pytestmark = pytest.mark.skipif(not builtin_embedding_available(), reason="the built-in embedding model is needed")

N_DOCS = 100  # two embedding batches of 64 chunks: the kill lands once some documents are committed, not all
BUCKET = "crash-docs"
WORDS = [
    "basalt", "granite", "quartz", "feldspar", "mica", "schist", "gneiss", "marble", "slate", "shale", "sandstone",
    "limestone", "chalk", "flint", "obsidian", "pumice", "tuff", "andesite", "rhyolite", "gabbro", "diorite",
    "peridotite", "olivine", "pyroxene", "amphibole", "garnet",
]  # fmt: skip


def _text(i: int) -> str:
    words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(110)]
    return f"Field note {i}. " + " ".join(words) + f". End of note {i}."


def _drain(proc: subprocess.Popen[str]) -> None:
    """Read the server's output as it comes, so that a full pipe never blocks it."""
    threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True).start()


def _job(agent: Any, ids: dict[str, str]) -> dict[str, Any]:
    return dict(agent.get_ingestion_job(**ids)["ingestionJob"])


def test_kill_9_mid_job_then_the_next_server_resumes_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = home / "knowledge" / "folders" / BUCKET
    folder.mkdir(parents=True)
    for i in range(N_DOCS):
        (folder / f"note-{i:03d}.txt").write_text(_text(i))
    config = home / "config.toml"
    config.write_text("[server]\nbuiltin_model = false\nbuiltin_embedding_model = true\n")
    procs: list[subprocess.Popen[str]] = []
    try:
        proc, url = serve_process(config, home)
        procs.append(proc)
        _drain(proc)
        agent = client("bedrock-agent", url)
        config_kb = {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{BUILTIN_EMBEDDING_ID}"}}  # fmt: skip
        kb_id = agent.create_knowledge_base(name="crash", roleArn="arn:aws:iam::123456789012:role/r",
                                            knowledgeBaseConfiguration=config_kb)["knowledgeBase"]["knowledgeBaseId"]  # fmt: skip
        ds_id = agent.create_data_source(knowledgeBaseId=kb_id, name="notes", dataSourceConfiguration={
            "type": "S3", "s3Configuration": {"bucketArn": f"arn:aws:s3:::{BUCKET}"}})["dataSource"]["dataSourceId"]  # fmt: skip
        job_id = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id)["ingestionJob"]["ingestionJobId"]
        ids = {"knowledgeBaseId": kb_id, "dataSourceId": ds_id, "ingestionJobId": job_id}
        deadline = time.monotonic() + 300
        while _job(agent, ids)["statistics"]["numberOfNewDocumentsIndexed"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

        proc, url = serve_process(config, home)  # the same home: the same store, vectors and folder
        procs.append(proc)
        _drain(proc)
        agent = client("bedrock-agent", url)
        at_restart = _job(agent, ids)
        assert at_restart["status"] in ("IN_PROGRESS", "COMPLETE")
        done_before = at_restart["statistics"]["numberOfNewDocumentsIndexed"]
        assert 0 < done_before < N_DOCS, "the kill came after the job had finished: make the job longer"
        while (job := _job(agent, ids))["status"] != "COMPLETE":
            assert job["status"] == "IN_PROGRESS" and time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["statistics"] == {
            "numberOfDocumentsScanned": N_DOCS, "numberOfMetadataDocumentsScanned": 0,
            "numberOfNewDocumentsIndexed": N_DOCS, "numberOfModifiedDocumentsIndexed": 0,
            "numberOfMetadataDocumentsModified": 0, "numberOfDocumentsDeleted": 0, "numberOfDocumentsFailed": 0,
        }  # fmt: skip
        assert "failureReasons" not in job
        docs = [d for p in agent.get_paginator("list_knowledge_base_documents").paginate(
            knowledgeBaseId=kb_id, dataSourceId=ds_id) for d in p["documentDetails"]]  # fmt: skip
        assert len(docs) == N_DOCS and {d["status"] for d in docs} == {"INDEXED"}

        vectors = SqliteVectorStore(home / "knowledge" / "vectors")
        try:
            index = f"kb_{kb_id.lower()}"
            expected = {}
            for i in range(N_DOCS):
                uri = f"s3://{BUCKET}/note-{i:03d}.txt"
                data = (folder / f"note-{i:03d}.txt").read_bytes()
                expected[document_id(ds_id, "S3", uri)] = len(prepare(Content("S3", uri, uri, data), ds_id,
                                                                          FixedSize()).chunks)  # fmt: skip
            assert sorted(vectors.document_ids(index)) == sorted(expected)
            assert {d: vectors.count(index, d) for d in expected} == expected
            assert vectors.count(index) == sum(expected.values())
        finally:
            vectors.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)

"""The ingestion ledger on SQLite and PostgreSQL: one running job per data source (also when two requests race),
clientToken retries, counters committed with each document's row, a direct request's generation winning over older
work, paging and sorting of jobs and documents, and jobs and documents left by a dead process taken over."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from outcrop import errors, store
from outcrop.auth.principal import Principal
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.knowledge.ledger import Ledger

ALICE = Principal(id="u1", name="alice", groups=("geo",))


def _setup(url: str) -> tuple[Ledger, str, str]:
    catalog = KnowledgeCatalog(store.connect(url))
    kb = catalog.create({"name": "kb", "roleArn": "arn:aws:iam::1:role/r", "knowledgeBaseConfiguration": {
        "type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": "m"}}}, "m", 8)  # fmt: skip
    ds = catalog.create_data_source(kb.id, {"name": "ds", "dataSourceConfiguration": {"type": "CUSTOM"}})
    return Ledger(catalog.engine), kb.id, ds.id


def _row(kb: str, ds: str, doc: str, **values: Any) -> dict[str, Any]:
    return {"data_source_id": ds, "document_id": doc, "knowledge_base_id": kb, "kind": "S3", "uri": f"s3://b/{doc}",
            "source_tag": "t1", "sidecar_tag": None, "content_hash": "h", "metadata_hash": None,
            "status": "INDEXED", "reason": None, "chunks": 3, **values}  # fmt: skip


def test_one_job_at_a_time_and_counters(database_url: str) -> None:
    ledger, kb, ds = _setup(database_url)
    job, made = ledger.start_job(kb, ds, ALICE, "first", "tok-1", "hash-1", "p_a")
    assert made and job.status == "STARTING" and job.principal == ALICE and job.description == "first"
    again, made = ledger.start_job(kb, ds, ALICE, "first", "tok-1", "hash-1", "p_a")
    assert not made and again.id == job.id
    with pytest.raises(errors.Conflict):  # same token, another request
        ledger.start_job(kb, ds, ALICE, "other", "tok-1", "hash-2", "p_a")
    with pytest.raises(errors.Conflict):  # another job while this one runs
        ledger.start_job(kb, ds, ALICE, None, None, "hash-3", "p_a")
    assert ledger.set_status(job.id, "IN_PROGRESS")
    ledger.scanned(job.id, 3, 1)
    assert ledger.commit_document(job.id, _row(kb, ds, "d1"), ["new_indexed"], generation=0)
    assert ledger.commit_document(job.id, _row(kb, ds, "d2", status="FAILED", chunks=0, reason="d2: empty"),
                                  ["failed"], "d2: empty", generation=0)  # fmt: skip
    assert ledger.commit_deleted(job.id, ds, "d1", ["deleted"], generation=0)
    assert not ledger.commit_deleted(job.id, ds, "d1", ["deleted"])  # gone already: not counted twice
    got = ledger.job(kb, ds, job.id)
    assert got.statistics == {"numberOfDocumentsScanned": 3, "numberOfMetadataDocumentsScanned": 1,
                              "numberOfNewDocumentsIndexed": 1, "numberOfModifiedDocumentsIndexed": 0,
                              "numberOfMetadataDocumentsModified": 0, "numberOfDocumentsDeleted": 1,
                              "numberOfDocumentsFailed": 1}  # fmt: skip
    assert got.failure_reasons == ("d2: empty",)
    assert ledger.set_status(job.id, "COMPLETE") and not ledger.set_status(job.id, "STOPPING")
    second, made = ledger.start_job(kb, ds, ALICE, None, None, "hash-4", "p_a")  # the data source is free again
    assert made and ledger.running_job(ds) == ledger.job(kb, ds, second.id)
    with pytest.raises(errors.NotFound):
        ledger.job(kb, "OTHERDS000", job.id)


def test_racing_starts_make_one_job(database_url: str) -> None:
    ledger, kb, ds = _setup(database_url)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def start(i: int) -> None:
        barrier.wait()
        try:
            ledger.start_job(kb, ds, ALICE, None, None, f"h{i}", "p_a")
            results.append("made")
        except errors.Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 5 + ["made"]


def test_list_jobs_sorts_filters_and_pages(database_url: str) -> None:
    ledger, kb, ds = _setup(database_url)
    ids = []
    for i, final in enumerate(["COMPLETE", "FAILED", "COMPLETE", "STOPPED"]):
        job, _ = ledger.start_job(kb, ds, ALICE, None, None, f"h{i}", "p_a")
        ledger.set_status(job.id, final)
        ids.append(job.id)
    newest = ledger.list_jobs(kb, ds, None, "STARTED_AT", True, 10, None)
    assert [j.id for j in newest.items] == ids[::-1] and newest.next_token is None
    first = ledger.list_jobs(kb, ds, None, "STARTED_AT", False, 3, None)
    rest = ledger.list_jobs(kb, ds, None, "STARTED_AT", False, 3, first.next_token)
    assert [j.id for j in first.items + rest.items] == ids and rest.next_token is None
    with pytest.raises(errors.InvalidRequest):  # a token for another order
        ledger.list_jobs(kb, ds, None, "STATUS", False, 3, first.next_token)
    by_status = ledger.list_jobs(kb, ds, ["COMPLETE", "STOPPED"], "STATUS", False, 10, None)
    assert [j.status for j in by_status.items] == ["COMPLETE", "COMPLETE", "STOPPED"]


def test_direct_requests_and_dead_owners(database_url: str) -> None:
    ledger, kb, ds = _setup(database_url)
    doc = ledger.request(kb, ds, "d1", "CUSTOM", "doc-1", "STARTING", {"content": {"name": "doc-1"}}, b"text")
    assert doc.generation == 1 and doc.status == "STARTING" and doc.pending == {"content": {"name": "doc-1"}}
    everyone_dead = lambda owner: False  # noqa: E731
    assert [d.document_id for d in ledger.claimable(everyone_dead)] == ["d1"]
    assert ledger.claim(doc, "p_a") == b"text"
    assert ledger.claim(doc, "p_b") is False  # taken
    assert ledger.claimable(lambda owner: owner == "p_a") == []  # its worker lives
    newer = ledger.request(kb, ds, "d1", "CUSTOM", "doc-1", "STARTING", {"content": {"name": "doc-1"}}, b"newer")
    assert newer.generation == 2
    row = _row(kb, ds, "d1", kind="CUSTOM", uri="doc-1")
    assert not ledger.commit_document(None, row, generation=1)  # the older request's work is not committed
    assert ledger.claim(newer, "p_b") == b"newer"
    assert ledger.commit_document(None, row, generation=2)
    done = ledger.document(ds, "d1")
    assert done is not None and done.status == "INDEXED" and done.pending is None and done.owner is None
    page = ledger.list_documents(ds, 1, None)
    assert [d.document_id for d in page.items] == ["d1"] and page.next_token is None

    job, _ = ledger.start_job(kb, ds, ALICE, None, None, "h", "p_dead")
    assert [j.id for j in ledger.orphans(lambda owner: owner != "p_dead")] == [job.id]
    assert ledger.orphans(lambda owner: True) == []
    assert ledger.take_over(job, "p_new") and not ledger.take_over(job, "p_other")
    assert ledger.job(kb, ds, job.id).owner == "p_new"

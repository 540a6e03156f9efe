"""The Knowledge bases page over HTTP, as a browser uses it (tests/console/conftest.py's Console): an administrator
creates a knowledge base (the built-in MiniLM) and an S3 data source on a local bucket folder, starts ingestion and
sees its statistics; the test panel's Retrieve finds the right chunk with its score and source, and its
RetrieveAndGenerate (a scripted model) answers with each cited span tied to its chunk. A member reads and tests
but may not create or ingest, exactly as the bedrock-agent API decides."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.bedrock_agent_runtime.conftest import number_of
from tests.console.conftest import Console, Served, signed_in
from tests.console.knowledge_server import (
    BUILTIN_EMBEDDING_ID,
    SCRIPTED,
    create_ingested,
    kb_server,
    needs_embeddings,
    wait_ingested,
)

pytestmark = needs_embeddings


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, env: pytest.MonkeyPatch) -> Iterator[Served]:
    yield from kb_server(tmp_path_factory.mktemp("console-kb"), env)


@pytest.fixture(scope="module")
def ingested(served: Served) -> Iterator[tuple[str, str]]:
    c = Console(served.url)
    assert c.sign_in(served.keys["root"]).status_code == 303
    try:
        yield create_ingested(c)
    finally:
        c.close()


def test_the_list_and_the_knowledge_base_with_its_source_and_ingestion_statistics(
    served: Served, ingested: tuple[str, str], console: Any
) -> None:
    kb_id, ds_id = ingested
    c = signed_in(console, served, "root")
    page = c.http.get("/console/knowledge-bases")
    assert page.status_code == 200
    assert f'href="/console/knowledge-bases/{kb_id}">rocks</a>' in page.text
    assert f"<code>{kb_id}</code>" in page.text and "ACTIVE" in page.text
    assert f"<code>{BUILTIN_EMBEDDING_ID}</code>" in page.text and "384 dimensions" in page.text
    assert 'aria-current="page"' in page.text and "Create a knowledge base" in page.text
    detail = c.http.get(f"/console/knowledge-bases/{kb_id}").text
    assert "Notes on rocks" in detail and f"<code>{ds_id}</code>" in detail
    assert "<dd>S3</dd>" in detail and "s3://rock-notes/notes/" in detail
    assert "Start ingestion" in detail and "Add a data source" in detail
    jobs = c.http.get(f"/console/knowledge-bases/{kb_id}/ingestion-jobs").json()["jobs"]
    [job] = jobs
    assert job["status"] == "COMPLETE" and job["dataSource"] == ds_id
    stats = job["statistics"]
    assert stats["numberOfDocumentsScanned"] == 3 and stats["numberOfNewDocumentsIndexed"] == 3
    assert stats["numberOfDocumentsFailed"] == 0 and stats["numberOfDocumentsDeleted"] == 0
    assert f'data-job="{job["id"]}"' in detail
    assert (
        'data-stat="numberOfNewDocumentsIndexed">3<' in detail and 'data-stat="numberOfDocumentsScanned">3<' in detail
    )


def test_starting_again_runs_a_job_that_finds_nothing_new(
    served: Served, ingested: tuple[str, str], console: Any
) -> None:
    kb_id, ds_id = ingested
    c = signed_in(console, served, "root")
    r = c.post_form(f"/console/knowledge-bases/{kb_id}/data-sources/{ds_id}/ingestion-jobs", {})
    assert r.status_code == 303 and "started=" in r.headers["location"]
    page = c.http.get(r.headers["location"]).text
    assert "Ingestion job " in page and " started." in page
    jobs = wait_ingested(c, kb_id)
    assert len(jobs) == 2 and jobs[0]["status"] == "COMPLETE"  # newest first
    assert jobs[0]["statistics"]["numberOfDocumentsScanned"] == 3
    assert jobs[0]["statistics"]["numberOfNewDocumentsIndexed"] == 0  # unchanged documents are skipped


def test_retrieve_ranks_the_chunk_that_answers_with_its_score_and_source(
    served: Served, ingested: tuple[str, str], console: Any
) -> None:
    kb_id, _ = ingested
    c = signed_in(console, served, "alice")  # a member may test
    r = c.post_json(f"/console/knowledge-bases/{kb_id}/retrieve",
                    {"query": "Which rock fizzes in acid?", "numberOfResults": "2", "searchType": "SEMANTIC"})  # fmt: skip
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2 and [x["rank"] for x in results] == [1, 2]
    top = results[0]
    assert "fizzes in dilute" in top["text"]
    assert top["location"] == "s3://rock-notes/notes/limestone.md"
    assert isinstance(top["score"], float) and top["score"] >= results[1]["score"]
    assert top["chunk"]
    hybrid = c.post_json(f"/console/knowledge-bases/{kb_id}/retrieve",
                         {"query": "kitchen countertops", "numberOfResults": 1, "searchType": "HYBRID"}).json()  # fmt: skip
    assert hybrid["results"][0]["location"] == "s3://rock-notes/notes/granite.md"


def test_retrieve_and_generate_ties_each_cited_span_to_its_chunk(
    served: Served, ingested: tuple[str, str], console: Any
) -> None:
    kb_id, _ = ingested
    engine = served.extra["engine"]
    engine.script = lambda r: (f"Limestone fizzes in acid [{number_of(r, 'fizzes')}]. "
                               f"Basalt forms columns [{number_of(r, 'hexagonal')}].")  # fmt: skip
    c = signed_in(console, served, "alice")
    r = c.post_json(f"/console/knowledge-bases/{kb_id}/generate",
                    {"query": "Tell me about limestone and basalt", "model": SCRIPTED, "numberOfResults": 3})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "Limestone fizzes in acid. Basalt forms columns."
    assert "".join(s["text"] for s in body["segments"]) == body["text"]
    cited = [s for s in body["segments"] if s["refs"]]
    assert [s["text"].strip() for s in cited] == ["Limestone fizzes in acid.", "Basalt forms columns."]
    sources = {s["number"]: s for s in body["sources"]}
    first, second = (sources[s["refs"][0]] for s in cited)
    assert "fizzes" in first["text"] and first["location"] == "s3://rock-notes/notes/limestone.md"
    assert "hexagonal" in second["text"] and second["location"] == "s3://rock-notes/notes/basalt.md"
    assert body["sessionId"]
    engine.script = None


def test_a_member_reads_but_may_not_create_or_ingest(served: Served, ingested: tuple[str, str], console: Any) -> None:
    kb_id, ds_id = ingested
    c = signed_in(console, served, "alice")
    page = c.http.get(f"/console/knowledge-bases/{kb_id}").text
    assert "notes" in page and "Start ingestion" not in page and "Add a data source" not in page
    assert "Create a knowledge base" not in c.http.get("/console/knowledge-bases").text
    r = c.post_form(f"/console/knowledge-bases/{kb_id}/data-sources/{ds_id}/ingestion-jobs", {})
    assert r.status_code == 403 and "Only an administrator" in r.text
    r = c.post_form("/console/knowledge-bases", {"name": "mine", "model": BUILTIN_EMBEDDING_ID})
    assert r.status_code == 403 and "Only an administrator" in r.text
    r = c.post_form(f"/console/knowledge-bases/{kb_id}/data-sources", {"name": "x", "bucket": "rock-notes"})
    assert r.status_code == 403


def test_a_running_job_is_stopped_from_the_page(
    served: Served, ingested: tuple[str, str], console: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An administrator stops a job with its row's Stop button (StopIngestionJob through the same service); a
    member has no button and is refused; a job that is over cannot be stopped, said on the page."""
    kb_id, ds_id = ingested
    c = signed_in(console, served, "root")
    wait_ingested(c, kb_id)
    ingestion = served.app.context.knowledge.ingestion

    async def no_sweep() -> None:
        return None

    monkeypatch.setattr(ingestion, "sweep", no_sweep)  # nobody resumes the job below: it stays STARTING
    root = served.keyring.by_api_key(served.keys["root"])
    assert root is not None
    job, _ = ingestion.ledger.start_job(kb_id, ds_id, root, "left running", None, "-", "a-process-gone")
    action = f"/console/knowledge-bases/{kb_id}/data-sources/{ds_id}/ingestion-jobs/{job.id}/stop"
    assert f'action="{action}"' in c.http.get(f"/console/knowledge-bases/{kb_id}").text
    member = signed_in(console, served, "alice")
    assert f'action="{action}"' not in member.http.get(f"/console/knowledge-bases/{kb_id}").text
    assert member.post_form(action, {}).status_code == 403
    r = c.post_form(action, {})
    assert r.status_code == 303 and r.headers["location"] == f"/console/knowledge-bases/{kb_id}?stopped={job.id}"
    page = c.http.get(r.headers["location"]).text
    assert f"Ingestion job {job.id} stopped" in page and f'action="{action}"' not in page
    assert {j["id"]: j["status"] for j in wait_ingested(c, kb_id)}[job.id] == "STOPPED"
    again = c.post_form(action, {})
    assert again.status_code == 409 and "only a job that is STARTING or IN_PROGRESS can be stopped" in again.text


def test_mistakes_are_said_in_plain_words(served: Served, ingested: tuple[str, str], console: Any) -> None:
    kb_id, _ = ingested
    c = signed_in(console, served, "root")
    r = c.post_json(f"/console/knowledge-bases/{kb_id}/retrieve", {"query": "   "})
    assert r.status_code == 400 and r.json()["message"] == "retrievalQuery.text must not be empty."
    r = c.post_json(f"/console/knowledge-bases/{kb_id}/retrieve", {"query": "rocks", "numberOfResults": "lots"})
    assert r.status_code == 400 and "whole number" in r.json()["message"]
    r = c.post_json(f"/console/knowledge-bases/{kb_id}/generate", {"query": "rocks", "model": "no.such-model"})
    assert r.status_code in (400, 404) and "no.such-model" in r.json()["message"]
    assert "Traceback" not in r.text
    r = c.http.get("/console/knowledge-bases/NOSUCHKB00")
    assert r.status_code == 404 and "NOSUCHKB00" in r.text and "<title>" in r.text
    r = c.post_form("/console/knowledge-bases", {"name": "rocks", "model": BUILTIN_EMBEDDING_ID})  # taken
    assert r.status_code == 400 and 'role="alert"' in r.text and "rocks" in r.text
    assert 'value="rocks"' in r.text  # the form keeps what was typed
    r = c.post_form(f"/console/knowledge-bases/{kb_id}/data-sources", {"name": "bad", "bucket": "Not A Bucket"})
    assert r.status_code == 400 and 'role="alert"' in r.text


def test_the_test_panel_needs_a_session_and_its_token(served: Served, ingested: tuple[str, str], console: Any) -> None:
    kb_id, _ = ingested
    anonymous = console(served.url)
    r = anonymous.http.post(f"/console/knowledge-bases/{kb_id}/retrieve", json={"query": "rock"},
                            headers={"Origin": served.url})  # fmt: skip
    assert r.status_code == 401
    c = signed_in(console, served, "alice")
    r = c.post_json(f"/console/knowledge-bases/{kb_id}/retrieve", {"query": "rock"}, token="wrong")
    assert r.status_code == 403
    r = c.http.get("/console/knowledge-bases")
    assert r.status_code == 200
    assert anonymous.http.get("/console/knowledge-bases").status_code == 303  # to the sign-in page


def test_an_answer_is_cut_into_segments_and_a_chunk_cited_twice_has_one_number() -> None:
    from outcrop.console.passages import answer

    chunk = {"content": {"text": "Basalt is dark."}, "location": {"type": "S3", "s3Location": {"uri": "s3://b/k.md"}},
             "metadata": {"x-amz-bedrock-kb-chunk-id": "c1", "topic": "rocks"}}  # fmt: skip
    other = {"content": {"text": "Quartz."}, "location": {"type": "CUSTOM", "customDocumentLocation": {"id": "d2"}},
             "metadata": {"x-amz-bedrock-kb-chunk-id": "c2"}}  # fmt: skip
    text = "Basalt is dark. Quartz is hard. Basalt again."

    def cite(start: int, end: int, *refs: dict[str, Any]) -> dict[str, Any]:
        part = {"textResponsePart": {"text": text[start : end + 1], "span": {"start": start, "end": end}}}
        return {"generatedResponsePart": part, "retrievedReferences": list(refs)}

    wire = {"output": {"text": text}, "sessionId": "s", "citations": [cite(0, 14, chunk), cite(32, 44, chunk, other)]}
    out = answer(wire)
    assert [(s["text"], s["refs"]) for s in out["segments"]] == [
        ("Basalt is dark.", [1]), (" Quartz is hard. ", []), ("Basalt again.", [1, 2])]  # fmt: skip
    assert [(s["number"], s["location"], s["metadata"]) for s in out["sources"]] == [
        (1, "s3://b/k.md", {"topic": "rocks"}), (2, "document d2", {})]  # fmt: skip
    assert answer({"output": {"text": "No citations."}})["segments"] == [{"text": "No citations.", "refs": []}]
